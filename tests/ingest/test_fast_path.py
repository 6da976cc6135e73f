"""The vectorised JSONL path against the exact per-record path: identical tables, always."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from blend.ingest import IngestError, SourceFormat, fast, ingest_file
from blend.ingest.records import PromptRow
from blend.ingest.validate import Validator
from blend.store.database import Store
from tests.support.mixed_lines import write_mixed

BAD = Path(__file__).parents[1] / "data" / "bad"
JSONL_CASES = sorted(p.name for p in BAD.glob("*.json*") if p.name != "cases.json")

TABLES = {
    "prompts": "SELECT * FROM prompts ORDER BY dataset, snapshot, line_no",
    "rejects": "SELECT * FROM rejects ORDER BY dataset, snapshot, line_no",
    "datasets": "SELECT * EXCLUDE (ingested_at) FROM datasets ORDER BY dataset, snapshot",
}


def contents(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    with store.connect() as con:
        return {name: con.execute(sql).fetchall() for name, sql in TABLES.items()}


def ingest_both(path: Path, tmp_path: Path, **kwargs: Any) -> tuple[Any, Any]:
    """(vectorised, exact) store contents after ingesting `path`, or the IngestError texts."""
    outcomes = []
    for vectorised in (True, False):
        store = Store.open(tmp_path / f"store-{vectorised}")
        try:
            report = ingest_file(store, path, "d", vectorised=vectorised, **kwargs)
        except IngestError as error:
            outcomes.append(("error", str(error)))
            continue
        outcomes.append((report.n_rows, report.n_rejected, report.reject_reasons, contents(store)))
    return outcomes[0], outcomes[1]


def test_spaces_are_pythons_whitespace() -> None:
    assert "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()) == fast.SPACES


@pytest.mark.parametrize("name", JSONL_CASES)
def test_both_paths_agree_on_the_bad_corpus(name: str, tmp_path: Path) -> None:
    path = shutil.copy(BAD / name, tmp_path / name)
    vectorised, exact = ingest_both(Path(path), tmp_path)
    assert vectorised == exact


@pytest.mark.parametrize(
    ("seed", "block_bytes", "batch_rows", "max_line_bytes"),
    [
        (0, fast.BLOCK_BYTES, 50_000, 1 << 20),  # one block
        (1, 4096, 50_000, 1 << 20),  # many blocks, lines cut at block ends
        (2, 4096, 25, 1 << 20),  # blocks cut into parts of 25 lines
        (3, 1024, 100, 2000),  # long lines: over the limit, and longer than a block
    ],
)
def test_both_paths_agree_on_mixed_lines(
    seed: int,
    block_bytes: int,
    batch_rows: int,
    max_line_bytes: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = write_mixed(tmp_path / "mixed.jsonl", 3000, seed, long_line_bytes=2500)
    monkeypatch.setattr(fast, "BLOCK_BYTES", block_bytes)
    vectorised, exact = ingest_both(
        path, tmp_path, batch_rows=batch_rows, max_line_bytes=max_line_bytes
    )
    assert vectorised == exact
    n_rows, n_rejected, reasons, _ = vectorised
    assert n_rows > 1000 and n_rejected > 300  # the file did mix both
    assert len(reasons) > 8


def test_the_vectorised_path_decides_the_usual_lines(tmp_path: Path) -> None:
    path = write_mixed(tmp_path / "mixed.jsonl", 2000, seed=5)
    validator = Validator(SourceFormat.JSONL)
    decided = list(fast.decide_file(path, 1 << 20, 50_000, validator))
    n_accepted = sum(d.accepted.num_rows for d in decided)
    undecided = [r for d in decided for r in d.undecided]
    exact = [validator.validate(r) for r in undecided]
    n_accepted_there = sum(isinstance(row, PromptRow) for row in exact)
    # Most good lines are decided here; what is left is mostly what gets rejected.
    assert n_accepted > 3 * n_accepted_there
    assert len(undecided) - n_accepted_there > 400


def test_ids_switching_between_numbers_and_strings(tmp_path: Path) -> None:
    lines = [f'{{"id": {i}, "prompt": "p{i}"}}' for i in range(40)]
    lines += [f'{{"id": "s{i}", "prompt": "q{i}"}}' for i in range(40)]
    lines += [f'{{"id": {i}, "prompt": "r{i}"}}' for i in range(100, 140)]
    path = tmp_path / "ids.jsonl"
    path.write_text("\n".join(lines) + "\n")
    vectorised, exact = ingest_both(path, tmp_path)
    assert vectorised == exact
    assert vectorised[:2] == (120, 0)


def test_content_parts_go_to_the_validator_without_splitting_the_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines whose message content is a list of parts fail pyarrow's parse (content is a string
    column there): they are picked out of the block by one scan instead of halving it line by
    line, so a file of them costs a few parses per block, not one per line."""
    parts = '[{"type": "text", "text": "part %d"}]'
    lines = [
        f'{{"custom_id": "c{i}", "messages": [{{"role": "user", "content": {parts % i}}}]}}'
        if i % 3
        else f'{{"custom_id": "c{i}", "prompt": "plain {i}"}}'
        for i in range(3000)
    ]
    path = tmp_path / "parts.jsonl"
    path.write_text("\n".join(lines) + "\n")
    calls = []
    read_json = fast._read_json
    monkeypatch.setattr(fast, "_read_json", lambda *a: calls.append(1) or read_json(*a))
    vectorised, exact = ingest_both(path, tmp_path)
    assert vectorised == exact
    assert vectorised[:2] == (3000, 0)
    assert len(calls) <= 3  # one block: the failed parse, then the plain lines


# --- a crash during ingest ---------------------------------------------------------------------

_CHILD = """
import sys
import time
from blend.ingest import ingest_file
from blend.store.database import Store

def report(done, total):
    print(done, flush=True)
    time.sleep(0.05)  # the parent kills after the first report: never too late

ingest_file(Store.open(sys.argv[1]), sys.argv[2], "d", batch_rows=2000, progress=report)
"""


def test_a_killed_ingest_leaves_nothing_and_a_rerun_redoes_it(tmp_path: Path) -> None:
    path = write_mixed(tmp_path / "big.jsonl", 30_000, seed=7)
    killed_store = tmp_path / "killed"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(killed_store), str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    first_progress = child.stdout.readline()  # staging has begun
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert first_progress.strip(), "the child ended before reporting progress"
    assert child.returncode == -signal.SIGKILL
    store = Store.open(killed_store)
    assert contents(store) == {"prompts": [], "rejects": [], "datasets": []}
    rerun = ingest_file(store, path, "d")
    assert not rerun.reused
    clean = Store.open(tmp_path / "clean")
    ingest_file(clean, path, "d")
    assert contents(store) == contents(clean)
    assert len(contents(clean)["prompts"]) > 15_000


def test_non_finite_numbers_are_refused_on_both_paths(tmp_path: Path) -> None:
    # Arrow's JSON reader takes NaN / Inf / -Infinity as numbers; JSON does not.
    path = tmp_path / "non_finite.jsonl"
    lines = [
        '{"prompt": "a", "x": NaN}',
        '{"prompt": "b", "temperature": Infinity}',
        '{"prompt": "c", "max_tokens": -Inf}',
        '{"prompt": "NaN in the text is fine"}',
        '{"prompt": "d"}',
    ]
    path.write_text("\n".join(lines) + "\n")
    vectorised, exact = ingest_both(path, tmp_path)
    assert vectorised == exact
    n_rows, n_rejected, _, tables = vectorised
    assert (n_rows, n_rejected) == (2, 3)
    assert [row[5] for row in tables["prompts"]] == ["NaN in the text is fine", "d"]
