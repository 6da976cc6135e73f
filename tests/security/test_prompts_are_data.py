"""Prompts are data: only the model's own chat template renders them, in transformers' jinja2
sandbox. A template that reaches for Python internals is refused, one that fails on some
prompts fails the profile stage naming the model folder and those prompts (nothing is
stored: the stage is all or nothing, see docs/reliability.md), over-length prompts are
reported by request id, and a model folder without a tokenizer is named in the error."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blend.cli import app
from blend.engines.tokenize import ChatTemplateError
from blend.ingest import ingest_file
from blend.profile.stage import profile_dataset
from blend.store.database import Store, fetch_dicts
from tests.support.attacks import write_jsonl
from tests.support.cli_text import flat

runner = CliRunner()
SYSTEM_REFUSING = (
    "{% for m in messages %}{% if m['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def model_with(tiny_model: Path, folder: Path, template: str | None = None, **config: int) -> Path:
    """A copy of the tiny model with another chat template and config values."""
    shutil.copytree(tiny_model, folder)
    if template is not None:
        (folder / "chat_template.jinja").write_text(template)
    if config:
        path = folder / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    return folder


def chat_store(tmp_path: Path) -> Store:
    store = Store.open(tmp_path / "store")
    user = [{"role": "user", "content": "hello"}]
    system = [{"role": "system", "content": "be brief"}, *user]
    records = [
        {"id": "ok-1", "messages": user},
        {"id": "sys-1", "messages": system},
        {"id": "ok-2", "messages": [*user, {"role": "assistant", "content": "hi"}, *user]},
        {"id": "sys-2", "messages": system},
    ]
    ingest_file(store, write_jsonl(tmp_path / "chat.jsonl", records), "chat")
    return store


@pytest.mark.parametrize(
    "template",
    [
        "{{ cycler.__init__.__globals__.os.system('touch {sentinel}') }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{% for m in messages %}{{ m.__class__.__mro__ }}{% endfor %}",
        "{{ joiner.__init__.__globals__ }}",
    ],
)
def test_a_template_reaching_for_python_internals_is_refused(
    tmp_path: Path, tiny_model: Path, template: str
) -> None:
    sentinel = tmp_path / "pwned"
    evil = model_with(
        tiny_model, tmp_path / "evil-model", template.replace("{sentinel}", str(sentinel))
    )
    store = chat_store(tmp_path)
    with pytest.raises(ChatTemplateError, match="SecurityError") as info:
        profile_dataset(store, "chat", evil)
    assert str(evil) in str(info.value) and "do not trust this model folder" in str(info.value)
    assert not sentinel.exists()
    result = runner.invoke(
        app, ["profile", "--dataset", "chat", "--model", str(evil), "--store", str(store.root)]
    )
    assert result.exit_code == 1, result.output
    output = flat(result.output)
    assert "profile failed" in output and "evil-model" in output and "unsafe" in output


def test_a_template_failing_on_some_prompts_fails_the_stage_naming_them(
    tmp_path: Path, tiny_model: Path
) -> None:
    store = chat_store(tmp_path)
    good = profile_dataset(store, "chat", tiny_model)
    picky = model_with(tiny_model, tmp_path / "picky-model", SYSTEM_REFUSING)
    with pytest.raises(ChatTemplateError) as info:
        profile_dataset(store, "chat", picky)
    message = str(info.value)
    assert str(picky) in message and "System role not supported" in message
    assert "2 of 4 prompts" in message
    assert info.value.rows == ("sys-1", "sys-2")
    with store.connect(views=False) as con:
        profiles = fetch_dicts(con, "SELECT tokenizer_sha256 FROM profiles")
        token_rows = fetch_dicts(con, "SELECT DISTINCT tokenizer_sha256 FROM prompt_tokens")
    # all or nothing: the failed stage stored nothing, the earlier profile is intact
    assert profiles == [{"tokenizer_sha256": good.tokenizer_sha256}]
    assert token_rows == profiles


def test_over_length_prompts_are_reported_by_request_id(tmp_path: Path, tiny_model: Path) -> None:
    short = model_with(tiny_model, tmp_path / "short-model", max_position_embeddings=16)
    store = Store.open(tmp_path / "store")
    records = [
        {"id": "fits", "prompt": "hi"},
        {"id": "too-long", "prompt": "a much longer prompt " * 20},
    ]
    ingest_file(store, write_jsonl(tmp_path / "p.jsonl", records), "p")
    report = profile_dataset(store, "p", short)
    assert report.n_over_length == 1 and report.over_length_ids == ("too-long",)
    result = runner.invoke(
        app, ["profile", "--dataset", "p", "--model", str(short), "--store", str(store.root)]
    )
    assert result.exit_code == 0, result.output
    output = flat(result.output)
    assert "1 prompts leave no room for output within max_model_len 16" in output
    assert "too-long" in output and "not sent to the engine" in output


def test_a_model_folder_without_a_tokenizer_is_named(tmp_path: Path, tiny_model: Path) -> None:
    bare = tmp_path / "bare-model"
    bare.mkdir()
    shutil.copy(tiny_model / "config.json", bare)
    store = chat_store(tmp_path)
    with pytest.raises(FileNotFoundError, match=re.escape(str(bare))):
        profile_dataset(store, "chat", bare)
    result = runner.invoke(
        app, ["profile", "--dataset", "chat", "--model", str(bare), "--store", str(store.root)]
    )
    assert result.exit_code == 1
    output = flat(result.output)
    assert (
        "profile failed" in output and "No tokenizer.json in" in output and "bare-model" in output
    )
