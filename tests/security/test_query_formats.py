"""`blend query --format`: csv / json / markdown give every row and every character; the
terminal table says what it cut."""

from __future__ import annotations

import csv
import io
import json
import re

from rich.console import Console
from typer.testing import CliRunner

from blend.cli import app
from blend.store.database import Store
from blend.store.query import run_query
from blend.store.query.output import terminal_table

runner = CliRunner()
ROWS_SQL = (
    "SELECT i, repeat('x', 100) || '|' || i AS long, [i, i + 1] AS pair, "
    "CASE WHEN i = 2 THEN NULL ELSE 'line one' || chr(10) || 'line two' END AS text "
    "FROM range(60) AS t(i) ORDER BY i"
)


def query(store: Store, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["query", ROWS_SQL, *args, "--store", str(store.root)])
    return result.exit_code, result.stdout, result.stderr


def test_csv_has_every_row_and_whole_cells(filled_store: Store) -> None:
    code, out, err = query(filled_store, "--format", "csv")
    assert code == 0 and err == ""
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 60
    assert rows[59]["long"] == "x" * 100 + "|59"
    assert json.loads(rows[3]["pair"]) == [3, 4]
    assert rows[2]["text"] == "" and rows[0]["text"] == "line one\nline two"


def test_json_is_an_array_of_row_objects(filled_store: Store) -> None:
    code, out, _ = query(filled_store, "--format", "json", "--max-rows", "5")
    assert code == 0
    rows = json.loads(out)
    assert [r["i"] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[2]["text"] is None and rows[1]["pair"] == [1, 2]


def test_max_rows_cut_is_reported_on_stderr_for_machine_formats(filled_store: Store) -> None:
    code, out, err = query(filled_store, "--format", "csv", "--max-rows", "10")
    assert code == 0
    assert len(list(csv.DictReader(io.StringIO(out)))) == 10
    assert "60 rows, 10 shown" in err


def test_markdown_escapes_pipes_and_line_breaks(filled_store: Store) -> None:
    code, out, _ = query(filled_store, "--format", "markdown")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "| i | long | pair | text |" and lines[1] == "|---|---|---|---|"
    assert len(lines) == 62
    assert lines[2] == "| 0 | " + "x" * 100 + "\\|0 | [0,1] | line one<br>line two |"


def test_table_says_what_it_cut(filled_store: Store) -> None:
    code, out, _ = query(filled_store)
    assert code == 0
    note = " ".join(out.split())
    assert re.search(r"\(60 rows, 50 shown; 50 cells cut at 80 chars; use --format csv", note)
    markup = runner.invoke(
        app, ["query", "SELECT '[red]x[/]' AS markup", "--store", str(filled_store.root)]
    )
    assert markup.exit_code == 0 and "[red]x[/]" in markup.stdout  # data, not rich markup
    assert "cut" not in markup.stdout


def test_too_many_columns_become_one_block_per_row(filled_store: Store) -> None:
    columns = ", ".join(f"'value{i}' AS column_{i}" for i in range(25))
    result = runner.invoke(
        app, ["query", f"SELECT {columns} FROM range(2)", "--store", str(filled_store.root)]
    )
    assert result.exit_code == 0
    out = result.stdout
    assert "row 1" in out and "row 2" in out
    assert all(f"column_{i} " in out and f"value{i} " in out for i in range(25))
    assert "too many columns for the terminal: one block per row" in " ".join(out.split())


# Terminal escapes in data (issue 16, item 7): ESC (clear screen), CSI as C1, DEL, a bell, a
# carriage return, a right-to-left override, and a newline; one also in a column name.
ESCAPES_SQL = (
    "SELECT chr(27) || '[2J' AS clear, chr(155) || '31m' AS csi, 'a' || chr(127) || chr(7) AS del, "
    "'x' || chr(13) || 'y' || chr(10) || 'z' AS lines, 'abc' || chr(8238) || 'def' AS rlo, "
    '1 AS "name\x1b[1m"'
)
RAW = ["\x1b[2J", "\x9b31m", "a\x7f\x07", "x\ry\nz", "abc\u202edef", 1]
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")  # \n: lines


def escapes(store: Store, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["query", ESCAPES_SQL, *args, "--store", str(store.root)])
    return result.exit_code, result.stdout, result.stderr


def test_the_table_shows_control_characters_escaped(filled_store: Store) -> None:
    code, out, _ = escapes(filled_store)
    assert code == 0
    assert UNSAFE.search(out) is None, repr(out)
    # The cells themselves, rendered wide enough that no cell folds.
    result = run_query(filled_store, ESCAPES_SQL)
    tables, _ = terminal_table(result.column_names, result.to_batches(), width=200)
    console = Console(file=io.StringIO(), width=200)
    console.print(*tables)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    cells = ["\\x1b[2J", "\\x9b31m", "a\\x7f\\x07", "x\\ry\\nz", "abc\\u202edef"]
    for shown in [*cells, "name\\x1b[1m"]:
        assert shown in text, (shown, text)


def test_markdown_shows_control_characters_escaped(filled_store: Store) -> None:
    code, out, _ = escapes(filled_store, "--format", "markdown")
    assert code == 0 and UNSAFE.search(out) is None, repr(out)
    lines = out.splitlines()
    assert lines[0] == "| clear | csi | del | lines | rlo | name\\x1b[1m |"
    assert lines[2] == "| \\x1b[2J | \\x9b31m | a\\x7f\\x07 | x\\ry<br>z | abc\\u202edef | 1 |"


def test_json_escapes_them_and_keeps_the_text(filled_store: Store) -> None:
    code, out, _ = escapes(filled_store, "--format", "json")
    assert code == 0 and UNSAFE.search(out) is None, repr(out)
    assert list(json.loads(out)[0].values()) == RAW  # the parsed text is the data itself


def test_csv_keeps_the_exact_text(filled_store: Store) -> None:
    # For programs: the data as stored (docs/querying.md says to page it, not cat it).
    code, out, _ = escapes(filled_store, "--format", "csv")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[1] == [str(v) for v in RAW]


def test_error_messages_show_data_escaped(filled_store: Store) -> None:
    sql = "SELECT CAST(chr(27) || '[2J' AS INTEGER)"
    result = runner.invoke(app, ["query", sql, "--store", str(filled_store.root)])
    assert result.exit_code == 1
    assert "\x1b" not in result.stderr and "'\\x1b[2J'" in result.stderr


# Numbers stay numbers (issue 18, item 5): DuckDB hands sum() of integers (HUGEINT) and
# DECIMAL columns to Arrow as decimals, which JSON once got as strings ({"s": "7751"}).
NUMBERS_SQL = (
    "SELECT sum(x) AS s, avg(x) AS a, sum(x * 1.25::DECIMAL(6, 2)) AS dsum, "
    "any_value(1.50::DECIMAL(10, 2)) AS d, "
    "any_value(170141183460469231731687303715884105727::HUGEINT) AS big, "
    "any_value(-12345678901234567890123::HUGEINT) AS negative, "
    "any_value(12345678901234567890123.456789::DECIMAL(38, 6)) AS wide "
    "FROM range(1, 125) AS t(x)"
)


def test_json_writes_sums_decimals_and_hugeints_as_exact_numbers(filled_store: Store) -> None:
    from decimal import Decimal

    result = runner.invoke(
        app, ["query", NUMBERS_SQL, "--format", "json", "--store", str(filled_store.root)]
    )
    assert result.exit_code == 0, result.output
    # parse_float=Decimal: the digits as written, not rounded through a float
    row = json.loads(result.stdout, parse_float=Decimal)[0]
    assert row["s"] == 7750 and type(row["s"]) is int
    assert row["a"] == Decimal("62.5")
    assert row["dsum"] == Decimal("9687.50")
    assert row["d"] == Decimal("1.50")
    assert row["big"] == 2**127 - 1 and type(row["big"]) is int  # beyond 64 bits, exact
    assert row["negative"] == -12345678901234567890123
    assert row["wide"] == Decimal("12345678901234567890123.456789")
    # Nested decimals too, and CSV cells keep the same digits.
    nested = runner.invoke(
        app,
        [
            "query",
            "SELECT [sum(x)] AS l, {'d': 2.5::DECIMAL(3, 1)} AS st FROM range(3) t(x)",
            "--format",
            "csv",
            "--store",
            str(filled_store.root),
        ],
    )
    [cells] = csv.DictReader(io.StringIO(nested.stdout))
    assert json.loads(cells["l"]) == [3] and json.loads(cells["st"]) == {"d": 2.5}


def test_a_narrow_table_never_folds_a_number(filled_store: Store) -> None:
    """At 60 columns the text columns fold; every number is still whole on one line."""
    sql = (
        "SELECT 'a rather long label ' || i AS label, i * 1234567.891 AS big, "
        "i / 7 AS share, sum(i) OVER () AS total FROM range(1, 4) AS t(i)"
    )
    result = run_query(filled_store, sql)
    tables, shown = terminal_table(result.column_names, result.to_batches(), width=60)
    assert not shown.vertical  # one table: the numbers fit beside a folded label
    console = Console(file=io.StringIO(), width=60)
    console.print(*tables)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    for row in result.to_pylist():
        for name in ("big", "share", "total"):
            assert str(row[name]) in text, (row[name], text)
