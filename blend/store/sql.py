"""Load the named SQL statements that live in the project's sql/ folder.

Every statement the project runs is a file `sql/<area>/<name>.sql`; code refers to it as
`"<area>/<name>"`. Parameters are bound by DuckDB (`$name`), never formatted into the text.
"""

from __future__ import annotations

import functools
from pathlib import Path

import blend

_PACKAGE_DIR = Path(blend.__file__).resolve().parent

# Table macros that several statements read (sql/macros/<name>.sql, one definition of each
# piece), made on the stages' connections after the views (store/database.py).
SHARED_MACROS = ("recent_answers", "runnable_requests")


def sql_root() -> Path:
    """The sql/ folder: packaged as blend/_sql in wheels, the repo's sql/ in a checkout."""
    for candidate in (_PACKAGE_DIR / "_sql", _PACKAGE_DIR.parent / "sql"):
        if (candidate / "schema").is_dir():
            return candidate
    raise FileNotFoundError(f"blend's sql/ folder not found next to {_PACKAGE_DIR}")


@functools.cache
def load(name: str) -> str:
    """Text of the named statement, e.g. load("profile/length_stats")."""
    path = sql_root() / f"{name}.sql"
    if not path.is_file():
        raise KeyError(f"No SQL statement named {name!r} (looked for {path})")
    return path.read_text(encoding="utf-8")


def schema_statements() -> list[str]:
    """The schema files in order (sql/schema/NNN_*.sql)."""
    return [p.read_text(encoding="utf-8") for p in sorted((sql_root() / "schema").glob("*.sql"))]
