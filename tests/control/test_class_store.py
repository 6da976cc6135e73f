"""Request classes stored with the profile, shown in its summary, read by `blend lp`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import blend.cost.machine
from blend.cli import app
from blend.control.class_store import NoClassesError, load_classes
from blend.cost.machine import ThisMachine
from blend.store.database import Store, fetch_dicts
from tests.support.cli_text import flat

runner = CliRunner()


def write_prompts(path: Path) -> Path:
    """Three kinds: short prompts with short limits, long ones, short ones with long limits."""
    rows = []
    for i in range(12):
        rows.append({"request_id": f"s{i}", "prompt": f"hi {i}", "max_tokens": 8})
        rows.append({"request_id": f"l{i}", "prompt": "long text " * 60 + str(i), "max_tokens": 8})
        rows.append({"request_id": f"g{i}", "prompt": f"story {i}", "max_tokens": 900})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def profiled(tmp_path: Path, tiny_model: Path) -> Path:
    root = tmp_path / "store"
    src = write_prompts(tmp_path / "p.jsonl")
    assert (
        runner.invoke(app, ["ingest", str(src), "--dataset", "d", "--store", str(root)]).exit_code
        == 0
    )
    return root


def profile(root: Path, model: Path):
    result = runner.invoke(
        app, ["profile", "--dataset", "d", "--store", str(root), "--model", str(model)]
    )
    assert result.exit_code == 0, result.output
    return result


def test_profile_stores_and_shows_classes_once(profiled: Path, tiny_model: Path) -> None:
    output = profile(profiled, tiny_model).output
    stored = load_classes(Store.open(profiled), "d")
    assert sum(c.n_requests for c in stored.classes) == 36
    assert len(stored.classes) == 5  # choose_k(36) = ceil(sqrt(18))
    for c in stored.classes:
        assert f"request class {c.name}: {c.n_requests} prompts" in output
        # no results yet: the estimates are the output limits (what the planner sees)
        assert c.output_tokens in (8.0, 900.0)
    profile(profiled, tiny_model)  # again: replaced, not duplicated
    with Store.open(profiled).connect() as con:
        rows = fetch_dicts(
            con, "SELECT count(*) AS n, sum(n_requests) AS total FROM request_classes"
        )
    assert rows == [{"n": 5, "total": 36}]
    assert load_classes(Store.open(profiled), "d").classes == stored.classes


def test_lp_command_prints_the_solution(profiled: Path, tiny_model: Path) -> None:
    profile(profiled, tiny_model)
    base = ["lp", "--dataset", "d", "--store", str(profiled), "--model-spec", "llama-3.1-8b"]
    result = runner.invoke(app, [*base, "--hardware", "h200", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    x = [c["x"] for c in summary["classes"]]
    assert len(x) == 5 and 0 < sum(x) <= 1 + 1e-9
    assert summary["throughput_tok_s"] > 0 and summary["revenue_per_gpu_s"] > 0
    assert summary["inputs"]["slots"] >= 2 and summary["inputs"]["chunk_tokens"] >= 1
    assert summary["phase_plan"]["makespan_s"] > 0
    table = runner.invoke(app, [*base, "--hardware", "h200"])
    assert table.exit_code == 0 and "R*" in table.output and "x*" in table.output


def test_lp_without_a_profile_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(NoClassesError, match="no profile"):
        load_classes(Store.open(tmp_path / "s"), "nothing")
    result = runner.invoke(
        app,
        ["lp", "--dataset", "nothing", "--store", str(tmp_path / "s"), "--model-spec",
         "llama-3.1-8b", "--hardware", "h200"],
    )  # fmt: skip
    assert result.exit_code == 1 and "blend profile" in result.output


def test_lp_says_what_it_assumes_and_what_its_throughput_is(
    profiled: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18, item 5: the hardware and model first; the implied throughput is the LP's
    fluid optimum on that hardware, not this machine's measurement; a mismatch is named."""
    profile(profiled, tiny_model)
    base = ["lp", "--dataset", "d", "--store", str(profiled), "--model-spec", "llama-3.1-8b"]
    monkeypatch.setattr(
        blend.cost.machine, "this_machine", lambda: ThisMachine("cpu-local", "no GPU")
    )
    summary = json.loads(runner.invoke(app, [*base, "--hardware", "h200", "--json"]).output)
    assert summary["hardware_matches_machine"] is False and summary["machine"] == "no GPU"
    result = runner.invoke(app, [*base, "--hardware", "h200"])
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert "assuming llama-3.1-8b on one h200 GPU with vLLM at" in first
    assert "not a measurement of this machine" in first
    words = flat(result.output)
    assert "hardware: priced for h200, but this machine has no GPU" in words
    assert words.index("assuming") < words.index("x*") < words.index("implied throughput")
    shown = re.search(r"implied throughput ([\d,]+) tok/s per GPU: (.*?)\. It is not a", words)
    assert shown is not None, words
    assert int(shown[1].replace(",", "")) == round(summary["throughput_tok_s"])
    assert "at the LP's fluid optimum on h200" in shown[2]
    assert "R* " in words and "what the LP maximises" in words
    # Priced for the hardware this machine has: nothing to warn about.
    monkeypatch.setattr(blend.cost.machine, "this_machine", lambda: ThisMachine("h200", "H200"))
    same = runner.invoke(app, [*base, "--hardware", "h200"])
    assert same.exit_code == 0 and "hardware:" not in flat(same.output)
