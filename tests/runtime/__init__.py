"""Tests of the agent runtime (no grpc)."""
