"""Test support: the scripted LLM server and test tools."""
