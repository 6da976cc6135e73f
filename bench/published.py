"""The GPU step model against published vLLM throughput, side by side.

    python bench/published.py [--markdown docs/planners.md]

Published figures for Llama-3(.1)-8B on one GPU (what each source printed or charted; the
vLLM v0.6.0 figures are read off the blog's bar charts, about +-0.5 req/s):
- vLLM blog "vLLM v0.6.0: 2.7x Throughput Improvement" (2024-09-05): serving benchmark with
  every request sent at once (QPS inf), --num-scheduler-steps 10, 500 prompts: ShareGPT
  (mean 202 prompt / 179 output tokens), "prefill-heavy" (sonnet, ~462 / 16), "decode-heavy"
  (sonnet, ~462 / 256), on A100 and H100.
- vLLM PR #7117 (2024-08): offline benchmark_throughput.py on H100, 1000 random prompts of
  256 tokens, 256 output tokens each: ~24.3 req/s.

Each workload is simulated with the engine settings of that vLLM version (256 running
requests; the token budget: max_model_len, no chunked prefill), no prefix caching (off by
default then), and each hardware profile as committed (blend/cost/specs/hardware.json): nothing is
fitted to these figures. ShareGPT-like lengths are lognormal with the published means.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: bench.workloads

from bench.workloads.generators import ChatTrace
from blend.cost.model import CostModel, load_hardware, load_model_spec
from blend.simulate import SimConfig, SimRequest, simulate


@dataclass(frozen=True, slots=True)
class Published:
    source: str
    hardware: str  # a profile of blend/cost/specs/hardware.json
    workload: str
    n: int
    requests_per_s: float  # as published (read off a chart where the source has one)


PUBLISHED = (
    Published("vLLM v0.6.0 blog", "a100-80g", "sharegpt", 500, 19.0),
    Published("vLLM v0.6.0 blog", "a100-80g", "prefill-heavy", 500, 28.5),
    Published("vLLM v0.6.0 blog", "a100-80g", "decode-heavy", 500, 14.8),
    Published("vLLM v0.6.0 blog", "h100-80g", "sharegpt", 500, 37.0),
    Published("vLLM v0.6.0 blog", "h100-80g", "prefill-heavy", 500, 59.0),
    Published("vLLM v0.6.0 blog", "h100-80g", "decode-heavy", 500, 31.0),
    Published("vLLM PR #7117", "h100-80g", "random-256-256", 1000, 24.3),
)
MAX_MODEL_LEN = 8192  # Llama-3-8B's context: the token budget without chunked prefill
MAX_NUM_SEQS = 256


def workload(name: str, n: int, seed: int = 0) -> list[SimRequest]:
    """Unique prompts (no prefix in common) with the published lengths."""
    if name == "sharegpt":
        return ChatTrace("sharegpt", 4, 202, 1.0, 179, 0.9, 0.0).generate(n, seed)
    prompt, output = {
        "prefill-heavy": (462, 16),
        "decode-heavy": (462, 256),
        "random-256-256": (256, 256),
    }[name]
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1000, 32000, size=(n, prompt), dtype=np.int32)
    return [SimRequest(f"{name}-{i}", tokens[i], output) for i in range(n)]


def predict(p: Published) -> tuple[float, float]:
    """(predicted requests/s, mean batch size)."""
    requests = workload(p.workload, p.n)
    cost = CostModel(load_model_spec("llama-3.1-8b"), load_hardware(p.hardware))
    config = SimConfig(
        max_num_batched_tokens=MAX_MODEL_LEN,
        max_num_seqs=MAX_NUM_SEQS,
        chunked_prefill=False,
        enable_prefix_caching=False,
    )
    result = simulate(requests, list(range(len(requests))), cost, config)
    return len(requests) / result.makespan_s, result.mean_batch_size


def table() -> str:
    lines = [
        "| source | GPU | workload | requests | published req/s | simulated req/s "
        "| simulated / published |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in PUBLISHED:
        rate, _ = predict(p)
        lines.append(
            f"| {p.source} | {p.hardware} | {p.workload} | {p.n} | {p.requests_per_s:.1f} | "
            f"{rate:.1f} | {rate / p.requests_per_s:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--markdown", type=Path, default=None, help="fill this file's table")
    args = parser.parse_args()
    text = table()
    print(text)
    if args.markdown:
        from planners import write_markdown

        write_markdown(args.markdown, text, "<!-- published -->", "<!-- end published -->")


if __name__ == "__main__":
    main()
