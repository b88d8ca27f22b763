"""Benchmarks that print figures beside same-run baselines."""
