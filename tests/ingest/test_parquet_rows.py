"""Parquet input under the per-row size limit: oversize rows become rejects, read in bounded
memory (a tiny zstd file can hold a 300-million-character prompt)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from blend.ingest import ingest_file, parquet
from blend.ingest.records import RAW_LIMIT_BYTES
from blend.store.database import Store
from tests.support.children import REPO

Query = Callable[..., list[tuple[Any, ...]]]
LIMIT = 1000  # max_line_bytes of these tests (bytes)
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])


def test_an_oversize_row_is_rejected_and_the_others_ingested(
    store: Store, query: Query, tmp_path: Path
) -> None:
    path = tmp_path / "in.parquet"
    prompts = ["small one", "é" * 600, "small three"]  # the middle one: 1,200 bytes of UTF-8
    pq.write_table(pa.table({"custom_id": ["a", "b", "c"], "prompt": prompts}), path)
    report = ingest_file(store, path, "pq", max_line_bytes=LIMIT)
    assert (report.n_rows, report.reject_reasons) == (2, {"line too long": 1})
    assert query("SELECT request_id FROM prompts ORDER BY line_no") == [("a",), ("c",)]
    [(line, reason, raw)] = query("SELECT line_no, reason, raw FROM rejects")
    assert (line, reason) == (2, "line too long: row of 1201 bytes > max_line_bytes (1000)")
    assert json.loads(raw) == {"custom_id": "b", "prompt": "é" * 600}  # under 4 KiB: whole


def test_messages_and_every_text_column_count_toward_the_row(
    store: Store, query: Query, tmp_path: Path
) -> None:
    path = tmp_path / "chat.parquet"
    long_turn = {"role": "user", "content": "x" * 600}
    table = pa.table(
        {
            "custom_id": ["ok", "two-turns", "long-id" + "i" * 995],
            "messages": pa.array(
                [[long_turn], [long_turn, long_turn], [{"role": "user", "content": "hi"}]],
                pa.list_(MESSAGE),
            ),
        }
    )
    pq.write_table(table, path)
    ingest_file(store, path, "chat", max_line_bytes=LIMIT)
    assert query("SELECT line_no, reason FROM rejects ORDER BY line_no") == [
        (2, "line too long: row of 1217 bytes > max_line_bytes (1000)"),  # 9 + 2 x (4 + 600)
        (3, "line too long: row of 1008 bytes > max_line_bytes (1000)"),  # 1002 + 4 + 2
    ]


def test_a_one_row_group_over_the_limit_is_rejected_without_reading_it(
    store: Store, query: Query, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "groups.parquet"
    big = "y" * (LIMIT + 2 * parquet.CHUNK_OVERHEAD_BYTES + 1)  # over limit + overhead
    table = pa.table({"custom_id": ["a", "big", "c"], "prompt": ["first", big, "third"]})
    pq.write_table(table, path, row_group_size=1, compression="zstd")
    read_groups: list[int] = []
    iter_batches = pq.ParquetFile.iter_batches

    def recording(self: pq.ParquetFile, *args: Any, **kwargs: Any) -> Any:
        read_groups.extend(kwargs["row_groups"])
        return iter_batches(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", recording)
    report = ingest_file(store, path, "groups", max_line_bytes=LIMIT)
    assert report.n_rows == 2
    assert read_groups == [0, 2]  # the big row's group was never decompressed
    [(line, reason, raw)] = query("SELECT line_no, reason, raw FROM rejects")
    assert line == 2
    assert reason.startswith("line too long: row of ~")
    assert reason.endswith("bytes (file metadata; not read) > max_line_bytes (1000)")
    shown = json.loads(raw)  # the small columns read, the big one named by its size
    assert shown["custom_id"] == "big"
    assert shown["prompt"].endswith("bytes, not read)")


def test_the_reject_keeps_a_cut_preview_not_the_row(
    store: Store, query: Query, tmp_path: Path
) -> None:
    path = tmp_path / "long.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "prompt": ["ok", "z" * 50_000]}), path)
    ingest_file(store, path, "long", max_line_bytes=LIMIT)
    [(raw,)] = query("SELECT raw FROM rejects")
    assert len(raw.encode()) <= RAW_LIMIT_BYTES
    assert raw.startswith('{"id":"b","prompt":"zzz')


def test_batches_are_sized_by_bytes_and_rows_read_back_in_any_order(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    n = 50
    prompts = [f"{i}:" + "w" * 40_000 for i in range(n)]  # ~2 MB a group of 50 rows
    pq.write_table(pa.table({"id": list(range(n)), "prompt": prompts}), path, row_group_size=20)
    with parquet.open_parquet(path) as opened:
        groups = parquet.row_groups(opened)
    assert [g.num_rows for g in groups] == [20, 20, 10]
    assert groups[0].batch_rows() == parquet.BATCH_BYTES // (groups[0].n_bytes // 20)
    rows = parquet.ParquetRows(path)
    try:
        for i in [0, 1, 19, 20, 45, 3, 49, 21]:  # forward, across groups, and back
            assert rows.row(i) == {"id": i, "prompt": prompts[i]}
    finally:
        rows.close()


def test_value_bytes_sums_nested_text_per_row() -> None:
    column = pa.array(
        [[{"role": "ab", "content": "cde"}], None, [], [None, {"role": None, "content": "é"}]],
        pa.list_(MESSAGE),
    )
    assert parquet.value_bytes(column).tolist() == [5, 0, 0, 2]
    assert parquet.value_bytes(pa.array([1, 2])).tolist() == [0, 0]
    sizes = parquet.value_bytes(pa.array(["a", None, "é"]).dictionary_encode())
    assert np.array_equal(sizes, [1, 0, 2])


# --- the 300-million-character prompt (issue 16) ---------------------------------------------

BIG_CHARS = 300_000_000
_WRITE_BIG = f"""
import sys, pyarrow as pa, pyarrow.parquet as pq
table = pa.table({{"custom_id": ["big"], "prompt": ["a" * {BIG_CHARS}]}})
pq.write_table(table, sys.argv[1], compression="zstd")
"""
# The child reports its own peak (VmHWM of its address space): getrusage's ru_maxrss of a
# child started by vfork + exec would include the parent's (pytest's) peak.
_INGEST = """
import json, sys
from blend.ingest import IngestError, ingest_file
from blend.store.database import Store
try:
    report = ingest_file(Store.open(sys.argv[1]), sys.argv[2], sys.argv[3])
    out = {"rows": report.n_rows, "rejected": report.n_rejected}
except IngestError as error:
    out = {"error": str(error)}
status = open("/proc/self/status").read().split("VmHWM:")[1]
out["peak_kb"] = int(status.split()[0])
print(json.dumps(out))
"""


def ingest_in_child(*args: str) -> tuple[dict[str, Any], float]:
    """ingest_file(store, file, dataset) in a fresh process: its outcome and peak RSS (MB)."""
    done = subprocess.run(
        [sys.executable, "-c", _INGEST, *args],
        capture_output=True,
        check=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    outcome = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return outcome, outcome.pop("peak_kb") / 1024


def test_a_tiny_file_with_a_300m_char_prompt_stays_small_in_memory(tmp_path: Path) -> None:
    """The zstd file is ~10 KB; ingesting it used to peak at 1.6-2.2 GB, and every later ingest
    into the store at ~0.7 GB (DuckDB's checkpoint rewrote the stored 300 MB row)."""
    path = tmp_path / "bomb.parquet"
    subprocess.run([sys.executable, "-c", _WRITE_BIG, str(path)], check=True)
    assert path.stat().st_size < 100_000
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"prompt": "later"}\n')
    store = tmp_path / "store"
    bomb, bomb_mb = ingest_in_child(str(store), str(path), "bomb")
    assert "no valid prompts among 1 records: line too long: 1" in bomb["error"]
    later, later_mb = ingest_in_child(str(store), str(mixed), "later")
    assert later == {"rows": 1, "rejected": 0}
    # an ingest of a small file peaks at ~150 MB (the interpreter, pyarrow, DuckDB)
    assert bomb_mb < 400, bomb_mb
    assert later_mb < 400, later_mb
