"""A Hugging Face cache made locally: a model folder laid out exactly as huggingface_hub lays
out what it downloads, so the hub's own lookups find it (nothing is downloaded in tests).

    <cache>/models--org--name/blobs/<content hash>          the files' bytes, once each
    <cache>/models--org--name/snapshots/<commit>/<file>     relative links to the blobs
    <cache>/models--org--name/refs/<branch or tag>          the commit, without a newline
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from huggingface_hub import constants
from huggingface_hub.file_download import repo_folder_name


def cache_model(
    cache: Path, repo_id: str, model_dir: Path, commit: str, refs: Sequence[str] = ("main",)
) -> Path:
    """Put the files of `model_dir` into `cache` as `repo_id` at `commit`, which the branches
    or tags `refs` point to; the snapshot folder."""
    repo = cache / repo_folder_name(repo_id=repo_id, repo_type="model")
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for file in sorted(p for p in model_dir.iterdir() if p.is_file()):
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()  # the hub: git or LFS hash
        if not blob.exists():
            blob.write_bytes(data)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    for ref in refs:
        path = repo / "refs" / ref
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(commit)
    return snapshot


def use_hub_cache(monkeypatch: pytest.MonkeyPatch, home: Path, *, offline: bool = False) -> Path:
    """Make `home` the Hugging Face home (HF_HOME, and HF_HUB_CACHE = home/hub) of this test,
    and HF_HUB_OFFLINE `offline`; its hub cache. huggingface_hub reads the variables once, at
    import, so its constants are set too (a child process reads the variables)."""
    cache = home / "hub"
    cache.mkdir(parents=True, exist_ok=True)
    for name, value in (("HF_HOME", home), ("HF_HUB_CACHE", cache)):
        monkeypatch.setenv(name, str(value))
        monkeypatch.setattr(constants, name, str(value))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    return cache
