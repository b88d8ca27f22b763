"""`python -m service` is the `agentstream` command."""

from service.cli import main

main()
