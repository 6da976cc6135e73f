"""Benchmarks: scripts run as `python bench/<name>.py`, with their workload generators."""
