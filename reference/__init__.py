"""Reference implementations and tiny models shared by tests/ and benchmarks/ (not installed: run from the repository root)."""
