// Command holdgen holds many idle runs and streams open on a server, for its memory figures.
//
// It starts -runs runs (StartRun) whose LLM call stays open (`bench: tokens=1 rate=0.001`: one token, then
// nothing for 1,000 s), waits until each has streamed its first chunk, and prints {"phase":"runs",...}.
// On a line on stdin it opens -subscribers SubscribeRun streams spread over those runs, waits until each
// has caught up (received the first chunk), and prints {"phase":"subscribers",...}. On the next line (or
// end of input) it cancels every run and exits. A start refused with TOO_MANY_RUNS (an overloaded server)
// is retried after the hint it carries.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentstream/agentstream/clients/go/agentstream"
	pb "github.com/agentstream/agentstream/clients/go/agentstreamv1"
)

func main() {
	target := flag.String("target", "127.0.0.1:50051", "server address")
	runs := flag.Int("runs", 100, "live runs to hold")
	subscribers := flag.Int("subscribers", 1000, "idle SubscribeRun streams to hold, spread over the runs")
	flag.Parse()

	conns := (*runs + *subscribers + 99) / 100 // under the server's 128 streams per connection
	clients := make([]*agentstream.Client, conns)
	for i := range clients {
		c, err := agentstream.Dial(*target)
		if err != nil {
			fail(err)
		}
		defer c.Close()
		clients[i] = c
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	ids := make([]string, *runs)
	var wg sync.WaitGroup
	var failures atomic.Int64
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := start(ctx, clients[i%conns])
			if err != nil {
				failures.Add(1)
				return
			}
			ids[i] = id
			if !streaming(ctx, clients[i%conns], id) {
				failures.Add(1)
			}
		}()
	}
	wg.Wait()
	report("runs", *runs, failures.Load())
	stdin := bufio.NewScanner(os.Stdin)
	stdin.Scan()
	failures.Store(0)
	for i := range *subscribers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !caughtUp(ctx, clients[(*runs+i)%conns], ids[i%len(ids)]) {
				failures.Add(1)
			}
		}()
	}
	wg.Wait()
	report("subscribers", *subscribers, failures.Load())
	stdin.Scan()
	for i, id := range ids {
		if id != "" {
			clients[i%conns].CancelRun(context.Background(), id, "benchmark over")
		}
	}
}

// start starts one held run, retrying a TOO_MANY_RUNS refusal after its retry hint.
func start(ctx context.Context, c *agentstream.Client) (string, error) {
	for {
		id, err := c.StartRun(ctx, "bench: tokens=1 rate=0.001", agentstream.RunOptions{})
		var typed *agentstream.Error
		if err == nil || !errors.As(err, &typed) || typed.Reason != "TOO_MANY_RUNS" {
			return id, err
		}
		wait, _ := strconv.ParseFloat(typed.Metadata["retry_after_s"], 64)
		time.Sleep(time.Duration(max(wait, 0.1) * float64(time.Second)))
	}
}

// streaming waits (GetRun) until a run has logged its first chunk (its start, then the chunk: seq 2).
func streaming(ctx context.Context, c *agentstream.Client, id string) bool {
	for range 600 {
		run, err := c.GetRun(ctx, id)
		if err != nil {
			return false
		}
		if run.GetLastSeq() >= 2 {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// caughtUp subscribes to a run and returns once its first chunk arrived, leaving the stream open (idle).
func caughtUp(ctx context.Context, c *agentstream.Client, id string) bool {
	if id == "" {
		return false
	}
	s, err := c.SubscribeRun(ctx, id, 0, pb.StreamingMode_STREAMING_MODE_CHUNK)
	if err != nil {
		return false
	}
	got := make(chan bool, 1)
	go func() {
		first := true
		for msg, err := range s.All() {
			if err != nil {
				break
			}
			if first && msg.GetChunk() != nil {
				first = false
				got <- true
			}
		}
		if first {
			got <- false
		}
	}()
	return <-got
}

func report(phase string, n int, failed int64) {
	out, _ := json.Marshal(map[string]any{"phase": phase, "count": n, "failed": failed})
	fmt.Println(string(out))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
