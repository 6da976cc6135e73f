"""No SQL text is built from strings in blend/ and flows/: every statement comes from sql/
with its parameters bound. Scans the sources (ast) for calls that run SQL - con.execute,
con.sql, con.query, duckdb.sql, fetch_arrow / fetch_dicts - whose SQL argument is made with an
f-string, %, +, .format, .replace or .join (directly, or through a local variable)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("blend", "flows")

# Calls whose argument at this index is SQL text.
SQL_METHODS = {"execute": 0, "executemany": 0, "sql": 0, "query": 0}
SQL_HELPERS = {"fetch_arrow": 1, "fetch_dicts": 1}
STRING_METHODS = {"format", "replace", "join", "format_map"}

# (file, function): why building the text there is safe. Keep this list short.
ALLOWED = {
    ("blend/store/database.py", "refresh_results_view"): (
        "DDL cannot take bound parameters: the results glob (the store's own path, its glob "
        "characters escaped) or the list of the store's own parts, each quoted as a SQL "
        "literal by _quote (quotes doubled); the TEMP rewrite only touches sql/ text"
    ),
}


def builds_text(node: ast.AST) -> bool:
    """Whether the expression makes a string by formatting, concatenation or replacement."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.JoinedStr) and any(
            isinstance(v, ast.FormattedValue) for v in sub.values
        ):
            return True
        if isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Mod | ast.Add):
            return True
        if (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Attribute)
            and sub.func.attr in STRING_METHODS
        ):
            return True
    return False


def sql_argument(call: ast.Call) -> ast.expr | None:
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr in SQL_METHODS:
        index = SQL_METHODS[func.attr]
    elif isinstance(func, ast.Name) and func.id in SQL_HELPERS:
        index = SQL_HELPERS[func.id]
    else:
        return None
    if len(call.args) > index:
        return call.args[index]
    keyword = next((k for k in call.keywords if k.arg in ("query", "sql")), None)
    return keyword.value if keyword else None


def findings(text: str, relative: str) -> list[tuple[str, int, str]]:
    """(file, line, function) of each SQL call whose SQL text is built from strings."""
    tree = ast.parse(text, filename=relative)
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        assigned: dict[str, list[ast.expr]] = {}
        for node in ast.walk(function):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        assigned.setdefault(target.id, []).append(node.value)
        for node in ast.walk(function):
            if not isinstance(node, ast.Call):
                continue
            argument = sql_argument(node)
            if argument is None:
                continue
            sources = [argument]
            if isinstance(argument, ast.Name):
                sources += assigned.get(argument.id, [])
            if any(builds_text(s) for s in sources):
                found.append((relative, node.lineno, function.name))
    return found


def all_findings() -> list[tuple[str, int, str]]:
    return [
        finding
        for folder in SCANNED
        for path in sorted((ROOT / folder).rglob("*.py"))
        for finding in findings(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    ]


def test_no_sql_is_built_from_strings_outside_the_allow_list() -> None:
    unexpected = [f for f in all_findings() if (f[0], f[2]) not in ALLOWED]
    assert unexpected == [], "SQL built from strings (bind parameters, put SQL in sql/)"


def test_every_allow_list_entry_is_still_needed() -> None:
    used = {(f[0], f[2]) for f in all_findings()}
    assert set(ALLOWED) <= used, f"stale allow-list entries: {set(ALLOWED) - used}"


@pytest.mark.parametrize(
    ("source", "flagged"),
    [
        ("def f(con, t):\n    con.execute(f'SELECT * FROM {t}')", True),
        ("def f(con, t):\n    con.sql('SELECT * FROM ' + t)", True),
        ("def f(con, t):\n    con.execute('SELECT %s' % t)", True),
        ("def f(con, t):\n    q = 'SELECT {}'.format(t)\n    con.execute(q)", True),
        ("def f(con, t):\n    fetch_dicts(con, load('x').replace('$t', t))", True),
        ("def f(t):\n    duckdb.sql(f'COPY x TO {t}')", True),
        ("def f(con, t):\n    con.execute(sql.load('a/b'), {'t': t + 1})", False),
        ("def f(con):\n    con.execute('SET enable_external_access = false')", False),
        ("def f(con, t):\n    fetch_arrow(con, sql.load('a/b'), {'t': f'{t}'})", False),
    ],
)
def test_the_scanner_finds_built_sql(source: str, flagged: bool) -> None:
    assert bool(findings(source, "probe.py")) is flagged
