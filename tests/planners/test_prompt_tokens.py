"""Prompts as one flat array (planners/prompt_tokens.py): the sort a subset derives from its
parent's is the sort of its own tokens, and planners see the same requests either way."""

import itertools

import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from blend.planners import PlanRequest, estimate_outputs, make_planner
from blend.planners.prompt_tokens import PlanRequests, PromptTokens
from blend.planners.tree import adjacent_lcp, build_compact_trie, sorted_with_lcp

prompts_strategy = st.lists(
    st.lists(st.integers(0, 3), min_size=1, max_size=8), min_size=1, max_size=30
)


def reference(prompts: list[list[int]]) -> tuple[list[int], list[int]]:
    """Python's own sort (stable: ties in input order) and the LCPs of neighbours."""
    order = sorted(range(len(prompts)), key=lambda i: prompts[i])
    lcp = [0] if prompts else []
    for a, b in itertools.pairwise(order):
        k = 0
        while k < min(len(prompts[a]), len(prompts[b])) and prompts[a][k] == prompts[b][k]:
            k += 1
        lcp.append(k)
    return order, lcp


@given(prompts_strategy, st.data())
def test_a_subset_derives_the_sort_of_its_own_tokens(prompts: list[list[int]], data) -> None:
    table = PromptTokens.from_arrow(pa.array(prompts, pa.list_(pa.int32())))
    order, lcp = sorted_with_lcp(table)
    assert (order.tolist(), lcp.tolist()) == reference(prompts)
    picked = data.draw(st.lists(st.integers(0, len(prompts) - 1), unique=True))  # any order
    subset = table.subset(np.asarray(picked, dtype=np.int64))
    sub_order, sub_lcp = sorted_with_lcp(subset)  # derived: the parent is sorted
    assert (sub_order.tolist(), sub_lcp.tolist()) == reference([prompts[i] for i in picked])
    increasing = sorted(picked)  # the parent's order filtered, no sort (equal prompts abound)
    sub_order, sub_lcp = sorted_with_lcp(table.subset(np.asarray(increasing, dtype=np.int64)))
    assert (sub_order.tolist(), sub_lcp.tolist()) == reference([prompts[i] for i in increasing])
    # a plain arbitrary order is still compared token by token
    shuffled = np.asarray(data.draw(st.permutations(range(len(prompts)))), dtype=np.int64)
    assert adjacent_lcp(table, shuffled).tolist() == adjacent_lcp(prompts, shuffled).tolist()


def test_planners_plan_columns_as_they_plan_objects() -> None:
    rng = np.random.default_rng(3)
    heads = [rng.integers(0, 50_000, 40).tolist() for _ in range(6)]
    prompts = [heads[i % 6] + rng.integers(0, 50_000, i % 9 + 1).tolist() for i in range(300)]
    own = [int(rng.integers(1, 500)) if i % 17 == 0 else -1 for i in range(300)]
    columns = PlanRequests(
        pa.array([f"r{i}" for i in range(300)]),
        PromptTokens.from_arrow(pa.array(prompts, pa.list_(pa.int32()))),
        np.full(300, 1024),
        np.asarray(own),
    )
    objects = [
        PlanRequest(f"r{i}", p, 1024, own[i] if own[i] >= 0 else None, columns.known_from)
        for i, p in enumerate(prompts)
    ]
    assert build_compact_trie(columns.prompts).sharing_ratio() == (
        build_compact_trie(prompts).sharing_ratio()
    )
    a, b = estimate_outputs(columns), estimate_outputs(objects)
    assert np.array_equal(a.tokens, b.tokens) and a.source == b.source
    for name in ("dfs", "blendserve", "batchllm"):
        planner = make_planner(name)
        rest = np.arange(5, 300)
        x = planner.plan(columns.subset(rest), a.subset(rest))
        y = planner.plan([objects[i] for i in rest], b.subset(rest))
        assert list(x.order) == list(y.order), name


def test_token_batches_give_every_asked_prompt_once() -> None:
    """Held prompts stream in chunks; prompts without ids stream from their root's
    fetch_batches, positions in any order, or from its fetch a chunk at a time."""
    rng = np.random.default_rng(8)
    prompts = [rng.integers(0, 1000, int(rng.integers(0, 9))).tolist() for _ in range(50)]
    held = PromptTokens.from_lists(prompts)
    order, lcp = sorted_with_lcp(held)
    asked = np.array([7, 3, 3, 49, 0])

    def backwards(indices: np.ndarray):  # a store's stream: its own order, a few at a time
        for k in range(len(indices) - 1, -1, -2):
            picked = np.arange(max(0, k - 1), k + 1)
            yield picked, held.tokens_of(indices[picked])

    streamed = PromptTokens.sorted_prompts(held.lengths, order, lcp, held.tokens_of, backwards)
    chunked = PromptTokens.sorted_prompts(held.lengths, order, lcp, held.tokens_of)
    for source in (held, streamed, chunked, streamed.subset(np.arange(50))):
        got: dict[int, list[int]] = {}
        for positions, tokens in source.tokens_in_batches(asked):
            for k, ids in zip(positions.tolist(), tokens, strict=True):
                assert k not in got
                got[k] = np.asarray(ids).tolist()
        assert got == {k: prompts[i] for k, i in enumerate(asked.tolist())}


def test_a_subset_of_requests_keeps_their_ids_without_copying_them() -> None:
    ids = pa.array([f"req-{i}" for i in range(6)])
    prompts = PromptTokens.from_lists([[i, i + 1] for i in range(6)])
    requests = PlanRequests(ids, prompts, np.full(6, 8), np.full(6, -1))
    inner = requests.subset([5, 1, 3]).subset([2, 0])  # a subset of a subset
    assert [r.request_id for r in inner] == ["req-3", "req-5"]
    assert inner.request_ids.cast(pa.string()).to_pylist() == ["req-3", "req-5"]
    # codes into the ids, not a copy of their strings
    assert inner.request_ids.dictionary.buffers()[2].address == ids.buffers()[2].address
    assert [list(r.prompt_token_ids) for r in inner] == [[3, 4], [5, 6]]
