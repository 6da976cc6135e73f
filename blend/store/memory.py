"""DuckDB's memory capped for a block of work, then its setting restored.

The limit belongs to the database instance, which other connections of the process may share,
so the previous setting comes back afterwards: the default exactly, another limit as DuckDB
reads it back (rounded to 0.1 of its unit, e.g. "18.8 GiB"). Beyond the cap DuckDB spills
sorts, hash tables and uncommitted rows to its temporary folder; what cannot spill fails with
an out-of-memory error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from blend.store import sql


def physical_memory_bytes() -> int:
    """This machine's physical memory in bytes (raises OSError, ValueError or AttributeError
    where the platform has no sysconf for it)."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def memory_capped(
    con: duckdb.DuckDBPyConnection, limit_bytes: int, *, return_freed: bool = False
) -> Iterator[None]:
    """Cap DuckDB's memory at limit_bytes (at most its default, 80% of RAM) for the block.

    The cap bounds what DuckDB uses, not what the process keeps: its allocator holds on to
    the pages a finished operator freed. With `return_freed`, background threads give them
    back to the system during the block (the plan stage at 3M prompts kept ~1 GB of freed
    pages beside its own arrays without)."""
    limit = f"{min(limit_bytes, int(physical_memory_bytes() * 0.8)) >> 20}MiB"
    before = _current(con)
    con.execute(sql.load("store/reset_memory_limit"))
    was_default = _current(con) == before
    con.execute(sql.load("store/set_memory_limit"), {"limit": limit})
    background = return_freed and _background_threads(con)
    if return_freed:
        con.execute(sql.load("store/set_allocator_background_threads"), {"on": True})
    try:
        yield
    finally:
        if was_default:
            con.execute(sql.load("store/reset_memory_limit"))
        else:
            con.execute(sql.load("store/set_memory_limit"), {"limit": before})
        if return_freed:
            con.execute(sql.load("store/set_allocator_background_threads"), {"on": background})


def _current(con: duckdb.DuckDBPyConnection) -> str:
    return str(con.execute(sql.load("store/memory_limit")).fetchall()[0][0])


def _background_threads(con: duckdb.DuckDBPyConnection) -> bool:
    rows = con.execute(sql.load("store/allocator_background_threads")).fetchall()
    return bool(rows[0][0])
