"""agentstream: the Python SDK for the agentstream gRPC service."""
