"""`blend export`: a dataset's answers as one file (OpenAI Batch output, JSONL, Parquet, CSV)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from blend.cli.options import DatasetOpt, StoreOpt, name_rule
from blend.store.database import Store
from blend.store.export import ExportFormat, export_results
from blend.store.names import NameKind

console = Console(soft_wrap=True)


def export_command(
    dataset: DatasetOpt,
    out: Annotated[
        str,
        typer.Option(
            "--out",
            help="The file to write (replaced if it exists): a path, or a URI such as "
            "s3://bucket/key.",
        ),
    ],
    output_format: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            help="openai-batch: the OpenAI Batch API's output JSONL (custom_id, response, "
            "error); jsonl, parquet or csv: the result columns with their lineage.",
        ),
    ] = ExportFormat.JSONL,
    run_id: Annotated[
        str | None,
        typer.Option(
            "--run-id",
            help="Only this run's answers (default: the latest answer of every request).",
            callback=name_rule(NameKind.RUN_ID),
        ),
    ] = None,
    store: StoreOpt = None,
) -> None:
    """Write the answers of a dataset's newest snapshot to one file, in input order:
    the latest answer of each request (a completion over an error row, then the newest
    run), or one run's. Requests not answered yet are left out."""
    report = export_results(Store.open(store), dataset, out, output_format, run_id=run_id)
    console.print(
        f"exported {report.n_rows:,} answers ({report.n_errors:,} errors) of {escape(dataset)} "
        f"as {report.format} to {escape(str(report.path))}"
    )
