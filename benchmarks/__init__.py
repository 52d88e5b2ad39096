"""Benchmarks of wod-backend: `python -m benchmarks` (as root, on this machine)."""
