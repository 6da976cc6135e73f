"""The profile's tokenization on a local Ray cluster (2 CPUs): the same prompt_tokens rows and
the same profile as on one machine (the demo data, chat rows included), tokenized by the
actors; a template failing in an actor raises what the local path raises."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from blend.demo.dataset import write_demo_dataset
from blend.engines.tokenize import ChatTemplateError
from blend.ingest import ingest_file
from blend.profile.stage import profile_dataset
from blend.profile.token_batches import TokenizeOptions
from blend.store.database import Store, fetch_dicts

ON_RAY = TokenizeOptions(ray=True)


def token_rows(store: Store) -> list[dict[str, Any]]:
    with store.connect(views=False) as con:
        return fetch_dicts(
            con,
            "SELECT t.request_id, t.n_prompt_tokens, t.token_ids, "
            "p.messages_json IS NOT NULL AS chat "
            "FROM prompt_tokens t JOIN prompts p USING (dataset, snapshot, request_id) "
            "WHERE t.dataset = 'demo' ORDER BY t.request_id",
        )


@pytest.fixture
def demo_store(tmp_path: Path) -> Store:
    store = Store.open(tmp_path / "store")
    ingest_file(store, write_demo_dataset(tmp_path / "demo.jsonl"), "demo")
    return store


def test_ray_writes_the_rows_and_profile_of_one_machine(ray_cluster, demo_store, tiny_model):
    alone = profile_dataset(demo_store, "demo", tiny_model, tokenize=TokenizeOptions(workers=1))
    expected = token_rows(demo_store)
    with demo_store.connect(views=False) as con:
        con.execute("DELETE FROM prompt_tokens")  # nothing left over can pass for Ray's rows
    on_ray = profile_dataset(demo_store, "demo", tiny_model, batch_size=32, tokenize=ON_RAY)
    assert token_rows(demo_store) == expected
    assert replace(on_ray, tokenize_s=0, sql_s=0) == replace(alone, tokenize_s=0, sql_s=0)
    assert sum(row["chat"] for row in expected) >= 100 and len(expected) == alone.n_prompts
    # the actors are killed when the stage returns: the cluster's CPUs come back (Ray frees
    # a killed actor's resources shortly after the kill, not within it: polled, 30 s at most)
    deadline = time.monotonic() + 30.0
    while ray_cluster.available_resources().get("CPU") != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ray_cluster.available_resources().get("CPU") == 2


def test_a_template_failing_on_ray_raises_as_it_does_locally(
    ray_cluster, demo_store, tiny_model, tmp_path
):
    picky = tmp_path / "picky-model"
    shutil.copytree(tiny_model, picky)
    (picky / "chat_template.jinja").write_text(
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}{% endfor %}"
    )
    with pytest.raises(ChatTemplateError) as local:
        profile_dataset(demo_store, "demo", picky, tokenize=TokenizeOptions(workers=1))
    with pytest.raises(ChatTemplateError) as on_ray:
        profile_dataset(demo_store, "demo", picky, tokenize=ON_RAY)
    assert str(picky) in str(on_ray.value)  # the driver's folder, not the actor's copy
    assert str(on_ray.value) == str(local.value) and on_ray.value.rows == local.value.rows
