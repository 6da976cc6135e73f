"""The compiled pieces against their references: step kernels, block ids, the k-th smallest."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.workloads.generators import default_cost
from blend.cost.step_time import StepCost, decode_run_cost, step_cost
from blend.simulate import scheduler
from blend.simulate import step_kernel as sk
from blend.simulate.block_hashes import prompt_block_ids
from tests.support.toys import toy_cost

# (flops, bandwidth, overhead), then the step model: additive, overlapping, or attention
# after the GEMMs with a hard or soft roofline knee
STEP_MODELS = [
    {"overlap": False},
    {"overlap": True},
    {"overlap": True, "attention_after_gemm": True},
    {"overlap": True, "attention_after_gemm": True, "roofline_sharpness": 2.5},
]
COSTS = st.tuples(
    st.sampled_from([(1e15, 1.0, 0.0), (0.5, 1e3, 0.0), (2.0, 3.0, 0.1), (40.0, 1.0, 0.25)]),
    st.sampled_from(STEP_MODELS),
).map(lambda pair: toy_cost(*pair[0], **pair[1]))


def _as_tuple(cost: StepCost) -> tuple[float, float, float, int, float, float]:
    return (
        cost.total_s,
        cost.compute_bound_s,
        cost.memory_bound_s,
        cost.n_compute_bound_steps,
        cost.overhead_s,
        cost.weight_read_s,
    )


@settings(max_examples=300, deadline=None)
@given(
    COSTS,
    st.integers(0, 5000),
    st.integers(0, 300),
    st.integers(0, 10**6),
    st.floats(0, 1e9),
    st.integers(0, 10**6),
)
def test_step_kernel_is_step_cost(
    cost, prefill: int, decodes: int, decode_kv: int, attention: float, prefill_kv: int
) -> None:
    c = sk.cost_constants(cost)
    got = sk.step(c, prefill, decodes, float(decode_kv), attention, float(prefill_kv))
    want = step_cost(cost, prefill, decodes, float(decode_kv), attention, float(prefill_kv))
    assert got[:6] == _as_tuple(want)  # the same operations: bit for bit
    # without the weights: the step model with weight_s = 0, worked out here
    hw, model = cost.hardware, cost.model
    gemm_s = 2.0 * model.n_params * (prefill + decodes) / hw.effective_flops
    attn_s = attention / hw.effective_attention_flops
    kv_s = (decode_kv + prefill_kv) * model.kv_bytes_per_token / hw.effective_bandwidth
    if not hw.overlap_compute_memory or hw.attention_after_gemm:
        combined = gemm_s + attn_s + kv_s
    else:
        combined = max(gemm_s + attn_s, kv_s)
    assert np.isclose(got[sk.BUSY_NO_WEIGHTS], combined, rtol=1e-12, atol=0)
    assert np.isclose(got[sk.COMPUTE_S], gemm_s + attn_s, rtol=1e-12, atol=0)


@settings(max_examples=300, deadline=None)
@given(COSTS, st.integers(1, 300), st.integers(0, 10**5), st.integers(1, 400))
def test_decode_run_kernel_is_decode_run_cost(cost, n_seqs: int, first_kv: int, n_steps: int):
    c = sk.cost_constants(cost)
    got = sk.decode_run(c, n_seqs, float(first_kv), n_steps)
    assert got[:6] == _as_tuple(decode_run_cost(cost, n_seqs, float(first_kv), n_steps))
    # without the weights: the sum over the run's steps, one by one
    steps = [sk.step(c, 0, n_seqs, float(first_kv + n_seqs * j), 0.0, 0.0) for j in range(n_steps)]
    for field in (sk.TOTAL, sk.BUSY_NO_WEIGHTS, sk.COMPUTE_S, sk.KV_S):
        want = sum(s[field] for s in steps)
        assert np.isclose(got[field], want, rtol=1e-9, atol=0), field
    assert got[sk.N_COMPUTE_BOUND] == sum(s[sk.N_COMPUTE_BOUND] for s in steps)


def test_attention_kernel_is_prefill_attention_flops() -> None:
    from blend.cost.step_time import prefill_attention_flops

    cost = default_cost()
    c = sk.cost_constants(cost)
    for chunk, context in [(1, 0), (7, 3), (8192, 100_000), (333, 12_345)]:
        want = prefill_attention_flops(cost, chunk, context)
        assert sk.attention_flops(c, chunk, context) == want


def test_equal_prefixes_get_equal_block_ids() -> None:
    prompts = [
        [1, 2, 3, 4, 5, 6, 7, 8, 9],  # blocks A, B (and a partial block)
        (1, 2, 3, 4, 5, 6, 7, 0),  # A, then C: same tokens 5-7, another last one
        np.array([0] * 8),  # Z1, Z2: equal blocks, different prefixes
        [0, 0, 0, 0],  # Z1
        [5, 6, 7, 8],  # B's tokens at block 0: another prefix
        [1, 2, 3],  # no full block
    ]
    ids, offsets, n_ids = prompt_block_ids(prompts, 4)
    blocks = [ids[offsets[r] : offsets[r + 1]].tolist() for r in range(len(prompts))]
    (a, b), (a2, c), (z1, z2), (z1b,), (d,), () = blocks
    assert a == a2 and z1 == z1b
    assert len({a, b, c, z1, z2, d}) == 6 == n_ids
    assert sorted({*ids.tolist()}) == list(range(n_ids))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 16), min_size=1, max_size=300), st.data())
def test_kth_smallest(values: list[int], data: st.DataObject) -> None:
    k = data.draw(st.integers(0, len(values) - 1))
    a = np.array(values, dtype=np.int64)
    assert scheduler._kth_smallest(a, k) == sorted(values)[k]
    assert sorted(a.tolist()) == sorted(values)  # only reordered
