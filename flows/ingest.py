"""Prefect flow: ingest a prompt file into the store."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from pydantic import Field

from blend.ingest import IngestReport, ingest_file
from flows.options import DatasetName, StoreOptions
from flows.retry import is_transient


class IngestOptions(StoreOptions):
    input_path: str = Field(description="JSONL, OpenAI batch JSONL, CSV or Parquet file")
    dataset: DatasetName = Field(description="Dataset name")


ingest_task = task(
    name="ingest", retries=2, retry_delay_seconds=10, retry_condition_fn=is_transient
)(ingest_file)


@flow(name="blend-ingest")
def ingest_flow(options: IngestOptions) -> IngestReport:
    return ingest_task(options.open_store(), Path(options.input_path), options.dataset)
