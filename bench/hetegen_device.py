"""HeteGen on a GPU: decode throughput of a model larger than a GPU memory budget.

    python bench/hetegen_device.py --out /tmp/hetegen.json            # GPU, a few minutes
    python bench/hetegen_device.py --dry-run-cpu --out /tmp/h.json    # tiny shapes, CPU, s

A stack of decoder layers with a model spec's linear shapes (default llama-30b, 16 of its 60
layers: 17 GB of fp16 weights) and random weights, against a GPU budget for resident linear
weights (default 8 GiB). Each layer runs x += o(q(x)) (k(x) and v(x) computed and dropped)
and x += down(silu(gate(x)) * up(x)): attention, norms, embeddings and lm_head are omitted,
in the measurement and the prediction alike, so the 512-token context only sizes nothing
here (it is recorded). Decode steps (one token per sequence) at batch 1..32 for:
  resident   as many layers as fit the budget, all on the GPU; step time scaled to all layers
  streaming  greedy-resident layers up to the budget, every other layer's weights copied
             from pinned host memory each step (FlexGen-style)
  hetegen    the same budget filled by benefit, the other layers split by output columns at
             the profiled alpha* (GPU part streamed and queued first, CPU part computed meanwhile)
Beside each measured step time: the cost model's prediction from the profile measured at the
start (blend/hetegen/profiler.py). Prints a table and writes JSON to --out (default
$OUT/hetegen_device.json when $OUT is set). Needs only torch and the repository's
blend/hetegen modules (run from the repository root).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F
from torch import nn

from blend.cost.model import ModelSpec, load_model_spec
from blend.cost.offload.hardware_profile import HeteGenProfile
from blend.cost.offload.placement import Placement, all_resident, place
from blend.cost.offload.shapes import LinearShape, linear_shapes
from blend.hetegen.profiler import ProfileOptions, measure_profile
from blend.hetegen.split_linear import SplitLinear

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DRY_RUN_SPEC = ModelSpec(
    name="dry-run-tiny",
    n_params=0.0,
    n_layers=4,
    hidden_size=64,
    n_heads=4,
    n_kv_heads=2,
    head_dim=16,
    intermediate_size=176,
    vocab_size=256,
)


class DecoderStack(nn.Module):
    """Decoder layers' linear layers (resident nn.Linear or SplitLinear), no attention."""

    def __init__(self, layers: list[dict[str, nn.Module]]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.ModuleDict(layer) for layer in layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            q = layer["q_proj"](x)
            layer["k_proj"](x), layer["v_proj"](x)  # computed, as attention would need them
            x = x + layer["o_proj"](q)
            x = x + layer["down_proj"](F.silu(layer["gate_proj"](x)) * layer["up_proj"](x))
            x = x / (1.0 + x.abs().amax())  # random weights: keep fp16 finite
        return x


def _host_weights(shapes: list[LinearShape], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Random weights in host memory, one per linear layer (the model's 'checkpoint')."""
    generator = torch.Generator().manual_seed(0)
    weights = {}
    for s in shapes:
        w = torch.empty(s.out_features, s.in_features, dtype=dtype)
        weights[s.name] = w.uniform_(-0.02, 0.02, generator=generator)
    return weights


def _build(
    placement: Placement,
    weights: dict[str, torch.Tensor],
    n_layers: int,
    device: torch.device,
    cpu_dtype: torch.dtype,
) -> DecoderStack:
    rows = placement.by_name()
    layers = []
    for i in range(n_layers):
        layer: dict[str, nn.Module] = {}
        for projection in PROJECTIONS:
            name = f"layers.{i}.{projection}"
            row, weight = rows[name], weights[name]
            if row.resident:
                linear = nn.Linear(row.in_features, row.out_features, bias=False, device="meta")
                linear.weight = nn.Parameter(weight.to(device), requires_grad=False)
                layer[projection] = linear
            else:
                layer[projection] = SplitLinear(weight, None, row.alpha, device, cpu_dtype)
        layers.append(layer)
    return DecoderStack(layers)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_steps(
    stack: DecoderStack,
    batch: int,
    hidden: int,
    dtype: torch.dtype,
    device: torch.device,
    budget_s: float,
    max_steps: int,
) -> dict[str, Any]:
    """Median wall time of a decode step (one token per sequence) after one warm-up."""
    x = torch.randn(batch, hidden, dtype=dtype, device=device)
    times: list[float] = []
    with torch.inference_mode():
        stack(x)
        _sync(device)
        deadline = time.perf_counter() + budget_s
        while not times or (time.perf_counter() < deadline and len(times) < max_steps):
            start = time.perf_counter()
            stack(x)
            _sync(device)
            times.append(time.perf_counter() - start)
    return {"step_s": statistics.median(times), "steps": len(times)}


def _profile(args: argparse.Namespace, spec: ModelSpec, device: torch.device) -> HeteGenProfile:
    options = ProfileOptions(
        cpu_dtype=args.cpu_dtype,
        gpu_dtype=args.dtype,
        cpu_budget_s=args.profile_budget_s,
        gpu_budget_s=args.profile_budget_s,
    )
    profile = measure_profile(spec, options, name="bench")
    if device.type == "cpu":  # dry run: the "GPU" is the CPU, copies are memcpy
        profile = replace(
            profile,
            h2d_bytes_s=10e9,
            gpu_weights_per_s=profile.cpu_weights_per_s,
            source=profile.source + "; dry run: GPU rates = CPU rates, copies 10 GB/s (stand-ins)",
        )
    return profile


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device("cpu" if args.dry_run_cpu else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: pass --dry-run-cpu for the CPU smoke run")
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype, cpu_dtype = getattr(torch, args.dtype), getattr(torch, args.cpu_dtype)
    full = DRY_RUN_SPEC if args.dry_run_cpu else load_model_spec(args.model_spec)
    n_layers = min(args.layers, full.n_layers)
    spec = replace(full, n_layers=n_layers, dtype_bytes=torch.empty(0, dtype=dtype).element_size())
    shapes = [s for s in linear_shapes(spec) if s.name != "lm_head"]
    budget = int(args.gpu_budget_gib * 2**30)
    total = sum(s.weight_bytes for s in shapes)
    layer_bytes = total // n_layers
    started = time.perf_counter()
    print(
        f"{n_layers} layers of {full.name}: {total / 2**30:.2f} GiB, budget "
        f"{budget / 2**30:.2f} GiB, device {device}",
        flush=True,
    )
    profile = _profile(args, spec, device)
    print(f"profiled in {time.perf_counter() - started:.1f} s", flush=True)
    weights = _host_weights(shapes, dtype)
    fit = max(1, min(n_layers, budget // layer_bytes))
    result: dict[str, Any] = {
        "schema_version": 1,
        "script": "bench/hetegen_device.py",
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "model": asdict(spec),
        "weight_bytes": total,
        "gpu_budget_bytes": budget,
        "context_tokens": args.context,
        "omitted": "attention (and its KV reads), norms, embeddings, lm_head",
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_version": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "profile": json.loads(profile.to_json()),
        "points": [],
    }
    for batch in args.batches:
        modes: list[tuple[str, Placement, int]] = [
            ("resident", all_resident(shapes[: 7 * fit], profile, batch), fit),
            ("streaming", place(shapes, budget, profile, batch, fixed_alpha=0.0), n_layers),
            ("hetegen", place(shapes, budget, profile, batch), n_layers),
        ]
        for mode, placement, layers_run in modes:
            stack = _build(placement, weights, layers_run, device, cpu_dtype)
            timing = _time_steps(
                stack, batch, spec.hidden_size, dtype, device, args.budget_s, args.max_steps
            )
            scale = n_layers / layers_run  # resident: fewer layers, scaled to all
            measured, predicted = timing["step_s"] * scale, placement.time_s * scale
            offloaded = [row for row in placement.layers if not row.resident]
            point = {
                "mode": mode,
                "batch": batch,
                "layers_run": layers_run,
                "measured_step_s": measured,
                "predicted_step_s": predicted,
                "tokens_per_s": batch / measured,
                "steps": timing["steps"],
                "resident_bytes": placement.resident_bytes,
                "mean_alpha": statistics.fmean(r.alpha for r in offloaded) if offloaded else 0.0,
            }
            result["points"].append(point)
            print(
                f"  batch {batch:3d} {mode:9s} measured {measured * 1e3:9.2f} ms "
                f"predicted {predicted * 1e3:9.2f} ms  {point['tokens_per_s']:9.1f} tok/s "
                f"alpha {point['mean_alpha']:.2f}",
                flush=True,
            )
            del stack
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
                if hasattr(torch._C, "_host_emptyCache"):  # freed pinned blocks are cached
                    torch._C._host_emptyCache()
    result["wall_s"] = time.perf_counter() - started
    return result


def _summary(result: dict[str, Any]) -> str:
    by = {(p["batch"], p["mode"]): p for p in result["points"]}
    lines = ["batch  resident tok/s  streaming tok/s  hetegen tok/s  hetegen/streaming"]
    for batch in sorted({p["batch"] for p in result["points"]}):
        r, s, h = (by[(batch, m)] for m in ("resident", "streaming", "hetegen"))
        lines.append(
            f"{batch:5d}  {r['tokens_per_s']:14.1f}  {s['tokens_per_s']:15.1f}  "
            f"{h['tokens_per_s']:13.1f}  {s['measured_step_s'] / h['measured_step_s']:8.2f}x "
            f"(predicted {s['predicted_step_s'] / h['predicted_step_s']:.2f}x)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--model-spec", default="llama-30b")
    parser.add_argument("--layers", type=int, default=16, help="decoder layers in the stack")
    parser.add_argument("--gpu-budget-gib", type=float, default=8.0)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--context", type=int, default=512, help="recorded (attention omitted)")
    parser.add_argument("--dtype", default="float16", help="GPU weights and activations")
    parser.add_argument("--cpu-dtype", default="bfloat16", help="CPU part of split layers")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--budget-s", type=float, default=2.0, help="timing per point (s)")
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument("--profile-budget-s", type=float, default=3.0)
    parser.add_argument("--dry-run-cpu", action="store_true", help="tiny shapes on the CPU")
    args = parser.parse_args(argv)
    if args.dry_run_cpu:
        args.dtype = args.cpu_dtype = "float32"
        args.gpu_budget_gib = min(args.gpu_budget_gib, 0.0001)  # ~100 kB: 2 of 4 layers
        args.budget_s, args.max_steps, args.profile_budget_s = 0.05, 3, 0.2
        args.threads = args.threads or 1  # tiny GEMMs: more threads only add hand-off waits
    out = args.out or Path(os.environ.get("OUT", ".")) / "hetegen_device.json"
    result = run(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(_summary(result))
    print(f"wrote {out} ({result['wall_s']:.1f} s)")


if __name__ == "__main__":
    main()
