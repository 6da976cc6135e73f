"""Property: the SQL prefix-sharing numbers equal those of a Python token trie."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

# Small alphabet and short prompts, so that prompts share prefixes, repeat and nest.
token_lists = st.lists(st.lists(st.integers(0, 2), max_size=7), max_size=25)


@pytest.fixture(scope="module")
def empty_con(db):
    """One database for all examples (connecting costs more than an example); emptied each time."""
    con = db.connect()

    def emptied():
        con.execute("DELETE FROM prompt_tokens")
        con.execute("DELETE FROM prompts")
        return con

    yield emptied
    con.close()


def trie_nodes(prompts: list[list[int]]) -> int:
    """Nodes of the token trie of `prompts`, the root not counted."""
    root: dict[int, dict] = {}
    count = 0
    for tokens in prompts:
        node = root
        for token in tokens:
            if token not in node:
                node[token] = {}
                count += 1
            node = node[token]
    return count


@settings(max_examples=150, deadline=None)
@given(prompts=token_lists)
def test_unique_prefix_tokens_equal_trie_nodes(db, empty_con, prompts):
    con = empty_con()
    db.insert(con, prompts)
    [(total, unique, ratio)] = db.query(con, "prefix_sharing")
    expected_total = sum(map(len, prompts))
    assert (total, unique) == (expected_total, trie_nodes(prompts))
    if expected_total:
        assert ratio == 1 - unique / expected_total
    else:
        assert ratio is None


@settings(max_examples=100, deadline=None)
@given(prompts=token_lists, min_shared=st.integers(1, 3))
def test_prefix_groups_partition_the_sorted_prompts(db, empty_con, prompts, min_shared):
    con = empty_con()
    db.insert(con, prompts)
    rows = db.query(con, "prefix_groups", min_shared_tokens=min_shared, top_n=1000)
    ordered = sorted(prompts)
    runs = _runs(ordered, min_shared)
    expected = sorted(((len(r) - 1) * _lcp_all(r), len(r), _lcp_all(r)) for r in runs)
    got = sorted((saved, n, shared) for _, n, shared, saved, _, _ in rows)
    assert got == expected


def _lcp(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _lcp_all(run: list[list[int]]) -> int:
    return min(_lcp(run[0], other) for other in run[1:])


def _runs(ordered: list[list[int]], min_shared: int) -> list[list[list[int]]]:
    """Maximal runs of sorted prompts whose LCP with the predecessor is >= min_shared."""
    runs: list[list[list[int]]] = []
    for i, tokens in enumerate(ordered):
        if i > 0 and _lcp(ordered[i - 1], tokens) >= min_shared:
            runs[-1].append(tokens)
        else:
            runs.append([tokens])
    return [r for r in runs if len(r) >= 2]
