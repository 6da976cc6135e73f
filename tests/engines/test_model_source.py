"""`--model` as a model folder or a Hugging Face id, found by huggingface_hub in a cache laid
out as the hub lays it out (tests/support/hub_cache.py), with the demo model's real files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from blend.cost.model import model_spec_from_dir
from blend.engines.model_source import (
    HubId,
    ModelNotFoundError,
    ModelSource,
    locate_model,
    model_source,
    parse_hub_id,
)
from blend.store.names import InvalidNameError
from tests.support.hub_cache import cache_model, use_hub_cache

MAIN = "0123456789abcdef0123456789abcdef01234567"
V2 = "fedcba9876543210fedcba9876543210fedcba98"
REPO = "acme/tiny-chat"


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return use_hub_cache(monkeypatch, tmp_path / "hf-home")


def test_an_id_resolves_to_its_cached_snapshot(cache: Path, tiny_model: Path) -> None:
    snapshot = cache_model(cache, REPO, tiny_model, MAIN)
    found = locate_model(REPO)
    assert found == ModelSource(snapshot.resolve(), REPO, MAIN)
    assert (found.path / "config.json").read_bytes() == (tiny_model / "config.json").read_bytes()


def test_a_revision_picks_that_snapshot(cache: Path, tiny_model: Path) -> None:
    cache_model(cache, REPO, tiny_model, MAIN, refs=("main",))
    cache_model(cache, REPO, tiny_model, V2, refs=("v2", "refs/pr/1"))
    assert locate_model(f"{REPO}@v2").revision == V2
    assert locate_model(f"{REPO}@refs/pr/1").revision == V2
    assert locate_model(f"{REPO}@{MAIN}").revision == MAIN  # a commit, no ref needed
    assert locate_model(f"{REPO}@main").revision == MAIN
    assert locate_model(REPO).path.name == MAIN  # no revision: the main branch
    assert locate_model(f"{REPO}@v2").path == cache / "models--acme--tiny-chat/snapshots" / V2


def test_an_id_not_in_the_cache_names_the_download_command(cache: Path) -> None:
    with pytest.raises(ModelNotFoundError) as missing:
        locate_model("acme/nope")
    said = str(missing.value)
    assert "\n" not in said
    assert "is not in the local cache" in said and str(cache) in said
    assert "`hf download acme/nope`" in said
    assert "HF_HUB_OFFLINE" not in said
    assert not (cache / "models--acme--nope").exists()  # nothing made while looking


def test_a_revision_not_in_the_cache_names_it(cache: Path, tiny_model: Path) -> None:
    cache_model(cache, REPO, tiny_model, MAIN)
    with pytest.raises(ModelNotFoundError, match=r"`hf download acme/tiny-chat --revision v9`"):
        locate_model(f"{REPO}@v9")


def test_offline_the_message_says_where_to_download(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_hub_cache(monkeypatch, tmp_path / "hf-home", offline=True)
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE is set"):
        locate_model("acme/nope")


def test_a_partial_snapshot_without_config_is_named(cache: Path, tiny_model: Path) -> None:
    partial = cache / "files"
    partial.mkdir()
    shutil.copy(tiny_model / "tokenizer.json", partial)  # `hf download org/name tokenizer.json`
    snapshot = cache_model(cache, REPO, partial, MAIN)
    with pytest.raises(ModelNotFoundError) as missing:
        locate_model(REPO)
    said = str(missing.value)
    assert f"the cached snapshot {snapshot.resolve()} has no config.json" in said
    assert "`hf download acme/tiny-chat`" in said


def test_a_folder_wins_over_an_id_and_keeps_its_name(
    cache: Path, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_model(cache, REPO, tiny_model, MAIN)
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_model, tmp_path / REPO)  # ./acme/tiny-chat, spelt as the id
    assert locate_model(REPO) == ModelSource(tmp_path / REPO, "tiny-chat", None)
    assert locate_model(str(tiny_model)) == ModelSource(tiny_model.resolve(), tiny_model.name, None)


def test_a_folder_without_config_is_not_a_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"is not a model folder \(no config.json\)$"):
        locate_model(str(tmp_path))


def test_a_folder_named_against_the_rule_is_refused(tmp_path: Path, tiny_model: Path) -> None:
    bad = tmp_path / "my model"
    shutil.copytree(tiny_model, bad)
    with pytest.raises(InvalidNameError, match="invalid model name 'my model'"):
        locate_model(str(bad))


@pytest.mark.parametrize("text", ["nope", "./nope", "/no/such/folder", "a/b/c", f"{REPO}@.."])
def test_neither_a_folder_nor_an_id(cache: Path, text: str) -> None:
    with pytest.raises(ModelNotFoundError, match=r"no such model folder \(.*org/name@revision\)"):
        locate_model(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", HubId("meta-llama/Llama-3.1-8B-Instruct", None)),
        ("org/name@v1.0", HubId("org/name", "v1.0")),
        ("org/name@refs/pr/3", HubId("org/name", "refs/pr/3")),
        ("llama", None),  # a bare name is a folder
        ("org/name@", None),
        ("org/name@-rf", None),
        ("org/name@a/../../x", None),
        ("org--x/name", None),  # huggingface_hub's rule
        ("d\u0435mo/name", None),  # blend's naming rule: ASCII only
        ("./name", None),
        ("/abs", None),
    ],
)
def test_what_is_an_id(text: str, expected: HubId | None) -> None:
    assert parse_hub_id(text) == expected


def test_a_snapshot_given_as_a_folder_is_its_id(cache: Path, tiny_model: Path) -> None:
    """Lineage reads the identity from the folder: every stage and engine agrees on it."""
    snapshot = cache_model(cache, REPO, tiny_model, MAIN)
    assert locate_model(str(snapshot)) == ModelSource(snapshot.resolve(), REPO, MAIN)
    assert model_source(snapshot) == ModelSource(snapshot, REPO, MAIN)
    assert model_source(tiny_model) == ModelSource(tiny_model, tiny_model.name, None)
    assert model_spec_from_dir(snapshot).name == REPO  # the cost layer's label agrees
    assert model_spec_from_dir(tiny_model).name == tiny_model.name


def test_describe_says_id_revision_and_folder(cache: Path, tiny_model: Path) -> None:
    snapshot = cache_model(cache, REPO, tiny_model, MAIN)
    assert locate_model(REPO).describe() == f"{REPO} at revision {MAIN} ({snapshot.resolve()})"
    assert locate_model(str(tiny_model)).describe() == str(tiny_model.resolve())
