// Command fakellm is a scripted OpenAI-compatible chat-completions server built to hold thousands of
// slow streams at once: one goroutine per response, one HTTP chunk (write + flush) per token, as real
// endpoints send them.
//
// It answers the prompt `bench: tokens=N [rate=R] [stamp]` (the last message's content) with N content
// deltas at R per second on a fixed schedule (no drift), each token replaced by its send time in
// CLOCK_MONOTONIC nanoseconds when `stamp` is given (the clock Python's time.perf_counter_ns() reads
// on Linux, so other processes can subtract it), then a finish_reason chunk, a usage chunk when
// stream_options.include_usage is set, and `data: [DONE]`. Any other prompt is echoed back word by word.
// It prints "fakellm listening on http://127.0.0.1:PORT/v1" once ready.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

var benchPrompt = regexp.MustCompile(`^bench: tokens=(\d+)(?: rate=(\d+(?:\.\d+)?))?( stamp)?$`)

type request struct {
	Model    string `json:"model"`
	Stream   bool   `json:"stream"`
	Messages []struct {
		Content any `json:"content"`
	} `json:"messages"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

func monotonicNs() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

func main() {
	addr := flag.String("listen", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", completions)
	fmt.Printf("fakellm listening on http://%s/v1\n", ln.Addr())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func completions(w http.ResponseWriter, r *http.Request) {
	var req request
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, `{"error": {"message": "request body is not JSON"}}`, http.StatusBadRequest)
		return
	}
	prompt := ""
	if n := len(req.Messages); n > 0 {
		prompt, _ = req.Messages[n-1].Content.(string)
	}
	tokens, interval, stamp := script(prompt)
	model := req.Model
	if model == "" {
		model = "fake-model"
	}
	if !req.Stream {
		http.Error(w, `{"error": {"message": "only stream=true is scripted"}}`, http.StatusBadRequest)
		return
	}
	flusher := w.(http.Flusher)
	w.Header().Set("content-type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	head := fmt.Sprintf(`data: {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": %d, "model": %q`,
		time.Now().Unix(), model)
	delta := head + `, "choices": [{"index": 0, "delta": `
	write := func(frame string) bool {
		if _, err := w.Write([]byte(frame)); err != nil {
			return false
		}
		flusher.Flush() // one HTTP chunk per frame
		return true
	}
	if !write(delta + `{"role": "assistant", "content": ""}, "finish_reason": null}]}` + "\n\n") {
		return
	}
	start := time.Now()
	for i, token := range tokens {
		if stamp {
			token = strconv.FormatInt(monotonicNs(), 10)
		}
		quoted, _ := json.Marshal(token)
		if !write(delta + `{"content": ` + string(quoted) + `}, "finish_reason": null}]}` + "\n\n") {
			return // the client went away
		}
		if interval > 0 {
			select {
			case <-time.After(time.Until(start.Add(time.Duration(i+1) * interval))):
			case <-r.Context().Done():
				return
			}
		}
	}
	tail := delta + `{}, "finish_reason": "stop"}]}` + "\n\n"
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		prompt := len(strings.Fields(prompt))
		tail += fmt.Sprintf(`%s, "choices": [], "usage": {"prompt_tokens": %d, "completion_tokens": %d, "total_tokens": %d}}`+"\n\n",
			head, prompt, len(tokens), prompt+len(tokens))
	}
	write(tail + "data: [DONE]\n\n")
}

// script is what a prompt streams: the tokens, the pause between them, and whether to stamp them.
func script(prompt string) ([]string, time.Duration, bool) {
	if m := benchPrompt.FindStringSubmatch(prompt); m != nil {
		n, _ := strconv.Atoi(m[1])
		var interval time.Duration
		if m[2] != "" {
			if rate, _ := strconv.ParseFloat(m[2], 64); rate > 0 {
				interval = time.Duration(float64(time.Second) / rate)
			}
		}
		tokens := make([]string, n)
		for i := range tokens {
			tokens[i] = "x "
		}
		return tokens, interval, m[3] != ""
	}
	var tokens []string
	for _, word := range strings.Fields("You said: " + prompt) {
		tokens = append(tokens, word+" ")
	}
	return tokens, 0, false
}
