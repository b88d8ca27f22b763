#!/usr/bin/env bash
# Regenerates the Python stubs from protos/ into OUT_DIR (default: clients/python).
# The drift test runs this into a temp dir and compares with what is committed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/clients/python}"
py="${PYTHON:-$root/.venv/bin/python}"
export PATH="$(dirname "$py"):$PATH"
mkdir -p "$out"
cd "$root/protos"
"$py" -m grpc_tools.protoc -I . \
  --python_out="$out" --grpc_python_out="$out" \
  --mypy_out="$out" --mypy_grpc_out="$out" \
  agentstream/v1/*.proto
touch "$out/agentstream/v1/__init__.py"
