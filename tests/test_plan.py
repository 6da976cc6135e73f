"""The plan stage: warm-up first, estimates and their sources, engine settings, history."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from blend.engines.base import EngineConfig
from blend.engines.tokenize import tokenizer_sha256
from blend.execute.stage import execute_plan
from blend.plan.stage import PlanOptions, plan_dataset
from blend.store.database import Store, fetch_dicts
from tests.support.fake_engine import FakeEngine
from tests.support.seeds import GROUPS, seed_groups


def items(store: Store, plan_id: str) -> list[dict]:
    with store.connect() as con:
        return fetch_dicts(
            con,
            "SELECT seq, request_id, side, prompt_tokens, shared_prev, est_output_tokens, "
            "est_source FROM plan_items WHERE plan_id = ? ORDER BY seq",
            [plan_id],
        )


def header(store: Store, plan_id: str) -> dict:
    with store.connect() as con:
        return fetch_dicts(con, "SELECT * FROM plans WHERE plan_id = ?", [plan_id])[0]


def test_warmup_first_then_the_planned_order_with_estimates(store: Store, tiny_model: Path):
    seed_groups(store, tokenizer_sha256(tiny_model))
    options = PlanOptions(planner="blendserve", warmup_fraction=0.1, seed=1)
    report = plan_dataset(store, "ds", options, model_dir=tiny_model)
    rows = items(store, report.plan_id)
    n_warmup = report.n_warmup
    assert n_warmup >= 4 and [r["side"] for r in rows[:n_warmup]] == ["W"] * n_warmup
    assert all(r["side"] is None for r in rows[n_warmup:])  # the scanners pick sides online
    assert {r["est_source"] for r in rows} == {"max_tokens"}  # nothing measured yet
    assert {r["request_id"][0]: r["est_output_tokens"] for r in rows} == {"a": 3.0, "b": 9.0}
    prefix = {name: len(tokens) for name, (tokens, _) in GROUPS.items()}
    assert all(r["prompt_tokens"] == prefix[r["request_id"][0]] + 1 for r in rows)
    for before, row in itertools.pairwise(rows):  # shared with the item before it
        group = row["request_id"][0]
        assert row["shared_prev"] == (prefix[group] if before["request_id"][0] == group else 0)
    plan = header(store, report.plan_id)
    assert plan["admission"] == "dual-scan" and plan["n_warmup"] == n_warmup
    assert plan["replan_after_warmup"] and plan["search_settings"]
    # the CPU build's offline defaults: 4096 tokens (at least the context) x 256 sequences
    assert (plan["max_num_batched_tokens"], plan["max_num_seqs"]) == (4096, 256)
    assert plan["settings_source"] == "vllm-default"
    assert report.engine is not None and report.engine.max_num_seqs == 256
    # both bounds at the estimated lengths, stored with the plan: T_seq is vLLM's (tighter)
    assert report.bounds is not None and report.bounds.n_min_steps == 9  # the longest estimate
    assert plan["t_seq_makespan_s"] == pytest.approx(report.bounds.t_seq_s)
    assert plan["optimal_makespan_s"] == pytest.approx(report.bounds.t_opt_s)
    assert 0 < report.bounds.t_opt_s < report.bounds.t_seq_s


def test_order_only_planners_and_explicit_settings(store: Store, tiny_model: Path) -> None:
    from blend.engines.settings import EngineSettings, SettingsSource

    seed_groups(store, tokenizer_sha256(tiny_model))
    explicit = EngineSettings(2048, 16, False, SettingsSource.EXPLICIT)
    options = PlanOptions(planner="dfs", engine=explicit)
    plan = header(store, plan_dataset(store, "ds", options, model_dir=tiny_model).plan_id)
    assert plan["admission"] == "in-order"
    assert not plan["replan_after_warmup"]  # DFS reads no lengths
    assert not plan["search_settings"]  # the user set them
    assert (plan["max_num_batched_tokens"], plan["max_num_seqs"]) == (2048, 16)
    assert plan["settings_source"] == "explicit"


def test_a_tensor_parallel_plan_is_priced_for_its_gpus(store: Store, tiny_model: Path) -> None:
    """A plan for engines of 4 GPUs: priced on their aggregate (the bounds shrink), stored
    under the GPU's own spec name with the size, which the executor's pricing reads back."""
    from blend.cost.resolve import resolve_cost
    from blend.plan.items import read_plan_header

    seed_groups(store, tokenizer_sha256(tiny_model))
    spec = {"model_spec": "llama-3.1-8b", "hardware": "h100-80g", "planner": "dfs"}
    one = plan_dataset(store, "ds", PlanOptions(**spec), model_dir=tiny_model)
    four = plan_dataset(
        store, "ds", PlanOptions(**spec, tensor_parallel_size=4), model_dir=tiny_model
    )
    assert four.hardware == "h100-80g x4" and one.hardware == "h100-80g"
    assert one.bounds is not None and four.bounds is not None
    assert four.bounds.t_seq_s < one.bounds.t_seq_s
    stored = read_plan_header(store, four.plan_id)
    assert stored.hardware == "h100-80g" and stored.tensor_parallel_size == 4
    again = resolve_cost(stored.model_spec, stored.hardware, None, stored.tensor_parallel_size)
    assert again.hardware.name == "h100-80g x4"
    assert read_plan_header(store, one.plan_id).tensor_parallel_size == 1


def test_earlier_results_seed_estimates_and_shrink_the_warmup(store: Store, tiny_model: Path):
    seed_groups(store, tokenizer_sha256(tiny_model))
    first = plan_dataset(store, "ds", PlanOptions(planner="dfs"), model_dir=tiny_model)
    config = EngineConfig(model_dir=tiny_model)
    execute_plan(store, first.plan_id, config, engine_factory=lambda c: FakeEngine(c, 1024))
    from blend.store.lineage import model_sha256

    model_hash = model_sha256(tiny_model)
    again = plan_dataset(
        store,
        "ds",
        PlanOptions(planner="blendserve"),
        model_sha256=model_hash,
        model_dir=tiny_model,
    )
    # the same prompts: each knows its own length (the fake engine writes max_tokens tokens)
    assert again.n_warmup == 0
    rows = items(store, again.plan_id)
    assert {r["est_source"] for r in rows} == {"own"}
    assert {r["request_id"][0]: r["est_output_tokens"] for r in rows} == {"a": 3.0, "b": 9.0}
    # new prompts of the same groups (a new snapshot): their groups' history
    seed_groups_snapshot_2(store, tokenizer_sha256(tiny_model))
    new = plan_dataset(
        store,
        "ds",
        PlanOptions(planner="blendserve"),
        model_sha256=model_hash,
        model_dir=tiny_model,
    )
    rows = items(store, new.plan_id)
    assert new.n_warmup == 0  # every group was measured before
    assert {r["est_source"] for r in rows} == {"history"}
    assert {r["request_id"][0]: r["est_output_tokens"] for r in rows} == {"a": 3.0, "b": 9.0}


def seed_groups_snapshot_2(store: Store, tokenizer_hash: str) -> None:
    """Other prompts of the same two groups, as snapshot 2."""
    with store.connect() as con:
        for name, (prefix, max_tokens) in GROUPS.items():
            for i in range(4):
                rid = f"{name}-new{i}"
                ids = [*prefix, 900 + i]
                con.execute(
                    "INSERT INTO prompts VALUES ('ds', 2, ?, ?, ?, ?, NULL, ?, ?)",
                    [
                        rid,
                        100 + i,
                        f"sha-{rid}",
                        f"p {rid}",
                        f'{{"max_tokens": {max_tokens}}}',
                        max_tokens,
                    ],
                )
                con.execute(
                    "INSERT INTO prompt_tokens VALUES ('ds', 2, ?, ?, ?, ?)",
                    [rid, tokenizer_hash, len(ids), ids],
                )
        con.execute(
            "INSERT INTO profiles (dataset, snapshot, tokenizer_sha256, model, max_model_len, "
            "profiled_at, n_prompts, input_tokens, n_over_length, unique_prefix_tokens) "
            "VALUES ('ds', 2, ?, 'tiny', 1024, now(), 8, 0, 0, 0)",
            [tokenizer_hash],
        )


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="Unknown planner: 'nope'"):
        PlanOptions(planner="nope")
    with pytest.raises(ValueError, match="warmup_fraction must be in"):
        PlanOptions(warmup_fraction=1.5)


def test_every_request_is_planned_exactly_once_and_shares_what_its_tokens_share(
    store: Store, tiny_model: Path
) -> None:
    """The plan stage keeps prompts as one flat array and sorts them once: the stored plan
    still holds every profiled request once, in seq order, with the prefix each shares with
    the item before it as its own tokens say."""
    seed_groups(store, tokenizer_sha256(tiny_model))
    with store.connect() as con:
        tokens = {
            r["request_id"]: r["token_ids"]
            for r in fetch_dicts(con, "SELECT request_id, token_ids FROM prompt_tokens")
        }
    for planner in ("blendserve", "dfs", "batchllm"):
        report = plan_dataset(store, "ds", PlanOptions(planner=planner), model_dir=tiny_model)
        rows = items(store, report.plan_id)
        assert sorted(r["request_id"] for r in rows) == sorted(tokens)
        assert [r["seq"] for r in rows] == list(range(len(tokens)))
        for before, row in itertools.pairwise(rows):
            a, b = tokens[before["request_id"]], tokens[row["request_id"]]
            common = next(
                (k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                min(len(a), len(b)),
            )
            assert row["shared_prev"] == common and row["prompt_tokens"] == len(b)
