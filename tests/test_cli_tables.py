"""The terminal's tables of numbers (`blend lp`, `blend hetegen`): at any terminal width every
number is whole on one line. Rich alone folds a shrunk column's numbers ("290.", "799") and
cuts a table wider than the terminal at its right edge ("154,04" for "154,043.7")."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from blend.cli.tables import print_numbers_table

COLUMNS = ("class", "requests", "x*", "y* mixed", "done/s", "implied tok/s")
NUMBERS = [
    (f"{1_234_567 * (i + 1):,}", "0.25381", "247.4", "290.799", "154,043.7") for i in range(3)
]
ROWS = [(f"c{i}: a long shared few-shot prefix", *NUMBERS[i]) for i in range(3)]


def printed(width: int) -> list[str]:
    console = Console(file=io.StringIO(), width=width)
    print_numbers_table(console, COLUMNS, ROWS, text_columns=("class",), title="LP classes")
    return console.file.getvalue().splitlines()  # type: ignore[attr-defined]


@pytest.mark.parametrize("width", [100, 80, 72, 66, 60, 50, 40, 30])
def test_every_number_is_whole_on_one_line_at_any_width(width: int) -> None:
    lines = printed(width)
    text = "\n".join(lines)
    assert max(len(line) for line in lines) <= width, text
    assert lines[0].strip() == "LP classes"
    table = "row 1" not in text
    for numbers in NUMBERS:
        for number in numbers:
            assert any(number in line for line in lines), (number, text)
        if table:  # a row's numbers side by side on one line
            assert any(all(n in line for n in numbers) for line in lines), (numbers, text)
    if table:
        assert all(line.rstrip()[-1] in "┓┃┩│┘" for line in lines[1:]), text  # no edge cut


def test_the_layout_narrows_step_by_step() -> None:
    wide = "\n".join(printed(100))
    assert "implied tok/s" in wide and "c0: a long shared few-shot prefix" in wide
    wrapped = "\n".join(printed(66))  # the text and the headers wrap; the numbers do not
    assert "implied tok/s" not in wrapped and "implied" in wrapped and "row 1" not in wrapped
    assert "c0: a long shared few-shot prefix" not in wrapped
    blocks = "\n".join(printed(40))  # too narrow for the numbers side by side
    assert "row 1" in blocks and "row 3" in blocks
