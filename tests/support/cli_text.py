"""The words a CLI printed, whatever the terminal width: Typer draws usage errors in a box
whose border characters and line breaks fall wherever the width puts them, so tests read the
text with the box removed and every run of whitespace made one space."""

from __future__ import annotations

import re

_BOX = re.compile(r"[│┃╭╮╰╯─━┌┐└┘]")


def words(output: str) -> str:
    """`output` without box-drawing characters, its whitespace collapsed to single spaces."""
    return " ".join(_BOX.sub(" ", output).split())
