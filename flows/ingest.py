"""Prefect flow: ingest a prompt file into the store."""

from __future__ import annotations

from prefect import flow, task
from pydantic import Field

from blend.ingest import IngestReport, ingest_file
from flows.logs import log_stage
from flows.options import DatasetName, StoreOptions
from flows.retry import is_transient


class IngestOptions(StoreOptions):
    form_order = ("input_path", "dataset", "store")

    input_path: str = Field(
        title="Input file", description="JSONL, OpenAI batch JSONL, CSV or Parquet file"
    )
    dataset: DatasetName = Field(title="Dataset", description="Dataset name")


ingest_task = task(
    name="ingest", retries=2, retry_delay_seconds=10, retry_condition_fn=is_transient
)(ingest_file)


@flow(name="blend-ingest")
def ingest_flow(options: IngestOptions) -> IngestReport:
    report = ingest_task(options.open_store(), options.input_path, options.dataset)
    log_stage("ingest", report)
    return report
