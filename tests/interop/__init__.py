"""The shared scenarios (tests/scenarios) run through the Python SDK."""
