"""agentstream test suite."""
