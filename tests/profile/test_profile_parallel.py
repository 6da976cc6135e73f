"""The profile's tokenization on every core: worker processes write the same prompt_tokens
rows and the same profile as the tokenizer in this process (the demo data, chat rows
included), also with a stand-in encoder put in the stage's place; the batches handed out
ahead are bounded; a template failing in a worker names the same rows."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from blend.demo.dataset import write_demo_dataset
from blend.engines.tokenize import ChatTemplateError, encode_batch
from blend.ingest import ingest_file
from blend.profile import stage as profile_stage
from blend.profile.stage import ProfileReport, profile_dataset
from blend.profile.token_batches import TokenizeOptions, in_order, local_workers
from blend.store.database import Store, fetch_dicts

ON_TWO_WORKERS = TokenizeOptions(workers=2, min_prompts_per_worker=1)
PID_DIR = "BLEND_TEST_ENCODER_PIDS"  # where pid_noting_encoder notes the processes it ran in


def token_rows(store: Store, dataset: str = "demo") -> list[dict[str, Any]]:
    with store.connect(views=False) as con:
        return fetch_dicts(
            con,
            "SELECT t.request_id, t.n_prompt_tokens, t.token_ids, "
            "p.messages_json IS NOT NULL AS chat "
            "FROM prompt_tokens t JOIN prompts p USING (dataset, snapshot, request_id) "
            "WHERE t.dataset = $d ORDER BY t.request_id",
            {"d": dataset},
        )


def timeless(report: ProfileReport) -> ProfileReport:
    return replace(report, tokenize_s=0.0, sql_s=0.0)


def pid_noting_encoder(tokenizer: Any, prompts: Any, messages_json: Any, **kw: Any) -> Any:
    """encode_batch, noting the process it ran in (a file per pid under $PID_DIR)."""
    (Path(os.environ[PID_DIR]) / str(os.getpid())).touch()
    return encode_batch(tokenizer, prompts, messages_json, **kw)


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    folder = tmp_path_factory.mktemp("parallel")
    store = Store.open(folder / "store")
    ingest_file(store, write_demo_dataset(folder / "demo.jsonl"), "demo")
    return store


def test_worker_processes_write_the_rows_of_one_process(
    demo_store, profile_model_dir, tmp_path, monkeypatch
):
    one = profile_dataset(
        demo_store, "demo", profile_model_dir, tokenize=TokenizeOptions(workers=1)
    )
    expected = token_rows(demo_store)
    # the hook bench/scale.py uses (the stage's encode_batch replaced) must reach the workers
    monkeypatch.setenv(PID_DIR, str(tmp_path))
    monkeypatch.setattr(profile_stage, "encode_batch", pid_noting_encoder)
    # small batches: many of them in flight
    two = profile_dataset(
        demo_store, "demo", profile_model_dir, batch_size=16, tokenize=ON_TWO_WORKERS
    )
    pids = {int(path.name) for path in tmp_path.iterdir()}
    assert pids and os.getpid() not in pids  # tokenized in worker processes only
    assert token_rows(demo_store) == expected
    assert timeless(two) == timeless(one)
    chat = [row for row in expected if row["chat"]]
    assert len(chat) >= 100 and len(expected) - len(chat) >= 100  # both kinds of rows
    with demo_store.connect(views=False) as con:
        [n] = con.execute("SELECT count(*) FROM prompts WHERE dataset = 'demo'").fetchone() or [0]
    assert len(expected) == n == one.n_prompts


def test_a_template_failing_in_a_worker_names_the_rows(demo_store, profile_model_dir, tmp_path):
    picky = tmp_path / "picky-model"
    shutil.copytree(profile_model_dir, picky)
    (picky / "chat_template.jinja").write_text(
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}{% endfor %}"
    )
    with pytest.raises(ChatTemplateError) as local:
        profile_dataset(demo_store, "demo", picky, tokenize=TokenizeOptions(workers=1))
    with pytest.raises(ChatTemplateError) as pooled:
        profile_dataset(demo_store, "demo", picky, tokenize=ON_TWO_WORKERS)
    assert "System role not supported" in str(pooled.value)
    assert str(pooled.value) == str(local.value) and pooled.value.rows == local.value.rows


def test_in_order_hands_out_at_most_ahead_calls():
    submitted: list[int] = []
    taken: list[int] = []

    def calls():
        for i in range(10):
            assert len(submitted) - len(taken) < 3, "a fourth call before one was taken"
            submitted.append(i)
            yield i

    for value in in_order(calls(), 3, lambda i: i * i):
        taken.append(value)
    assert taken == [i * i for i in range(10)]


def test_small_snapshots_start_fewer_workers():
    options = TokenizeOptions(workers=4, min_prompts_per_worker=10_000)
    assert [local_workers(options, n) for n in (0, 330, 10_001, 25_000, 1_000_000)] == [
        1,
        1,
        2,
        3,
        4,
    ]
    assert local_workers(TokenizeOptions(), 10**9) == len(os.sched_getaffinity(0))
