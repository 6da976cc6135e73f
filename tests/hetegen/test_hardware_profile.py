from __future__ import annotations

import json
from pathlib import Path

import pytest

from blend.cost.model import load_hardware
from blend.cost.offload.hardware_profile import (
    HeteGenProfile,
    ProfileError,
    roofline_weights_per_s,
    with_assumed_gpu,
)


def test_json_round_trip_keeps_every_rate(tmp_path: Path, profile: HeteGenProfile) -> None:
    path = tmp_path / "p.json"
    profile.save(path)
    loaded = HeteGenProfile.load(path)
    assert loaded == profile
    assert json.loads(path.read_text())["cpu_weights_per_s"] == {"1": 1e9, "8": 5e8}


def test_seconds_are_interpolated_between_measured_batches(profile: HeteGenProfile) -> None:
    # 1 ns a weight at batch 1, 2 ns at batch 8: linear in between, flat below
    assert profile.cpu_s(1e9, 1) == pytest.approx(1.0)
    assert profile.cpu_s(1e9, 8) == pytest.approx(2.0)
    assert profile.cpu_s(7e9, 4) == pytest.approx(7 * (1 + 3 / 7))
    assert profile.cpu_s(1e9, 16) == pytest.approx(4.0)  # beyond: scaled with the batch


def test_a_profile_without_gpu_says_so() -> None:
    cpu_only = HeteGenProfile(name="cpu", cpu_weights_per_s={1: 1e9})
    assert not cpu_only.has_gpu
    with pytest.raises(ProfileError, match="no GPU rates"):
        cpu_only.h2d_s(1.0)


def test_assumed_gpu_rates_follow_the_roofline() -> None:
    a10 = load_hardware("a10-24g")
    cpu_only = HeteGenProfile(name="cpu", cpu_weights_per_s={1: 1e9, 512: 1e8})
    profile = with_assumed_gpu(cpu_only, a10, h2d_bytes_s=25e9)
    # batch 1 reads 2 bytes a weight; batch 512 is compute bound (1024 FLOP a weight)
    assert profile.gpu_weights_per_s[1] == pytest.approx(a10.effective_bandwidth / 2)
    assert profile.gpu_weights_per_s[512] == pytest.approx(a10.effective_flops / 1024)
    assert profile.h2d_s(25e9) == pytest.approx(1.0)
    assert roofline_weights_per_s(10.0, 100.0, 2, [1]) == {1: 5.0}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1]", "expected a JSON object"),
        ('{"schema_version": 9}', "schema_version 9"),
        ('{"schema_version": 1, "name": "x", "cpu_weights_per_s": {"1": 1}, "z": 1}', "'z'"),
        ('{"schema_version": 1, "name": "x", "cpu_weights_per_s": {"1": -1}}', r"\[1\] = -1"),
        ('{"schema_version": 1, "name": "x", "cpu_weights_per_s": {}}', "is empty"),
        ('{"schema_version": 1, "name": "x", "cpu_weights_per_s": {"a": 1}}', "batch sizes"),
    ],
)
def test_bad_profile_files_are_refused_by_name(text: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message) as caught:
        HeteGenProfile.from_json(text, where="p.json")
    assert str(caught.value).startswith("p.json")
