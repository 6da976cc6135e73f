from __future__ import annotations

import pytest

from blend.cost.step_time import decode_run_cost, step_cost, step_time_s
from tests.support.toys import toy_cost


def test_memory_bound_step() -> None:
    # compute (2*1*5 tokens + 4 FLOPs) / 2 = 7 s; memory 1 weight byte + 10 KV tokens * 2 B = 21 s
    cost = toy_cost(flops=2.0, bandwidth=1.0, overhead=0.5)
    step = step_cost(cost, 3, 2, decode_kv_tokens=10, prefill_attention_flops=4)
    assert step.total_s == 21.5
    assert (step.compute_bound_s, step.memory_bound_s, step.n_compute_bound_steps) == (0, 21, 0)
    assert step.weight_read_s == 1.0


def test_compute_bound_step() -> None:
    # compute 2*1*20 / 2 = 20 s; memory 1 + 3 * 2 = 7 s
    cost = toy_cost(flops=2.0, bandwidth=1.0, overhead=0.5)
    assert step_time_s(cost, 20, 0, decode_kv_tokens=0, prefill_kv_tokens=3) == 20.5
    assert step_cost(cost, 20, 0, 0).n_compute_bound_steps == 1


def test_step_without_overlap_adds_compute_and_memory() -> None:
    # the memory-bound step above: compute 7 s + memory 21 s + overhead 0.5 s
    cost = toy_cost(flops=2.0, bandwidth=1.0, overhead=0.5, overlap=False)
    step = step_cost(cost, 3, 2, decode_kv_tokens=10, prefill_attention_flops=4)
    assert step.total_s == 28.5
    assert (step.compute_bound_s, step.memory_bound_s, step.n_compute_bound_steps) == (0, 28, 0)


@pytest.mark.parametrize("overlap", [True, False])
@pytest.mark.parametrize("n_steps", [1, 2, 7, 40])
def test_decode_run_equals_step_by_step(n_steps: int, overlap: bool) -> None:
    # 4 decodes: compute 2*4/0.5 = 16 s, memory 1 + 2 * (3 + 4 j) s: crosses over at j = 2
    cost = toy_cost(flops=0.5, bandwidth=1.0, overhead=0.25, overlap=overlap)
    run = decode_run_cost(cost, 4, first_kv_tokens=3, n_steps=n_steps)
    steps = [step_cost(cost, 0, 4, decode_kv_tokens=3 + 4 * j) for j in range(n_steps)]
    assert run.total_s == pytest.approx(sum(s.total_s for s in steps))
    assert run.compute_bound_s == pytest.approx(sum(s.compute_bound_s for s in steps))
    assert run.memory_bound_s == pytest.approx(sum(s.memory_bound_s for s in steps))
    assert run.n_compute_bound_steps == sum(s.n_compute_bound_steps for s in steps)
    assert run.overhead_s == pytest.approx(0.25 * n_steps)
