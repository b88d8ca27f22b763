#!/usr/bin/env bash
# `make demo`: start a server on a free port, stream one run through the CLI, stop the server.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
log="$(mktemp)"
"$bin/agentstream" serve --port 0 >"$log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  target=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$log" | head -n1)
  [ -n "$target" ] && break
  kill -0 $server 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
[ -n "$target" ] || { echo "server did not start"; cat "$log"; exit 1; }
sed -n '1,20p' "$log"
"$bin/agentstream" run "${PROMPT:-What is 12 * (3 + 4)?}" --target "$target" --mode "${MODE:-core}"
echo
echo "More to try: a triage agent handing off to specialists, one of which asks a researcher agent (examples/team.toml):"
echo "  $bin/agentstream serve --agents examples/team.toml"
echo "  $bin/agentstream run --mode ALL \"I have a technical question, ask the researcher: why is my build slow?\""
