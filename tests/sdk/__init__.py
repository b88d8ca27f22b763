"""Tests of the Python SDK against a live server."""
