"""The synthetic traces and mixes hit their target statistics (bench/workloads/generators.py)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bench.workloads.generators import (
    MAIN_MIXES,
    TRACES,
    blend_mix,
    workload_stats,
    write_requests_parquet,
)

# name -> (mean prompt tokens, mean output tokens, sharing)
TARGETS = {
    "burstgpt": (244, 27, 0.02),
    "mmlu": (804, 2, 0.86),
    "openvid": (121, 16000, 0.0),
    "sharegpt": (300, 260, 0.02),
    "wildchat": (496, 256, 0.19),
    "azure": (2508, 23, 0.01),
}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_traces_match_their_sources(name: str) -> None:
    prompt, output, sharing = TARGETS[name]
    requests = TRACES[name](3000, 1)
    stats = workload_stats(requests)
    assert stats.n_requests == 3000
    assert stats.mean_prompt_tokens == pytest.approx(prompt, rel=0.08)
    assert stats.mean_output_tokens == pytest.approx(output, rel=0.1)
    assert stats.sharing == pytest.approx(sharing, abs=0.02)
    assert all(r.output_len >= 1 and len(r.prompt_token_ids) >= 1 for r in requests)


def test_traces_are_seeded() -> None:
    a, b = TRACES["mmlu"](50, 7), TRACES["mmlu"](50, 7)
    assert [r.prompt_token_ids.tolist() for r in a] == [r.prompt_token_ids.tolist() for r in b]
    assert TRACES["mmlu"](50, 8)[0].prompt_token_ids.tolist() != a[0].prompt_token_ids.tolist()


@pytest.mark.parametrize("mix", sorted(MAIN_MIXES))
def test_main_mixes_hit_rho_and_sharing(mix: str) -> None:
    rho, sharing = MAIN_MIXES[mix]
    requests = blend_mix(rho, sharing, n=4000, seed=0)
    stats = workload_stats(requests)
    assert stats.n_requests == pytest.approx(4000, abs=5)
    assert stats.rho == pytest.approx(rho, rel=0.02)
    assert stats.sharing == pytest.approx(sharing, abs=0.01)


def test_unreachable_mix_names_the_targets() -> None:
    with pytest.raises(ValueError, match=r"rho 0\.9 and sharing 0\.95"):
        blend_mix(0.9, 0.95, n=400)


def test_parquet_round_trip(tmp_path: Path) -> None:
    requests = TRACES["burstgpt"](20, 0)
    path = write_requests_parquet(requests, tmp_path / "w" / "burst.parquet")
    table = pq.read_table(path)
    assert table.column_names == ["request_id", "prompt_token_ids", "output_len"]
    assert table["request_id"].to_pylist() == [r.request_id for r in requests]
    assert table["prompt_token_ids"].to_pylist()[3] == requests[3].prompt_token_ids.tolist()
    assert table["output_len"].to_pylist() == [r.output_len for r in requests]
