"""What the attack tests share: the attack names, a result row, a digest of a store's files."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

from blend.store.results import ResultRow

# Names that must never become a dataset name, run id, plan id or model name.
BAD_NAMES = {
    "traversal": "../../x",
    "traversal-inside": "a/../../b",
    "sql-injection": "x'; drop table prompts;--",
    "brief-example": "../../x'; drop table prompts;--",
    "absolute": "/etc/passwd",
    "windows-absolute": "C:\\Windows",
    "empty": "",
    "dots": "..",
    "double-dot-inside": "a..b",
    "hidden": ".hidden",
    "option-like": "-rf",
    "too-long": "a" * 201,
    "space": "my data",
    "cyrillic-lookalike": "d\u0435mo",  # Cyrillic e
    "fullwidth-slash": "a\uff0fb",
    "nul": "a\x00b",
    "newline": "demo\n",
    "percent-encoded": "%2e%2e%2fx",
    "glob": "results/*",
}

DATASET = "d"
RUN_ID = "run-20260101T000000Z-abc123"
PLAN_ID = "d-s1-dfs-0a1b2c3d"


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def result_row(request_id: str) -> ResultRow:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    return ResultRow(
        dataset=DATASET,
        snapshot=1,
        request_id=request_id,
        seq=0,
        prompt_sha256="p" * 64,
        output_text="an answer",
        output_token_ids=[1, 2],
        finish_reason="stop",
        n_prompt_tokens=3,
        n_output_tokens=2,
        n_cached_tokens=0,
        error=None,
        run_id=RUN_ID,
        plan_id=PLAN_ID,
        model="tiny",
        model_sha256="m" * 64,
        tokenizer_sha256="t" * 64,
        sampling_json="{}",
        engine="fake",
        engine_version="0",
        started_at=moment,
        finished_at=moment,
    )


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under root, by relative path: equal digests, unchanged store."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
