"""Results out of the store: one file per export, rows in input order, streamed.

Invariant: an export holds one row per answered request of the dataset's newest snapshot,
in the input's order (prompts.line_no): the latest answer of each (the `latest_results`
view: a completion over an error row, then the newest run), or the answers of one run. Rows
are read and written in batches of `batch_rows` (memory bounded by the batch, not the
dataset), into a hidden temporary file renamed into place at the end, so a killed export
leaves no half file under the name asked for. Requests without an answer yet are left out
(the count says how many answered).

Two queries, each under DuckDB's cap (spilling beyond it): the first picks each request's row
on the key columns and writes the picks with their input line to a Parquet file in the spill
folder; the second joins the picks to the wide result columns and sorts them by input line.
In one query the ranking, both joins and the sort held memory at once, and 10M answers of a
real store (2,442 parts) ran out of the 1 GiB cap.

`out` may be a URI (s3://bucket/key, gs://..., any scheme blend/store/uris.py opens): the
target is checked first (the bucket exists, the key is not a folder, access is granted), the
file is written into the store's tmp/ folder as above, then uploaded through pyarrow's
filesystem once the database is closed; an object store shows the object only when its
upload completes, so a failed export leaves no half object either.

Formats: `openai-batch` is the OpenAI Batch API's output file (one JSON object per line:
`id`, `custom_id`, `response` with `status_code`, `request_id` and a chat.completion or
text_completion `body`, and `error`, set instead of the response for an error row);
`jsonl`, `parquet` and `csv` hold the result columns (lineage included) as they are.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from blend.store import sql
from blend.store.database import Store, connect_read_only, fetch_dicts, glob_escape
from blend.store.memory import memory_capped
from blend.store.uris import (
    Remote,
    UriError,
    failure,
    file_info,
    is_remote_failure,
    open_uri,
    uri_scheme,
)

BATCH_ROWS = 8192  # rows read from DuckDB and written at a time
# DuckDB's memory for each of the export's two queries (they rank, join and sort the dataset's
# answers, spilling beyond this): the whole `blend export` peaked at 1.0-1.1 GiB for 1M answers
# (bench/export_scale.py) and 1.42 GiB for 10M answers of a real store (bench/scale.py)
EXPORT_MEMORY_BYTES = 1 << 30


class ExportFormat(StrEnum):
    OPENAI_BATCH = "openai-batch"  # the OpenAI Batch API's output JSONL
    JSONL = "jsonl"  # the result columns, one JSON object per line
    PARQUET = "parquet"
    CSV = "csv"


class ExportError(ValueError):
    """Nothing to export as asked (unknown dataset, a run that wrote nothing for it)."""


@dataclass(frozen=True, slots=True)
class ExportReport:
    path: Path | str  # the file written, or the URI uploaded to (without credentials)
    format: ExportFormat
    n_rows: int  # answered requests written
    n_errors: int  # of which error rows


def export_results(
    store: Store,
    dataset: str,
    out: str | Path,
    fmt: ExportFormat,
    *,
    run_id: str | None = None,
    batch_rows: int = BATCH_ROWS,
) -> ExportReport:
    """Write the dataset's answers to `out`, a path or a URI as text (module invariant);
    `run_id`: that run's only."""
    remote = _remote_target(out) if isinstance(out, str) and uri_scheme(out) else None
    if remote is None:
        out = Path(out)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    else:
        store.tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = store.tmp_dir / f"export-{uuid.uuid4().hex}.tmp"
    try:
        n_rows, n_errors = _export(store, dataset, tmp, fmt, run_id, batch_rows)
        if remote is None:
            os.replace(tmp, out)
            return ExportReport(out, fmt, n_rows, n_errors)
        _upload(tmp, remote)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportReport(remote.shown, fmt, n_rows, n_errors)


def _export(
    store: Store,
    dataset: str,
    tmp: Path,
    fmt: ExportFormat,
    run_id: str | None,
    batch_rows: int,
) -> tuple[int, int]:
    """Write the answers to `tmp`; (rows, error rows). The picks file lives in the spill
    folder, removed with it."""
    spill = store.tmp_dir / f"export-spill-{uuid.uuid4().hex}"
    with (
        connect_read_only(store) as con,
        spilling_to(con, spill),
        memory_capped(con, EXPORT_MEMORY_BYTES),
    ):
        counts = fetch_dicts(
            con, sql.load("export/dataset_runs"), {"dataset": dataset, "run_id": run_id or ""}
        )[0]
        if counts["n_prompts"] == 0:
            raise ExportError(f"no dataset {dataset!r} in {store.root}: ingest it first")
        if run_id is not None and counts["n_run_rows"] == 0:
            raise ExportError(f"run {run_id!r} wrote no results for dataset {dataset!r}")
        picks = spill / "picks.parquet"
        name, params = "export/latest_picks", {"dataset": dataset, "picks": str(picks)}
        if run_id is not None:
            name, params = "export/run_picks", {**params, "run_id": run_id}
        con.execute(sql.load(name), params)
        # read_parquet globs its path: the store's own glob characters are escaped
        params = {"dataset": dataset, "picks": glob_escape(str(picks))}
        reader = con.sql(sql.load("export/picked_answers"), params=params)
        return _write(reader.to_arrow_reader(batch_rows), tmp, fmt)


@contextmanager
def spilling_to(con: duckdb.DuckDBPyConnection, folder: Path) -> Iterator[None]:
    """DuckDB spills into `folder` (made now, removed after the block with what it holds)."""
    folder.mkdir(parents=True)
    try:
        con.execute(sql.load("export/set_temp_directory"), {"dir": str(folder)})
        yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _remote_target(uri: str) -> Remote:
    """The object to upload to, checked before any work: its filesystem opens, its bucket
    exists, it is not a folder, and asking is allowed; else ExportError."""
    try:
        remote = open_uri(uri)
        info = file_info(remote)
        bucket = _bucket(remote)
        if bucket is not None and file_info(bucket).type == pafs.FileType.NotFound:
            raise ExportError(f"{remote.shown}: no such bucket {bucket.path!r}")
    except UriError as error:
        raise ExportError(str(error)) from None
    if info.type == pafs.FileType.Directory:
        raise ExportError(f"{remote.shown}: a folder (a prefix of objects): name the file")
    return remote


def _bucket(remote: Remote) -> Remote | None:
    """The bucket of an S3 or GCS object, as a Remote (None for other filesystems)."""
    if remote.filesystem.type_name not in ("s3", "gcs"):
        return None
    bucket = remote.path.split("/", 1)[0]
    return Remote(remote.uri, remote.shown, remote.scheme, remote.filesystem, bucket)


def _upload(path: Path, remote: Remote) -> None:
    """Copy the local file to the remote object (streamed by pyarrow, in C++)."""
    try:
        pafs.copy_files(
            str(path),
            remote.path,
            source_filesystem=pafs.LocalFileSystem(),
            destination_filesystem=remote.filesystem,
        )
    except Exception as error:
        if not is_remote_failure(error):
            raise
        raise ExportError(f"{remote.shown}: {failure(remote.scheme, error, 'write')}") from None


def _write(batches: Iterable[pa.RecordBatch], path: Path, fmt: ExportFormat) -> tuple[int, int]:
    n_rows = n_errors = 0
    if fmt in (ExportFormat.OPENAI_BATCH, ExportFormat.JSONL):
        with path.open("wb") as f:
            for batch in batches:
                for row in batch.to_pylist():
                    n_rows += 1
                    n_errors += row["error"] is not None
                    if fmt is ExportFormat.OPENAI_BATCH:
                        line = openai_batch_line(row)
                    else:
                        line = {k: v for k, v in row.items() if k != "is_chat"}
                    f.write(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))
        return n_rows, n_errors
    writer: pq.ParquetWriter | pa_csv.CSVWriter | None = None
    try:
        for batch in batches:
            table = pa.Table.from_batches([batch]).drop_columns(["is_chat"])
            if writer is None:
                writer = (
                    pq.ParquetWriter(path, table.schema)
                    if fmt is ExportFormat.PARQUET
                    else pa_csv.CSVWriter(path, table.schema)
                )
            writer.write_table(table)
            n_rows += table.num_rows
            n_errors += table.num_rows - table["error"].null_count
    finally:
        if writer is not None:
            writer.close()
    if writer is None:  # no answer yet: an empty file with the columns
        path.touch()
    return n_rows, n_errors


def openai_batch_line(row: dict[str, Any]) -> dict[str, Any]:
    """One line of an OpenAI Batch API output file for a result row."""
    custom_id = row["request_id"]
    line_id = f"batch_req_{row['run_id']}_{custom_id}"
    if row["error"] is not None:
        return {
            "id": line_id,
            "custom_id": custom_id,
            "response": None,
            "error": {"code": "blend_error", "message": row["error"]},
        }
    usage = {
        "prompt_tokens": row["n_prompt_tokens"],
        "completion_tokens": row["n_output_tokens"],
        "total_tokens": row["n_prompt_tokens"] + row["n_output_tokens"],
        "prompt_tokens_details": {"cached_tokens": row["n_cached_tokens"]},
    }
    created = int(row["finished_at"].timestamp()) if row["finished_at"] else None
    choice: dict[str, Any] = {"index": 0, "finish_reason": row["finish_reason"]}
    if row["is_chat"]:  # the chat/completions shape, else the completions one
        kind, prefix = "chat.completion", "chatcmpl"
        choice["message"] = {"role": "assistant", "content": row["output_text"]}
    else:
        kind, prefix = "text_completion", "cmpl"
        choice["text"] = row["output_text"]
    body = {
        "id": f"{prefix}-{row['run_id']}-{custom_id}",
        "object": kind,
        "created": created,
        "model": row["model"],
        "choices": [choice],
        "usage": usage,
    }
    return {
        "id": line_id,
        "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": row["run_id"], "body": body},
        "error": None,
    }
