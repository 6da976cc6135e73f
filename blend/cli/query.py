"""`blend query`: read the store with SQL, streamed to the terminal or to other programs."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from blend.cli.options import StoreOpt
from blend.store.database import Store, default_store_dir
from blend.store.query.output import OutputFormat, visible_lines

if TYPE_CHECKING:
    import pyarrow as pa

INTERRUPTED_EXIT = 130  # the shell's code for a command ended by SIGINT (128 + 2)

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def _memory_size(value: str | None) -> str | None:
    """A size DuckDB accepts for memory_limit ("2GB", "512MiB"), checked before anything opens."""
    if value is None:
        return None
    import duckdb

    try:
        duckdb.connect(":memory:", config={"memory_limit": value}).close()
    except duckdb.Error:
        raise typer.BadParameter(f"{value!r} is not a size like 2GB or 512MiB") from None
    return value


def query_command(
    sql_text: Annotated[
        str, typer.Argument(metavar="SQL", help="One read-only SQL statement (SELECT ...).")
    ],
    output_format: Annotated[
        OutputFormat,
        typer.Option(
            "--format",
            help="table (cut to fit; says what it cut), or all of it: csv, json, markdown.",
        ),
    ] = OutputFormat.TABLE,
    max_rows: Annotated[
        int | None,
        typer.Option(min=0, help="Rows to write at most (default: 50 for table, all otherwise)."),
    ] = None,
    allow_files: Annotated[
        bool,
        typer.Option(
            "--allow-files", help="Let the query read files outside the store (read_csv, glob...)."
        ),
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout", min=0.001, metavar="SECONDS", help="Stop the query after this long."
        ),
    ] = None,
    memory_limit: Annotated[
        str | None,
        typer.Option(
            "--memory-limit",
            metavar="SIZE",
            callback=_memory_size,
            help="DuckDB's memory cap, e.g. 2GB (default: a quarter of this machine's memory).",
        ),
    ] = None,
    store: StoreOpt = None,
) -> None:
    """Read the store with SQL (tables and the `results` view); never changes it.

    Statements that would write are refused, the query runs where it cannot write a file
    (Linux), and files outside the store's results cannot be read without --allow-files.
    Rows are streamed; Ctrl-C or --timeout stops the query at once.
    """
    import duckdb

    from blend.store.database import StoreNotReadableError
    from blend.store.query import (
        QueryNotConfinedError,
        QueryOptions,
        QueryRefusedError,
        QueryTimeoutError,
        open_query,
    )

    # Not Store.open: a query creates nothing, not even the store folder.
    opened = Store((store if store is not None else default_store_dir()).resolve())
    options = QueryOptions(allow_files=allow_files, timeout_s=timeout, memory_limit=memory_limit)
    try:
        with open_query(opened, sql_text, options) as result:
            _print_result(result.columns, result.batches, output_format, max_rows)
    except QueryRefusedError as exc:
        _fail("query refused", str(exc))
    except StoreNotReadableError as exc:
        _fail("cannot read the store", str(exc))
    except QueryTimeoutError as exc:
        _fail("query stopped", f"{exc} (--timeout)")
    except QueryNotConfinedError as exc:
        _fail("query not run", str(exc))
    except duckdb.OutOfMemoryException as exc:
        first = str(exc).split("\n", 1)[0]
        _fail("query failed", f"{first} (raise the cap with --memory-limit, e.g. 8GB)")
    except duckdb.Error as exc:
        hint = ""
        if isinstance(exc, duckdb.PermissionException) and not allow_files:
            hint = " (files outside the store's results need --allow-files)"
        _fail("query failed", f"{exc}{hint}")
    except KeyboardInterrupt:
        err_console.print("[red]query interrupted[/red] (Ctrl-C)")
        raise typer.Exit(INTERRUPTED_EXIT) from None
    except BrokenPipeError:
        _stdout_to_devnull()  # the reader (`| head`) has all it wanted: a normal end


def _print_result(
    columns: list[str],
    batches: Iterator[pa.RecordBatch],
    output_format: OutputFormat,
    max_rows: int | None,
) -> None:
    from blend.store.query import output as query_format

    if output_format is OutputFormat.TABLE:
        blocks, shown = query_format.terminal_table(columns, batches, max_rows, console.width)
        for block in blocks:
            console.print(block)
        note = shown.cut_note()
        if note:
            console.print(escape(note))
        return
    writers = {
        OutputFormat.CSV: query_format.write_csv,
        OutputFormat.JSON: query_format.write_json,
        OutputFormat.MARKDOWN: query_format.write_markdown,
    }
    shown = writers[output_format](columns, batches, sys.stdout, max_rows)
    note = shown.cut_note(format_hint=False)
    if note:  # on stderr: stdout stays machine-readable
        err_console.print(escape(note))


def _fail(what: str, message: str) -> NoReturn:
    """One error on stderr (control characters of data quoted in it made visible), exit 1."""
    err_console.print(f"[red]{what}:[/red] {escape(visible_lines(message))}")
    raise typer.Exit(1)


def _stdout_to_devnull() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # no real stdout (tests): nothing will flush into a closed pipe
