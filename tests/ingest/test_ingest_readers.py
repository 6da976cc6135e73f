"""Readers and format detection on tiny files: line numbers, offsets, bounded lines."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from blend.ingest.formats import SourceFormat, detect_format
from blend.ingest.lines import Line, bounded_lines
from blend.ingest.readers import RawReader, digest_file, read_csv, read_jsonl, read_parquet
from blend.ingest.records import IngestError, RawRecord, cut_raw


def test_bounded_lines_reports_oversize_lines_without_reading_them_whole() -> None:
    data = b"ab\r\n" + b"x" * 10 + b"\n\ncd"
    lines = list(bounded_lines(io.BytesIO(data), max_line_bytes=4))
    assert lines == [
        Line(1, 0, b"ab", 2),
        Line(2, 4, b"xxxxx", 10),  # only max_line_bytes + 1 bytes of it
        Line(3, 15, b"", 0),
        Line(4, 16, b"cd", 2),
    ]


def test_a_line_of_exactly_max_line_bytes_is_not_oversize() -> None:
    assert list(bounded_lines(io.BytesIO(b"abcd\nef"), max_line_bytes=4)) == [
        Line(1, 0, b"abcd", 4),
        Line(2, 5, b"ef", 2),
    ]


def test_jsonl_skips_blank_lines_and_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n\n   \n{"b": 2}\r\n')
    records = list(read_jsonl(path, max_line_bytes=100))
    assert records == [
        RawRecord(1, b'{"a": 1}', 3, 8, b'{"a": 1}'),
        RawRecord(4, b'{"b": 2}', 17, 8, b'{"b": 2}'),
    ]


def test_jsonl_oversize_line_is_a_reader_reject(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"prompt": "' + b"x" * 50 + b'"}\n{"prompt": "ok"}\n')
    first, second = read_jsonl(path, max_line_bytes=20)
    assert (first.line_no, first.problem) == (1, "line too long: 64 bytes > max_line_bytes (20)")
    assert first.raw == b'{"prompt": "' + b"x" * 9
    assert (second.line_no, second.data, second.problem) == (2, b'{"prompt": "ok"}', None)


def test_csv_line_numbers_are_where_the_record_starts(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text('id,prompt\r\n1,"two\nlines"\r\n\r\n2,plain\r\n,\r\n3,"x"\r\n', newline="")
    records = list(read_csv(path, max_line_bytes=100))
    assert [(r.line_no, r.data) for r in records] == [
        (2, {"id": "1", "prompt": "two\nlines"}),
        (5, {"id": "2", "prompt": "plain"}),
        (7, {"id": "3", "prompt": "x"}),
    ]
    with RawReader(path, SourceFormat.CSV) as reader:
        assert [reader.raw_at(r.offset, r.length) for r in records] == [
            b'1,"two\nlines"',
            b"2,plain",
            b'3,"x"',
        ]


def test_csv_rows_with_bad_bytes_or_field_counts_are_reader_rejects(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"prompt,max_tokens\ncaf\xe9,3\na,1,extra\nok,\n")
    records = list(read_csv(path, max_line_bytes=100))
    assert [(r.line_no, r.problem, r.raw) for r in records] == [
        (2, "invalid UTF-8: undecodable byte at character 3", b"caf\xe9,3"),
        (3, "malformed CSV: 3 fields but the header has 2", b"a,1,extra"),
        (4, None, b"ok,"),
    ]
    assert records[2].data == {"prompt": "ok"}


def test_csv_without_a_prompt_column_is_an_ingest_error(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("id,text\n1,hello\n")
    with pytest.raises(
        IngestError, match=r"no 'prompt' or 'messages' column \(columns: id, text\)"
    ):
        list(read_csv(path, max_line_bytes=100))


def test_parquet_rows_and_raw_read_back(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    table = pa.table({"id": [1, 2, 3], "prompt": ["a", None, "c"], "other": [0, 0, 0]})
    pq.write_table(table, path, row_group_size=2)
    records = list(read_parquet(path, max_line_bytes=1 << 20))
    assert [(r.line_no, r.data, r.offset) for r in records] == [
        (1, {"id": 1, "prompt": "a"}, 0),
        (2, {"id": 2}, 1),
        (3, {"id": 3, "prompt": "c"}, 2),
    ]
    with RawReader(path, SourceFormat.PARQUET) as reader:
        assert reader.raw_at(2, 0) == b'{"id":3,"prompt":"c"}'
        assert reader.raw_at(0, 0) == b'{"id":1,"prompt":"a"}'


def test_digest_counts_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"a\nb\nc")
    digest = digest_file(path)
    assert digest.n_lines == 3
    assert digest.sha256 == hashlib.sha256(b"a\nb\nc").hexdigest()


def test_cut_raw_never_splits_a_character() -> None:
    data = b"a" * 4095 + "é".encode() + b"z"
    assert cut_raw(data) == b"a" * 4095


@pytest.mark.parametrize(
    ("name", "content", "fmt"),
    [
        ("a.jsonl", b'{"prompt": "x"}\n', SourceFormat.JSONL),
        ("a.ndjson", b'{"prompt": "x"}\n', SourceFormat.JSONL),
        ("a.JSON", b'{"prompt": "x"}\n', SourceFormat.JSONL),
        (
            "a.jsonl",
            b'not json\n{"custom_id": "1", "url": "/v1/completions", "body": {}}\n',
            SourceFormat.OPENAI_BATCH,
        ),
        ("a.jsonl", b'{"body": {}, "method": "POST"}\n', SourceFormat.OPENAI_BATCH),
        ("a.jsonl", b'{"body": {}, "prompt": "x"}\n', SourceFormat.JSONL),
        ("a.csv", b"prompt\nx\n", SourceFormat.CSV),
        ("a.parquet", b"PAR1", SourceFormat.PARQUET),
    ],
)
def test_detect_format(tmp_path: Path, name: str, content: bytes, fmt: SourceFormat) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert detect_format(path, max_line_bytes=1 << 20) is fmt


def test_unknown_suffix_is_an_ingest_error(tmp_path: Path) -> None:
    path = tmp_path / "prompts.txt"
    path.write_text("hello\n")
    with pytest.raises(IngestError, match=r"prompts.txt: unknown input format '.txt'"):
        detect_format(path, max_line_bytes=1 << 20)
