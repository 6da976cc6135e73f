"""The bad-input corpus (tests/data/bad/cases.json): every case ingests to exactly the rows,
rejects and errors its entry names, and records in = accepted + rejected."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from blend.ingest import IngestError, ingest_file
from blend.store.database import Store

# The shape of the `query` fixture (tests/ingest/conftest.py).
Query = Callable[..., list[tuple[Any, ...]]]
BAD = Path(__file__).parents[1] / "data" / "bad"
CASES: list[dict[str, Any]] = json.loads((BAD / "cases.json").read_text(encoding="utf-8"))
HUGE_PROMPT_CHARS = 10_000_000


def test_the_corpus_index_names_every_file_once() -> None:
    committed = {p.name for p in BAD.iterdir()} - {"cases.json", "README.md"}
    indexed = [case["file"] for case in CASES if "generate" not in case]
    assert sorted(indexed) == sorted(committed)
    assert len(CASES) >= 40


def case_file(case: dict[str, Any], tmp_path: Path) -> Path:
    """The input of `case`: the committed file, or one made here (too big, or not a file)."""
    kind = case.get("generate")
    path = tmp_path / case["file"]
    if kind is None:
        shutil.copy(BAD / case["file"], path)  # a copy: source_uri must not depend on checkout
    elif kind == "huge_prompt":
        with path.open("wb") as f:
            f.write(b'{"custom_id": "a", "prompt": "before"}\n')
            f.write(b'{"custom_id": "big", "prompt": "' + b"x" * HUGE_PROMPT_CHARS + b'"}\n')
            f.write(b'{"custom_id": "c", "prompt": "after"}\n')
    elif kind == "directory":
        path.mkdir()
    elif kind == "unreadable":
        if os.geteuid() == 0:
            pytest.skip("root reads any file: permissions cannot make it unreadable")
        path.write_text('{"prompt": "a"}\n')
        path.chmod(0)
    elif kind != "missing":
        raise AssertionError(f"unknown generate kind {kind!r}")
    return path


def jsonl_records(path: Path) -> int:
    """Records in a JSON Lines file by an independent count: its non-blank lines."""
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    return sum(1 for line in data.split(b"\n") if line.strip())


@pytest.mark.parametrize("case", CASES, ids=[case["file"] for case in CASES])
def test_bad_input_case(case: dict[str, Any], store: Store, query: Query, tmp_path: Path) -> None:
    path = case_file(case, tmp_path)
    if "error" in case:
        with pytest.raises(IngestError) as raised:
            ingest_file(store, path, "bad")
        message = str(raised.value)
        assert message.startswith(f"{path.resolve()}: "), message  # names the file
        assert case["error"] in message
        assert query("SELECT count(*) FROM datasets") == [(0,)]  # nothing published
        return
    report = ingest_file(store, path, "bad")
    accepted = [row[0] for row in query("SELECT line_no FROM prompts ORDER BY line_no")]
    rejected = query("SELECT line_no, reason, raw FROM rejects ORDER BY line_no")
    assert report.source_format == case["format"]
    assert accepted == case["accepted_lines"]
    assert [line for line, _, _ in rejected] == [line for line, _ in case["rejects"]]
    for (line, reason, raw), (_, fragment) in zip(rejected, case["rejects"], strict=True):
        assert fragment in reason, f"line {line}: {reason!r} lacks {fragment!r}"
        assert raw, f"line {line}: the reject keeps no source text"
    # Records in = accepted + rejected, each record exactly once.
    assert (report.n_rows, report.n_rejected) == (len(accepted), len(rejected))
    assert not set(accepted) & {line for line, _, _ in rejected}
    if case["format"] in ("jsonl", "openai-batch"):
        assert len(accepted) + len(rejected) == jsonl_records(path)
    # Every reject is traceable to the file: its snapshot's datasets row names the path.
    assert query("SELECT source_uri, n_rows, n_rejected FROM datasets") == [
        (str(path.resolve()), len(accepted), len(rejected))
    ]
