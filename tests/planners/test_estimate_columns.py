"""Per-request columns of few values (planners/estimate_columns.py): sequences of sources and
group keys held as codes, and the group keys' "<depth>:<hash of the prefix>" form."""

from hashlib import blake2b

import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from blend.planners import PlanRequest, estimate_outputs
from blend.planners.arrays import level_order, subtree_sums
from blend.planners.estimate_columns import EstimateSources, GroupKeys
from blend.planners.estimates import group_members, prefix_groups
from blend.planners.request import EstimateSource
from blend.planners.tree import build_compact_trie

OWN, WARMUP, MAX = EstimateSource.OWN, EstimateSource.WARMUP, EstimateSource.MAX_TOKENS


def test_sources_read_as_the_list_they_were_made_of() -> None:
    listed = [MAX, OWN, MAX, WARMUP, OWN]
    sources = EstimateSources.of(listed)
    assert sources.codes.dtype == np.int8 and sources == listed and list(sources) == listed
    assert sources[3] is WARMUP and sources[1:3] == [OWN, MAX]
    assert sources.subset(np.array([4, 0])) == [OWN, MAX]
    assert sources != [MAX, OWN, MAX, WARMUP, MAX]
    assert sources.is_any(OWN, WARMUP).tolist() == [False, True, False, True, True]
    # counts in order of first appearance, as a dict filled in a loop over the list gives
    assert list(sources.counts().items()) == [("max_tokens", 2), ("own", 2), ("warmup", 1)]
    column = sources.dictionary(np.array([3, 3, 0]))
    assert column.type.index_type == pa.int8() and column.to_pylist() == ["warmup"] * 2 + [
        "max_tokens"
    ]


def test_group_keys_hold_each_distinct_key_once() -> None:
    listed = ["3:aa", "5:bb", "3:aa", "0:cc", "5:bb"]
    keys = GroupKeys.of(listed)
    assert len(keys.names) == 3 and keys.codes.dtype == np.int32
    assert keys == listed and list(keys) == listed and keys[2] == "3:aa"
    assert keys.subset(np.array([1, 3])) == ["5:bb", "0:cc"]
    column = keys.dictionary(np.array([4, 0, 0]))
    assert column.to_pylist() == ["5:bb", "3:aa", "3:aa"] and len(column.dictionary) == 3


def expected_keys(prompts: list[list[int]]) -> list[str]:
    """Each request's key from its top-level group: the group's depth and the blake2b hash
    of its prefix as big-endian 32-bit ids; "0:" and the empty hash outside every group."""
    empty = blake2b(b"", digest_size=8).hexdigest()
    keys = [f"0:{empty}"] * len(prompts)
    trie = build_compact_trie(prompts)
    leaves = subtree_sums(trie.parent, level_order(trie.parent), trie.leaf_request >= 0)
    for group in prefix_groups(trie).tolist():
        depth = int(trie.depth[group])
        for member in group_members(trie, leaves, group).tolist():
            prefix = np.asarray(prompts[member][:depth], dtype=">u4").tobytes()
            keys[member] = f"{depth}:{blake2b(prefix, digest_size=8).hexdigest()}"
    return keys


@given(
    st.lists(
        st.lists(st.integers(0, 4), max_size=6).map(lambda tail: [7, 7, *tail]),
        min_size=1,
        max_size=30,
    )
    | st.lists(st.lists(st.integers(0, 2**32 - 1), max_size=4), min_size=1, max_size=30)
)
def test_group_keys_hash_the_group_prefix(prompts: list[list[int]]) -> None:
    requests = [PlanRequest(f"r{i}", p, 16) for i, p in enumerate(prompts)]
    assert list(estimate_outputs(requests).group_key) == expected_keys(prompts)


def test_estimates_filled_a_chunk_of_leaves_at_a_time_are_the_same(monkeypatch) -> None:
    """The subtree sums fill the trie's leaves in chunks (bounded memory at 10M prompts): any
    chunk size gives the estimates of one fill, censored and history hints included."""
    from blend.planners import estimates
    from blend.planners.estimates import LengthHint

    rng = np.random.default_rng(3)
    prefixes = [rng.integers(0, 50, rng.integers(1, 30)).tolist() for _ in range(8)]

    def prompt() -> list[int]:
        return prefixes[rng.integers(8)] + rng.integers(0, 50, rng.integers(0, 12)).tolist()

    requests = [
        PlanRequest(f"r{i}", prompt(), int(rng.integers(16, 2000)), None) for i in range(300)
    ]
    hints = [
        LengthHint(
            prompt(),
            int(rng.integers(1, 900)),
            WARMUP if rng.random() < 0.7 else EstimateSource.HISTORY,
            censored=bool(rng.random() < 0.2),
            max_tokens=int(rng.integers(900, 4000)),
        )
        for _ in range(100)
    ]
    whole = estimate_outputs(requests, hints)
    monkeypatch.setattr(estimates, "_NODE_CHUNK", 7)
    chunked = estimate_outputs(requests, hints)
    for name in ("tokens", "spread", "residuals", "guessed", "grouped"):
        assert np.array_equal(getattr(whole, name), getattr(chunked, name)), name
    assert whole.source == list(chunked.source) and whole.spread.std() > 0
