"""sql/profile/*.sql: rows in, exact rows out, on an in-memory DuckDB."""

from __future__ import annotations

import pytest

# r0..r5; sorted: r5 [], r2 [1,2], r0 [1,2,3,4], r4 [1,2,3,4], r1 [1,2,3,5], r3 [7]
# LCP with the sorted predecessor:  0,   0,      2,           4,           3,        0
TOKENS = [[1, 2, 3, 4], [1, 2, 3, 5], [1, 2], [7], [1, 2, 3, 4], []]


def test_length_stats(db, con):
    db.insert(con, TOKENS)
    # lengths 0 1 2 4 4 4: p50 interpolates 2..4, p90 and p99 sit among the 4s
    assert db.query(con, "length_stats") == [(6, 15, 2.5, 3.0, 4.0, 4.0, 4)]


def test_length_histogram_bins(db, con):
    db.insert(con, TOKENS)  # lengths 4, 4, 2, 1, 4, 0
    assert db.query(con, "length_histogram", bin_tokens=2) == [(0, 2, 2), (2, 4, 1), (4, 6, 3)]


def test_prefix_sharing_counts_trie_nodes(db, con):
    db.insert(con, TOKENS)
    # trie nodes: 1, 2, 3, 4, 5 (second leaf under 3), 7; the duplicate r4 adds none
    assert db.query(con, "prefix_sharing") == [(15, 6, pytest.approx(1 - 6 / 15))]


def test_prefix_sharing_orders_token_ids_as_numbers(db, con):
    # numeric order [9,1] < [10,1] < [10,2]; as text "10" < "9" and the 10s would not be adjacent
    db.insert(con, [[10, 1], [9, 1], [10, 2]])
    assert db.query(con, "prefix_sharing") == [(6, 5, pytest.approx(1 / 6))]


def test_identical_prompts_are_fully_shared(db, con):
    db.insert(con, [[4, 5, 6]] * 3)
    assert db.query(con, "prefix_sharing") == [(9, 3, pytest.approx(2 / 3))]


def test_single_prompt_shares_nothing(db, con):
    db.insert(con, [[4, 5, 6]])
    assert db.query(con, "prefix_sharing") == [(3, 3, 0.0)]


def test_queries_on_no_rows(db, con):
    assert db.query(con, "length_stats") == [(0, 0, None, None, None, None, None)]
    assert db.query(con, "prefix_sharing") == [(0, 0, None)]
    assert db.query(con, "prefix_groups", min_shared_tokens=1, top_n=5) == []
    assert db.query(con, "over_length", max_model_len=8, max_ids=5) == [(0, 0, [], [])]


def test_queries_read_only_their_key(db, con):
    db.insert(con, TOKENS)
    other_tokenizer = {**db.key, "tokenizer_sha256": "other"}
    other_snapshot = {**db.key, "snapshot": 2}
    db.insert(con, [[1, 2, 3, 4, 99]], ids=["x"], key=other_tokenizer)
    db.insert(con, [[1, 2, 3, 4, 98]], ids=["y"], key=other_snapshot)
    assert db.query(con, "prefix_sharing") == [(15, 6, pytest.approx(0.6))]
    assert db.query(con, "length_stats")[0][:2] == (6, 15)


@pytest.mark.parametrize(
    ("min_shared_tokens", "expected"),
    [
        # one run r2 r0 r4 r1: shared = min LCP(2, 4, 3) = 2, saved = 3 * 2
        (2, [(1, 4, 2, 6, "r2", 1)]),
        # the run starts at r0 (LCP 2 < 3): r0 r4 r1 share 3
        (3, [(1, 3, 3, 6, "r0", 1)]),
        # LCP(r4, r1) = 3 < 4 splits r1 off; equal prompts go by request_id
        (4, [(1, 2, 4, 4, "r0", 1)]),
        (5, []),
    ],
)
def test_prefix_groups_threshold(db, con, min_shared_tokens, expected):
    db.insert(con, TOKENS)
    rows = db.query(con, "prefix_groups", min_shared_tokens=min_shared_tokens, top_n=10)
    assert rows == expected


def test_prefix_groups_rank_by_saved_tokens_then_order(db, con):
    db.insert(
        con,
        [
            [5, 5, 1],
            [5, 5, 2],
            [5, 5, 3],
            [8, 8, 8, 8, 1],
            [8, 8, 8, 8, 2],
            [9, 9, 9],
            [9, 9, 9],
            [6],
        ],
        ids=["x0", "x1", "x2", "y0", "y1", "z0", "z1", "single"],
    )
    # x saves 2 * 2 = 4, y 1 * 4 = 4 (tie: x comes first in sorted order), z 1 * 3 = 3
    assert db.query(con, "prefix_groups", min_shared_tokens=2, top_n=10) == [
        (1, 3, 2, 4, "x0", 3),
        (2, 2, 4, 4, "y0", 3),
        (3, 2, 3, 3, "z0", 3),
    ]
    assert db.query(con, "prefix_groups", min_shared_tokens=2, top_n=2) == [
        (1, 3, 2, 4, "x0", 3),
        (2, 2, 4, 4, "y0", 3),
    ]


def test_over_length_classes(db, con):
    db.insert(con, [[1] * 3, [1] * 4, [1] * 5, [1] * 6], max_tokens=2)
    # max_model_len 5: 3 + 2 fits; 4 + 1 runs but 4 + 2 is cut; 5 + 1 and 6 + 1 cannot run
    assert db.query(con, "over_length", max_model_len=5, max_ids=20) == [
        (2, 1, ["r2", "r3"], ["r1"])
    ]
    assert db.query(con, "over_length", max_model_len=5, max_ids=1) == [(2, 1, ["r2"], ["r1"])]
    assert db.query(con, "over_length", max_model_len=100, max_ids=20) == [(0, 0, [], [])]
