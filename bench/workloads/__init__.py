"""Synthetic workloads for the benchmarks and tests: the paper's mixes and traces
(`generators`) and the families of drawn workloads that try to break a planner
(`families`)."""
