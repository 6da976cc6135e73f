"""The LP prefill gate: every request once, never idle, the class mix follows x*, and both
drivers (the simulator and the executor with the fake engine) run it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blend.admission.dual_scan import ScanSequence
from blend.admission.factory import admission_policy
from blend.admission.lp_gate import GateShares, LpGateAdmission, LpGateOptions
from blend.cost.model import CostModel, load_hardware, load_model_spec
from blend.engines.base import EngineConfig
from blend.engines.settings import EngineSettings
from blend.engines.tokenize import tokenizer_sha256
from blend.execute.stage import ExecuteOptions, execute_plan
from blend.plan.stage import PlanOptions, plan_dataset
from blend.planners.base import AdmissionKind
from blend.simulate import SimConfig, SimRequest
from blend.simulate.engine import simulate_online
from blend.store.database import Store, fetch_dicts
from tests.support.fake_engine import FakeEngine
from tests.support.fake_view import FakeView
from tests.support.seeds import PROMPTS, seed_store

COST = CostModel(load_model_spec("llama-3.1-8b"), load_hardware("h200"))


def sequence(prompts: list[int], outputs: list[int]) -> ScanSequence:
    n = len(prompts)
    return ScanSequence(
        index=np.arange(n, dtype=np.int64),
        prompt_tokens=np.asarray(prompts, dtype=float),
        shared_prev=np.zeros(n),
        output_tokens=np.asarray(outputs, dtype=float),
    )


def two_kinds(n_per: int = 200) -> ScanSequence:
    """Prefill-heavy (1000 prompt, 10 output) and light (50, 50) requests, alternating."""
    prompts = [1000, 50] * n_per
    outputs = [10, 50] * n_per
    return sequence(prompts, outputs)


def test_class_mix_follows_the_prefill_shares() -> None:
    seq = two_kinds()
    options = LpGateOptions(queue_steps=1e9, n_classes=2)
    policy = LpGateAdmission(seq, COST, options, EngineSettings(2048, 64))
    view = FakeView(kv_blocks_total=10**7, block_size=16)
    admitted: list[int] = []
    for _ in range(3):  # admit, then let everything finish, three times
        batch = policy.admit(view)
        assert len(batch) == 64  # the room: max_num_seqs, nothing running
        admitted += batch
        view.finished = [(i, 1) for i in batch]
    shares = policy.phases[0].shares
    assert len(policy.phases) == 1 and set(shares) == {"c0", "c1"}
    assert 0.0 < shares["c1"] < shares["c0"] < 1.0  # the LP blends both, mostly prefill-heavy
    tokens = seq.prompt_tokens[admitted]
    heavy = policy.labels[admitted] == 0
    # the admitted prefill tokens split as x* says, to within one request
    assert abs(tokens[heavy].sum() - shares["c0"] * tokens.sum()) <= 1000
    assert {policy.classes[0].prompt_tokens, policy.classes[1].prompt_tokens} == {1000.0, 50.0}


def test_an_empty_engine_is_never_left_idle() -> None:
    # one huge request that does not fit the projected cache still goes to an empty engine
    policy = LpGateAdmission(sequence([5000, 10], [5000, 10]), COST, LpGateOptions(n_classes=2))
    first = policy.admit(FakeView(kv_blocks_total=100, block_size=16))
    assert len(first) == 1
    assert policy.admit(FakeView(kv_blocks_total=100, block_size=16, num_running=1)) == []
    second = policy.admit(FakeView(kv_blocks_total=100, block_size=16, finished=[(first[0], 5)]))
    assert len(second) == 1 and {*first, *second} == {0, 1} and policy.num_remaining == 0


def test_a_drained_class_starts_a_new_phase() -> None:
    seq = sequence([1000] * 3 + [50] * 30, [10] * 3 + [50] * 30)
    options = LpGateOptions(queue_steps=1e9, n_classes=2)
    policy = LpGateAdmission(seq, COST, options, EngineSettings(8192, 8))
    view = FakeView(kv_blocks_total=10**7, block_size=16)
    while policy.num_remaining:
        view.finished = [(i, 1) for i in policy.admit(view)]
        view.step += 1
    assert len(policy.phases) == 2  # the three heavy ones drain: re-solved for the rest
    assert policy.phases[-1].shares == {"c1": 1.0}


@settings(max_examples=8, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 3000), st.integers(1, 800), st.floats(0.3, 3.0)),
        min_size=1,
        max_size=40,
    ),
    st.integers(2, 16),
)
def test_simulator_runs_every_request_once(rows, max_num_seqs) -> None:
    """simulate_online refuses a policy that repeats, skips or idles; estimates are off by
    the drawn factor (the gate never sees true lengths)."""
    requests = [
        SimRequest(f"r{i}", list(range(i * 3000, i * 3000 + p)), d)
        for i, (p, d, _) in enumerate(rows)
    ]
    seq = sequence([p for p, _, _ in rows], [max(1, round(d * f)) for _, d, f in rows])
    config = SimConfig(
        max_num_batched_tokens=4096, max_num_seqs=max_num_seqs, kv_capacity_tokens=8192
    )
    policy = admission_policy(AdmissionKind.LP_GATE, seq, COST, EngineSettings(4096, max_num_seqs))
    result = simulate_online(requests, policy, COST, config)
    assert sorted(result.admission_order.tolist()) == list(range(len(rows)))
    assert result.output_tokens == sum(d for _, d, _ in rows)


@pytest.fixture
def gate_plan(store: Store, tiny_model: Path) -> tuple[Store, str, EngineConfig]:
    seed_store(store, tokenizer_sha256(tiny_model))
    options = PlanOptions(planner="lp-gate", batch_size=2, warmup_fraction=0.0)
    plan = plan_dataset(store, "ds", options, model_dir=tiny_model)
    assert plan.admission == "lp-gate"
    return store, plan.plan_id, EngineConfig(model_dir=tiny_model)


def test_executor_runs_the_gate_with_the_fake_engine(gate_plan) -> None:
    store, plan_id, config = gate_plan
    engines: list[FakeEngine] = []

    def factory(cfg: EngineConfig) -> FakeEngine:
        engines.append(FakeEngine(cfg))
        return engines[-1]

    report = execute_plan(
        store, plan_id, config, engine_factory=factory, options=ExecuteOptions(flush_rows=2)
    )
    assert report.status == "completed" and report.n_requests == len(PROMPTS)
    assert sorted(engines[0].seen) == sorted(PROMPTS)  # each handed over once
    with store.connect() as con:
        rows = fetch_dicts(con, "SELECT request_id FROM results ORDER BY request_id")
    assert [r["request_id"] for r in rows] == sorted(PROMPTS)


def test_job_shares_follow_the_prefill_work_left() -> None:
    options = LpGateOptions(queue_steps=1e9, n_classes=2, shares=GateShares.JOB)
    policy = LpGateAdmission(two_kinds(), COST, options, EngineSettings(8192, 64))
    policy.admit(FakeView(kv_blocks_total=10**7, block_size=16))
    heavy = 200 * 1000 / (200 * 1000 + 200 * 50)  # prefill time is proportional to tokens
    assert policy.phases[0].shares == pytest.approx({"c0": heavy, "c1": 1 - heavy})
