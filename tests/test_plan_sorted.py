"""The plan's prompts sorted in bounded memory (plan/sorted_requests.py) plan exactly as the
prompts held in memory do: the same sort, estimates, warm-up and orders of every planner."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from blend.cost.resolve import resolve_cost
from blend.plan import sorted_requests
from blend.plan.sorted_requests import RequestQuery, read_sorted_requests
from blend.planners import LengthHint, PlanRequest, estimate_outputs, make_planner, select_warmup
from blend.planners.estimates import HintColumns
from blend.planners.prompt_tokens import PlanRequests, PromptTokens
from blend.planners.request import EstimateSource
from blend.planners.tree import adjacent_lcp, build_compact_trie, sorted_with_lcp
from blend.profile import token_order
from blend.simulate.sequential_bound import estimated_bounds
from blend.store.database import Store, fetch_arrow

TOKENIZER = "t" * 64
PLANNERS = ("dfs", "lpt", "blendserve", "batchllm", "naive-blend")


def random_prompts(rng: np.random.Generator, n: int) -> list[list[int]]:
    """Random ids over the whole int32 range (no shared prefixes to speak of), a few empty
    prompts and exact duplicates."""
    prompts = [rng.integers(0, 2**31 - 1, int(rng.integers(1, 30))).tolist() for _ in range(n)]
    for i in range(0, n, 97):
        prompts[i] = list(prompts[(i * 7 + 3) % n])
    prompts[5] = []
    return prompts


def planted_prompts(rng: np.random.Generator, n: int) -> list[list[int]]:
    """Prefix groups (few-shot heads, nested), prompts that are prefixes of others, and
    duplicates: the trie's awkward cases."""
    heads = [rng.integers(0, 50_000, int(rng.integers(5, 60))).tolist() for _ in range(12)]
    prompts = []
    for i in range(n):
        head = heads[int(rng.integers(len(heads)))]
        if i % 11 == 0:
            head = head + heads[(i // 11) % len(heads)][:7]  # a nested group
        tail = rng.integers(0, 4, int(rng.integers(0, 6))).tolist()  # small ids: many ties
        prompts.append(head + tail)
    for i in range(0, n, 13):
        prompts[i] = prompts[i][: len(prompts[i]) // 2]  # a prefix of another prompt
    return prompts


def seed(store: Store, prompts: list[list[int]], rng: np.random.Generator) -> list[str]:
    """The prompts inserted as ingest and profile leave them, in a shuffled physical order
    (rowids unlike input order), some line numbers repeated; returns the request ids."""
    n = len(prompts)
    ids = [f"r{i:05d}" for i in range(n)]
    line_no = np.arange(1, n + 1)
    line_no[10:20] = 10  # repeated line numbers: ties broken by the row
    rows = pa.table(
        {
            "request_id": ids,
            "line_no": line_no,
            "max_tokens": rng.integers(1, 500, n),
            "token_ids": pa.array(prompts, pa.list_(pa.int32())),
        }
    ).take(pa.array(rng.permutation(n)))
    with store.connect() as con:
        con.register("seed_rows", rows)
        con.execute(
            "INSERT INTO prompts SELECT 'ds', 1, request_id, line_no, 'sha-' || request_id, "
            "'p', NULL, '{}', max_tokens FROM seed_rows"
        )
        con.execute(
            "INSERT INTO prompt_tokens SELECT 'ds', 1, request_id, ?, len(token_ids), "
            "token_ids FROM seed_rows",
            [TOKENIZER],
        )
    return ids


def in_memory(store: Store, sorted_ids: pa.Array) -> PlanRequests:
    """The same requests, in the same order, with their token ids held (the old path)."""
    with store.connect() as con:
        table = fetch_arrow(
            con,
            "SELECT p.request_id, t.token_ids, p.max_tokens FROM prompts p JOIN prompt_tokens t "
            "USING (request_id)",
        )
    by_id = {r["request_id"]: r for r in table.to_pylist()}
    rows = [by_id[rid] for rid in sorted_ids.to_pylist()]
    return PlanRequests(
        sorted_ids,
        PromptTokens.from_lists([r["token_ids"] for r in rows]),
        np.array([r["max_tokens"] for r in rows], dtype=np.int64),
        np.full(len(rows), -1, dtype=np.int64),
    )


@pytest.mark.parametrize("make", [random_prompts, planted_prompts])
def test_sorted_in_ranges_plans_as_in_memory(store: Store, monkeypatch, make) -> None:
    # ranges of ~600 tokens, cut two at a time: many range files, most cut again
    monkeypatch.setattr(token_order, "MAX_RANGES", 2)
    monkeypatch.setattr(token_order, "RANGE_TOKENS", 600)
    rng = np.random.default_rng(11)
    prompts = make(rng, 1500)
    seed(store, prompts, rng)
    with store.connect() as con:
        read = read_sorted_requests(con, store, RequestQuery("ds", 1, TOKENIZER, 4096))
    new = read.requests
    assert new.prompts.values is None  # no token id held
    old = in_memory(store, new.request_ids)
    assert np.array_equal(new.prompts.lengths, old.prompts.lengths)
    for a, b in zip(sorted_with_lcp(new.prompts), sorted_with_lcp(old.prompts), strict=True):
        assert np.array_equal(a, b)
    a, b = estimate_outputs(new, read.hints), estimate_outputs(old)
    assert np.array_equal(a.tokens, b.tokens) and a.source == b.source
    assert a.group_key == b.group_key  # read back from the store for the group heads
    trie_a, trie_b = build_compact_trie(new.prompts), build_compact_trie(old.prompts)
    assert trie_a.sharing_ratio() == trie_b.sharing_ratio()
    measured = np.zeros(len(new), dtype=bool)
    warm_a = select_warmup(trie_a, measured, 0.05, seed=3)
    assert np.array_equal(warm_a, select_warmup(trie_b, measured, 0.05, seed=3))
    cost = resolve_cost("llama-3.1-8b", "h100-80g", None, 1)
    rest = np.setdiff1d(np.arange(len(new)), warm_a)
    for name in PLANNERS:
        planner = make_planner(name, cost=cost)
        x = planner.plan(new.subset(rest), a.subset(rest))
        y = planner.plan(old.subset(rest), b.subset(rest))
        assert list(x.order) == list(y.order), name
        order = rest[np.asarray(x.order)]
        assert np.array_equal(adjacent_lcp(new.prompts, order), adjacent_lcp(old.prompts, order))
    bound_a = estimated_bounds(new.prompts, a.tokens, cost)
    bound_b = estimated_bounds(old.prompts, b.tokens, cost)
    assert bound_a is not None and bound_b is not None
    assert bound_a.t_seq_s == pytest.approx(bound_b.t_seq_s)
    assert bound_a.t_opt_s == pytest.approx(bound_b.t_opt_s)


def test_hint_columns_estimate_as_hint_objects() -> None:
    """Warm-up and history hints as columns over the requests' own sorted root (finished,
    still running with a limit, from history) give the estimates the hint objects give."""
    rng = np.random.default_rng(5)
    prompts = planted_prompts(rng, 400)
    n, h = 340, 60
    held = PromptTokens.from_lists(prompts)
    order, lcp = sorted_with_lcp(held)
    root = PromptTokens.sorted_prompts(held.lengths, order, lcp, held.tokens_of)
    lengths = rng.integers(1, 800, h)
    warmup = np.arange(h) % 6 != 0
    censored = warmup & (np.arange(h) % 2 == 1)  # some groups: nothing finished (a guess)
    limits = np.where(censored, 1000, -1)
    columns = PlanRequests(
        pa.array([f"r{i}" for i in range(n)]),
        root.subset(np.arange(n)),
        np.full(n, 1024),
        np.where(np.arange(n) % 29 == 0, 77, -1),
    )
    hints = HintColumns(root.subset(np.arange(n, n + h)), lengths, warmup, censored, limits)
    objects = [
        PlanRequest(f"r{i}", prompts[i], 1024, 77 if i % 29 == 0 else None, EstimateSource.OWN)
        for i in range(n)
    ]
    hint_objects = [
        LengthHint(
            prompts[n + k],
            int(lengths[k]),
            EstimateSource.WARMUP if warmup[k] else EstimateSource.HISTORY,
            bool(censored[k]),
            1000 if censored[k] else None,
        )
        for k in range(h)
    ]
    a, b = estimate_outputs(columns, hints), estimate_outputs(objects, hint_objects)
    assert np.array_equal(a.tokens, b.tokens) and a.source == b.source
    assert np.array_equal(a.spread, b.spread) and np.array_equal(a.guessed, b.guessed)
    assert a.group_key == b.group_key and a.guessed.any()


def test_token_ids_read_back_later_stay_under_the_fetch_cap(store: Store, monkeypatch) -> None:
    # The search reads its sample's ids after the reading connection closed: a connection that
    # may open the database afresh, at DuckDB's default of 80% of RAM (7 GB at 10M prompts).
    rng = np.random.default_rng(5)
    prompts = random_prompts(rng, 60)
    seed(store, prompts, rng)
    with store.connect() as con:
        read = read_sorted_requests(con, store, RequestQuery("ds", 1, TOKENIZER, 4096))
    limits: list[str] = []
    real_fetch = sorted_requests.fetch_arrow

    def fetch_noting_the_limit(con, query, params=None):
        if "wanted_requests" in query:
            setting = con.execute("SELECT current_setting('memory_limit')").fetchall()
            limits.append(setting[0][0])
        return real_fetch(con, query, params)

    monkeypatch.setattr(sorted_requests, "fetch_arrow", fetch_noting_the_limit)
    picked = np.array([0, 7, 31])
    ids = read.requests.prompts.tokens_of(picked)
    rows = [int(r[1:]) for r in read.requests.request_ids.take(pa.array(picked)).to_pylist()]
    assert [list(t) for t in ids] == [prompts[i] for i in rows]
    assert limits == [f"{sorted_requests.FETCH_DUCKDB_MEMORY_BYTES >> 20}.0 MiB"]
