"""Fit the cpu-local hardware profile from real step times of the local vLLM CPU engine.

    python bench/calibrate.py [--out FILE] [--clock wall|cpu] [--pick median|min]
                              [--step-model additive|overlap]
                              [--repeats 4] [--samples-out FILE] [--from-samples FILE]

Starts vLLM in process (VLLM_ENABLE_V1_MULTIPROCESSING=0, VLLM_CPU_KVCACHE_SPACE=1) on a
locally built random-weight Llama (4 layers, hidden 512, 8 heads and 8 KV heads of 64,
max_position 2048), times LLMEngine.step() over a grid of pure-prefill steps (prompt tokens
per step) and pure-decode steps (decoding requests x context length), and fits the
simulator's step model (blend/simulate/step_time.py) by least squares on one repeat per grid
point (--pick median, or min on a busy machine), in wall time (--clock wall) or process CPU
time (--clock cpu). --step-model overlap (default) fits  t = overhead + max(compute / F,
memory / W): points are assigned to the compute or memory side by the current fit and the
piecewise-linear problem is re-solved until the assignment is stable; additive fits
t = overhead + compute / F + memory / W  linearly. The other model's fit error is printed
beside it.
Writes peak_flops = F, mem_bandwidth_bytes_s = W (efficiencies 1.0), step_overhead_s and
overlap_compute_memory into
the "cpu-local" entry of blend/specs/hardware.json (or --out), with a "source" line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from blend.cost import CostModel, HardwareSpec, ModelSpec
from blend.demo.model import TinyModelShape, ensure_tiny_model
from blend.engines.vllm_compat import shield_llvmlite_from_kernel_scan
from blend.simulate.step_time import prefill_attention_flops

HARDWARE_JSON = Path(__file__).resolve().parents[1] / "blend" / "specs" / "hardware.json"
BENCH_SHAPE = TinyModelShape(
    vocab_size=2048,
    hidden_size=512,
    intermediate_size=1376,
    num_hidden_layers=4,
    num_attention_heads=8,
    num_key_value_heads=8,
    max_position_embeddings=2048,
)
MAX_BATCHED_TOKENS = 4096  # >= max_model_len: needed without chunked prefill
CPU_BLOCK_SIZE = 128


def default_models_dir() -> Path:
    return Path(tempfile.gettempdir()) / "blend-bench-models"


def model_spec(shape: TinyModelShape) -> ModelSpec:
    """The cost-model spec of a TinyModelShape (untied embeddings, GQA attention, SwiGLU)."""
    h, hd = shape.hidden_size, shape.head_dim
    attention = h * hd * (2 * shape.num_attention_heads + 2 * shape.num_key_value_heads)
    mlp = 3 * h * shape.intermediate_size
    per_layer = attention + mlp + 2 * h
    n_params = shape.num_hidden_layers * per_layer + 2 * shape.vocab_size * h + h
    return ModelSpec(
        name=shape.name,
        n_params=float(n_params),
        n_layers=shape.num_hidden_layers,
        hidden_size=h,
        n_heads=shape.num_attention_heads,
        n_kv_heads=shape.num_key_value_heads,
        head_dim=hd,
        intermediate_size=shape.intermediate_size,
        vocab_size=shape.vocab_size,
        dtype_bytes=2,
    )


def start_engine(
    model_dir: Path,
    *,
    max_num_seqs: int = 256,
    enable_prefix_caching: bool = False,
    num_blocks: int | None = None,
) -> Any:
    """An in-process vLLM engine on the CPU (chunked prefill off, as blend's executor runs it)."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    shield_llvmlite_from_kernel_scan()
    from vllm import EngineArgs, LLMEngine

    args = EngineArgs(
        model=str(model_dir),
        max_model_len=BENCH_SHAPE.max_position_embeddings,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=MAX_BATCHED_TOKENS,
        enable_prefix_caching=enable_prefix_caching,
        enable_chunked_prefill=False,
        num_gpu_blocks_override=num_blocks,
        dtype="bfloat16",
        seed=0,
    )
    return LLMEngine.from_engine_args(args)


def engine_num_blocks(engine: Any) -> int:
    return int(engine.vllm_config.cache_config.num_gpu_blocks)


def greedy(max_tokens: int) -> Any:
    from vllm import SamplingParams

    return SamplingParams(max_tokens=max_tokens, ignore_eos=True, temperature=0.0)


def add_prompts(engine: Any, prompts: list[list[int]], max_tokens: int | list[int]) -> list[str]:
    from vllm.inputs import TokensPrompt

    limits = max_tokens if isinstance(max_tokens, list) else [max_tokens] * len(prompts)
    ids = []
    for prompt, limit in zip(prompts, limits, strict=True):
        request_id = uuid.uuid4().hex
        engine.add_request(request_id, TokensPrompt(prompt_token_ids=prompt), greedy(limit))
        ids.append(request_id)
    return ids


def random_prompts(rng: np.random.Generator, n: int, length: int) -> list[list[int]]:
    # Ids 16..vocab-1: clear of the special tokens at the start of the demo vocabulary.
    return [rng.integers(16, BENCH_SHAPE.vocab_size, length).tolist() for _ in range(n)]


@dataclass(frozen=True, slots=True)
class Sample:
    """One timed step and the quantities the step model charges for it."""

    kind: str  # "prefill" | "decode"
    group: str  # grid point: repeats of one point share it
    n_requests: int
    context: int  # prompt length (prefill) or KV length at the step (decode)
    n_prefill_tokens: int
    n_decode_seqs: int
    prefill_attention_flops: float
    kv_tokens: float  # KV entries read + written
    seconds: float  # CPU seconds of the engine process (see time_step)
    wall_seconds: float


def time_step(engine: Any) -> tuple[float, float, list[Any]]:
    """(wall seconds, CPU seconds of this process, outputs) of one engine step.

    CPU time leaves out the time other processes take from this one on a shared machine
    (the engine computes on one core, in this process, when run in process).
    """
    wall, cpu = time.perf_counter(), time.process_time()
    outputs = engine.step()
    return time.perf_counter() - wall, time.process_time() - cpu, outputs


def prefill_samples(
    engine: Any, cost: CostModel, rng: np.random.Generator, repeats: int
) -> list[Sample]:
    """Steps that prefill m prompts of L tokens at once (each then finishes with 1 token)."""
    samples = []
    for length in (32, 256, 1024, 2000):
        for m in (1, 2, 4):
            if m * length > MAX_BATCHED_TOKENS:
                continue
            for _ in range(repeats):
                add_prompts(engine, random_prompts(rng, m, length), 1)
                wall, seconds, _ = time_step(engine)
                while engine.has_unfinished_requests():  # not expected; keeps the engine clean
                    engine.step()
                samples.append(
                    Sample(
                        kind="prefill",
                        group=f"prefill x{m} {length}",
                        n_requests=m,
                        context=length,
                        n_prefill_tokens=m * length,
                        n_decode_seqs=0,
                        prefill_attention_flops=m * prefill_attention_flops(cost, length, 0),
                        kv_tokens=2.0 * m * length,
                        seconds=seconds,
                        wall_seconds=wall,
                    )
                )
                _log(samples[-1])
    return samples


def decode_samples(
    engine: Any, rng: np.random.Generator, n_steps: int, grid: list[tuple[int, int]]
) -> list[Sample]:
    """Decode-only steps of n requests with a context of about c tokens, after their prefill.

    The requests get a generous max_tokens so that none finishes while others still prefill;
    once all have their first token, the next n_steps steps are pure decodes, timed, and the
    KV each reads is taken from its own token count. Then they are aborted.
    """
    samples = []
    for n, context in grid:
        ids = add_prompts(engine, random_prompts(rng, n, context), 10_000)
        tokens: dict[str, int] = {}
        while len(tokens) < n:  # prefill steps (not timed)
            for out in engine.step():
                tokens[out.request_id] = len(out.outputs[0].token_ids)
        for _ in range(n_steps):
            computed = sum(context + tokens[r] - 1 for r in ids)  # KV entries before the step
            wall, seconds, outputs = time_step(engine)
            for out in outputs:
                tokens[out.request_id] = len(out.outputs[0].token_ids)
            samples.append(
                Sample(
                    kind="decode",
                    group=f"decode x{n} {context}",
                    n_requests=n,
                    context=computed // n,
                    n_prefill_tokens=0,
                    n_decode_seqs=n,
                    prefill_attention_flops=0.0,
                    kv_tokens=float(computed + 2 * n),
                    seconds=seconds,
                    wall_seconds=wall,
                )
            )
        _log(samples[-1])
        engine.abort_request(ids)
        while engine.has_unfinished_requests():
            engine.step()
    return samples


def _log(sample: Sample) -> None:
    print(
        f"  {sample.kind} x{sample.n_requests} context {sample.context}: "
        f"{sample.seconds * 1e3:.1f} ms CPU, {sample.wall_seconds * 1e3:.1f} ms wall",
        flush=True,
    )


def per_point(samples: list[Sample], pick: str) -> list[Sample]:
    """One sample per grid point: the fastest ("min") or the median ("median") one.

    On a shared machine the slower repeats carry time taken by other processes: the fastest
    describes the engine alone, the median the engine as the machine is shared right now.
    """
    groups: dict[str, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(sample.group, []).append(sample)
    chosen = []
    for group in groups.values():
        ranked = sorted(group, key=lambda s: s.seconds)
        chosen.append(ranked[0] if pick == "min" else ranked[(len(ranked) - 1) // 2])
    return chosen


@dataclass(frozen=True, slots=True)
class Fit:
    step_overhead_s: float
    flops: float  # F_eff (FLOP/s)
    bandwidth: float  # W_eff (bytes/s)
    rel_rms: float  # root mean square of (predicted - measured) / measured
    rel_max: float  # largest |predicted - measured| / measured
    n_compute_bound: int
    n_samples: int
    overlap: bool = True  # step = o + max(compute, memory); False: o + compute + memory

    def predict(self, flops: np.ndarray, mem: np.ndarray) -> np.ndarray:
        compute, memory = flops / self.flops, mem / self.bandwidth
        busy = np.maximum(compute, memory) if self.overlap else compute + memory
        return self.step_overhead_s + busy


def _features(samples: list[Sample], model: ModelSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    flops = np.array(
        [
            2.0 * model.n_params * (s.n_prefill_tokens + s.n_decode_seqs)
            + s.prefill_attention_flops
            for s in samples
        ]
    )
    mem = np.array([model.weight_bytes + s.kv_tokens * model.kv_bytes_per_token for s in samples])
    return flops, mem, np.array([s.seconds for s in samples])


def fit_step_model(
    samples: list[Sample], model: ModelSpec, max_iter: int = 50, overlap: bool = True
) -> Fit:
    """Least squares (relative error) of t = o + max(a * FLOPs, b * bytes), or with
    overlap=False of t = o + a * FLOPs + b * bytes; F = 1/a, W = 1/b."""
    flops, mem, t = _features(samples, model)
    if not overlap:
        return _fit_additive(flops, mem, t, len(samples))
    weights: np.ndarray = 1.0 / t  # relative error: small steps count as much as large ones
    compute_side = flops / flops.max() >= mem / mem.max()  # start: the dominant raw term
    params: np.ndarray = np.zeros(3)
    for _ in range(max_iter):
        design = np.column_stack([np.ones_like(t), flops * compute_side, mem * ~compute_side])
        params, *_ = np.linalg.lstsq(design * weights[:, None], t * weights, rcond=None)
        params = np.maximum(params, [0.0, 1e-30, 1e-30])
        new_side = params[1] * flops >= params[2] * mem
        if np.array_equal(new_side, compute_side):
            break
        compute_side = new_side
    overhead, a, b = params
    predicted = overhead + np.maximum(a * flops, b * mem)
    rel = (predicted - t) / t
    return Fit(
        step_overhead_s=float(overhead),
        flops=float(1.0 / a),
        bandwidth=float(1.0 / b),
        rel_rms=float(np.sqrt(np.mean(rel**2))),
        rel_max=float(np.abs(rel).max()),
        n_compute_bound=int(compute_side.sum()),
        n_samples=len(samples),
    )


def _fit_additive(flops: np.ndarray, mem: np.ndarray, t: np.ndarray, n_samples: int) -> Fit:
    weights: np.ndarray = 1.0 / t  # relative error, as in the overlapping fit
    design = np.column_stack([np.ones_like(t), flops, mem])
    params, *_ = np.linalg.lstsq(design * weights[:, None], t * weights, rcond=None)
    overhead, a, b = np.maximum(params, [0.0, 1e-30, 1e-30])
    fit = Fit(
        step_overhead_s=float(overhead),
        flops=float(1.0 / a),
        bandwidth=float(1.0 / b),
        rel_rms=0.0,
        rel_max=0.0,
        n_compute_bound=int((a * flops >= b * mem).sum()),
        n_samples=n_samples,
        overlap=False,
    )
    rel = (fit.predict(flops, mem) - t) / t
    return replace(fit, rel_rms=float(np.sqrt(np.mean(rel**2))), rel_max=float(np.abs(rel).max()))


def write_profile(path: Path, fit: Fit, source: str) -> None:
    """Set the "cpu-local" entry of a hardware table, atomically; the rest of the file's text
    stays as it is (a new file holds only this entry)."""
    text = path.read_text() if path.is_file() else "{\n}\n"
    table = json.loads(text)
    entry = dict(table.get("cpu-local", {"mem_bytes": 1073741824, "kv_memory_fraction": 1.0}))
    entry.update(
        peak_flops=fit.flops,
        mem_bandwidth_bytes_s=fit.bandwidth,
        flops_efficiency=1.0,
        bandwidth_efficiency=1.0,
        step_overhead_s=fit.step_overhead_s,
        overlap_compute_memory=fit.overlap,
        source=source,
    )
    block = _format_entry("cpu-local", entry)
    match = re.search(r'^  "cpu-local": \{.*?^  \}', text, flags=re.MULTILINE | re.DOTALL)
    if match:
        text = text[: match.start()] + block + text[match.end() :]
    else:
        body = text.rstrip().removesuffix("}").rstrip()
        text = body + (",\n" if body != "{" else "\n") + block + "\n}\n"
    json.loads(text)  # still valid JSON
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_flat_profile(path: Path, fit: Fit, source: str, name: str) -> None:
    """A stand-alone hardware JSON (load_hardware(path) reads it), like cpu-local otherwise."""
    table = json.loads(HARDWARE_JSON.read_text())
    entry = {
        "name": name,
        **table["cpu-local"],
        "peak_flops": fit.flops,
        "mem_bandwidth_bytes_s": fit.bandwidth,
        "flops_efficiency": 1.0,
        "bandwidth_efficiency": 1.0,
        "step_overhead_s": fit.step_overhead_s,
        "overlap_compute_memory": fit.overlap,
        "source": source,
    }
    path.write_text(json.dumps(entry, indent=2) + "\n")


def _format_entry(name: str, entry: dict[str, Any]) -> str:
    """One entry as the hand-written file lays it out: fields on wrapped lines."""
    items = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in entry.items()]
    lines, line = [], ""
    for item in items:
        if line and len(line) + len(item) + 2 > 92:
            lines.append(line + ",")
            line = item
        else:
            line = f"{line}, {item}" if line else item
    lines.append(line)
    body = "\n    ".join(lines)
    return f"  {json.dumps(name)}: {{\n    {body}\n  }}"


def measure(models_dir: Path, repeats: int, decode_steps: int) -> list[Sample]:
    model_dir = ensure_tiny_model(models_dir, BENCH_SHAPE)
    spec = model_spec(BENCH_SHAPE)
    placeholder = HardwareSpec(
        name="cpu-local", peak_flops=1.0, mem_bandwidth_bytes_s=1.0, mem_bytes=1.0
    )
    cost = CostModel(spec, placeholder)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    engine = start_engine(model_dir)
    start_s = time.perf_counter() - started
    print(f"engine started in {start_s:.1f} s; {engine_num_blocks(engine)} KV blocks")
    add_prompts(engine, random_prompts(rng, 2, 64), 4)  # warm-up (first steps compile/allocate)
    while engine.has_unfinished_requests():
        engine.step()
    grid = [(n, c) for n in (1, 8, 32) for c in (128, 1024)]
    samples = prefill_samples(engine, cost, rng, repeats)
    samples += decode_samples(engine, rng, decode_steps, grid)
    print(f"measured for {time.perf_counter() - started:.0f} s")
    return samples


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

    spec = model_spec(BENCH_SHAPE)
    if args.from_samples:
        saved = json.loads(args.from_samples.read_text())
        samples = [Sample(**s) for s in saved["samples"]]
        when, load = saved["measured_at"], saved["load_average"]
    else:
        samples = measure(args.models_dir, args.repeats, args.decode_steps)
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
    flops, mem, _ = _features(samples, model)
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
