"""profile_dataset end to end: prompts rows in a real store -> prompt_tokens + profiles rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blend.demo.model import CORPUS_PATH
from blend.engines.tokenize import tokenizer_sha256
from blend.profile.stage import ProfileError, ProfileReport, profile_dataset
from blend.store.database import Store, fetch_dicts

CORPUS = CORPUS_PATH.read_text(encoding="utf-8")
SYSTEM = CORPUS[:3000]  # several hundred tokens, shared by the two chat prompts
LONG_PROMPT = CORPUS[:20000]  # thousands of tokens: more than max_model_len 1024


def chat(question: str) -> str:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    return json.dumps(messages)


ROWS = [
    # request_id, prompt, messages_json, max_tokens
    ("a-chat", None, chat("What does this code do?"), 16),
    ("b-chat", None, chat("Rewrite it in Rust."), 16),
    ("c-raw", "def add(a, b):\n    return a + b", None, 16),
    ("d-long", LONG_PROMPT, None, 16),
]


def insert_prompts(store: Store, rows=ROWS, *, dataset="demo", snapshot=1) -> None:
    with store.connect() as con:
        for line_no, (request_id, prompt, messages_json, max_tokens) in enumerate(rows, 1):
            con.execute(
                "INSERT INTO prompts VALUES ($dataset, $snapshot, $request_id, $line_no, 'sha', "
                "$prompt, $messages_json, '{}', $max_tokens)",
                {
                    "dataset": dataset,
                    "snapshot": snapshot,
                    "request_id": request_id,
                    "line_no": line_no,
                    "prompt": prompt,
                    "messages_json": messages_json,
                    "max_tokens": max_tokens,
                },
            )


def stored(store: Store) -> tuple[list[dict], list[dict]]:
    with store.connect() as con:
        tokens = fetch_dicts(con, "SELECT * FROM prompt_tokens ORDER BY request_id")
        profiles = fetch_dicts(con, "SELECT * FROM profiles")
    return tokens, profiles


@pytest.fixture
def profile_store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "store")


def test_profile_dataset_stores_tokens_and_profile(profile_store, profile_model_dir):
    insert_prompts(profile_store)
    report = profile_dataset(profile_store, "demo", profile_model_dir, batch_size=3)
    tokens, profiles = stored(profile_store)

    assert [row["request_id"] for row in tokens] == ["a-chat", "b-chat", "c-raw", "d-long"]
    assert all(row["n_prompt_tokens"] == len(row["token_ids"]) for row in tokens)
    a, b = tokens[0]["token_ids"], tokens[1]["token_ids"]
    shared = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    assert shared >= 128

    assert report.n_prompts == 4
    assert report.input_tokens == sum(row["n_prompt_tokens"] for row in tokens)
    assert report.max_tokens == tokens[3]["n_prompt_tokens"] > 1024
    assert (report.n_over_length, report.over_length_ids) == (1, ("d-long",))
    assert report.unique_prefix_tokens == report.input_tokens - shared
    assert report.sharing_ratio == pytest.approx(shared / report.input_tokens)
    first_sorted = "a-chat" if a < b else "b-chat"
    [group] = report.top_groups
    assert (group.rank, group.n_prompts, group.shared_prefix_tokens, group.saved_tokens) == (
        1,
        2,
        shared,
        shared,
    )
    assert group.first_request_id == first_sorted
    assert report.n_prefix_groups == 1
    assert report.model == profile_model_dir.name
    assert report.max_model_len == 1024
    assert report.tokenizer_sha256 == tokenizer_sha256(profile_model_dir)

    [row] = profiles
    assert row["dataset"] == "demo" and row["snapshot"] == 1
    assert row["tokenizer_sha256"] == report.tokenizer_sha256
    assert (row["n_prompts"], row["input_tokens"], row["max_tokens"]) == (
        4,
        report.input_tokens,
        report.max_tokens,
    )
    assert row["unique_prefix_tokens"] == report.unique_prefix_tokens
    assert row["n_over_length"] == 1 and row["n_prefix_groups"] == 1


def test_reprofiling_is_idempotent(profile_store, profile_model_dir):
    insert_prompts(profile_store)
    first = profile_dataset(profile_store, "demo", profile_model_dir)
    tokens_before, profiles_before = stored(profile_store)
    second = profile_dataset(profile_store, "demo", profile_model_dir, batch_size=1)
    tokens_after, profiles_after = stored(profile_store)

    assert tokens_after == tokens_before
    assert _without_times(profiles_after) == _without_times(profiles_before)
    assert _measures(second) == _measures(first)


def test_failed_profile_keeps_the_previous_one(profile_store, profile_model_dir):
    insert_prompts(profile_store)
    profile_dataset(profile_store, "demo", profile_model_dir)
    tokens_before, profiles_before = stored(profile_store)
    insert_prompts(profile_store, [("e-broken", None, None, 16)])  # neither prompt nor messages
    with pytest.raises(ValueError, match="neither a prompt nor messages_json"):
        profile_dataset(profile_store, "demo", profile_model_dir)
    assert stored(profile_store) == (tokens_before, profiles_before)


def test_token_rows_are_staged_in_a_scratch_file_that_never_stays(profile_store, profile_model_dir):
    """Token rows go through <store>/tmp/profile-tokens-*.parquet: removed after a profile,
    after a failed one, and (left by a killed one) at the start of the next."""
    insert_prompts(profile_store)
    profile_store.tmp_dir.mkdir()
    killed_left = profile_store.tmp_dir / "profile-tokens-0123.parquet"
    killed_left.write_bytes(b"half a file")
    profile_dataset(profile_store, "demo", profile_model_dir)
    assert list(profile_store.tmp_dir.iterdir()) == []
    insert_prompts(profile_store, [("e-broken", None, None, 16)])
    with pytest.raises(ValueError):
        profile_dataset(profile_store, "demo", profile_model_dir)
    assert list(profile_store.tmp_dir.iterdir()) == []


def test_latest_snapshot_by_default(profile_store, profile_model_dir):
    insert_prompts(profile_store, ROWS[:1], snapshot=1)
    insert_prompts(profile_store, ROWS[:3], snapshot=2)
    assert profile_dataset(profile_store, "demo", profile_model_dir).snapshot == 2
    report = profile_dataset(profile_store, "demo", profile_model_dir, snapshot=1)
    assert (report.snapshot, report.n_prompts) == (1, 1)


def test_unknown_dataset_or_snapshot_is_an_error(profile_store, profile_model_dir):
    with pytest.raises(ProfileError, match="'nope' does not exist"):
        profile_dataset(profile_store, "nope", profile_model_dir)
    insert_prompts(profile_store, ROWS[:1])
    with pytest.raises(ProfileError, match="no snapshot 7"):
        profile_dataset(profile_store, "demo", profile_model_dir, snapshot=7)


def test_snapshot_without_prompts_profiles_as_empty(profile_store, profile_model_dir):
    with profile_store.connect() as con:
        con.execute(
            "INSERT INTO datasets VALUES ('empty', 1, 'in.jsonl', 'sha', 'jsonl', now(), 0, 3)"
        )
    report = profile_dataset(profile_store, "empty", profile_model_dir)
    assert (report.n_prompts, report.input_tokens, report.sharing_ratio) == (0, 0, None)
    assert report.top_groups == () and report.n_prefix_groups == 0


def test_progress_is_reported_per_batch(profile_store, profile_model_dir):
    insert_prompts(profile_store)
    seen: list[tuple[int, int]] = []
    profile_dataset(
        profile_store,
        "demo",
        profile_model_dir,
        batch_size=3,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen[-1] == (4, 4)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def _without_times(profiles: list[dict]) -> list[dict]:
    timed = {"profiled_at", "tokenize_s", "sql_s"}
    return [{k: v for k, v in row.items() if k not in timed} for row in profiles]


def _measures(report: ProfileReport) -> tuple:
    return (
        report.n_prompts,
        report.input_tokens,
        report.p50_tokens,
        report.unique_prefix_tokens,
        report.sharing_ratio,
        report.top_groups,
        report.over_length_ids,
    )
