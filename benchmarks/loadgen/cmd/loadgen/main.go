// Command loadgen drives N concurrent StreamingRun streams through the Go SDK and reports, as one JSON
// line on stdout: delivered events/s, per-event latency percentiles, and errors by status code.
//
// Every stream asks for `bench: tokens=M rate=R stamp`: the scripted LLM (or the raw baseline server,
// which answers the same RPC) sends M tokens at R per second, each carrying its send time in
// CLOCK_MONOTONIC nanoseconds. An event's latency is CLOCK_MONOTONIC at receipt minus that stamp: both
// processes read the same system-wide clock (Go's time.Now() monotonic reading is process-relative, so
// the clock is read explicitly).
//
// Streams are spread over -conns HTTP/2 connections (a server caps concurrent streams per connection;
// grpc-go queues the streams over the cap, which would measure the queue, not the server) and their
// starts over -spread, so the tokens of all streams are evenly spaced in time.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/status"

	"github.com/agentstream/agentstream/clients/go/agentstream"
	pb "github.com/agentstream/agentstream/clients/go/agentstreamv1"
)

func monotonicNs() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

// Report is the JSON line printed at the end.
type Report struct {
	Streams       int            `json:"streams"`
	Conns         int            `json:"conns"`
	TokensEach    int            `json:"tokens_per_stream"`
	Rate          float64        `json:"rate"`
	Events        int            `json:"events"`
	Expected      int            `json:"expected"`
	Seconds       float64        `json:"seconds"`
	EventsPerS    float64        `json:"events_per_s"`
	OfferedPerS   float64        `json:"offered_per_s"`
	P50Ms         float64        `json:"p50_ms"`
	P90Ms         float64        `json:"p90_ms"`
	P99Ms         float64        `json:"p99_ms"`
	MaxMs         float64        `json:"max_ms"`
	FirstP50Ms    float64        `json:"first_event_p50_ms"`
	FirstP99Ms    float64        `json:"first_event_p99_ms"`
	Errors        map[string]int `json:"errors"`
	Incomplete    int            `json:"incomplete"`
	ErrorExamples []string       `json:"error_examples,omitempty"`
	// ErrorAfterS: for failed calls, seconds from the call's start to its failure (min, p50, max).
	ErrorAfterS []float64 `json:"error_after_s,omitempty"`
}

type result struct {
	latencies []int64 // ns, one per event
	firstNs   int64   // call start -> first event, ns (-1: none)
	lastNs    int64   // monotonic time of the last event
	err       string  // "" or a status code name (or FAILED:<code> for an in-band failure)
	detail    string
	began     int64 // monotonic time of the call's start
	failedAt  int64 // monotonic time of the failure
}

func main() {
	target := flag.String("target", "127.0.0.1:50051", "server address")
	streams := flag.Int("streams", 100, "concurrent streams")
	tokens := flag.Int("tokens", 30, "tokens per stream")
	rate := flag.Float64("rate", 10, "tokens per second per stream")
	conns := flag.Int("conns", 0, "HTTP/2 connections (0: one per 100 streams)")
	spread := flag.Duration("spread", 0, "spread the stream starts over this long (0: one token interval)")
	timeout := flag.Duration("timeout", 0, "per-call deadline (0: none)")
	flag.Parse()

	if *conns <= 0 {
		*conns = (*streams + 99) / 100
	}
	if *spread <= 0 {
		*spread = time.Duration(float64(time.Second) / *rate)
	}
	clients := make([]*agentstream.Client, *conns)
	for i := range clients {
		c, err := agentstream.Dial(*target)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer c.Close()
		clients[i] = c
	}
	input := fmt.Sprintf("bench: tokens=%d rate=%g stamp", *tokens, *rate)
	results := make([]result, *streams)
	var wg sync.WaitGroup
	start := monotonicNs()
	for i := range *streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(int64(*spread) * int64(i) / int64(*streams)))
			results[i] = stream(clients[i%len(clients)], input, *tokens, *timeout)
		}()
	}
	wg.Wait()

	rep := Report{Streams: *streams, Conns: *conns, TokensEach: *tokens, Rate: *rate, Errors: map[string]int{},
		Expected: *streams * *tokens, OfferedPerS: float64(*streams) * *rate}
	var all, firsts, failedAfter []int64
	end := start
	for _, r := range results {
		all = append(all, r.latencies...)
		if r.firstNs >= 0 {
			firsts = append(firsts, r.firstNs)
		}
		end = max(end, r.lastNs)
		if r.err != "" {
			rep.Errors[r.err]++
			failedAfter = append(failedAfter, r.failedAt-r.began)
			if len(rep.ErrorExamples) < 5 {
				rep.ErrorExamples = append(rep.ErrorExamples, r.detail)
			}
		} else if len(r.latencies) != *tokens {
			rep.Incomplete++
		}
	}
	rep.Events = len(all)
	rep.Seconds = float64(end-start) / 1e9
	if rep.Seconds > 0 {
		rep.EventsPerS = float64(rep.Events) / rep.Seconds
	}
	slices.Sort(all)
	slices.Sort(firsts)
	rep.P50Ms, rep.P90Ms, rep.P99Ms = pct(all, 50), pct(all, 90), pct(all, 99)
	if len(all) > 0 {
		rep.MaxMs = float64(all[len(all)-1]) / 1e6
	}
	rep.FirstP50Ms, rep.FirstP99Ms = pct(firsts, 50), pct(firsts, 99)
	if len(failedAfter) > 0 {
		slices.Sort(failedAfter)
		rep.ErrorAfterS = []float64{pct(failedAfter, 0) / 1e3, pct(failedAfter, 50) / 1e3, pct(failedAfter, 100) / 1e3}
	}
	out, _ := json.Marshal(rep)
	fmt.Println(string(out))
}

func pct(sorted []int64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted)-1) + 0.5)
	return float64(sorted[i]) / 1e6
}

func stream(c *agentstream.Client, input string, tokens int, timeout time.Duration) result {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	r := result{latencies: make([]int64, 0, tokens), firstNs: -1}
	began := monotonicNs()
	r.began = began
	s, err := c.StreamingRun(ctx, input, agentstream.RunOptions{Mode: pb.StreamingMode_STREAMING_MODE_CHUNK})
	if err != nil {
		r.fail(err)
		return r
	}
	for msg, err := range s.All() {
		if err != nil {
			r.fail(err)
			return r
		}
		now := monotonicNs()
		if content := msg.GetChunk().GetContent(); content != "" {
			for _, field := range strings.Fields(content) {
				if sent, err := strconv.ParseInt(field, 10, 64); err == nil {
					r.latencies = append(r.latencies, now-sent)
				}
			}
			if r.firstNs < 0 {
				r.firstNs = now - began
			}
			r.lastNs = now
		}
		if task := msg.GetTask(); task != nil && msg.GetTopic() == agentstream.TaskResponseTopic && !task.GetSuccess() {
			r.fail(agentstream.ErrorForTask(task))
			r.err = "FAILED:" + r.err
		}
	}
	return r
}

func (r *result) fail(err error) {
	r.failedAt = monotonicNs()
	var typed *agentstream.Error
	if errors.As(err, &typed) {
		r.err = typed.Code.String()
		if typed.Reason != "" {
			r.err += " " + typed.Reason
		}
	} else if st, ok := status.FromError(err); ok {
		r.err = st.Code().String()
	} else {
		r.err = "UNKNOWN"
	}
	r.detail = err.Error()
}
