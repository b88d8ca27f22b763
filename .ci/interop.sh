#!/usr/bin/env bash
# `make interop`: one scripted LLM and one agentstream server, then every SDK's scenario suite against them.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
logs="$(mktemp -d)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done; rm -rf "$logs"; }
trap cleanup EXIT

wait_for() {  # wait_for LOGFILE PID -> prints the first "listening on X" address
  for _ in $(seq 1 200); do
    addr=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$1" | head -n1)
    [ -n "$addr" ] && { echo "$addr"; return 0; }
    kill -0 "$2" 2>/dev/null || { cat "$1" >&2; return 1; }
    sleep 0.1
  done
  cat "$1" >&2; return 1
}

"$py" -m tests.support.fakellm --port 0 >"$logs/llm.log" 2>&1 &
pids+=($!)
llm=$(wait_for "$logs/llm.log" $!)
OPENAI_BASE_URL="$llm" OPENAI_API_KEY=interop AGENTSTREAM_STORE=memory .venv/bin/agentstream serve --port 0 >"$logs/server.log" 2>&1 &
pids+=($!)
target=$(wait_for "$logs/server.log" $!)
echo "interop: scripted LLM at $llm, agentstream at $target"

export AGENTSTREAM_TARGET="$target"
AGENTSTREAM_INTEROP_TARGET="$target" "$py" -m pytest -q -p no:cacheprovider tests/interop
(cd clients/go && go test -count=1 -skip TestThroughput ./... && go test -count=1 -v -run TestThroughput ./agentstream | grep "events/s")
(cd clients/typescript && npm test --silent 2>&1 | grep -v "npm warn")
"$py" - <<'PY'
import asyncio, os, time
from agentstream import Client, StreamingMode

async def main() -> None:
    async with Client(os.environ["AGENTSTREAM_TARGET"]) as client:
        start, events = time.perf_counter(), 0
        async for _ in client.streaming_run("bench: tokens=20000", streaming_mode=StreamingMode.CHUNK):
            events += 1
        assert events == 20001, events
        print(f"python sdk: {events / (time.perf_counter() - start):.0f} events/s")

asyncio.run(main())
PY
