"""Every command's help at 80 columns: whole option names, no type shown for flags, every
option explained, summaries that end where their sentence does."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from blend.cli import app

runner = CliRunner()


def _commands() -> list[tuple[list[str], Any]]:
    """Every command and group under `blend`, with its path (typer's own click classes)."""
    root = typer.main.get_command(app)
    found: list[tuple[list[str], Any]] = []

    def walk(path: list[str], command: Any) -> None:
        found.append((path, command))
        for name, sub in getattr(command, "commands", {}).items():
            walk([*path, name], sub)

    walk([], root)
    return found


COMMANDS = _commands()


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=[" ".join(p) or "blend" for p, _ in COMMANDS]
)
def test_help_at_80_columns_names_and_explains_every_option(path: list[str], command: Any) -> None:
    result = runner.invoke(app, [*path, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    text = result.output
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "<bool>" not in text and "…" not in text
    for param in command.params:
        if param.param_type_name != "option" or param.hidden:
            continue
        for name in param.opts + param.secondary_opts:
            assert name in text, (name, text)  # whole, never cut
        if param.name != "help":
            assert param.help, f"{' '.join(path)} {param.opts[0]}: no help text"
    # click breaks lines after a hyphen: a name or URI in a help text (max-num-partial-
    # prefills, cpu-local) must not be split there
    cut = [line for line in text.splitlines() if re.search(r"\w-$", line)]
    assert not cut, cut


def test_command_lists_give_whole_sentences() -> None:
    for path, command in COMMANDS:
        if not getattr(command, "commands", None):
            continue
        text = runner.invoke(app, [*path, "--help"], terminal_width=80).output
        listing = text.split("Commands:", 1)[1]
        assert "..." not in listing, listing
        for name, sub in command.commands.items():
            assert sub.short_help, f"{name}: no summary"


def test_arguments_are_shown_alike() -> None:
    """One name for the input everywhere (typer's usage line: {REQUIRED}, [OPTIONAL])."""
    ingest = runner.invoke(app, ["ingest", "--help"], terminal_width=80).output
    run = runner.invoke(app, ["run", "--help"], terminal_width=80).output
    assert "[OPTIONS] {INPUT}" in ingest.splitlines()[0]
    assert "[OPTIONS] [INPUT]" in run.splitlines()[0]
    assert "input_path" not in ingest + run
