"""`blend query`: read-only SQL over the store.

run.py runs a query (three guards keep it to reading: the parse tree, check.py; the kernel,
landlock.py; DuckDB's own settings), output.py shows its rows; the command is
blend/cli/query.py.
"""

from blend.store.query.run import (
    MEMORY_FRACTION,
    QueryNotConfinedError,
    QueryOptions,
    QueryRefusedError,
    QueryResult,
    QueryTimeoutError,
    default_memory_limit,
    open_query,
    read_statement,
    run_query,
)

__all__ = [
    "MEMORY_FRACTION",
    "QueryNotConfinedError",
    "QueryOptions",
    "QueryRefusedError",
    "QueryResult",
    "QueryTimeoutError",
    "default_memory_limit",
    "open_query",
    "read_statement",
    "run_query",
]
