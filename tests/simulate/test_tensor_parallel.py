"""Tensor parallelism priced: one engine over t GPUs is their aggregate plus the all-reduces,
the compiled step model adds them as step_time does, and T_seq stays below the makespan."""

from __future__ import annotations

import numpy as np
import pytest

from blend.cost.model import CostModel, load_hardware, load_model_spec
from blend.cost.parallel import TensorParallelError, tensor_parallel
from blend.cost.resolve import resolve_cost
from blend.cost.step_time import step_cost
from blend.simulate import SimRequest, simulate
from blend.simulate import step_kernel as sk
from blend.simulate.gap import sequential_gap
from blend.simulate.sequential_bound import sequential_bound


def _one_gpu(model: str = "llama-3.1-70b", hardware: str = "h100-80g") -> CostModel:
    return CostModel(load_model_spec(model), load_hardware(hardware))


def test_the_weights_and_the_kv_split_over_the_gpus() -> None:
    one = _one_gpu()
    with pytest.raises(ValueError, match="do not fit"):
        _ = one.kv_capacity_tokens  # 70B in bf16 (141 GB) on one 80 GB GPU
    four, eight = tensor_parallel(one, 4), tensor_parallel(one, 8)
    assert four.hardware.mem_bytes == 4 * one.hardware.mem_bytes
    assert four.weight_read_s == pytest.approx(one.weight_read_s / 4)  # each reads 1/4
    assert four.compute_s_per_token == pytest.approx(one.compute_s_per_token / 4)
    # vLLM's rule on each GPU: 0.9 (its default gpu_memory_utilization) of its memory, less
    # its quarter of the weights
    assert one.hardware.memory_utilization == 0.9
    free = 4 * (0.9 * one.hardware.mem_bytes - one.model.weight_bytes / 4)
    assert four.kv_capacity_tokens == int(free // one.model.kv_bytes_per_token)
    assert eight.kv_capacity_tokens > 2 * four.kv_capacity_tokens  # weights paid once


def test_all_reduces_cost_latency_per_step_and_bandwidth_per_token() -> None:
    one = _one_gpu()
    two = tensor_parallel(one, 2)
    model, hw = one.model, one.hardware
    layers_x2 = 2 * model.n_layers
    assert two.hardware.step_overhead_s == pytest.approx(
        hw.step_overhead_s + layers_x2 * hw.allreduce_latency_s
    )
    ring = 2 * (2 - 1) / 2
    per_token = layers_x2 * ring * model.hidden_size * model.dtype_bytes
    assert two.collective_s_per_token == pytest.approx(per_token / hw.allreduce_bandwidth_bytes_s)
    # a big prefill step: the all-reduces add their per-token time to the busy time
    with_ar = step_cost(two, 4096, 0, 0.0)
    without = step_cost(
        CostModel(two.model, two.hardware, tensor_parallel_size=2, collective_s_per_token=0.0),
        4096,
        0,
        0.0,
    )
    assert with_ar.total_s - without.total_s == pytest.approx(4096 * two.collective_s_per_token)


def test_more_gpus_are_faster_but_not_proportionally() -> None:
    cost8b = _one_gpu("llama-3.1-8b")
    steps = {t: step_cost(tensor_parallel(cost8b, t), 2048, 0, 0.0).total_s for t in (1, 2, 4)}
    assert steps[1] > steps[2] > steps[4]
    assert steps[1] / steps[4] < 4.0  # all-reduces and per-step overhead do not split


def test_the_compiled_step_model_adds_the_all_reduces_bit_for_bit() -> None:
    cost = tensor_parallel(_one_gpu(), 4)
    c = sk.cost_constants(cost)
    for prefill, decodes, kv in [(0, 1, 100.0), (4096, 0, 4096.0), (512, 200, 1e6)]:
        got = sk.step(c, prefill, decodes, kv, 0.0, 0.0)
        want = step_cost(cost, prefill, decodes, kv)
        assert got[sk.TOTAL] == want.total_s


def test_t_seq_bounds_a_tensor_parallel_run_and_its_gap_adds_up() -> None:
    cost = tensor_parallel(_one_gpu(), 4)
    rng = np.random.default_rng(0)
    requests = [
        SimRequest(str(i), rng.integers(0, 1000, int(rng.integers(20, 600))).tolist(), int(d))
        for i, d in enumerate(rng.integers(1, 400, 200))
    ]
    result = simulate(requests, list(range(len(requests))), cost)
    bound = sequential_bound(requests, cost)
    assert bound.collective_s > 0
    assert bound.makespan_s <= result.makespan_s
    gap = sequential_gap(result, bound, cost)
    assert sum(gap.terms.values()) == pytest.approx(result.makespan_s, rel=1e-9)
    assert min(gap.terms.values()) >= -1e-9 * result.makespan_s


@pytest.mark.parametrize(
    ("model", "hardware", "size", "why"),
    [
        ("llama-3.1-8b", "h100-80g", 3, "attention heads"),
        ("llama-3.1-8b", "cpu-local", 2, "all-reduce bandwidth"),
        ("llama-3.1-8b", "a10-24g", 2, "all-reduce bandwidth"),
    ],
)
def test_sizes_that_cannot_run_or_be_priced_are_refused(
    model: str, hardware: str, size: int, why: str
) -> None:
    with pytest.raises(TensorParallelError, match=why):
        resolve_cost(model, hardware, tensor_parallel_size=size)


def test_kv_heads_fewer_than_the_gpus_are_replicated() -> None:
    one = _one_gpu("llama-3.1-8b")  # 8 KV heads
    sixteen = tensor_parallel(one, 16)
    assert sixteen.model.kv_bytes_per_token == 2 * one.model.kv_bytes_per_token


def test_vllms_defaults_follow_one_gpu_of_a_tensor_parallel_engine() -> None:
    from blend.engines.settings import vllm_default_settings

    for name, want in (("a100-80g", (8192, 256)), ("h100-80g", (16384, 1024))):
        cost = tensor_parallel(_one_gpu("llama-3.1-8b", name), 2)  # 160 GiB together
        got = vllm_default_settings(cost.hardware, 8192, tensor_parallel_size=2)
        assert (got.max_num_batched_tokens, got.max_num_seqs) == want
