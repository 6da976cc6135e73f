"""A model larger than the GPU in the simulator: HeteGen's step cost (CostModel.offload),
the same in the compiled kernels, equal to blend/cost/offload/layer_costs.py's at the same batch."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from blend.cli import app
from blend.cost.model import CostModel, OffloadTerm, load_hardware, load_model_spec
from blend.cost.offload.layer_costs import step_costs
from blend.cost.offload.pricing import assumed_host_profile, offload_term, with_offload
from blend.cost.step_time import decode_run_cost, step_cost, step_time_s
from blend.simulate import step_kernel as sk
from tests.support.toys import toy_cost

STEP_MODELS = [
    {"overlap": False},
    {"overlap": True},
    {"overlap": True, "attention_after_gemm": True, "roofline_sharpness": 2.5},
]
TERMS = st.lists(st.floats(0.0, 50.0), min_size=1, max_size=5).map(
    lambda ys: OffloadTerm(
        resident_params=0.4,
        tokens=tuple(float(4**i) for i in range(len(ys))),
        offloaded_s=tuple(sorted(ys)),
    )
)
COSTS = st.tuples(st.sampled_from(STEP_MODELS), TERMS).map(
    lambda pair: replace(toy_cost(40.0, 1.0, 0.25, **pair[0]), offload=pair[1])
)


def _big() -> CostModel:
    """Llama-30B-like (65 GB of weights) on an A10-like 24 GB GPU."""
    return CostModel(load_model_spec("llama-30b"), load_hardware("a10-24g"))


@settings(max_examples=200, deadline=None)
@given(COSTS, st.integers(0, 3000), st.integers(0, 300), st.integers(0, 10**5))
def test_the_step_kernel_adds_the_same_offload_seconds(
    cost: CostModel, prefill: int, decodes: int, decode_kv: int
) -> None:
    got = sk.step(sk.cost_constants(cost), prefill, decodes, float(decode_kv), 0.0, 0.0)
    want = step_cost(cost, prefill, decodes, float(decode_kv))
    assert got[sk.TOTAL] == want.total_s  # bit for bit
    assert got[sk.COMPUTE_BOUND] == want.compute_bound_s
    assert got[sk.MEMORY_BOUND] == want.memory_bound_s
    resident = step_cost(replace(cost, offload=None), prefill, decodes, float(decode_kv))
    assert cost.offload is not None
    extra = cost.offload.extra_s(prefill + decodes)
    # the resident model's roofline differs (its P), so compare the offload seconds alone
    without = step_cost(
        replace(cost, offload=replace(cost.offload, offloaded_s=(0.0,) * len(cost.offload.tokens))),
        prefill,
        decodes,
        float(decode_kv),
    )
    # the difference of two large totals is exact to a few of their ulps, not to extra's
    ulps = 8 * np.spacing(want.total_s)
    assert np.isclose(want.total_s - without.total_s, extra, rtol=1e-9, atol=max(1e-12, ulps))
    assert resident.weight_read_s > want.weight_read_s  # fewer weights on the GPU


@settings(max_examples=200, deadline=None)
@given(COSTS, st.integers(1, 300), st.integers(0, 10**4), st.integers(1, 200))
def test_the_decode_run_kernel_adds_the_same_offload_seconds(
    cost: CostModel, n_seqs: int, first_kv: int, n_steps: int
) -> None:
    c = sk.cost_constants(cost)
    got = sk.decode_run(c, n_seqs, float(first_kv), n_steps)
    want = decode_run_cost(cost, n_seqs, float(first_kv), n_steps)
    assert got[: sk.WEIGHT_READ + 1] == (
        want.total_s,
        want.compute_bound_s,
        want.memory_bound_s,
        want.n_compute_bound_steps,
        want.overhead_s,
        want.weight_read_s,
    )
    steps = sum(step_time_s(cost, 0, n_seqs, float(first_kv + n_seqs * j)) for j in range(n_steps))
    assert np.isclose(want.total_s, steps, rtol=1e-9)


def test_interpolation_between_and_beyond_the_points() -> None:
    term = OffloadTerm(1.0, (1.0, 3.0, 5.0), (2.0, 4.0, 10.0))
    assert [term.extra_s(x) for x in (0, 1, 2, 3, 4, 5, 7)] == [2, 2, 3, 4, 7, 10, 16]
    with pytest.raises(ValueError, match="must rise"):
        OffloadTerm(1.0, (2.0, 1.0), (1.0, 1.0))


@pytest.mark.parametrize("batch", [1, 4, 16])
def test_offloaded_seconds_equal_the_hetegen_cost_model_at_the_placed_batch(batch: int) -> None:
    cost = _big()
    profile = assumed_host_profile(cost.hardware)
    term = offload_term(cost.model, cost.hardware, profile, reference_batch=batch)
    hetegen = step_costs(cost.model, profile, cost.hardware.mem_bytes, batch, 576)["hetegen"]
    resident_gemm_s = profile.gpu_s(hetegen.resident_bytes / cost.model.dtype_bytes, batch)
    assert term.extra_s(batch) == pytest.approx(hetegen.linear_s - resident_gemm_s, rel=1e-12)
    assert term.resident_params * cost.model.dtype_bytes < cost.model.weight_bytes


def test_a_model_larger_than_the_gpu_simulates_instead_of_raising(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="do not fit"):
        _ = _big().kv_capacity_tokens
    cost = with_offload(_big())
    assert cost.offload is not None
    free = (cost.hardware.mem_bytes - cost.roofline_weight_bytes) * 0.9
    assert cost.kv_capacity_tokens == int(free // cost.model.kv_bytes_per_token) > 0
    fits = CostModel(load_model_spec("llama-3.1-8b"), load_hardware("a100-80g"))
    assert with_offload(fits) is fits and with_offload(_big(), "none").offload is None
    with pytest.raises(ValueError, match="offload 'maybe'"):
        with_offload(fits, "maybe")

    path = tmp_path / "requests.jsonl"
    rows = [
        {"request_id": f"t{i}", "prompt_token_ids": [1] * 40 + [i], "output_len": 4}
        for i in range(4)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    args = ["simulate", "--requests", str(path), "--model-spec", "llama-30b", "--hardware"]
    args += ["a10-24g", "--planner", "dfs", "--json"]
    offloaded = CliRunner().invoke(app, args)
    assert offloaded.exit_code == 0, offloaded.output
    data = json.loads(offloaded.stdout)
    # every decode step pays at least the offloaded layers at its batch
    assert data["makespan_s"] >= 3 * cost.offload.extra_s(1)
    refused = CliRunner().invoke(app, [*args, "--offload", "none"])
    assert refused.exit_code == 1 and "do not fit" in refused.output


def test_planning_costs_resolve_with_the_offload_term() -> None:
    from blend.cost.resolve import resolve_cost

    big = resolve_cost("llama-30b", "a10-24g")
    assert big.offload is not None and big.kv_capacity_tokens > 0
    assert resolve_cost("llama-3.1-8b", "a100-80g").offload is None
