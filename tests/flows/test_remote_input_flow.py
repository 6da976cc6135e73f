"""The Prefect forms take an input URI as text and hand it on whole (no pathlib in between,
which would turn s3:// into s3:/): the ingest flow reads an object of moto's local S3 server."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.ingest import IngestOptions, ingest_flow
from flows.pipeline import PipelineOptions
from tests.support.s3_server import S3Server, s3_server

DATA = b'{"custom_id": "a", "prompt": "Hello"}\n{"custom_id": "b", "prompt": "Hi"}\n'


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    with s3_server() as server:
        server.use(monkeypatch)
        yield server


@pytest.mark.prefect
def test_the_ingest_flow_reads_an_s3_object(prefect_harness, s3: S3Server, tmp_path: Path) -> None:
    s3.put("nightly", "prompts.jsonl", DATA)
    options = IngestOptions(
        input_path="s3://nightly/prompts.jsonl", dataset="d", store=str(tmp_path / "store")
    )
    report = ingest_flow(options)
    assert (report.source_uri, report.n_rows) == ("s3://nightly/prompts.jsonl", 2)
    assert report.source_sha256 == hashlib.sha256(DATA).hexdigest()


def test_the_pipeline_form_keeps_the_uri_and_names_the_dataset_after_the_object() -> None:
    uri = "s3://nightly/2026/questions.jsonl?endpoint_override=127.0.0.1:9000&scheme=http"
    options = PipelineOptions(input_path=uri)  # the stem rule passes: "questions"
    assert options.pipeline_options().input_path == uri
    with pytest.raises(ValueError, match="invalid dataset"):
        PipelineOptions(input_path="s3://nightly/bad name!.jsonl")
