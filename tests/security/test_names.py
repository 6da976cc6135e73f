"""The naming rule itself (blend.store.names): ids blend makes pass, every attack name is
refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from blend.demo.model import TinyModelShape
from blend.store.names import InvalidNameError, NameKind, path_under, validate_name
from blend.store.run_records import new_run_id
from tests.support.attacks import BAD_NAMES


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("demo", NameKind.DATASET),
        ("nightly_2026.v2", NameKind.DATASET),
        ("a" * 128, NameKind.DATASET),
        ("run-20260101T000000Z-abc123", NameKind.RUN_ID),
        ("demo-s12-naive-blend-0a1b2c3d", NameKind.PLAN_ID),
        ("a" * 128 + "-s1-naive-blend-0a1b2c3d", NameKind.PLAN_ID),
        ("Llama-3.1-8B-Instruct", NameKind.MODEL),
        (TinyModelShape().name, NameKind.MODEL),
    ],
)
def test_names_blend_and_users_make_pass(value: str, kind: NameKind) -> None:
    assert validate_name(value, kind) == value


def test_a_fresh_run_id_follows_the_rule() -> None:
    run_id = new_run_id()
    assert validate_name(run_id, NameKind.RUN_ID) == run_id


@pytest.mark.parametrize("kind", list(NameKind))
@pytest.mark.parametrize("attack", sorted(BAD_NAMES))
def test_every_attack_name_is_refused_with_what_and_where(attack: str, kind: NameKind) -> None:
    value = BAD_NAMES[attack]
    with pytest.raises(InvalidNameError) as info:
        validate_name(value, kind, "--somewhere")
    message = str(info.value)
    assert str(kind) in message and "--somewhere" in message and repr(value) in message


def test_long_names_are_refused_by_length_per_kind() -> None:
    validate_name("a" * 200, NameKind.PLAN_ID)
    with pytest.raises(InvalidNameError, match="129 characters long, at most 128"):
        validate_name("a" * 129, NameKind.DATASET)


def test_path_under_refuses_parts_that_leave_the_root(tmp_path: Path) -> None:
    assert path_under(tmp_path, "dataset=d", "run_id=r") == tmp_path / "dataset=d" / "run_id=r"
    for parts in (("..", "x"), ("/etc",), ("a", "../../b")):
        with pytest.raises(InvalidNameError, match="outside"):
            path_under(tmp_path, *parts)


def test_path_under_refuses_a_symlink_out_of_the_root(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", root / "dataset=escape")
    with pytest.raises(InvalidNameError, match="outside"):
        path_under(root, "dataset=escape", "run_id=r")
