"""HeteGen: run a model larger than the GPU by splitting each offloaded linear layer between
the CPU (part of its output columns, computed from CPU-resident weights) and the GPU (the rest,
streamed from pinned host memory), overlapped (docs/hetegen.md).

Modules: shapes (a model's linear layers), hardware_profile (measured rates, JSON), profiler
(measures them), microbench_profile (reads them from a GPU microbenchmark result), placement
(what stays on the GPU, each layer's CPU share), cost (step time model), split_linear (the
split layer in torch), apply (puts it into a transformers model), offload (the simulator's
CostModel term), cli (`blend hetegen`). The engine is blend/engines/hetegen_engine.py.
"""
