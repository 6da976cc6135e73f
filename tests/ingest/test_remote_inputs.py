"""Inputs by URI against real servers on this machine: moto's S3 server (s3://) and Python's
HTTP server (http://). An object ingests exactly as the same bytes from a local file, with
its URI (no credentials) and content hash as lineage; the same content again is a no-op;
what cannot be read is one line, said before the store is made."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import http.server
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from blend.cli import main
from blend.ingest import IngestError, ingest_file
from blend.ingest.remote import STALE_S
from blend.store.database import Store
from tests.support.s3_server import S3Server, s3_server

LINES = [
    '{"custom_id": "a", "prompt": "Hello", "max_tokens": 16, "temperature": 0.5}',
    '{"custom_id": "b", "messages": [{"role": "user", "content": "Hi"}]}',
    "not json",
    '{"custom_id": "a", "prompt": "the same id again"}',
    '{"prompt": "No id"}',
]
DATA = "".join(line + "\n" for line in LINES).encode()
ROWS = "request_id, line_no, prompt, messages_json, sampling_json, max_tokens, prompt_sha256"


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    with s3_server() as started:
        yield started


@pytest.fixture
def s3(server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The server, emptied, with pyarrow pointed at it through AWS_ENDPOINT_URL."""
    server.use(monkeypatch)
    return server


def blend(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    """Run the `blend` entry point: (exit code, stdout lines, stderr lines)."""
    monkeypatch.setattr(sys, "argv", ["blend", *argv])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    return exited.value.code, out.splitlines(), [line for line in err.splitlines() if line]


def table(store: Store, name: str, dataset: str) -> list[tuple[Any, ...]]:
    columns = ROWS if name == "prompts" else "line_no, reason, raw"
    with store.connect() as con:
        return con.execute(
            f"SELECT {columns} FROM {name} WHERE dataset = ? ORDER BY line_no", [dataset]
        ).fetchall()


def datasets(store: Store) -> list[tuple[Any, ...]]:
    with store.connect() as con:
        return con.execute(
            "SELECT dataset, snapshot, source_uri, source_sha256, source_format, n_rows, "
            "n_rejected FROM datasets ORDER BY dataset, snapshot"
        ).fetchall()


def test_an_s3_object_ingests_as_the_same_local_file_with_its_uri_and_hash(
    s3: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    s3.put("nightly", "2026/prompts.jsonl", DATA)
    local = tmp_path / "prompts.jsonl"
    local.write_bytes(DATA)
    store_dir = tmp_path / "store"
    uri = "s3://nightly/2026/prompts.jsonl"
    code, out, err = blend(
        monkeypatch, capsys, "ingest", uri, "--dataset", "remote", "--store", str(store_dir)
    )
    assert code in (0, None), err
    assert "ingested: dataset 'remote' snapshot 1 (jsonl): 3 prompts, 2 rejected" in out[0]
    store = Store.open(store_dir)
    ingest_file(store, local, "local")
    assert table(store, "prompts", "remote") == table(store, "prompts", "local")
    assert table(store, "rejects", "remote") == table(store, "rejects", "local")
    assert len(table(store, "prompts", "remote")) == 3
    sha = hashlib.sha256(DATA).hexdigest()
    assert datasets(store) == [
        ("local", 1, str(local), sha, "jsonl", 3, 2),
        ("remote", 1, uri, sha, "jsonl", 3, 2),
    ]
    assert list((store_dir / "tmp").iterdir()) == []  # the copy is gone


def test_the_same_object_again_is_a_no_op_however_the_uri_names_the_server(
    s3: S3Server, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3.put("nightly", "prompts.jsonl", DATA)
    first = ingest_file(store, "s3://nightly/prompts.jsonl", "d")
    # The endpoint in the URI instead of the environment, credentials in it: same content.
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    with_secrets = (
        f"s3://testing:testing@nightly/prompts.jsonl?endpoint_override={s3.host}&scheme=http"
    )
    again = ingest_file(store, with_secrets, "d")
    assert (first.reused, again.reused) == (False, True)
    assert again.snapshot == first.snapshot == 1
    assert again.source_sha256 == first.source_sha256 == hashlib.sha256(DATA).hexdigest()
    other = ingest_file(store, with_secrets, "other")  # a new dataset: its URI is recorded
    assert other.source_uri == f"s3://nightly/prompts.jsonl?endpoint_override={s3.host}&scheme=http"
    assert "testing" not in str(datasets(store))
    assert [row[:2] for row in datasets(store)] == [("d", 1), ("other", 1)]


def test_a_changed_object_is_a_new_snapshot(s3: S3Server, store: Store) -> None:
    s3.put("nightly", "prompts.jsonl", DATA)
    ingest_file(store, "s3://nightly/prompts.jsonl", "d")
    s3.put("nightly", "prompts.jsonl", DATA + b'{"prompt": "one more"}\n')
    report = ingest_file(store, "s3://nightly/prompts.jsonl", "d")
    assert (report.reused, report.snapshot, report.n_rows) == (False, 2, 4)


def test_a_parquet_object_ingests_as_the_same_local_file(
    s3: S3Server, store: Store, tmp_path: Path
) -> None:
    rows = pa.table(
        {
            "custom_id": [f"r{i}" for i in range(300)] + ["r1"],
            "prompt": [f"question {i}" for i in range(300)] + ["again"],
            "max_tokens": list(range(1, 302)),
        }
    )
    local = tmp_path / "prompts.parquet"
    pq.write_table(rows, local, row_group_size=64)  # several row groups
    s3.put("nightly", "in/prompts.parquet", local.read_bytes())
    remote = ingest_file(store, "s3://nightly/in/prompts.parquet", "remote")
    ingest_file(store, local, "local")
    assert (remote.source_format, remote.n_rows, remote.n_rejected) == ("parquet", 300, 1)
    assert table(store, "prompts", "remote") == table(store, "prompts", "local")
    assert table(store, "rejects", "remote") == table(store, "rejects", "local")
    assert "duplicate id" in table(store, "rejects", "remote")[0][1]


@pytest.mark.parametrize(
    ("uri", "said"),
    [
        ("s3://nightly/missing.jsonl", "s3://nightly/missing.jsonl: no such object in bucket"),
        ("s3://nobucket/prompts.jsonl", "s3://nobucket/prompts.jsonl: no such bucket 'nobucket'"),
        ("s3://nightly/in", "s3://nightly/in: a folder (a prefix of objects), not a file"),
        ("s3://nightly/empty.jsonl", "s3://nightly/empty.jsonl: the object is empty (0 bytes)"),
        ("s3://nightly/in/prompts.txt", "unknown input format '.txt'"),
        ("nosuch://bucket/x.jsonl", "nosuch://bucket/x.jsonl: unknown URI scheme nosuch://"),
    ],
)
@pytest.mark.parametrize("command", ["ingest", "run"])
def test_what_cannot_be_read_is_one_line_before_the_store_is_made(
    s3: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    uri: str,
    said: str,
) -> None:
    s3.put("nightly", "in/prompts.txt", DATA)
    s3.put("nightly", "empty.jsonl", b"")
    store_dir = tmp_path / "store"
    argv = [command, uri, "--store", str(store_dir)]
    code, _, err = blend(monkeypatch, capsys, *argv, *(["--dataset", "d"] * (command == "ingest")))
    assert code == 1
    assert len(err) == 1 and said in err[0], err
    assert not store_dir.exists()  # nothing made, no dataset


def test_access_denied_is_one_line_naming_the_credentials(
    s3: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    s3.put("nightly", "prompts.jsonl", DATA)
    s3.deny_all()
    store_dir = tmp_path / "store"
    argv = ["ingest", "s3://nightly/prompts.jsonl", "--dataset", "d", "--store", str(store_dir)]
    code, _, err = blend(monkeypatch, capsys, *argv)
    assert code == 1
    assert len(err) == 1, err
    assert "s3://nightly/prompts.jsonl: access denied: check AWS_ACCESS_KEY_ID" in err[0]
    assert not store_dir.exists()


def test_a_scheme_whose_package_is_missing_names_it(store: Store) -> None:
    try:
        import dropboxdrivefs  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("dropboxdrivefs is installed here")
    with pytest.raises(IngestError) as raised:
        ingest_file(store, "dropbox://folder/prompts.jsonl", "d")
    assert str(raised.value) == (
        "dropbox://folder/prompts.jsonl: reading dropbox:// needs the Python package "
        "dropboxdrivefs, which is not installed: pip install dropboxdrivefs"
    )


def test_a_mangled_uri_says_how_to_give_it(store: Store) -> None:
    """pathlib.Path("s3://b/k") is "s3:/b/k": told apart from a missing local file."""
    with pytest.raises(IngestError) as raised:
        ingest_file(store, Path("s3://bucket/x.jsonl"), "d")
    assert str(raised.value).startswith(
        "s3:/bucket/x.jsonl: no such file; a s3:// URI needs two slashes (s3://bucket/x.jsonl)"
    )


def test_errors_found_in_the_copy_name_the_object(s3: S3Server, store: Store) -> None:
    s3.put("nightly", "bad.jsonl", b"not json\n[1, 2]\n")
    with pytest.raises(IngestError) as raised:
        ingest_file(store, "s3://nightly/bad.jsonl", "d")
    assert str(raised.value).startswith("s3://nightly/bad.jsonl: no valid prompts among 2")
    assert list(store.tmp_dir.iterdir()) == []
    s3.put("nightly", "packed.jsonl", b"\x1f\x8b\x08\x00rest")
    with pytest.raises(IngestError, match=r"^s3://nightly/packed.jsonl: the file is gzip"):
        ingest_file(store, "s3://nightly/packed.jsonl", "d")
    assert datasets(store) == []


def test_spool_files_of_killed_ingests_are_removed_live_ones_kept(
    s3: S3Server, store: Store
) -> None:
    store.tmp_dir.mkdir(parents=True)
    dead = store.tmp_dir / "input-dead.part"
    dead.write_bytes(b"half")
    live = store.tmp_dir / "input-live.jsonl"
    live.write_bytes(b"whole")
    other = store.tmp_dir / "profile-tokens-x.parquet"  # another stage's: not ingest's to touch
    other.write_bytes(b"x")
    old = time.time() - STALE_S - 5
    for path in (dead, live, other):
        os.utime(path, (old, old))
    s3.put("nightly", "prompts.jsonl", DATA)
    with live.open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # as the ingest that made it holds it
        ingest_file(store, "s3://nightly/prompts.jsonl", "d")
    assert sorted(p.name for p in store.tmp_dir.iterdir()) == [live.name, other.name]


def test_the_pipeline_runs_an_s3_input_named_after_the_object(
    s3: S3Server, tmp_path: Path, tiny_model: Path
) -> None:
    from blend.engines.base import EngineConfig
    from blend.pipeline.chain import PipelineOptions, run_pipeline
    from blend.plan.stage import PlanOptions
    from tests.support.fault_child import fake_engine_stages

    s3.put("nightly", "batch/questions.jsonl", DATA)
    report = run_pipeline(
        Store.open(tmp_path / "store"),
        EngineConfig(model_dir=tiny_model),
        PipelineOptions(
            input_path="s3://nightly/batch/questions.jsonl",
            plan=PlanOptions(planner="dfs", warmup_fraction=0.0),
        ),
        run_stage=fake_engine_stages(0.0),
    )
    assert report.ingest.dataset == "questions"
    assert report.ingest.source_uri == "s3://nightly/batch/questions.jsonl"
    assert report.run is not None and report.run.status == "completed"
    assert report.plan.n_requests == 3


# --- http(s):// through fsspec -------------------------------------------------------------


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that read what it needed and hung up


@pytest.fixture
def http_folder(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on a free local port: (folder, base URL)."""
    pytest.importorskip("aiohttp", reason="fsspec's http:// filesystem")
    folder = tmp_path / "served"
    folder.mkdir()
    server = _Server(("127.0.0.1", 0), functools.partial(_Files, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_http_input_ingests_and_a_missing_one_is_one_line(
    http_folder: tuple[Path, str], store: Store, tmp_path: Path
) -> None:
    folder, base = http_folder
    (folder / "prompts.jsonl").write_bytes(DATA)
    report = ingest_file(store, f"{base}/prompts.jsonl?token=s3cret", "web")
    assert (report.n_rows, report.n_rejected) == (3, 2)
    assert report.source_uri == f"{base}/prompts.jsonl"  # the token is not kept
    assert report.source_sha256 == hashlib.sha256(DATA).hexdigest()
    with pytest.raises(IngestError, match=rf"^{base}/gone.jsonl: no such file$"):
        ingest_file(store, f"{base}/gone.jsonl", "web")


def test_an_unreachable_server_is_one_line(store: Store) -> None:
    pytest.importorskip("aiohttp", reason="fsspec's http:// filesystem")
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(IngestError) as raised:
        ingest_file(store, f"http://127.0.0.1:{port}/prompts.jsonl", "d")
    message = str(raised.value)
    assert message.startswith(f"http://127.0.0.1:{port}/prompts.jsonl: cannot reach the server")
    assert "\n" not in message


def test_the_s3_server_keeps_flask_out_of_this_process() -> None:
    """moto's server runs in its own process: a test process holding Flask cannot start vLLM
    (tests/support/s3_server.py says why), and engine tests share the pytest workers."""
    import sys

    with s3_server() as server:
        server.client.list_buckets()
    assert "flask" not in sys.modules
