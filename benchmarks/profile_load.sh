#!/usr/bin/env bash
# Profile the agentstream server under many streams: py-spy samples the server process while the Go load
# generator runs STREAMS StreamingRun streams of TOKENS stamped tokens at RATE tokens/s against it (the Go
# scripted LLM upstream, the concurrency figure's settings). Writes OUT/profile.txt (py-spy's collapsed
# stacks) and OUT/loadgen.json, then prints benchmarks/profile_report.py's summary of the profile.
#   usage: [PYSPY_ARGS=--native (default --nonblocking)] benchmarks/profile_load.sh [STREAMS=1000] [TOKENS=100] [RATE=10] [OUT=build/profile]
set -euo pipefail
cd "$(dirname "$0")/.."
streams=${1:-1000} tokens=${2:-100} rate=${3:-10} out=${4:-build/profile}
py=.venv/bin/python
mkdir -p "$out"
(cd benchmarks/loadgen && go build -o bin/ ./cmd/...)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_for() {  # wait_for LOGFILE -> the first "listening on X" address
  for _ in $(seq 1 100); do
    addr=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$1" | head -n1)
    [ -n "$addr" ] && { echo "$addr"; return 0; }
    sleep 0.1
  done
  cat "$1" >&2; return 1
}
benchmarks/loadgen/bin/fakellm >"$out/llm.log" 2>&1 &
pids+=($!)
llm=$(wait_for "$out/llm.log")
# The settings figure 5 uses: no per-peer limit (every stream comes from 127.0.0.1), room for every run.
OPENAI_BASE_URL="$llm" OPENAI_API_KEY=bench AGENTSTREAM_MAX_RUNS=100000 AGENTSTREAM_MAX_RUNS_PER_PEER=0 \
  "$py" -m agentstream_server serve --port 0 >"$out/server.log" 2>&1 &
server=$!
pids+=($server)
target=$(wait_for "$out/server.log")
benchmarks/loadgen/bin/loadgen -target "$target" -streams 10 -tokens 5 -rate 50 >/dev/null  # warm up
.venv/bin/py-spy record --pid "$server" --rate ${PYSPY_RATE:-200} ${PYSPY_ARGS:---nonblocking} --format raw --output "$out/profile.txt" >/dev/null 2>&1 &
spy=$!
sleep 1
benchmarks/loadgen/bin/loadgen -target "$target" -streams "$streams" -tokens "$tokens" -rate "$rate" | tee "$out/loadgen.json"
kill -INT $spy; wait $spy || true
"$py" benchmarks/profile_report.py "$out/profile.txt"
