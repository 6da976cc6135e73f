"""The bounded-memory prefix measures (profile/token_order.py + profile/prefix.py) equal the
reference: the window SQL of sql/profile/prefix_sharing.sql and prefix_groups.sql, and the
numpy trie totals of blend.simulate.sequential_bound.

Ranges are made tiny (a few tokens) so that small inputs are cut into many sorted ranges,
cut again where a range comes out too large, and carried across range boundaries.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blend.profile import token_order
from blend.profile.prefix import GroupRow, PrefixScan, prefix_measures
from blend.profile.token_order import SCRATCH_PREFIX, sorted_token_tables
from blend.simulate.sequential_bound import prompt_trie_totals

# Small alphabet and short prompts, so that prompts share prefixes, repeat, nest and are empty.
token_lists = st.lists(st.lists(st.integers(0, 3), max_size=8), max_size=40)


@pytest.fixture(scope="module")
def empty_con(db):
    con = db.connect()

    def emptied():
        con.execute("DELETE FROM prompt_tokens")
        con.execute("DELETE FROM prompts")
        return con

    yield emptied
    con.close()


def bounded(db, con, tmp: Path, min_shared: int, top_n: int, range_tokens: int):
    tables = sorted_token_tables(con, db.key, tmp, range_tokens=range_tokens)
    return prefix_measures(tables, min_shared, top_n)


def reference(db, con, min_shared: int, top_n: int):
    [(total, unique, ratio)] = db.query(con, "prefix_sharing")
    groups = db.query(con, "prefix_groups", min_shared_tokens=min_shared, top_n=top_n)
    return (total, unique, ratio), [GroupRow(*row) for row in groups]


def assert_equal_to_reference(db, con, tmp, min_shared, top_n, range_tokens):
    got = bounded(db, con, tmp, min_shared, top_n, range_tokens)
    sharing, groups = reference(db, con, min_shared, top_n)
    assert (
        got.sharing.total_tokens,
        got.sharing.unique_prefix_tokens,
        got.sharing.sharing_ratio,
    ) == sharing
    assert list(got.groups) == groups
    return got


@settings(max_examples=150, deadline=None)
@given(
    prompts=token_lists,
    min_shared=st.integers(1, 4),
    top_n=st.sampled_from([1, 3, 1000]),
    range_tokens=st.sampled_from([1, 3, 16, 10_000]),
)
def test_equals_the_sql_on_random_prompts(
    db, empty_con, tmp_path_factory, prompts, min_shared, top_n, range_tokens
):
    con = empty_con()
    db.insert(con, prompts)
    tmp = tmp_path_factory.mktemp("order")
    assert_equal_to_reference(db, con, tmp, min_shared, top_n, range_tokens)
    assert not list(tmp.iterdir())  # every scratch file removed


@settings(max_examples=60, deadline=None)
@given(prompts=token_lists, range_tokens=st.sampled_from([1, 5, 10_000]))
def test_rows_come_in_the_order_of_the_sql_sort(
    db, empty_con, tmp_path_factory, prompts, range_tokens
):
    con = empty_con()
    # ids out of order, so that ties between equal prompts are decided by request_id
    ids = [f"r{(i * 7919) % 1000:03d}-{i}" for i in range(len(prompts))]
    db.insert(con, prompts, ids=ids)
    tables = sorted_token_tables(
        con, db.key, tmp_path_factory.mktemp("order"), range_tokens=range_tokens
    )
    got = [(row["token_ids"], row["request_id"]) for t in tables for row in t.to_pylist()]
    expected = con.execute(
        "SELECT token_ids, request_id FROM prompt_tokens ORDER BY token_ids, request_id"
    ).fetchall()
    assert got == [tuple(row) for row in expected]


def test_ids_compare_as_signed_numbers(db, con, tmp_path):
    """Keys flip the sign bit: negative ids, 0 and the largest int32 sort as DuckDB sorts."""
    lists = [[-(2**31)], [-1, 5], [0], [2**31 - 1], [255, 1], [256], [1, 256], [1, 255, 9], []]
    db.insert(con, lists)
    got = [
        r["request_id"]
        for t in sorted_token_tables(con, db.key, tmp_path, 1)
        for r in t.to_pylist()
    ]
    expected = con.execute(
        "SELECT request_id FROM prompt_tokens ORDER BY token_ids, request_id"
    ).fetchall()
    assert got == [r for (r,) in expected]


def chat_like(rng: random.Random, n: int) -> list[list[int]]:
    """BOS + a chat header and one of a few long system prompts + a unique question, one row
    in five; the others BOS + free text (sharing only their first tokens)."""
    systems = [[rng.randrange(50_000) for _ in range(rng.randint(130, 250))] for _ in range(4)]
    rows = []
    for i in range(n):
        question = [rng.randrange(50_000) for _ in range(rng.randint(3, 30))]
        if i % 5 == 4:
            rows.append([1, 32001, 9125, *rng.choice(systems), 32002, 32001, 882, *question])
        else:
            rows.append([1, *question])
    return rows


def few_shot(rng: random.Random, n: int) -> list[list[int]]:
    """A few hundred long templates shared by many prompts (Zipf), unique questions, some
    exact duplicates and empty prompts, ids up to the largest int32."""
    templates = [[rng.randrange(2**31) for _ in range(rng.randint(20, 200))] for _ in range(200)]
    weights = [1 / (k + 1) for k in range(len(templates))]
    rows: list[list[int]] = []
    for i in range(n):
        if i % 97 == 0:
            rows.append([])
        elif i % 13 == 0 and rows:
            rows.append(list(rows[rng.randrange(len(rows))]))  # an exact duplicate
        else:
            template = rng.choices(templates, weights)[0]
            rows.append([*template, *(rng.randrange(2**31) for _ in range(rng.randint(1, 20)))])
    return rows


@pytest.mark.parametrize("shape", [chat_like, few_shot])
@pytest.mark.parametrize("min_shared", [1, 16, 128])
def test_equals_the_sql_and_the_trie_on_shaped_prompts(db, con, tmp_path, shape, min_shared):
    prompts = shape(random.Random(min_shared), 3000)
    db.insert(con, prompts)
    got = assert_equal_to_reference(db, con, tmp_path, min_shared, 10, range_tokens=5_000)
    trie = prompt_trie_totals(prompts)
    assert got.sharing.total_tokens == trie.prompt_tokens
    assert got.sharing.unique_prefix_tokens == trie.distinct_tokens
    assert got.groups  # the shapes do have groups


def test_ranges_are_cut_again_until_they_fit(db, con, tmp_path, monkeypatch):
    """Two ranges per cut: most ranges come out too large and are cut again, recursively;
    every table handed on stays within 2 x range_tokens (or is one prompt)."""
    monkeypatch.setattr(token_order, "MAX_RANGES", 2)
    cut_again = []
    real = token_order._cut_again

    def counted(*args):
        cut_again.append(args)
        return real(*args)

    monkeypatch.setattr(token_order, "_cut_again", counted)
    prompts = few_shot(random.Random(7), 1500)
    db.insert(con, prompts)
    tables = list(sorted_token_tables(con, db.key, tmp_path, range_tokens=2_000))
    assert len(tables) > 20 and len(cut_again) > 10
    for table in tables:
        tokens = sum(len(t) for t in table.column("token_ids").to_pylist())
        assert tokens <= 4_000 or table.num_rows == 1
    assert_equal_to_reference(db, con, tmp_path, 8, 10, range_tokens=2_000)


def test_one_prompt_longer_than_a_range(db, con, tmp_path):
    db.insert(con, [[5] * 50, [5] * 49 + [6], [4], [5] * 50])
    assert_equal_to_reference(db, con, tmp_path, 2, 10, range_tokens=3)


def test_a_killed_profiles_scratch_is_removed(db, con, tmp_path):
    stale = tmp_path / f"{SCRATCH_PREFIX}stale"
    (stale / "nested").mkdir(parents=True)
    (stale / "range-00000.arrow").write_bytes(b"left by a killed profile")
    db.insert(con, few_shot(random.Random(1), 300))
    assert_equal_to_reference(db, con, tmp_path, 8, 10, range_tokens=500)
    assert not list(tmp_path.iterdir())


def test_no_rows(db, con, tmp_path):
    got = bounded(db, con, tmp_path, 1, 5, 10)
    assert (got.sharing.total_tokens, got.sharing.unique_prefix_tokens) == (0, 0)
    assert got.sharing.sharing_ratio is None and got.groups == ()


def test_any_batching_of_the_sorted_stream_gives_the_same_numbers(db, con, tmp_path):
    """The scan carries the previous prompt and the open group across batches."""
    prompts = chat_like(random.Random(3), 400)
    db.insert(con, prompts)
    [whole] = list(sorted_token_tables(con, db.key, tmp_path))
    expected = prefix_measures([whole], 16, 5)
    for size in (1, 2, 7, 64):
        scan = PrefixScan(16, 5)
        for start in range(0, whole.num_rows, size):
            scan.add(whole.slice(start, size))
        assert scan.result() == expected
