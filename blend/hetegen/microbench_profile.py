"""A HeteGen profile from a bench/gpu_microbench.py result (its cpu_gemm, h2d and gemm
sections), so a machine measured once by that script needs no second run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from blend.cost.offload.hardware_profile import HeteGenProfile, ProfileError

MAX_BATCH = 32  # decode batches HeteGen targets; larger GEMMs are left out


def profile_from_microbench(path: Path, cpu_dtype: str = "bfloat16") -> HeteGenProfile:
    """CPU rates from the cpu_gemm points of `cpu_dtype`, host-to-device bandwidth from the
    largest pinned h2d copy, GPU rates from the gemm points up to batch 32 (all shapes)."""
    try:
        data = json.loads(Path(path).read_text())
        sections = data["sections"]
        cpu = [p for p in sections["cpu_gemm"]["points"] if p.get("dtype") == cpu_dtype]
        gpu = [p for p in sections["gemm"]["points"] if p["M"] <= MAX_BATCH]
        h2d = [
            p
            for p in sections["h2d"]["points"]
            if p["direction"] == "h2d" and p["host_memory"] == "pinned"
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProfileError(
            f"{path}: not a gpu_microbench result ({type(exc).__name__}: {exc})"
        ) from None
    if not cpu:
        raise ProfileError(f"{path}: no cpu_gemm points in {cpu_dtype}")
    env = data.get("env", {})
    largest_copy = max(h2d, key=lambda p: p["size_bytes"]) if h2d else None
    return HeteGenProfile(
        name=str(env.get("device_name", Path(path).stem)),
        cpu_weights_per_s=_rates(cpu),
        h2d_bytes_s=largest_copy["bytes_per_s"] if largest_copy else None,
        gpu_weights_per_s=_rates(gpu) if largest_copy else {},
        cpu_threads=int(cpu[0].get("threads", 0)),
        cpu_dtype=cpu_dtype,
        gpu_dtype="bfloat16",
        gpu_name=str(env.get("device_name", "")),
        source=f"bench/gpu_microbench.py result {Path(path).name} ({data.get('started_utc')})",
    )


def _rates(points: list[dict[str, Any]]) -> dict[int, float]:
    """Per batch M: all shapes' weights (K * N) over all their median seconds."""
    weights: dict[int, float] = {}
    seconds: dict[int, float] = {}
    for p in points:
        m = int(p["M"])
        weights[m] = weights.get(m, 0.0) + p["K"] * p["N"]
        seconds[m] = seconds.get(m, 0.0) + p["seconds"]
    return {m: weights[m] / seconds[m] for m in sorted(weights)}
