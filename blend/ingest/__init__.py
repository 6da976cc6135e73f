"""Ingest: read prompt files (JSONL, OpenAI batch JSONL, CSV, Parquet) into the store.

    report = ingest_file(Store.open(), "prompts.jsonl", "my-dataset")
    report = ingest_file(Store.open(), "s3://bucket/nightly/prompts.jsonl", "nightly")

Every non-blank input line ends as exactly one row of `prompts` or of `rejects`, published
together with its `datasets` row in one transaction.
"""

from blend.ingest.formats import SourceFormat, detect_format
from blend.ingest.inputs import check_input, input_stem
from blend.ingest.records import IngestError, IngestReport
from blend.ingest.remote import RemoteInput
from blend.ingest.stage import Progress, ingest_file
from blend.ingest.validate import DEFAULT_MAX_TOKENS

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "IngestError",
    "IngestReport",
    "Progress",
    "RemoteInput",
    "SourceFormat",
    "check_input",
    "detect_format",
    "ingest_file",
    "input_stem",
]
