"""`python -m agentstream_server` is the `agentstream` command (with `serve`)."""

from agentstream_server.cli import main

main()
