"""Parts through pyarrow's filesystem layer, engine splits and what a dead engine leaves."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from blend.admission.dual_scan import ScanSequence
from blend.engines.base import EngineRequest
from blend.execute.ray_fleet import _rest_of
from blend.scale.parts import RunFolder, run_folder_uri
from blend.scale.split import check_split
from blend.scale.worker import Share, ShareRequest
from blend.store.results import ResultRow, finished_parts


def _row(request_id: str) -> ResultRow:
    now = datetime.now(UTC)
    return ResultRow(
        dataset="ds",
        snapshot=1,
        request_id=request_id,
        seq=0,
        prompt_sha256="sha",
        output_text="x",
        output_token_ids=[1],
        finish_reason="length",
        n_prompt_tokens=1,
        n_output_tokens=1,
        n_cached_tokens=0,
        error=None,
        run_id="r",
        plan_id="p",
        model="m",
        model_sha256="s",
        tokenizer_sha256="t",
        sampling_json="{}",
        engine="fake",
        engine_version="0",
        started_at=now,
        finished_at=now,
    )


@pytest.mark.parametrize("as_url", [False, True])
def test_parts_of_two_engines_land_in_one_folder(tmp_path: Path, as_url: bool) -> None:
    run = tmp_path / "results" / "dataset=ds" / "run_id=r"
    uri = run_folder_uri(
        "file://" + str(tmp_path / "results") if as_url else None, tmp_path / "results", run
    )
    folder = RunFolder(uri)
    folder.write_part("e0", [_row("a"), _row("b")], {"blend.engine_tag": "e0"}, 0)
    folder.write_part("e1", [_row("c")], {"blend.engine_tag": "e1"}, 0)
    (run / ".tmp-e0-part-e0-00002-dead.parquet.partial").write_bytes(b"half")
    assert folder.done_request_ids() == {"a", "b", "c"}
    assert len(finished_parts(run)) == 2  # the local reader sees both engines' parts
    tags = {pq.read_schema(p).metadata[b"blend.engine_tag"] for p in finished_parts(run)}
    assert tags == {b"e0", b"e1"}
    assert sum(folder.rows_by_part({}).values()) == 3
    assert folder.remove_temporary("e1") == 0  # another engine's leftovers are not its own
    assert folder.remove_temporary("e0") == 1
    assert not list(run.glob(".tmp-*"))


def test_run_folder_survives_pickling(tmp_path: Path) -> None:
    import pickle

    folder = RunFolder(str(tmp_path))
    assert folder.done_request_ids() == set()
    copy = pickle.loads(pickle.dumps(folder))
    assert copy.uri == str(tmp_path) and copy.part_paths() == []


def test_check_split_refuses_missing_repeated_and_wrong_counts() -> None:
    check_split([np.array([0, 2]), np.array([1])], 3, 2)
    with pytest.raises(ValueError, match="1 missed, 1 repeated"):
        check_split([np.array([0, 0]), np.array([1])], 3, 2)
    with pytest.raises(ValueError, match="3 shares for 2 engines"):
        check_split([np.array([0]), np.array([1]), np.array([2])], 3, 2)
    with pytest.raises(ValueError, match="out of range"):
        check_split([np.array([0, 1]), np.array([2, 3])], 3, 2)


def test_rest_of_a_share_keeps_the_unfinished_in_order_with_sharing_across_gaps() -> None:
    seqs = np.array([3, 4, 5, 6])
    sequence = ScanSequence(
        index=seqs,
        prompt_tokens=np.array([10.0, 10, 10, 10]),
        shared_prev=np.array([0.0, 8, 6, 9]),
        output_tokens=np.array([1.0, 2, 3, 4]),
    )
    requests = tuple(
        ShareRequest(int(s), EngineRequest(f"r{s}", [1], {"max_tokens": 1}), "sha", "{}")
        for s in seqs
    )
    share = Share(1, sequence, requests)
    rest = _rest_of(share, {"r4", "r5"})
    assert rest is not None and rest.share_index == 1
    assert rest.sequence.index.tolist() == [3, 6]
    assert [r.request.request_id for r in rest.requests] == ["r3", "r6"]
    assert rest.sequence.shared_prev.tolist() == [0.0, 6.0]  # the least sharing in between
    assert rest.sequence.output_tokens.tolist() == [1.0, 4.0]
    assert _rest_of(share, {"r3", "r4", "r5", "r6"}) is None


def test_engines_below_one_are_refused_before_anything_runs(tmp_path: Path) -> None:
    from blend.engines.base import EngineConfig
    from blend.execute.stage import ExecuteError, ExecuteOptions, execute_plan
    from blend.store.database import Store

    store = Store.open(tmp_path / "store")
    with pytest.raises(ExecuteError, match="engines must be >= 1, got 0"):
        execute_plan(
            store, "p1", EngineConfig(model_dir=tmp_path), options=ExecuteOptions(engines=0)
        )


def test_the_cli_refuses_zero_engines() -> None:
    from typer.testing import CliRunner

    from blend.cli import app

    result = CliRunner().invoke(app, ["execute", "--plan-id", "p1", "--engines", "0"])
    assert result.exit_code == 2
    assert "--engines" in result.output
