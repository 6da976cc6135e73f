"""Fit the cpu-local hardware profile from real step times of the local vLLM CPU engine.

    python bench/calibrate.py [--out FILE] [--clock wall|cpu] [--pick median|min]
                              [--step-model additive|overlap]
                              [--repeats 4] [--samples-out FILE] [--from-samples FILE]

Starts vLLM in process (1 GiB of KV) on a locally built random-weight Llama (4 layers,
hidden 512, 8 heads and 8 KV heads of 64, max_position 2048), times LLMEngine.step() over a
grid of pure-prefill steps (prompt tokens per step) and pure-decode steps (decoding requests
x context length), and fits the simulator's step model (blend/cost/step_time.py) by least
squares on one repeat per grid point (--pick median, or min on a busy machine), in wall time
(--clock wall) or process CPU time (--clock cpu). --step-model overlap (default) fits
t = overhead + max(compute / F, memory / W): points are assigned to the compute or memory
side by the current fit and the piecewise-linear problem is re-solved until the assignment
is stable; additive fits t = overhead + compute / F + memory / W  linearly. The other
model's fit error is printed beside it.
Writes peak_flops = F, mem_bandwidth_bytes_s = W (efficiencies 1.0), step_overhead_s and
overlap_compute_memory into the "cpu-local" entry of blend/cost/specs/hardware.json (or --out),
with a "source" line. The measuring and the fit live in blend/calibration/ (cpu_measure.py,
cpu_fit.py, hardware_file.py); this script reads the options, prints and writes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path

from blend.calibration.cpu_fit import (
    BENCH_SHAPE,
    Fit,
    Sample,
    features,
    fit_step_model,
    model_spec,
    per_point,
)
from blend.calibration.cpu_measure import default_models_dir, describe, measure
from blend.calibration.hardware_file import HARDWARE_JSON, write_flat_profile, write_profile
from blend.cost.model import ModelSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HARDWARE_JSON, help="hardware JSON to update")
    parser.add_argument("--models-dir", type=Path, default=default_models_dir())
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--decode-steps", type=int, default=8)
    parser.add_argument("--samples-out", type=Path, help="also write the raw samples (JSON)")
    parser.add_argument("--from-samples", type=Path, help="fit samples written before")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="fit wall time (a quiet machine) or the process's CPU time (a shared one: it "
        "leaves out time taken by others, but counts every engine thread)",
    )
    parser.add_argument(
        "--pick",
        choices=["median", "min"],
        default="median",
        help="the repeat of each grid point to fit for --out: median (quiet machine) or "
        "min (a shared machine: the fastest repeat has the least time taken by others)",
    )
    parser.add_argument(
        "--other-out", type=Path, help="also write the fit of the other pick (flat JSON)"
    )
    parser.add_argument(
        "--step-model",
        choices=["overlap", "additive"],
        default="overlap",
        help="overlap: overhead + max(FLOPs/F, bytes/W) (roofline; predicts whole runs on the "
        "CPU build better, see docs/measurements.md); additive: overhead + FLOPs/F + bytes/W "
        "(fits single CPU steps better)",
    )
    args = parser.parse_args()
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # this script is the process

    spec = model_spec(BENCH_SHAPE)
    if args.from_samples:
        saved = json.loads(args.from_samples.read_text())
        samples = [Sample(**s) for s in saved["samples"]]
        when, load = saved["measured_at"], saved["load_average"]
    else:
        samples = measure(
            args.models_dir,
            args.repeats,
            args.decode_steps,
            on_sample=lambda s: print(f"  {describe(s)}", flush=True),
            say=print,
        )
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        load = os.getloadavg()[0]
        if args.samples_out:
            saved = {"measured_at": when, "load_average": load}
            saved["samples"] = [asdict(s) for s in samples]
            args.samples_out.write_text(json.dumps(saved, indent=1))
    if args.clock == "wall":
        samples = [replace(s, seconds=s.wall_seconds) for s in samples]
    other = "min" if args.pick == "median" else "median"
    for pick, path in ((args.pick, args.out), (other, args.other_out)):
        points = per_point(samples, pick)
        fit = fit_step_model(points, spec, overlap=args.step_model == "overlap")
        other_model = fit_step_model(points, spec, overlap=args.step_model != "overlap")
        print(
            f"the other step model ({'additive' if fit.overlap else 'overlap'}) fits with "
            f"relative error rms {other_model.rel_rms:.1%}, max {other_model.rel_max:.1%}"
        )
        print(f"fit to the {pick} of each grid point: {json.dumps(asdict(fit))}")
        _print_table(points, spec, fit)
        if path is None:
            continue
        formula = (
            "overhead + max(FLOPs/F, bytes/W)" if fit.overlap else "overhead + FLOPs/F + bytes/W"
        )
        source = (
            f"bench/calibrate.py, {when}: vLLM {_vllm_version()} CPU build in process on this "
            f"{os.cpu_count()}-core machine (load average {load:.1f} when measured), "
            f"{spec.name} ({spec.n_params / 1e6:.1f}M params, bf16); {len(samples)} "
            f"LLMEngine.step() calls timed in {args.clock} time, the {pick} of each of "
            f"{fit.n_samples} grid points "
            f"(prefill 32-4096 tokens, decode 1-32 requests x 128-1024 context); least-squares "
            f"fit of {formula}: relative error rms {fit.rel_rms:.1%}, max {fit.rel_max:.1%}"
        )
        if path == args.out:
            write_profile(path, fit, source)
        else:
            write_flat_profile(path, fit, source, name=f"cpu-local-{pick}")
        print(f"wrote the {pick} fit to {path}")


def _print_table(samples: list[Sample], model: ModelSpec, fit: Fit) -> None:
    flops, mem, _ = features(samples, model)
    predicted = fit.predict(flops, mem)
    groups: dict[tuple[str, int, int], list[tuple[float, float]]] = {}
    for s, p in zip(samples, predicted, strict=True):
        context = s.context if s.kind == "prefill" else s.context // 64 * 64
        groups.setdefault((s.kind, s.n_requests, context), []).append((s.seconds, float(p)))
    print("grid point (fastest step): measured vs fitted step time")
    print(f"{'kind':8} {'reqs':>4} {'context':>7} {'measured ms':>11} {'model ms':>9} {'err':>6}")
    for (kind, n, context), pairs in sorted(groups.items()):
        measured = statistics.median(m for m, _ in pairs)
        model_s = statistics.median(p for _, p in pairs)
        err = (model_s - measured) / measured
        print(
            f"{kind:8} {n:4d} {context:7d} {measured * 1e3:11.2f} {model_s * 1e3:9.2f} {err:6.1%}"
        )


def _vllm_version() -> str:
    import vllm

    return str(vllm.__version__)


if __name__ == "__main__":
    main()
