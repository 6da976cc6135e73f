"""CLI output as words, whatever the terminal width: rich draws usage errors and tables in
boxes whose border characters and line breaks fall wherever the width puts them, so tests
read the text with the box removed and every run of whitespace made one space."""

from __future__ import annotations

import re

_BOX = re.compile(r"[│┃╭╮╰╯─━┌┐└┘]")


def flat(output: str) -> str:
    """`output` without box-drawing characters, its whitespace collapsed to single spaces."""
    return " ".join(_BOX.sub(" ", output).split())
