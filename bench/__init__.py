"""Benchmarks: the app's own cost against the floor. ``python -m bench``; see docs/bench.md."""
