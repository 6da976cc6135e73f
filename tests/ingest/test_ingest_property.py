"""Property: every non-blank input line ends as exactly one prompt row or one reject row."""

from __future__ import annotations

import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blend.ingest import IngestError, ingest_file
from blend.store.database import Store

MAX_LINE_BYTES = 120

# (is_valid, line) pairs
good_lines = st.builds(
    lambda key, value, text: (True, orjson.dumps({key: value, "prompt": text})),
    st.sampled_from(["custom_id", "id"]),
    st.sampled_from(["a", "b", 1, 2]),  # few ids: duplicates happen often
    st.text(min_size=1, max_size=20).filter(str.strip),
)
anonymous_lines = st.builds(  # repeated prompts without ids: derived ids get -2, -3, ...
    lambda text: (True, orjson.dumps({"prompt": text})), st.sampled_from(["x", "y"])
)
bad_lines = st.sampled_from(
    [
        b"not json",
        b"[1, 2]",
        b'{"prompt": ""}',
        b'{"prompt": "a", "temperature": "hot"}',
        b'{"prompt": "a", "max_tokens": 0}',
        b'{"custom_id": "a"}',
        b'{"prompt": "caf\xe9"}',
        b'{"prompt": "' + b"x" * MAX_LINE_BYTES + b'"}',
    ]
).map(lambda line: (False, line))
blank_lines = st.sampled_from([b"", b"  ", b"\t\r"]).map(lambda line: (False, line))
lines = st.lists(st.one_of(good_lines, anonymous_lines, bad_lines, blank_lines), max_size=30)


@settings(max_examples=40, deadline=None)
@given(lines, st.sampled_from([1, 3, 50_000]))
def test_every_non_blank_line_is_one_prompt_or_one_reject(
    input_lines: list[tuple[bool, bytes]], batch_rows: int
) -> None:
    non_blank = [n for n, (_, line) in enumerate(input_lines, 1) if line.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.jsonl"
        path.write_bytes(b"".join(line + b"\n" for _, line in input_lines))
        store = Store.open(Path(tmp) / "store")
        if not any(valid for valid, _ in input_lines):
            with pytest.raises(IngestError):
                ingest_file(store, path, "p", max_line_bytes=MAX_LINE_BYTES)
            return
        report = ingest_file(store, path, "p", max_line_bytes=MAX_LINE_BYTES, batch_rows=batch_rows)
        with store.connect() as con:
            prompt_rows = con.execute("SELECT line_no, request_id FROM prompts").fetchall()
            reject_lines = [r[0] for r in con.execute("SELECT line_no FROM rejects").fetchall()]
    prompt_lines = [line_no for line_no, _ in prompt_rows]
    assert sorted(prompt_lines + reject_lines) == non_blank
    assert len({request_id for _, request_id in prompt_rows}) == len(prompt_rows)
    assert (report.n_rows, report.n_rejected) == (len(prompt_lines), len(reject_lines))
    assert sum(report.reject_reasons.values()) == report.n_rejected
