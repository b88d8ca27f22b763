"""The agent runtime: events, agent loop, LLM access and tools; knows nothing of grpc."""
