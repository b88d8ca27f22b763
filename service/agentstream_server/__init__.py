"""agentstream server: runs LLM agents and streams their events over gRPC."""
