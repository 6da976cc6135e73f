"""The one naming rule for dataset names, run ids, plan ids and model names.

These names become folder names (`results/dataset=<name>/run_id=<id>/`, `lineage/<id>.jsonl`),
labels in Prefect artifacts and values in every result row, and some of them come from a web
form (the Prefect UI). So they are restricted to a small, portable character set:

    an ASCII letter or digit, then up to MAX_LENGTH - 1 letters, digits, `.`, `_` or `-`,
    and never `..`

which fits every id blend makes itself (`run-20260101T000000Z-1a2b3c`,
`demo-s1-dfs-0a1b2c3d`) and model folders as published (`Llama-3.1-8B-Instruct`). It leaves
out path separators, quotes, spaces, control characters (NUL) and non-ASCII lookalikes.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

# A first character that is a letter or digit keeps names from looking like options (`-x`)
# or hidden files (`.x`); re.ASCII keeps \w-style lookalikes (Cyrillic `а`, fullwidth `／`) out.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*", re.ASCII)

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"  # the same rule, for JSON schemas (UI forms)


class NameKind(StrEnum):
    """What a name names; the kind sets the longest name allowed."""

    DATASET = "dataset name"
    RUN_ID = "run id"
    PLAN_ID = "plan id"
    MODEL = "model name"

    @property
    def max_length(self) -> int:
        """Characters at most: 128, and 200 for plan ids, which embed a dataset name."""
        # A plan id is `<dataset>-s<snapshot>-<planner>-<8 hex>` (blend/plan/stage.py), so it
        # must leave room for a dataset name of the full length plus that suffix.
        return 200 if self is NameKind.PLAN_ID else 128


class InvalidNameError(ValueError):
    """A name breaks the naming rule; the message says which name, where, and why."""


def name_problem(value: object, kind: NameKind) -> str | None:
    """Why `value` is not a valid name of `kind`, or None when it is."""
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if not value:
        return "must not be empty"
    if len(value) > kind.max_length:
        return f"is {len(value)} characters long, at most {kind.max_length} are allowed"
    if _NAME.fullmatch(value) is None:
        bad = sorted({c for c in value if not _NAME.fullmatch("a" + c)})
        if bad:
            shown = ", ".join(repr(c) for c in bad[:5])
            return f"contains {shown}: only ASCII letters, digits, '.', '_' and '-' are allowed"
        return "must start with an ASCII letter or digit"
    if ".." in value:
        return "must not contain '..'"
    return None


def validate_name(value: str, kind: NameKind, where: str = "") -> str:
    """`value` unchanged when it follows the naming rule, else InvalidNameError.

    where: the option, parameter or file the name came from, named in the message.
    """
    problem = name_problem(value, kind)
    if problem is not None:
        source = f" (from {where})" if where else ""
        raise InvalidNameError(
            f"invalid {kind} {value!r}{source}: it {problem}. A {kind} is 1-{kind.max_length} "
            "ASCII letters, digits, '.', '_' or '-', starting with a letter or digit, "
            "without '..'"
        )
    return value


def path_under(root: Path, *parts: str) -> Path:
    """`root / parts...`, after checking that it stays inside `root` once resolved.

    Every path built from a name goes through here, so that even a name that slipped past
    `validate_name` cannot reach outside the store (symbolic links included).
    """
    path = root.joinpath(*parts)
    resolved_root = root.resolve()
    if not path.resolve().is_relative_to(resolved_root):
        raise InvalidNameError(f"{path} is outside {resolved_root}: refused")
    return path
