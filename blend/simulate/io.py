"""Read simulator workloads (Parquet or JSONL) and write planned orders (Parquet or CSV).

A workload row has `request_id`, `prompt_token_ids` (list of int) or `prompt` (text), and
`output_len` (true output length); an optional `max_tokens` is what planners may see.
Text prompts are tokenised as their UTF-8 bytes, one token per byte (ids 0-255): a
deterministic stand-in that keeps shared text prefixes shared; give `prompt_token_ids` made
with the model's tokenizer when token counts must be exact.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from blend.simulate.types import SimRequest


class WorkloadError(ValueError):
    """A workload file that cannot be read; the message names the file and the row."""


@dataclass(frozen=True, slots=True)
class Workload:
    requests: list[SimRequest]
    max_tokens: list[int | None]  # per request: the planner-visible limit, if the file has one


def byte_tokens(text: str) -> np.ndarray:
    """The UTF-8 bytes of `text` as token ids."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)


def load_workload(path: Path) -> Workload:
    """Read a workload file (.parquet or .jsonl/.json lines)."""
    if not path.is_file():
        raise WorkloadError(f"{path}: no such file")
    if path.suffix == ".parquet":
        rows = pq.read_table(path).to_pylist()
    elif path.suffix in (".jsonl", ".json", ".ndjson"):
        rows = _read_jsonl(path)
    else:
        raise WorkloadError(f"{path}: expected a .parquet or .jsonl file, got {path.suffix!r}")
    if not rows:
        raise WorkloadError(f"{path}: no requests")
    requests: list[SimRequest] = []
    limits: list[int | None] = []
    for line_no, row in enumerate(rows, start=1):
        request, limit = _parse_row(path, line_no, row)
        requests.append(request)
        limits.append(limit)
    return Workload(requests=requests, max_tokens=limits)


def within_context(workload: Workload, max_model_len: int | None) -> tuple[Workload, int]:
    """The workload without the requests whose prompt leaves no room for one output token
    within `max_model_len` (n + 1 > it: vLLM refuses them, no work), and how many those
    are; None: the workload as it is (a workload file knows no model length)."""
    if max_model_len is None:
        return workload, 0
    kept = [i for i, r in enumerate(workload.requests) if len(r.prompt_token_ids) < max_model_len]
    if not kept:
        raise WorkloadError(
            f"every request's prompt leaves no room for output within max_model_len "
            f"{max_model_len}: nothing to simulate"
        )
    inside = Workload([workload.requests[i] for i in kept], [workload.max_tokens[i] for i in kept])
    return inside, len(workload.requests) - len(kept)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise WorkloadError(f"{path} line {line_no}: not JSON ({exc})") from None
    return rows


def _parse_row(path: Path, line_no: int, row: dict[str, Any]) -> tuple[SimRequest, int | None]:
    where = f"{path} row {line_no}"
    if row.get("output_len") is None:
        raise WorkloadError(f"{where}: missing output_len (the true output length)")
    if row.get("prompt_token_ids") is not None:
        tokens = np.asarray(row["prompt_token_ids"], dtype=np.int64)
    elif isinstance(row.get("prompt"), str):
        tokens = byte_tokens(row["prompt"])
    else:
        raise WorkloadError(f"{where}: needs prompt_token_ids (list of int) or prompt (text)")
    request_id = str(row.get("request_id") or f"row-{line_no}")
    max_tokens = row.get("max_tokens")
    try:
        request = SimRequest(request_id, tokens, int(row["output_len"]))
    except ValueError as exc:
        raise WorkloadError(f"{where}: {exc}") from None
    return request, None if max_tokens is None else int(max_tokens)


def write_order(path: Path, request_ids: Sequence[str]) -> None:
    """Write the planned order (one `request_id` per row) as Parquet or CSV, atomically."""
    table = pa.table({"request_id": pa.array(list(request_ids), type=pa.string())})
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".parquet":
        pq.write_table(table, tmp)
    elif path.suffix == ".csv":
        pacsv.write_csv(table, tmp)
    else:
        raise WorkloadError(f"--plan-out {path}: expected a .parquet or .csv name")
    tmp.replace(path)
