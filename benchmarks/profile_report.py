"""Summarise a py-spy collapsed-stack profile (``py-spy record --format raw``) of the agentstream server.

Prints the share of samples (1) by where the time is spent, inclusive, in buckets that follow the path of an
event through the server, (2) by leaf function (self time), top 25. Usage: profile_report.py PROFILE.txt
"""

from __future__ import annotations

import collections
import re
import sys
from pathlib import Path

BUCKETS: list[tuple[str, re.Pattern[str]]] = [
    # the first bucket whose pattern matches any frame of a stack (searched innermost first) takes the sample
    ("logging (per-run log lines, httpx request log)", re.compile(r"\(logging/|redact\.py")),
    ("upstream HTTP: openai SDK request/response setup", re.compile(r"\(openai/")),
    ("upstream HTTP: httpx2, runtime/h1*.py + httptools (or httpcore2/h11) read and connection pool",
     re.compile(r"\((httpx2|httpcore2|h11|anyio|httptools)/|runtime/h1(conn|pool)?\.py")),
    ("SSE parse + LLM deltas (runtime/llm.py)", re.compile(r"runtime/llm\.py")),
    ("agent loop, events (runtime/loop.py, events.py, coalesce.py)", re.compile(r"runtime/(loop|events|coalesce)\.py")),
    ("run log, store, cursors (store/)", re.compile(r"agentstream_server/store/")),
    ("run manager, execution, modes (runs/)", re.compile(r"agentstream_server/runs/")),
    ("proto conversion (transport/convert.py)", re.compile(r"transport/convert\.py")),
    ("servicer + status wrapper (transport/servicer.py, status.py, decoding.py)",
     re.compile(r"transport/(servicer|status|decoding)\.py")),
    ("grpc.aio (send/receive, call setup: cygrpc)", re.compile(r"grpc/|cygrpc|\.pyx")),
    ("protobuf", re.compile(r"protobuf")),
    ("asyncio/uvloop event loop itself", re.compile(r"asyncio/|uvloop")),
]  # fmt: skip


def main(path: str) -> None:
    stacks: collections.Counter[str] = collections.Counter()
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            stacks[stack] += int(count)
    total = sum(stacks.values())
    buckets: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    for stack, count in stacks.items():
        frames = stack.split(";")
        leaves[frames[-1]] += count
        for name, pattern in BUCKETS:
            if any(pattern.search(frame) for frame in frames):
                buckets[name] += count
                break
        else:
            buckets["other"] += count
    print(f"{total} samples")
    print("\nby where the time goes (inclusive, first matching bucket in the list order):")
    for name, count in buckets.most_common():
        print(f"  {100 * count / total:5.1f}%  {name}")
    print("\nby leaf function (self time), top 25:")
    for frame, count in leaves.most_common(25):
        print(f"  {100 * count / total:5.1f}%  {frame[:150]}")


if __name__ == "__main__":
    main(sys.argv[1])
