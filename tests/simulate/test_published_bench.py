"""bench/published.py: the workloads it simulates have the published shapes, and the table
has one simulated rate per published figure."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def published():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("published", BENCH / "published.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["published"] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("published", None)
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize(
    ("name", "prompt", "output"),
    [("sharegpt", 202, 179), ("prefill-heavy", 462, 16), ("random-256-256", 256, 256)],
)
def test_workloads_have_the_published_mean_lengths(published, name, prompt, output) -> None:
    requests = published.workload(name, 500)
    prompts = np.array([len(r.prompt_token_ids) for r in requests])
    outputs = np.array([r.output_len for r in requests])
    assert len(requests) == 500
    assert abs(prompts.mean() / prompt - 1) < 0.1 and abs(outputs.mean() / output - 1) < 0.1
    # unique prompts: nothing for a prefix cache to reuse (it was off in those benchmarks)
    assert (
        len({tuple(p[:8].tolist()) for p in (np.asarray(r.prompt_token_ids) for r in requests)})
        > 490
    )


def test_prediction_is_a_rate_per_figure_and_faster_gpus_predict_more(published) -> None:
    a100, h100 = (p for p in published.PUBLISHED if p.workload == "decode-heavy")
    rate_a100, batch = published.predict(a100)
    rate_h100, _ = published.predict(h100)
    assert 0 < rate_a100 < rate_h100  # same workload, the faster GPU
    assert 1 <= batch <= published.MAX_NUM_SEQS
