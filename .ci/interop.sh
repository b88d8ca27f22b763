#!/usr/bin/env bash
# `make interop`: one scripted LLM and agentstream servers (plaintext, TLS, mTLS), then every SDK's scenario
# suite against them.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
logs="$(mktemp -d)"
pids=()
cleanup() {  # TERM every child first, then wait for them all
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$logs"
}
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
pki="$logs/pki"
"$py" -m tests.support.certs "$pki"  # a throwaway CA with server and client certificates
# A tokens file for the server that requires tokens: one runner token, one reader token (their SHA-256 only).
runner_token=$("$py" -c 'import secrets; print(secrets.token_urlsafe(32))')
reader_token=$("$py" -c 'import secrets; print(secrets.token_urlsafe(32))')
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
printf '[[tokens]]\ntenant = "interop"\nsha256 = "%s"\nroles = ["runner"]\n[[tokens]]\ntenant = "interop"\nsha256 = "%s"\nroles = ["reader"]\n' \
  "$(sha "$runner_token")" "$(sha "$reader_token")" >"$logs/tokens.toml"

serve() {  # serve NAME [FLAGS...]: start a server in the background, logging to $logs/NAME.log
  local name=$1; shift
  OPENAI_BASE_URL="$llm" OPENAI_API_KEY=interop AGENTSTREAM_STORE=memory \
    .venv/bin/agentstream serve --port 0 --agents tests/scenarios/agents.toml "$@" >"$logs/$name.log" 2>&1 &
  pids+=($!)
  eval "${name}_pid=$!"
}
# Four servers, started together: plaintext (every scenario), TLS and mTLS (a few scenarios per SDK), and
# one that requires tokens (each SDK's token test).
serve server
serve tls_server --tls-cert "$pki/server.pem" --tls-key "$pki/server.key"
serve mtls_server --tls-cert "$pki/server.pem" --tls-key "$pki/server.key" --tls-client-ca "$pki/ca.pem"
serve auth_server --auth-tokens "$logs/tokens.toml"
target=$(wait_for "$logs/server.log" "$server_pid")
tls_target=$(wait_for "$logs/tls_server.log" "$tls_server_pid")
mtls_target=$(wait_for "$logs/mtls_server.log" "$mtls_server_pid")
auth_target=$(wait_for "$logs/auth_server.log" "$auth_server_pid")
echo "interop: scripted LLM at $llm, agentstream at $target (plaintext), $tls_target (TLS), $mtls_target (mTLS)," \
  "$auth_target (tokens)"
export AGENTSTREAM_INTEROP_AUTH_TARGET="$auth_target"
export AGENTSTREAM_INTEROP_RUNNER_TOKEN="$runner_token" AGENTSTREAM_INTEROP_READER_TOKEN="$reader_token"

export AGENTSTREAM_TARGET="$target"
# Each suite also runs a few scenarios over TLS and mTLS (and checks mTLS refuses a client without a
# certificate) when these are set.
export AGENTSTREAM_INTEROP_TLS_TARGET="$tls_target" AGENTSTREAM_INTEROP_MTLS_TARGET="$mtls_target"
export AGENTSTREAM_INTEROP_CA="$pki/ca.pem" AGENTSTREAM_INTEROP_CERT="$pki/client.pem" AGENTSTREAM_INTEROP_KEY="$pki/client.key"
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
