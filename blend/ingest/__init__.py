"""Ingest: read prompt files (JSONL, OpenAI batch JSONL, CSV, Parquet) into the store.

    report = ingest_file(Store.open(), "prompts.jsonl", "my-dataset")

Every non-blank input line ends as exactly one row of `prompts` or of `rejects`, published
together with its `datasets` row in one transaction.
"""

from blend.ingest.formats import SourceFormat, detect_format
from blend.ingest.inputs import check_input
from blend.ingest.records import IngestError, IngestReport
from blend.ingest.stage import Progress, ingest_file
from blend.ingest.validate import DEFAULT_MAX_TOKENS

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "IngestError",
    "IngestReport",
    "Progress",
    "SourceFormat",
    "check_input",
    "detect_format",
    "ingest_file",
]
