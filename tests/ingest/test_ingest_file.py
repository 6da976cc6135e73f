"""ingest_file end to end on tiny files and a real DuckDB store: rows in, exact rows out."""

from __future__ import annotations

import gc
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import blend.store.sql
from blend.ingest import IngestError, IngestReport, ingest_file
from blend.ingest.load import ingest_memory_bytes
from blend.store.database import Store

# The shapes of the `query` and `write_lines` fixtures (tests/ingest/conftest.py).
Query = Callable[..., list[tuple[Any, ...]]]
WriteLines = Callable[[str, list[str | bytes]], Path]

PROMPT_COLUMNS = "request_id, line_no, prompt, messages_json, sampling_json, max_tokens"


def prompts(query: Query, snapshot: int = 1) -> list[tuple[object, ...]]:
    return query(
        f"SELECT {PROMPT_COLUMNS} FROM prompts WHERE snapshot = ? ORDER BY line_no", [snapshot]
    )


def rejects(query: Query, snapshot: int = 1) -> list[tuple[object, ...]]:
    return query(
        "SELECT line_no, reason, raw FROM rejects WHERE snapshot = ? ORDER BY line_no", [snapshot]
    )


def derived_id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def test_jsonl_prompts_messages_and_report(
    store: Store, query: Query, write_lines: WriteLines
) -> None:
    path = write_lines(
        "in.jsonl",
        [
            '{"custom_id": "a", "prompt": "Hello", "max_tokens": 16, "temperature": 0.5}',
            '{"id": 7, "messages": [{"role": "user", "content": "Hi"}],'
            ' "sampling": {"top_p": 0.9}}',
            '{"prompt": "No id"}',
        ],
    )
    report = ingest_file(store, path, "demo")
    assert report == IngestReport(
        dataset="demo",
        snapshot=1,
        source_uri=str(path.resolve()),
        source_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        source_format="jsonl",
        n_rows=3,
        n_rejected=0,
        reused=False,
        reject_reasons={},
        seconds=report.seconds,
    )
    assert prompts(query) == [
        ("a", 1, "Hello", None, '{"max_tokens":16,"temperature":0.5}', 16),
        ("7", 2, None, '[{"content":"Hi","role":"user"}]', '{"max_tokens":256,"top_p":0.9}', 256),
        (derived_id("No id"), 3, "No id", None, '{"max_tokens":256}', 256),
    ]
    assert query("SELECT dataset, snapshot, source_format, n_rows, n_rejected FROM datasets") == [
        ("demo", 1, "jsonl", 3, 0)
    ]


def test_openai_batch_chat_and_completions(
    store: Store, query: Query, write_lines: WriteLines
) -> None:
    path = write_lines(
        "batch.jsonl",
        [
            json.dumps(
                {
                    "custom_id": "c1",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {
                        "model": "gpt-x",
                        "messages": [{"role": "user", "content": "Hi"}],
                        "max_completion_tokens": 32,
                    },
                }
            ),
            json.dumps(
                {
                    "custom_id": "c2",
                    "method": "POST",
                    "url": "/v1/completions",
                    "body": {"model": "gpt-x", "prompt": "Once upon", "max_tokens": 8},
                }
            ),
            json.dumps({"custom_id": "c3", "method": "POST", "url": "/v1/embeddings", "body": {}}),
        ],
    )
    report = ingest_file(store, path, "batch")
    assert (report.source_format, report.n_rows, report.n_rejected) == ("openai-batch", 2, 1)
    assert prompts(query) == [
        ("c1", 1, None, '[{"content":"Hi","role":"user"}]', '{"max_tokens":32}', 32),
        ("c2", 2, "Once upon", None, '{"max_tokens":8}', 8),
    ]
    assert [row[:2] for row in rejects(query)] == [
        (
            3,
            "unsupported url: '/v1/embeddings': "
            "supported are /v1/chat/completions, /v1/completions",
        )
    ]


def test_csv(store: Store, query: Query, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text(
        "custom_id,prompt,messages,max_tokens,temperature\n"
        "r1,Hello,,16,0.5\n"
        'r2,,"[{""role"": ""user"", ""content"": ""Hi""}]",,\n'
        'r3,"multi\nline",,,\n'
        "r4,Hi,,abc,\n",
        newline="",
    )
    report = ingest_file(store, path, "csv")
    assert (report.source_format, report.n_rows, report.n_rejected) == ("csv", 3, 1)
    assert prompts(query) == [
        ("r1", 2, "Hello", None, '{"max_tokens":16,"temperature":0.5}', 16),
        ("r2", 3, None, '[{"content":"Hi","role":"user"}]', '{"max_tokens":256}', 256),
        ("r3", 4, "multi\nline", None, '{"max_tokens":256}', 256),
    ]
    assert rejects(query) == [
        (
            6,
            "wrong type: max_tokens: Input should be a valid integer, "
            "unable to parse string as an integer",
            "r4,Hi,,abc,",
        )
    ]


def test_parquet_with_message_structs_and_json_strings(
    store: Store, query: Query, tmp_path: Path
) -> None:
    path = tmp_path / "in.parquet"
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    table = pa.table(
        {
            "custom_id": pa.array([1, 2, 3, 4]),
            "prompt": pa.array(["Hello", None, None, None]),
            "messages": pa.array(
                [None, [{"role": "user", "content": "Hi"}], None, None], pa.list_(message)
            ),
            "temperature": pa.array([None, 0.5, None, None]),
        }
    )
    pq.write_table(table, path)
    report = ingest_file(store, path, "pq")
    assert (report.source_format, report.n_rows, report.n_rejected) == ("parquet", 2, 2)
    assert prompts(query) == [
        ("1", 1, "Hello", None, '{"max_tokens":256}', 256),
        (
            "2",
            2,
            None,
            '[{"content":"Hi","role":"user"}]',
            '{"max_tokens":256,"temperature":0.5}',
            256,
        ),
    ]
    assert rejects(query) == [
        (3, "missing prompt: neither prompt nor messages given", '{"custom_id":3}'),
        (4, "missing prompt: neither prompt nor messages given", '{"custom_id":4}'),
    ]

    json_path = tmp_path / "json.parquet"
    pq.write_table(pa.table({"messages": ['[{"role": "user", "content": "Yo"}]']}), json_path)
    ingest_file(store, json_path, "pq-json")
    assert query("SELECT messages_json FROM prompts WHERE dataset = 'pq-json'") == [
        ('[{"content":"Yo","role":"user"}]',)
    ]


def test_each_reject_reason_lands_on_its_line(
    store: Store, query: Query, write_lines: WriteLines
) -> None:
    path = write_lines(
        "mixed.jsonl",
        [
            '{"prompt": "good"}',
            "not json",
            "[1]",
            '{"custom_id": "x"}',
            '{"prompt": " "}',
            '{"prompt": "a", "temperature": "hot"}',
            '{"prompt": "a", "max_tokens": 0}',
            b'{"prompt": "caf\xe9"}',
            '{"prompt": "' + "x" * 100 + '"}',
            "",
            '{"prompt": "last"}',
        ],
    )
    report = ingest_file(store, path, "mixed", max_line_bytes=64)
    assert [(line_no, reason.split(":")[0]) for line_no, reason, _ in rejects(query)] == [
        (2, "malformed JSON"),
        (3, "not a JSON object"),
        (4, "missing prompt"),
        (5, "empty prompt"),
        (6, "wrong type"),
        (7, "invalid value"),
        (8, "invalid UTF-8"),
        (9, "line too long"),
    ]
    assert rejects(query)[6:] == [
        (
            8,
            "invalid UTF-8: invalid continuation byte: byte 0xe9 at offset 15",
            '{"prompt": "caf\\xe9"}',
        ),
        (9, "line too long: 114 bytes > max_line_bytes (64)", '{"prompt": "' + "x" * 53),
    ]
    assert [row[:2] for row in prompts(query)] == [
        (derived_id("good"), 1),
        (derived_id("last"), 11),
    ]
    assert report.reject_reasons == {
        "empty prompt": 1,
        "invalid UTF-8": 1,
        "invalid value": 1,
        "line too long": 1,
        "malformed JSON": 1,
        "missing prompt": 1,
        "not a JSON object": 1,
        "wrong type": 1,
    }
    assert (report.n_rows, report.n_rejected) == (2, 8)


def test_blank_lines_are_skipped_silently(
    store: Store, query: Query, write_lines: WriteLines
) -> None:
    path = write_lines("in.jsonl", ["", '{"prompt": "a"}', "   ", "\t", '{"prompt": "b"}\r', ""])
    report = ingest_file(store, path, "blank")
    assert (report.n_rows, report.n_rejected) == (2, 0)
    assert [row[1:3] for row in prompts(query)] == [(2, "a"), (5, "b")]


def test_derived_ids_are_deterministic_with_suffixes(
    store: Store, query: Query, write_lines: WriteLines
) -> None:
    lines = [
        '{"prompt": "same"}',
        '{"prompt": "other"}',
        '{"prompt": "same"}',
        '{"prompt": "same"}',
    ]
    ingest_file(store, write_lines("a.jsonl", lines), "a")
    ingest_file(store, write_lines("b.jsonl", lines), "b")
    same, other = derived_id("same"), derived_id("other")
    expected = [(same, 1), (other, 2), (f"{same}-2", 3), (f"{same}-3", 4)]
    for dataset in ("a", "b"):
        rows = query(
            "SELECT request_id, line_no FROM prompts WHERE dataset = ? ORDER BY line_no", [dataset]
        )
        assert rows == expected


@pytest.mark.parametrize("batch_rows", [1, 50_000])
def test_duplicate_ids_keep_the_first_and_reject_the_rest(
    store: Store, query: Query, write_lines: WriteLines, batch_rows: int
) -> None:
    lines = [
        '{"custom_id": "a", "prompt": "one"}',
        '{"custom_id": "b", "prompt": "two"}',
        '{"custom_id": "a", "prompt": "three"}',
        '{"id": "a", "prompt": "four"}',
    ]
    report = ingest_file(store, write_lines("in.jsonl", lines), "dup", batch_rows=batch_rows)
    assert [row[:3] for row in prompts(query)] == [("a", 1, "one"), ("b", 2, "two")]
    assert rejects(query) == [
        (3, "duplicate id: a (first seen on line 1)", lines[2]),
        (4, "duplicate id: a (first seen on line 1)", lines[3]),
    ]
    assert (report.n_rows, report.n_rejected, report.reject_reasons) == (2, 2, {"duplicate id": 2})


def test_duplicate_ids_in_csv_and_parquet_keep_their_raw_text(
    store: Store, query: Query, tmp_path: Path
) -> None:
    csv_path = tmp_path / "in.csv"
    csv_path.write_text('id,prompt\n1,"a\nb"\n1,c\n', newline="")
    ingest_file(store, csv_path, "csv")
    pq_path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": ["x", "y", "x"], "prompt": ["a", "b", "c"]}), pq_path)
    ingest_file(store, pq_path, "pq", batch_rows=1)
    assert query("SELECT dataset, line_no, reason, raw FROM rejects ORDER BY dataset") == [
        ("csv", 4, "duplicate id: 1 (first seen on line 2)", "1,c"),
        ("pq", 3, "duplicate id: x (first seen on line 1)", '{"id":"x","prompt":"c"}'),
    ]


def test_reingesting_the_same_file_is_idempotent(
    store: Store, query: Query, write_lines: WriteLines
) -> None:
    path = write_lines("in.jsonl", ['{"prompt": "a"}', "bad", '{"custom_id": 1, "prompt": "b"}'])
    first = ingest_file(store, path, "d")
    again = ingest_file(store, path, "d")
    assert again == IngestReport(
        dataset="d",
        snapshot=1,
        source_uri=first.source_uri,
        source_sha256=first.source_sha256,
        source_format="jsonl",
        n_rows=2,
        n_rejected=1,
        reused=True,
        reject_reasons={"malformed JSON": 1},
        seconds=again.seconds,
    )
    assert first.reject_reasons == again.reject_reasons
    assert query("SELECT count(*) FROM prompts") == [(2,)]
    assert query("SELECT count(*) FROM rejects") == [(1,)]
    assert query("SELECT count(*) FROM datasets") == [(1,)]


def test_a_changed_file_makes_the_next_snapshot(
    store: Store, query: Query, write_lines: WriteLines
) -> None:
    path = write_lines("in.jsonl", ['{"prompt": "a"}'])
    assert ingest_file(store, path, "d").snapshot == 1
    write_lines("in.jsonl", ['{"prompt": "a"}', '{"prompt": "b"}'])
    report = ingest_file(store, path, "d")
    assert (report.snapshot, report.n_rows, report.reused) == (2, 2, False)
    assert query("SELECT snapshot, count(*) FROM prompts GROUP BY ALL ORDER BY snapshot") == [
        (1, 1),
        (2, 2),
    ]
    assert ingest_file(store, path, "other").snapshot == 1  # snapshots count per dataset


def test_nothing_is_visible_when_the_publishing_transaction_fails(
    store: Store, query: Query, write_lines: WriteLines, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_lines("in.jsonl", ['{"prompt": "a"}', "bad"])
    real_load = blend.store.sql.load

    def failing_load(name: str) -> str:
        if name == "ingest/insert_dataset":  # the last statement of the transaction
            raise RuntimeError("simulated crash before commit")
        return real_load(name)

    monkeypatch.setattr(blend.store.sql, "load", failing_load)
    with pytest.raises(RuntimeError, match="simulated crash"):
        ingest_file(store, path, "d")
    for table in ("prompts", "rejects", "datasets"):
        assert query(f"SELECT count(*) FROM {table}") == [(0,)]
    monkeypatch.undo()
    report = ingest_file(store, path, "d")
    assert (report.snapshot, report.n_rows, report.n_rejected, report.reused) == (1, 1, 1, False)


def test_progress_reports_lines_per_batch(store: Store, write_lines: WriteLines) -> None:
    path = write_lines("in.jsonl", [f'{{"prompt": "p{i}"}}' for i in range(5)])
    calls: list[tuple[int, int]] = []
    ingest_file(
        store, path, "d", batch_rows=2, progress=lambda done, total: calls.append((done, total))
    )
    assert calls == [(2, 5), (4, 5), (5, 5)]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.jsonl", None, r"missing.jsonl: no such file"),
        ("empty.jsonl", b"", r"empty.jsonl: the file is empty \(0 bytes\)"),
        ("blank.jsonl", b"\n  \n", r"blank.jsonl: no records found \(only blank lines\)"),
        ("notes.txt", b"hello\n", r"notes.txt: unknown input format '.txt'"),
        ("bad.parquet", b"not parquet", r"bad.parquet: not a readable Parquet file"),
        ("noprompt.csv", b"id,text\n1,x\n", r"noprompt.csv: no 'prompt' or 'messages' column"),
        (
            "allbad.jsonl",
            b'nope\n{"prompt": ""}\n[]\n{"prompt": 1}\n',
            r"allbad.jsonl: no valid prompts among 4 records:"
            r" malformed JSON: 1 \(first on line 1\); empty prompt: 1 \(first on line 2\);"
            r" not a JSON object: 1 \(first on line 3\);"
            r" wrong type: 1 \(first on line 4\)",
        ),
    ],
)
def test_ingest_error_when_nothing_is_readable(
    store: Store, query: Query, tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(IngestError, match=message):
        ingest_file(store, path, "d")
    assert query("SELECT count(*) FROM datasets") == [(0,)]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        ("loop", r"loop.jsonl: a loop of symbolic links \(the link leads back to itself\)"),
        ("dangling", r"dangling.jsonl: a symbolic link to .*gone.jsonl, which is missing"),
        ("url", r"^nosuch://bucket/x.jsonl: unknown URI scheme nosuch://"),
        ("url path", r"^s3:/bucket/x.jsonl: no such file; a s3:// URI needs two slashes"),
    ],
)
def test_inputs_that_cannot_be_opened_say_why(
    store: Store, query: Query, tmp_path: Path, make: str, message: str
) -> None:
    given: str | Path
    if make == "loop":
        given = tmp_path / "loop.jsonl"
        given.symlink_to("loop.jsonl")
    elif make == "dangling":
        given = tmp_path / "dangling.jsonl"
        given.symlink_to(tmp_path / "gone.jsonl")
    else:  # the CLI's text, or a Path of it (pathlib keeps one slash)
        given = "nosuch://bucket/x.jsonl" if make == "url" else Path("s3://bucket/x.jsonl")
    with pytest.raises(IngestError, match=message):
        ingest_file(store, given, "d")
    assert query("SELECT count(*) FROM datasets") == [(0,)]


def test_a_directory_is_an_ingest_error(store: Store, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="not a regular file"):
        ingest_file(store, tmp_path, "d")


def test_a_file_rewritten_during_ingest_is_an_ingest_error(
    store: Store, query: Query, write_lines: WriteLines
) -> None:
    path = write_lines("in.jsonl", ['{"prompt": "a"}', '{"prompt": "b"}'])

    def rewrite(done: int, total: int) -> None:
        write_lines("in.jsonl", ['{"prompt": "changed"}'])

    with pytest.raises(IngestError, match="the file changed while it was being ingested"):
        ingest_file(store, path, "d", batch_rows=1, progress=rewrite)
    assert query("SELECT count(*) FROM prompts") == [(0,)]
    assert gc.isenabled()  # the collector paused for staging is back on after an error


def test_duckdb_memory_is_capped_during_ingest_and_restored_after(
    store: Store, write_lines: WriteLines
) -> None:
    path = write_lines("in.jsonl", ['{"prompt": "a"}'])
    seen: list[str] = []
    with store.connect() as con:  # shares the database instance with ingest's connection
        before = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]

        def look(done: int, total: int) -> None:
            seen.append(con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])

        ingest_file(store, path, "d", progress=look)
        after = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    scratch = duckdb.connect()  # how DuckDB shows the cap ingest sets for a one-line file
    scratch.execute("SET memory_limit = ?", [f"{ingest_memory_bytes(1) >> 20}MiB"])
    assert seen == [scratch.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]]
    assert seen != [before]
    assert after == before


def test_the_memory_cap_is_fixed_without_the_key_and_leaves_room_for_an_old_key() -> None:
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    flat = min(1 << 30, int(ram * 0.8))
    assert ingest_memory_bytes(1000) == ingest_memory_bytes(50_000_000) == flat
    small = ingest_memory_bytes(1000, keyed=True)
    large = ingest_memory_bytes(50_000_000, keyed=True)
    assert small == min(2 << 30, int(ram * 0.8))
    assert large == min(50_000_000 * 256, int(ram * 0.8))
