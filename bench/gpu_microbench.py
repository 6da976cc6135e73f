"""GPU microbenchmarks for fitting the roofline step-time model (one self-contained script).

Measures what blend/cost/step_time.py models on an NVIDIA GPU, with plain PyTorch (no
vLLM): bf16 GEMMs of Llama linear layers, HBM bandwidth, SDPA attention (prefill and
decode, GQA), whole eager "engine steps" of a random-weight Llama-3.1-8B-shaped decoder,
host<->device copies and CPU GEMMs. Depends only on torch, numpy and the standard library
(not on the blend package), so it can be copied to a bare GPU machine and run there.

    python bench/gpu_microbench.py                          # all sections, ~2-3 min on an H200
    python bench/gpu_microbench.py --sections model_step,gemm --out /tmp/mb.json
    python bench/gpu_microbench.py --smoke                  # tiny sizes on the CPU, seconds

Writes one JSON file (--out; default $OUT/gpu_microbench.json when $OUT is set, else
./gpu_microbench.json), rewritten after every section so a run killed part-way keeps what it
measured, and prints progress lines with elapsed time and a compact summary at the end.

Timing: CUDA events around the timed calls, after warm-up calls, with torch.cuda.synchronize()
before each repetition; the median over repetitions is reported. Calls shorter than ~1 ms are
repeated `inner` times per repetition, replayed from a CUDA graph where capture works (so the
number is GPU time, not Python launch rate); every point says which ("timing": "cuda_graph",
"cuda_events" or "wall"). Repetitions are capped by a per-point time budget, every section by
a section budget and the whole run by --max-seconds; points not run for lack of time are
listed under "skipped". Each section (and each point) runs in try/except: an error is recorded
in the JSON and the run continues.

Sections, in run order (most important first), with the estimated time on one H200:
  model_step  Llama-3.1-8B-shaped decoder (32 layers, hidden 4096, 32/8 heads of 128,
              intermediate 14336, vocab 128256; random bf16 weights, 16 GB) timed per
              engine step in eager PyTorch and, for steps up to --graph-max-tokens tokens,
              replayed from a CUDA graph (vLLM runs decode batches from CUDA graphs).
              38 points: prefill-only (one prompt of P tokens, or 4 / 16 prompts totalling
              P), decode-only (b sequences at context c, contiguous KV cache per sequence),
              mixed (a chunk of g tokens + b decodes at context 1024) and an ~empty step.
              A short probe first picks the fastest SDPA GQA mode for prefill and decode.
              Estimate 35-60 s: 16 GB weight init < 1 s; a point costs 2 warm-up steps,
              3-10 timed eager steps within 0.4 s, a graph capture (2 side-stream warm-ups
              + capture) and 3-10 replays within 0.3 s: about 0.6-1.5 s a point (the
              8192-token prefill, ~140 TFLOP, is ~0.25 s a step). Budget 110 s.
  gemm        F.linear (x @ W.T, W [N, K] as nn.Linear / vLLM) for the 8 linear layers of
              Llama-3.1-8B and -70B at 23 token counts M from 1 to 16384 (184 points).
              Weights are rotated over copies totalling >= 256 MiB so small-M calls read
              HBM, not the 50 MB L2. Estimate 12-25 s: all 184 points once are ~0.2 s of
              math at ~600 TFLOP/s; each point costs 2 warm-ups + a probe call + (below 2 ms)
              a graph capture of `inner` calls + 3-20 repetitions of >= 1 ms within a 30 ms
              budget, ~50-100 ms; the largest (70B gate_up, M=16384, ~22 ms a call) ~0.15 s.
              Budget 45 s.
  attention   torch SDPA with Llama-3.1-8B GQA shapes (32 query heads, 8 KV heads, dim
              128): prefill chunk g in {128, 512, 2048, 8192} after c in {0, 2048, 8192}
              cached tokens (causal, lower-right aligned when c > 0) and decode of b in
              {1, 8, 32, 128, 256} sequences at context c in {512, 2048, 8192}; every point
              for each GQA mode (enable_gqa=True, expanded KV heads, and for decode "fold":
              the 4 query heads of a KV head as 4 query rows) and each backend (auto, flash,
              efficient, cudnn; auto only for lower-right masks, where torch's CausalBias
              picks the kernel): 228 combinations of a 25 ms budget each (~40-60 ms with
              warm-up and graph capture); unsupported ones fail fast in the warm-up call.
              Estimate 10-20 s. Budget 35 s.
  hbm         device-to-device copy, read-only reduction (x.sum()) and write-only fill over
              256 MiB, 1 GiB and 4 GiB bf16 tensors. Estimate 2-4 s. Budget 12 s.
  h2d         host->device and device->host copies of 64 MiB and 1 GiB from pinned and
              pageable host memory, wall time. Pinning 1 GiB ~0.3 s; a pageable 1 GiB copy
              ~0.1-0.2 s x (1 warm-up + 3-5 reps) per direction. Estimate 4-8 s. Budget 20 s.
  cpu_gemm    CPU F.linear in float32 and bf16 on all cores (torch.set_num_threads(cpu
              count)) for 4096->4096, 4096->14336, 14336->4096 at M in {1, 4, 16, 32}
              (24 points, weights rotated over >= 512 MiB). A slow bf16 point (no AMX) is
              ~0.1 s a call. Estimate 5-10 s. Budget 20 s.
Total estimate ~80-130 s plus ~10-20 s of Python/torch/CUDA start; hard cap --max-seconds
(default 215 s after start-up), within a 4-minute window.

--smoke runs every section with tiny sizes on the CPU (no CUDA needed) in a few seconds, to
test the code paths (tests/test_gpu_microbench.py).

JSON: {"schema_version", "script", "started_utc", "finished_utc", "wall_s", "args", "smoke",
"env": {device_name, torch_version, cuda_version, sm_count, total_memory_bytes, ...},
"section_order", "sections": {name: {"status": "ok"|"partial"|"error", "error",
"traceback", "elapsed_s", "budget_s", "config", "points": [...], "skipped": [...],
...}}}. The fields of each section's points are listed in POINT_FIELDS below.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import inspect
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

SCHEMA_VERSION = 1
SECTION_ORDER = ("model_step", "gemm", "attention", "hbm", "h2d", "cpu_gemm")
SECTION_BUDGET_S = {
    "model_step": 110.0,
    "gemm": 45.0,
    "attention": 35.0,
    "hbm": 12.0,
    "h2d": 20.0,
    "cpu_gemm": 20.0,
}
SMOKE_BUDGET_S = 15.0  # per section with --smoke
GIB = 1 << 30
MIB = 1 << 20

# The per-point fields of each section (documentation; the test checks a few of them).
POINT_FIELDS = {
    "model_step": (
        "kind (prefill|decode|mixed|overhead), n_prompts, prompt_len, prefill_context, "
        "n_prefill_tokens, n_decodes, decode_context, tokens, n_logits, kv_buffers, "
        "kv_buffers_shared, seconds (eager, CUDA events, median), seconds_min, seconds_max, "
        "wall_seconds, reps, graph_seconds, graph_wall_seconds, graph_reps, graph_error, "
        "linear_flops, lm_head_flops, prefill_attention_flops, decode_attention_flops, "
        "attention_flops, dense_flops (2 * n_params_non_embedding * tokens + attention), "
        "total_flops (linear + lm_head + attention), blend_compute_flops (2 * n_params * "
        "tokens + prefill attention, as step_cost), weight_bytes, kv_read_bytes, "
        "kv_write_bytes, bytes (weights + KV), step_cost_args {n_prefill_tokens, "
        "n_decode_seqs, decode_kv_tokens, prefill_attention_flops, prefill_kv_tokens}, "
        "flops_per_s, bytes_per_s, graph_flops_per_s, graph_bytes_per_s, peak_memory_bytes"
    ),
    "gemm": (
        "model, layer, M, K, N, seconds, seconds_min, seconds_max, reps, inner, timing, "
        "flops, flops_per_s, weight_bytes, weight_bytes_per_s, io_bytes, io_bytes_per_s"
    ),
    "attention": (
        "kind (prefill|decode), g, c (prefill) / b, c (decode), mode (enable_gqa|expand|"
        "fold), backend (auto|flash|efficient|cudnn), mask, seconds, reps, inner, timing, "
        "flops, flops_per_s, kv_bytes, kv_bytes_per_s, error"
    ),
    "hbm": "op (copy|read_sum|write_fill), size_bytes, bytes_moved, seconds, bytes_per_s",
    "h2d": (
        "direction (h2d|d2h|h2h), host_memory (pinned|pageable), size_bytes, seconds (wall), "
        "bytes_per_s, event_seconds"
    ),
    "cpu_gemm": (
        "dtype, M, K, N, threads, seconds, seconds_min, seconds_max, reps, inner, flops, "
        "flops_per_s, weight_bytes_per_s"
    ),
}

T_START = time.perf_counter()


def log(msg: str) -> None:
    clock = datetime.now(UTC).strftime("%H:%M:%S")
    print(f"[{clock} {time.perf_counter() - T_START:6.1f}s] {msg}", flush=True)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------------------
# Timing context


class OutOfTime(Exception):
    """The section (or the whole run) has no time left."""


class Ctx:
    """Device, deadlines and the timing helpers every section uses."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.smoke: bool = args.smoke
        self.cuda: bool = (not args.smoke) and torch.cuda.is_available()
        self.device = torch.device("cuda" if self.cuda else "cpu")
        self.dtype = torch.bfloat16
        self.t_end_global = time.perf_counter() + args.max_seconds
        self.t_end_section = self.t_end_global
        self.budget_scale = 0.01 if args.smoke else 1.0
        self.graphs_enabled = self.cuda and not args.no_graphs
        self.graph_failures: list[str] = []

    # -- deadlines
    def begin_section(self, budget_s: float) -> None:
        self.t_end_section = min(self.t_end_global, time.perf_counter() + budget_s)

    def time_left(self) -> float:
        return self.t_end_section - time.perf_counter()

    # -- memory
    def free_bytes(self) -> int:
        if self.cuda:
            return int(torch.cuda.mem_get_info()[0])
        # what can be had without swapping, the page cache included (free pages alone were
        # under 4 GiB on a 23 GiB machine whose cache held 13 GiB of recently read files)
        try:
            with open("/proc/meminfo") as meminfo:
                for line in meminfo:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return 8 * GIB

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def release(self) -> None:
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()

    # -- timing
    def _measure(self, run: Callable[[], Any], n: int, on_cpu: bool) -> tuple[float, float]:
        """(device seconds, wall seconds) of n calls of `run`, in total."""
        if self.cuda and not on_cpu:
            torch.cuda.synchronize()
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            w0 = time.perf_counter()
            start.record()
            for _ in range(n):
                run()
            end.record()
            end.synchronize()
            w1 = time.perf_counter()
            return start.elapsed_time(end) / 1e3, w1 - w0
        w0 = time.perf_counter()
        for _ in range(n):
            run()
        w1 = time.perf_counter()
        return w1 - w0, w1 - w0

    def capture_graph(self, fn: Callable[[], Any], inner: int) -> torch.cuda.CUDAGraph:
        """A CUDA graph of `inner` calls of fn, after warm-up on a side stream."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                fn()
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(inner):
                fn()
        torch.cuda.synchronize()
        return graph

    def time_fn(
        self,
        fn: Callable[[], Any],
        *,
        budget_s: float = 0.03,
        min_reps: int = 3,
        max_reps: int = 20,
        warmup: int = 1,
        target_inner_s: float = 1e-3,
        max_inner: int = 100,
        graph: bool = False,
        graph_below_s: float | None = 2e-3,
        on_cpu: bool = False,
    ) -> dict[str, Any]:
        """Median seconds of one call of fn (see the module docstring for the method).

        graph: replay the calls from a CUDA graph when one call takes less than
        graph_below_s (None: always); a failed capture falls back to eager timing.
        """
        budget_s *= self.budget_scale
        if self.smoke:
            target_inner_s = 0.0
        for _ in range(warmup):
            fn()
        first, _ = self._measure(fn, 1, on_cpu)
        inner = 1
        if target_inner_s > 0 and first < target_inner_s:
            inner = int(min(max_inner, max(1, math.ceil(target_inner_s / max(first, 1e-7)))))
        run, calls = fn, inner
        timing = "cuda_events" if (self.cuda and not on_cpu) else "wall"
        graph_error = None
        cuda_graph = None
        use_graph = (
            graph
            and self.graphs_enabled
            and not on_cpu
            and (graph_below_s is None or first < graph_below_s)
        )
        if use_graph:
            try:
                cuda_graph = self.capture_graph(fn, inner)
                cuda_graph.replay()
                torch.cuda.synchronize()
                run, calls, timing = cuda_graph.replay, 1, "cuda_graph"
            except Exception as exc:  # a capture that fails: time the eager calls
                graph_error = f"{type(exc).__name__}: {exc}"[:300]
                self.graph_failures.append(graph_error)
                if len(self.graph_failures) >= 5:
                    self.graphs_enabled = False
                with contextlib.suppress(Exception):
                    torch.cuda.synchronize()
                cuda_graph = None
        estimate = max(first * inner, 1e-7)
        reps = max(min_reps, min(max_reps, int(budget_s / estimate)))
        samples: list[float] = []
        walls: list[float] = []
        for _ in range(reps):
            dev, wall = self._measure(run, calls, on_cpu)
            samples.append(dev / inner)
            walls.append(wall / inner)
            if time.perf_counter() > self.t_end_global:  # keep what we have
                break
        del run, cuda_graph  # frees the graph's memory pool
        out: dict[str, Any] = {
            "seconds": statistics.median(samples),
            "seconds_min": min(samples),
            "seconds_max": max(samples),
            "wall_seconds": statistics.median(walls),
            "reps": len(samples),
            "inner": inner,
            "timing": timing,
        }
        if graph_error:
            out["graph_error"] = graph_error
        return out


def rate(amount: float, seconds: float | None) -> float | None:
    if not seconds or seconds <= 0:
        return None
    return amount / seconds


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


# ----------------------------------------------------------------------------------------
# Attention helper shared by the attention and model_step sections

try:
    from torch.nn.attention import SDPBackend, sdpa_kernel
except ImportError:  # very old torch
    SDPBackend = None  # type: ignore[assignment,misc]
    sdpa_kernel = None  # type: ignore[assignment]
try:
    from torch.nn.attention.bias import causal_lower_right
except ImportError:
    causal_lower_right = None  # type: ignore[assignment]


def _sdpa_has_gqa() -> bool:
    try:
        return "enable_gqa" in inspect.signature(F.scaled_dot_product_attention).parameters
    except (TypeError, ValueError):  # a builtin without a signature: try it
        q = torch.zeros(1, 2, 1, 8)
        k = torch.zeros(1, 1, 1, 8)
        try:
            F.scaled_dot_product_attention(q, k, k, enable_gqa=True)
        except TypeError:
            return False
        return True


def sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mode: str, causal: str | None = None
) -> torch.Tensor:
    """Attention of q [B, H, Sq, D] over k, v [B, KH, Sk, D] (GQA: H a multiple of KH).

    mode: "enable_gqa" (SDPA's own GQA), "expand" (repeat_interleave the KV heads, a copy),
    "fold" (decode only, Sq == 1: the H / KH query heads of a KV head as query rows).
    causal: None, "square" (is_causal, Sq == Sk) or "lower_right" (query i sees keys
    <= Sk - Sq + i: a chunk after cached tokens).
    """
    b, h, sq, d = q.shape
    kh = k.shape[1]
    rep = h // kh
    kwargs: dict[str, Any] = {}
    if causal == "square":
        kwargs["is_causal"] = True
    elif causal == "lower_right":
        if causal_lower_right is None:
            raise RuntimeError("torch.nn.attention.bias.causal_lower_right is missing")
        kwargs["attn_mask"] = causal_lower_right(sq, k.shape[2])
    if mode == "enable_gqa":
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=True, **kwargs)
    if mode == "expand":  # = repeat_interleave(rep, dim=1): a view, then one copy each
        sk = k.shape[2]
        k = k[:, :, None].expand(b, kh, rep, sk, d).reshape(b, h, sk, d)
        v = v[:, :, None].expand(b, kh, rep, sk, d).reshape(b, h, sk, d)
        return F.scaled_dot_product_attention(q, k, v, **kwargs)
    if mode == "fold":
        if sq != 1 or causal:
            raise ValueError("fold is for one query token without a mask")
        out = F.scaled_dot_product_attention(q.reshape(b, kh, rep, d), k, v)
        return out.reshape(b, h, 1, d)
    raise ValueError(f"unknown attention mode {mode!r}")


BACKENDS = ("auto", "flash", "efficient", "cudnn")


def backend_context(name: str) -> contextlib.AbstractContextManager[Any]:
    if name == "auto" or sdpa_kernel is None:
        return contextlib.nullcontext()
    member = {
        "flash": "FLASH_ATTENTION",
        "efficient": "EFFICIENT_ATTENTION",
        "cudnn": "CUDNN_ATTENTION",
        "math": "MATH",
    }[name]
    return sdpa_kernel([getattr(SDPBackend, member)])


# ----------------------------------------------------------------------------------------
# Section: gemm

GEMM_SHAPES = (  # (model, layer, K, N)
    ("llama-3.1-8b", "qkv", 4096, 6144),
    ("llama-3.1-8b", "o", 4096, 4096),
    ("llama-3.1-8b", "gate_up", 4096, 28672),
    ("llama-3.1-8b", "down", 14336, 4096),
    ("llama-3.1-70b", "qkv", 8192, 10240),
    ("llama-3.1-70b", "o", 8192, 8192),
    ("llama-3.1-70b", "gate_up", 8192, 57344),
    ("llama-3.1-70b", "down", 28672, 8192),
)
GEMM_M = (1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072)
GEMM_M += (4096, 6144, 8192, 12288, 16384)


def rotating_weights(
    n: int, k: int, dtype: torch.dtype, device: torch.device, min_total_bytes: int
) -> list[torch.Tensor]:
    """Copies of one random [n, k] weight totalling >= min_total_bytes (defeats the caches)."""
    base = torch.empty(n, k, dtype=dtype, device=device).normal_(0.0, k**-0.5)
    per = n * k * base.element_size()
    copies = max(1, math.ceil(min_total_bytes / per))
    return [base] + [base.clone() for _ in range(copies - 1)]


def section_gemm(ctx: Ctx, args: argparse.Namespace) -> dict[str, Any]:
    shapes = [(m, n_, max(16, k // 64), max(16, n // 64)) for m, n_, k, n in GEMM_SHAPES]
    ms = (1, 8, 32)
    if not ctx.smoke:
        shapes, ms = list(GEMM_SHAPES), GEMM_M
    rotate_bytes = 256 * MIB if ctx.cuda else 64 * 1024
    points: list[dict[str, Any]] = []
    skipped: list[str] = []
    for model, layer, k, n in shapes:
        if ctx.time_left() <= 0:
            skipped.append(f"{model}.{layer}: all M (out of time)")
            continue
        need = (n * k + max(ms) * (k + n)) * 2 + rotate_bytes
        if need > ctx.free_bytes() - GIB:
            skipped.append(f"{model}.{layer}: needs {need / GIB:.1f} GiB")
            continue
        weights = rotating_weights(n, k, ctx.dtype, ctx.device, rotate_bytes)
        x_all = torch.empty(max(ms), k, dtype=ctx.dtype, device=ctx.device).normal_()
        line = []
        for m in ms:
            if ctx.time_left() <= 0:
                skipped.append(f"{model}.{layer} M={m} (out of time)")
                continue
            x = x_all[:m]
            cycle = itertools.cycle(weights)

            def call(x: torch.Tensor = x, cycle: Iterator[torch.Tensor] = cycle) -> torch.Tensor:
                return F.linear(x, next(cycle))

            point: dict[str, Any] = {"model": model, "layer": layer, "M": m, "K": k, "N": n}
            try:
                point.update(ctx.time_fn(call, budget_s=0.03, warmup=2, max_inner=200, graph=True))
            except Exception as exc:
                point["error"] = error_text(exc)
                if is_oom(exc):
                    ctx.release()
            t = point.get("seconds")
            flops = 2.0 * m * n * k
            wbytes = n * k * 2
            io_bytes = (n * k + m * k + m * n) * 2
            point.update(
                flops=flops,
                flops_per_s=rate(flops, t),
                weight_bytes=wbytes,
                weight_bytes_per_s=rate(wbytes, t),
                io_bytes=io_bytes,
                io_bytes_per_s=rate(io_bytes, t),
            )
            points.append(point)
            if t and m in (1, 16, 128, 1024, 4096, 16384, ms[-1]):
                line.append(f"M={m}:{t * 1e6:.0f}us")
        log(f"gemm {model}.{layer} {k}->{n} ({len(weights)} weight copies): " + " ".join(line))
        del weights, x_all
        ctx.release()
    return {
        "config": {
            "op": "F.linear(x, W), W [N, K] (= x @ W.T, as nn.Linear / vLLM), bf16",
            "rotate_weight_bytes": rotate_bytes,
            "M": list(ms),
            "shapes": [{"model": m, "layer": ly, "K": k, "N": n} for m, ly, k, n in shapes],
        },
        "points": points,
        "skipped": skipped,
    }


# ----------------------------------------------------------------------------------------
# Section: hbm


def section_hbm(ctx: Ctx, args: argparse.Namespace) -> dict[str, Any]:
    sizes = [256 * MIB, GIB, 4 * GIB] if not ctx.smoke else [MIB]
    points: list[dict[str, Any]] = []
    skipped: list[str] = []
    for size in sizes:
        if ctx.time_left() <= 0:
            skipped.append(f"size {size} (out of time)")
            continue
        if 2 * size > ctx.free_bytes() - GIB:
            skipped.append(f"size {size}: not enough free memory")
            continue
        n = size // 2
        src = torch.empty(n, dtype=ctx.dtype, device=ctx.device).normal_()
        dst = torch.empty_like(src)
        ops: list[tuple[str, Callable[[], Any], int]] = [
            ("copy", lambda src=src, dst=dst: dst.copy_(src), 2 * size),
            ("read_sum", lambda src=src: src.sum(), size),
            ("write_fill", lambda dst=dst: dst.fill_(1.0), size),
        ]
        for op, fn, moved in ops:
            point: dict[str, Any] = {"op": op, "size_bytes": size, "bytes_moved": moved}
            try:
                point.update(ctx.time_fn(fn, budget_s=0.15, min_reps=5, warmup=2))
            except Exception as exc:
                point["error"] = error_text(exc)
            point["bytes_per_s"] = rate(moved, point.get("seconds"))
            points.append(point)
            bw = point["bytes_per_s"]
            log(f"hbm {op} {size / MIB:.0f} MiB: " + (f"{bw / 1e9:.0f} GB/s" if bw else "-"))
        del src, dst
        ctx.release()
    return {
        "config": {"dtype": "bfloat16", "sizes": sizes, "note": "copy moves 2x size bytes"},
        "points": points,
        "skipped": skipped,
    }


# ----------------------------------------------------------------------------------------
# Section: attention


def section_attention(ctx: Ctx, args: argparse.Namespace) -> dict[str, Any]:
    if ctx.smoke:
        h, kh, d = 4, 2, 16
        prefill_g, prefill_c = (8, 32), (0, 16)
        decode_b, decode_c = (1, 4), (16, 64)
        backends: tuple[str, ...] = ("auto", "flash")
    else:
        h, kh, d = 32, 8, 128
        prefill_g, prefill_c = (128, 512, 2048, 8192), (0, 2048, 8192)
        decode_b, decode_c = (1, 8, 32, 128, 256), (512, 2048, 8192)
        backends = BACKENDS
    dev, dt = ctx.device, ctx.dtype
    modes_prefill = ("enable_gqa", "expand")
    modes_decode = ("enable_gqa", "expand", "fold")
    expand_cap = 16 * GIB  # expanded K + V bytes above which "expand" is skipped
    points: list[dict[str, Any]] = []
    skipped: list[str] = []

    def run_combos(base: dict[str, Any], q, k, v, modes, causal, amount_key, amount) -> None:
        best: tuple[float, str] | None = None
        for mode in modes:
            expanded = 2 * k.numel() * (h // kh) * 2
            for backend in backends if causal != "lower_right" else ("auto",):
                point = dict(base, mode=mode, backend=backend, mask=causal or "none")
                if ctx.time_left() <= 0:
                    skipped.append(f"{base} {mode} {backend} (out of time)")
                    continue
                if mode == "expand" and expanded > expand_cap:
                    point["error"] = f"skipped: expanded KV {expanded / GIB:.1f} GiB"
                    points.append(point)
                    continue

                def call(mode: str = mode, backend: str = backend) -> torch.Tensor:
                    with backend_context(backend):
                        return sdpa(q, k, v, mode, causal)

                try:
                    point.update(ctx.time_fn(call, budget_s=0.025, warmup=1, graph=True))
                except Exception as exc:
                    point["error"] = error_text(exc)
                    if is_oom(exc):
                        ctx.release()
                t = point.get("seconds")
                point[amount_key + "_per_s"] = rate(amount, t)
                points.append(point)
                if t and (best is None or t < best[0]):
                    best = (t, f"{mode}/{backend}")
        if best:
            r = amount / best[0]
            unit = f"{r / 1e12:.0f} TFLOP/s" if amount_key == "flops" else f"{r / 1e9:.0f} GB/s"
            where = " ".join(f"{key}={base[key]}" for key in ("g", "b", "c") if key in base)
            log(f"attention {base['kind']} {where}: best {best[1]} {best[0] * 1e6:.0f}us {unit}")

    for g in prefill_g:
        for c in prefill_c:
            base = {"kind": "prefill", "g": g, "c": c}
            flops = 4.0 * g * (c + (g + 1) / 2.0) * h * d
            base["flops"] = flops
            try:
                q = torch.empty(1, g, h, d, dtype=dt, device=dev).normal_().transpose(1, 2)
                k = torch.empty(1, c + g, kh, d, dtype=dt, device=dev).normal_().transpose(1, 2)
                v = torch.empty_like(k).normal_()
                causal = "square" if c == 0 else "lower_right"
                run_combos(base, q, k, v, modes_prefill, causal, "flops", flops)
                del q, k, v
            except Exception as exc:
                points.append(dict(base, error=error_text(exc)))
            ctx.release()
    for b in decode_b:
        for c in decode_c:
            kv_bytes = b * c * kh * d * 2 * 2
            base = {"kind": "decode", "b": b, "c": c, "kv_bytes": kv_bytes}
            base["flops"] = 4.0 * b * c * h * d
            if 2 * kv_bytes > ctx.free_bytes() - 2 * GIB:
                skipped.append(f"{base}: not enough memory")
                continue
            try:
                q = torch.empty(b, 1, h, d, dtype=dt, device=dev).normal_().transpose(1, 2)
                k = torch.empty(b, kh, c, d, dtype=dt, device=dev).normal_()
                v = torch.empty_like(k).normal_()
                run_combos(base, q, k, v, modes_decode, None, "kv_bytes", kv_bytes)
                del q, k, v
            except Exception as exc:
                points.append(dict(base, error=error_text(exc)))
            ctx.release()
    return {
        "config": {
            "n_heads": h,
            "n_kv_heads": kh,
            "head_dim": d,
            "dtype": "bfloat16",
            "prefill_g": list(prefill_g),
            "prefill_c": list(prefill_c),
            "decode_b": list(decode_b),
            "decode_c": list(decode_c),
            "backends": list(backends),
            "sdpa_enable_gqa_in_signature": _sdpa_has_gqa(),
            "flops_note": "prefill: 4 g (c + (g+1)/2) H d (one layer); decode: 4 b c H d",
            "kv_bytes_note": "decode: b c KH d 2 (K and V) 2 bytes",
            "lower_right_note": "c > 0 uses causal_lower_right; torch's CausalBias picks the "
            "kernel (flash, then efficient, then a materialized mask): backend auto only",
            "expand_note": "expand times the KV head expansion too (a real copy of K and V)",
        },
        "points": points,
        "skipped": skipped,
    }


# ----------------------------------------------------------------------------------------
# Section: model_step


@dataclass(frozen=True)
class ModelShape:
    name: str
    n_layers: int
    hidden: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int

    @property
    def q_size(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.n_kv_heads * self.head_dim

    @property
    def layer_linear_params(self) -> int:
        h = self.hidden
        qkv = h * (self.q_size + 2 * self.kv_size)
        return qkv + self.q_size * h + 3 * h * self.intermediate

    @property
    def n_params_non_embedding(self) -> int:
        """Decoder layers (linear weights + 2 norms each) and the final norm."""
        return self.n_layers * (self.layer_linear_params + 2 * self.hidden) + self.hidden

    @property
    def n_params(self) -> int:
        """All parameters: + input embedding + untied LM head."""
        return self.n_params_non_embedding + 2 * self.vocab * self.hidden

    @property
    def kv_bytes_per_token(self) -> int:
        """K and V of every layer for one token, bf16 (as blend's ModelSpec)."""
        return 2 * self.n_layers * self.kv_size * 2


LLAMA_8B = ModelShape("llama-3.1-8b-shaped", 32, 4096, 32, 8, 128, 14336, 128256)
SMOKE_MODEL = ModelShape("smoke", 2, 64, 4, 2, 16, 128, 256)


class RandomLlama:
    """Random bf16 weights of a Llama-shaped decoder and its eager forward step."""

    def __init__(self, shape: ModelShape, device: torch.device, dtype: torch.dtype) -> None:
        self.shape = s = shape
        h = s.hidden

        def w(*size: int, std: float) -> torch.Tensor:
            return torch.empty(size, dtype=dtype, device=device).normal_(0.0, std)

        def ones() -> torch.Tensor:
            return torch.ones(h, dtype=dtype, device=device)

        self.embed = w(s.vocab, h, std=0.02)
        self.layers = [
            {
                "ln1": ones(),
                "wqkv": w(s.q_size + 2 * s.kv_size, h, std=h**-0.5),
                "wo": w(h, s.q_size, std=s.q_size**-0.5),
                "ln2": ones(),
                "wgu": w(2 * s.intermediate, h, std=h**-0.5),
                "wdown": w(h, s.intermediate, std=s.intermediate**-0.5),
            }
            for _ in range(s.n_layers)
        ]
        self.norm = ones()
        self.lm_head = w(s.vocab, h, std=h**-0.5)
        max_pos = 32768 if s.hidden >= 1024 else 1024
        inv_freq = 1.0 / (500000.0 ** (torch.arange(0, s.head_dim, 2).float() / s.head_dim))
        angles = torch.outer(torch.arange(max_pos).float(), inv_freq)
        self.cos = angles.cos().to(device=device, dtype=dtype)
        self.sin = angles.sin().to(device=device, dtype=dtype)
        self.eps = 1e-5
        self.has_rms_norm = hasattr(F, "rms_norm")

    def rms(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self.has_rms_norm:
            return F.rms_norm(x, (x.shape[-1],), weight, self.eps)
        var = x.float().pow(2).mean(-1, keepdim=True)
        return (x.float() * torch.rsqrt(var + self.eps)).to(x.dtype) * weight

    @staticmethod
    def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


@dataclass(frozen=True)
class StepPlan:
    kind: str  # prefill | decode | mixed | overhead
    n_prompts: int = 0
    prompt_len: int = 0
    n_decodes: int = 0
    decode_context: int = 0
    prefill_context: int = 0  # tokens computed before the chunk (always 0 here)

    @property
    def n_prefill_tokens(self) -> int:
        return self.n_prompts * self.prompt_len

    @property
    def tokens(self) -> int:
        return self.n_prefill_tokens + self.n_decodes

    @property
    def n_logits(self) -> int:
        return self.n_prompts + self.n_decodes


def step_plans(smoke: bool) -> list[StepPlan]:
    if smoke:
        return [
            StepPlan("overhead", n_decodes=1, decode_context=4),
            StepPlan("decode", n_decodes=4, decode_context=32),
            StepPlan("prefill", n_prompts=1, prompt_len=32),
            StepPlan("prefill", n_prompts=4, prompt_len=8),
            StepPlan("mixed", n_prompts=1, prompt_len=16, n_decodes=4, decode_context=16),
        ]
    plans = [StepPlan("overhead", n_decodes=1, decode_context=16)]
    plans += [
        StepPlan("decode", n_decodes=b, decode_context=c)
        for c in (256, 1024, 4096)
        for b in (1, 16, 64, 128, 256)
    ]
    plans += [StepPlan("prefill", n_prompts=1, prompt_len=p) for p in (16, 64, 256, 512)]
    plans += [StepPlan("prefill", n_prompts=1, prompt_len=p) for p in (1024, 2048, 4096, 8192)]
    plans += [
        StepPlan("mixed", n_prompts=1, prompt_len=g, n_decodes=b, decode_context=1024)
        for g in (256, 1024, 4096)
        for b in (32, 128)
    ]
    plans += [
        StepPlan("prefill", n_prompts=n, prompt_len=p // n)
        for p in (256, 1024, 4096, 8192)
        for n in (4, 16)
    ]
    return plans


def step_derived(shape: ModelShape, plan: StepPlan) -> dict[str, Any]:
    """FLOPs and bytes of one step, and blend's step_cost arguments for it."""
    s = shape
    hd = s.q_size  # = hidden for Llama: the attention FLOP formula's "hidden"
    g, c0, n = plan.prompt_len, plan.prefill_context, plan.n_prompts
    b, c = plan.n_decodes, plan.decode_context
    tokens = plan.tokens
    prefill_attn = n * 4.0 * g * (c0 + (g + 1) / 2.0) * hd * s.n_layers
    decode_attn = b * 4.0 * (c + 1) * hd * s.n_layers  # the new token attends c + 1 keys
    attention = prefill_attn + decode_attn
    linear = 2.0 * s.n_layers * s.layer_linear_params * tokens
    lm_head = 2.0 * s.vocab * s.hidden * plan.n_logits
    kv_tok = s.kv_bytes_per_token
    kv_read = (n * (c0 + g) + b * (c + 1)) * kv_tok
    kv_write = tokens * kv_tok
    # Weights read once a step: layers + final norm + LM head, and the embedding rows used.
    weight_bytes = 2 * (s.n_params_non_embedding + s.vocab * s.hidden + tokens * s.hidden)
    return {
        "linear_flops": linear,
        "lm_head_flops": lm_head,
        "prefill_attention_flops": prefill_attn,
        "decode_attention_flops": decode_attn,
        "attention_flops": attention,
        "dense_flops": 2.0 * s.n_params_non_embedding * tokens + attention,
        "total_flops": linear + lm_head + attention,
        "blend_compute_flops": 2.0 * s.n_params * tokens + prefill_attn,
        "weight_bytes": weight_bytes,
        "kv_read_bytes": kv_read,
        "kv_write_bytes": kv_write,
        "bytes": weight_bytes + kv_read + kv_write,
        "step_cost_args": {
            "n_prefill_tokens": plan.n_prefill_tokens,
            "n_decode_seqs": b,
            "decode_kv_tokens": float(b * (c + 2)),
            "prefill_attention_flops": prefill_attn,
            "prefill_kv_tokens": float(n * (c0 + 2 * g)),
        },
    }


class StepInputs:
    """Inputs, KV cache and the step closure of one plan."""

    def __init__(
        self,
        model: RandomLlama,
        plan: StepPlan,
        modes: dict[str, str],
        kv_budget_bytes: int,
    ) -> None:
        s = model.shape
        dev, dt = model.embed.device, model.embed.dtype
        n, g, b, c = plan.n_prompts, plan.prompt_len, plan.n_decodes, plan.decode_context
        tp, t = plan.n_prefill_tokens, plan.tokens
        self.ids = torch.randint(0, s.vocab, (t,), device=dev)
        pos = [torch.arange(g, device=dev).repeat(n) + plan.prefill_context]
        pos.append(torch.full((b,), c, device=dev, dtype=torch.long))
        self.positions = torch.cat(pos)
        last = [torch.arange(n, device=dev) * g + g - 1, tp + torch.arange(b, device=dev)]
        self.last_idx = torch.cat(last)
        self.kv_prefill = torch.empty(2, tp, s.n_kv_heads, s.head_dim, dtype=dt, device=dev)
        # Decode KV cache, [K|V, b, KH, c + 1, D] per layer; layers share buffers round-robin
        # when all of them do not fit the budget (each then >> the L2 cache).
        per_layer = 2 * b * s.kv_size * (c + 1) * 2
        self.kv_buffers = 0
        self.caches: list[tuple[torch.Tensor, torch.Tensor]] = []
        if b:
            nbuf = s.n_layers
            if per_layer * s.n_layers > kv_budget_bytes:
                nbuf = max(1, kv_budget_bytes // per_layer)
            self.kv_buffers = int(nbuf)
            self.cache = torch.empty(
                nbuf, 2, b, s.n_kv_heads, c + 1, s.head_dim, dtype=dt, device=dev
            ).normal_()
            self.caches = [
                (self.cache[i % nbuf, 0], self.cache[i % nbuf, 1]) for i in range(s.n_layers)
            ]
        self.model, self.plan, self.modes = model, plan, modes

    def step(self) -> torch.Tensor:
        m, s, p = self.model, self.model.shape, self.plan
        h, kh, d, qs, kvs = s.n_heads, s.n_kv_heads, s.head_dim, s.q_size, s.kv_size
        n, g, b, c = p.n_prompts, p.prompt_len, p.n_decodes, p.decode_context
        tp, t = p.n_prefill_tokens, p.tokens
        x = F.embedding(self.ids, m.embed)
        cos = m.cos[self.positions].unsqueeze(1)
        sin = m.sin[self.positions].unsqueeze(1)
        for li, lw in enumerate(m.layers):
            hn = m.rms(x, lw["ln1"])
            q, k, v = F.linear(hn, lw["wqkv"]).split([qs, kvs, kvs], dim=-1)
            q = m.rope(q.view(t, h, d), cos, sin)
            k = m.rope(k.view(t, kh, d), cos, sin)
            v = v.view(t, kh, d)
            parts = []
            if tp:
                self.kv_prefill[0].copy_(k[:tp])
                self.kv_prefill[1].copy_(v[:tp])
                qp = q[:tp].view(n, g, h, d).transpose(1, 2)
                kp = k[:tp].view(n, g, kh, d).transpose(1, 2)
                vp = v[:tp].view(n, g, kh, d).transpose(1, 2)
                out = sdpa(qp, kp, vp, self.modes["prefill"], "square")
                parts.append(out.transpose(1, 2).reshape(tp, qs))
            if b:
                kc, vc = self.caches[li]
                kc[:, :, c].copy_(k[tp:])
                vc[:, :, c].copy_(v[tp:])
                out = sdpa(q[tp:].unsqueeze(2), kc, vc, self.modes["decode"])
                parts.append(out.reshape(b, qs))
            a = parts[0] if len(parts) == 1 else torch.cat(parts)
            x = x + F.linear(a, lw["wo"])
            hn = m.rms(x, lw["ln2"])
            gate, up = F.linear(hn, lw["wgu"]).chunk(2, dim=-1)
            x = x + F.linear(F.silu(gate) * up, lw["wdown"])
        hn = m.rms(x, m.norm)
        logits = F.linear(hn[self.last_idx], m.lm_head)
        return logits.argmax(dim=-1)


def choose_attention_modes(ctx: Ctx, shape: ModelShape) -> tuple[dict[str, str], dict]:
    """The fastest GQA mode for prefill and for decode at representative model shapes."""
    h, kh, d = shape.n_heads, shape.n_kv_heads, shape.head_dim
    g, b, c = (32, 4, 32) if ctx.smoke else (1024, 64, 1024)
    dev, dt = ctx.device, ctx.dtype
    probe: dict[str, Any] = {"prefill": {}, "decode": {}}
    qp = torch.empty(1, g, h, d, dtype=dt, device=dev).normal_().transpose(1, 2)
    kp = torch.empty(1, g, kh, d, dtype=dt, device=dev).normal_().transpose(1, 2)
    qd = torch.empty(b, h, 1, d, dtype=dt, device=dev).normal_()
    kd = torch.empty(b, kh, c + 1, d, dtype=dt, device=dev).normal_()
    cases = [
        ("prefill", ("enable_gqa", "expand"), qp, kp, "square"),
        ("decode", ("enable_gqa", "fold", "expand"), qd, kd, None),
    ]
    chosen = {}
    for kind, modes, q, k, causal in cases:
        for mode in modes:

            def call(q=q, k=k, mode=mode, causal=causal) -> torch.Tensor:
                return sdpa(q, k, k, mode, causal)

            try:
                probe[kind][mode] = ctx.time_fn(call, budget_s=0.02, graph=False)["seconds"]
            except Exception as exc:
                probe[kind][mode] = error_text(exc)
        ok = {m: t for m, t in probe[kind].items() if isinstance(t, float)}
        chosen[kind] = min(ok, key=ok.__getitem__) if ok else "expand"
    del qp, kp, qd, kd
    return chosen, {"shapes": {"prefill_g": g, "decode_b": b, "decode_c": c}, **probe}


def section_model_step(ctx: Ctx, args: argparse.Namespace) -> dict[str, Any]:
    shape = SMOKE_MODEL if ctx.smoke else LLAMA_8B
    weight_bytes = shape.n_params * 2
    if weight_bytes > ctx.free_bytes() - 4 * GIB:
        raise RuntimeError(f"weights need {weight_bytes / GIB:.1f} GiB, too little free memory")
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    model = RandomLlama(shape, ctx.device, ctx.dtype)
    ctx.sync()
    init_s = time.perf_counter() - t0
    log(f"model_step: {shape.name} {shape.n_params / 1e9:.2f}B params built in {init_s:.1f} s")
    modes, probe = choose_attention_modes(ctx, shape)
    log(f"model_step: attention modes {modes} (probe {probe})")
    kv_budget = int(args.kv_budget_gib * GIB)
    points: list[dict[str, Any]] = []
    skipped: list[str] = []
    for plan in step_plans(ctx.smoke):
        label = (
            f"{plan.kind} prompts={plan.n_prompts}x{plan.prompt_len} "
            f"decodes={plan.n_decodes}@{plan.decode_context}"
        )
        if ctx.time_left() <= 2.0:
            skipped.append(f"{label} (out of time)")
            continue
        point: dict[str, Any] = {
            "kind": plan.kind,
            "n_prompts": plan.n_prompts,
            "prompt_len": plan.prompt_len,
            "prefill_context": plan.prefill_context,
            "n_prefill_tokens": plan.n_prefill_tokens,
            "n_decodes": plan.n_decodes,
            "decode_context": plan.decode_context,
            "tokens": plan.tokens,
            "n_logits": plan.n_logits,
        }
        point.update(step_derived(shape, plan))
        inputs = None
        try:
            budget = max(0, min(kv_budget, ctx.free_bytes() - 16 * GIB)) if ctx.cuda else kv_budget
            if ctx.cuda:
                torch.cuda.reset_peak_memory_stats()
            inputs = StepInputs(model, plan, modes, budget)
            point["kv_buffers"] = inputs.kv_buffers
            point["kv_buffers_shared"] = bool(plan.n_decodes) and inputs.kv_buffers < shape.n_layers
            eager = ctx.time_fn(
                inputs.step,
                budget_s=0.4,
                min_reps=3,
                max_reps=10,
                warmup=2,
                target_inner_s=0.0,
                graph=False,
            )
            point.update(eager)
            if ctx.graphs_enabled and plan.tokens <= args.graph_max_tokens:
                gres = ctx.time_fn(
                    inputs.step,
                    budget_s=0.3,
                    min_reps=3,
                    max_reps=10,
                    warmup=0,
                    target_inner_s=0.0,
                    graph=True,
                    graph_below_s=None,
                )
                if gres["timing"] == "cuda_graph":
                    point["graph_seconds"] = gres["seconds"]
                    point["graph_wall_seconds"] = gres["wall_seconds"]
                    point["graph_reps"] = gres["reps"]
                else:
                    point["graph_error"] = gres.get("graph_error", "not captured")
            if ctx.cuda:
                point["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated())
        except Exception as exc:
            point["error"] = error_text(exc)
            if is_oom(exc):
                point["oom"] = True
        t, tg = point.get("seconds"), point.get("graph_seconds")
        point["flops_per_s"] = rate(point["total_flops"], t)
        point["bytes_per_s"] = rate(point["bytes"], t)
        point["graph_flops_per_s"] = rate(point["total_flops"], tg)
        point["graph_bytes_per_s"] = rate(point["bytes"], tg)
        points.append(point)
        msg = f"model_step {label}: "
        if t:
            msg += f"eager {t * 1e3:.2f} ms"
            if tg:
                msg += f", graph {tg * 1e3:.2f} ms"
            best = min(x for x in (t, tg) if x)
            msg += (
                f" ({point['total_flops'] / best / 1e12:.0f} TFLOP/s,"
                f" {point['bytes'] / best / 1e9:.0f} GB/s)"
            )
        else:
            msg += point.get("error", "no time")
        log(msg)
        del inputs
        ctx.release()
    del model
    ctx.release()
    return {
        "config": {
            "model": asdict(shape),
            "n_params": shape.n_params,
            "n_params_non_embedding": shape.n_params_non_embedding,
            "layer_linear_params": shape.layer_linear_params,
            "kv_bytes_per_token": shape.kv_bytes_per_token,
            "dtype": "bfloat16",
            "weights_init_s": init_s,
            "attention_modes": modes,
            "attention_probe": probe,
            "kv_budget_bytes": kv_budget,
            "graphs": ctx.graphs_enabled,
            "graph_max_tokens": args.graph_max_tokens,
            "step": (
                "eager PyTorch: embedding, per layer RMSNorm (F.rms_norm), fused QKV "
                "F.linear, rotary (neox, eager), prefill KV copy + causal SDPA per batch of "
                "equal prompts, decode KV write + SDPA over a contiguous per-sequence cache "
                "[b, KH, c+1, D], o-proj, RMSNorm, gate_up, SiLU*up, down, residuals; final "
                "RMSNorm on all tokens, LM head on the last token of each sequence, argmax"
            ),
            "timing": "seconds: eager step, CUDA events; graph_seconds: the same step "
            "replayed from a CUDA graph (no Python / launch overhead)",
            "flops_note": "attention FLOPs: prefill 4 g (c + (g+1)/2) hidden L per prompt; "
            "decode 4 (c+1) hidden L per sequence",
        },
        "points": points,
        "skipped": skipped,
    }


# ----------------------------------------------------------------------------------------
# Section: h2d


def section_h2d(ctx: Ctx, args: argparse.Namespace) -> dict[str, Any]:
    points: list[dict[str, Any]] = []
    skipped: list[str] = []
    if not ctx.cuda:  # smoke: host-to-host copies through the same code path
        sizes = [MIB]
        combos = [("h2h", "pageable")]
    else:
        sizes = [64 * MIB, GIB]
        combos = [(dr, mem) for mem in ("pinned", "pageable") for dr in ("h2d", "d2h")]
    for size in sizes:
        for direction, memory in combos:
            if ctx.time_left() <= 0:
                skipped.append(f"{direction} {memory} {size} (out of time)")
                continue
            point: dict[str, Any] = {
                "direction": direction,
                "host_memory": memory,
                "size_bytes": size,
            }
            try:
                host = torch.empty(size, dtype=torch.uint8, pin_memory=memory == "pinned")
                host.fill_(1)
                other = torch.empty(size, dtype=torch.uint8, device=ctx.device)
                dst, src = (host, other) if direction == "d2h" else (other, host)

                def copy(dst=dst, src=src, nb=memory == "pinned") -> torch.Tensor:
                    return dst.copy_(src, non_blocking=nb)

                res = ctx.time_fn(
                    copy,
                    budget_s=0.3 if size < GIB else 0.6,
                    min_reps=3,
                    max_reps=10,
                    warmup=1,
                    target_inner_s=0.0,
                )
                point["seconds"] = res["wall_seconds"]
                point["event_seconds"] = res["seconds"]
                point["reps"] = res["reps"]
                point["timing"] = "wall (perf_counter around synchronize)"
                del host, other, dst, src
            except Exception as exc:
                point["error"] = error_text(exc)
            point["bytes_per_s"] = rate(size, point.get("seconds"))
            points.append(point)
            bw = point["bytes_per_s"]
            log(
                f"h2d {direction} {memory} {size / MIB:.0f} MiB: "
                + (f"{bw / 1e9:.1f} GB/s" if bw else point.get("error", "-"))
            )
            ctx.release()
    return {"config": {"sizes": sizes, "combos": combos}, "points": points, "skipped": skipped}


# ----------------------------------------------------------------------------------------
# Section: cpu_gemm


def section_cpu_gemm(ctx: Ctx, args: argparse.Namespace) -> dict[str, Any]:
    shapes = [(4096, 4096), (4096, 14336), (14336, 4096)]  # (K, N)
    ms = (1, 4, 16, 32)
    rotate_bytes = 512 * MIB
    if ctx.smoke:
        shapes = [(k // 64, n // 64) for k, n in shapes]
        ms = (1, 4)
        rotate_bytes = MIB
    threads_before = torch.get_num_threads()
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    points: list[dict[str, Any]] = []
    skipped: list[str] = []
    cpu = torch.device("cpu")
    try:
        for dtype in (torch.float32, torch.bfloat16):
            for k, n in shapes:
                if ctx.time_left() <= 0:
                    skipped.append(f"{dtype} {k}->{n} (out of time)")
                    continue
                weights = rotating_weights(n, k, dtype, cpu, rotate_bytes)
                line = []
                for m in ms:
                    if ctx.time_left() <= 0:
                        skipped.append(f"{dtype} {k}->{n} M={m} (out of time)")
                        continue
                    x = torch.randn(m, k, dtype=dtype)
                    cycle = itertools.cycle(weights)

                    def call(x=x, cycle=cycle) -> torch.Tensor:
                        return F.linear(x, next(cycle))

                    point: dict[str, Any] = {
                        "dtype": str(dtype).replace("torch.", ""),
                        "M": m,
                        "K": k,
                        "N": n,
                        "threads": threads,
                    }
                    try:
                        point.update(
                            ctx.time_fn(
                                call,
                                budget_s=0.25,
                                min_reps=3,
                                max_reps=20,
                                warmup=1,
                                target_inner_s=0.01,
                                max_inner=20,
                                on_cpu=True,
                            )
                        )
                    except Exception as exc:
                        point["error"] = error_text(exc)
                    t = point.get("seconds")
                    flops = 2.0 * m * n * k
                    point["flops"] = flops
                    point["flops_per_s"] = rate(flops, t)
                    point["weight_bytes_per_s"] = rate(n * k * weights[0].element_size(), t)
                    points.append(point)
                    if t:
                        line.append(f"M={m}:{t * 1e3:.2f}ms/{flops / t / 1e9:.0f}GF")
                name = str(dtype).replace("torch.", "")
                log(f"cpu_gemm {name} {k}->{n}: " + " ".join(line))
                del weights
                gc.collect()
    finally:
        torch.set_num_threads(threads_before)
    return {
        "config": {
            "op": "F.linear(x, W) on the CPU, W [N, K]",
            "threads": threads,
            "rotate_weight_bytes": rotate_bytes,
            "M": list(ms),
            "shapes": [{"K": k, "N": n} for k, n in shapes],
        },
        "points": points,
        "skipped": skipped,
    }


SECTIONS: dict[str, Callable[[Ctx, argparse.Namespace], dict[str, Any]]] = {
    "model_step": section_model_step,
    "gemm": section_gemm,
    "attention": section_attention,
    "hbm": section_hbm,
    "h2d": section_h2d,
    "cpu_gemm": section_cpu_gemm,
}
GPU_SECTIONS = {"model_step", "gemm", "attention", "hbm", "h2d"}


# ----------------------------------------------------------------------------------------
# Environment, JSON, summary


def environment(ctx: Ctx) -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "numpy_version": np.__version__,
        "cpu_count": os.cpu_count(),
        "torch_num_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "device": str(ctx.device),
        "device_name": None,
        "sm_count": None,
        "total_memory_bytes": None,
        "sdpa_enable_gqa": _sdpa_has_gqa(),
        "rms_norm": hasattr(F, "rms_norm"),
    }
    try:
        import triton  # type: ignore[import-not-found]

        env["triton_version"] = triton.__version__
    except Exception:
        env["triton_version"] = None
    with contextlib.suppress(Exception):
        env["cudnn_version"] = torch.backends.cudnn.version()
    if ctx.cuda:
        props = torch.cuda.get_device_properties(0)
        env.update(
            device_name=props.name,
            sm_count=props.multi_processor_count,
            total_memory_bytes=int(props.total_memory),
            compute_capability=f"{props.major}.{props.minor}",
            l2_cache_bytes=getattr(props, "L2_cache_size", None),
            device_count=torch.cuda.device_count(),
            free_memory_bytes=int(torch.cuda.mem_get_info()[0]),
        )
        try:
            query = "name,driver_version,clocks.max.sm,clocks.max.mem,power.limit,memory.total"
            res = subprocess.run(
                ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=15,
                check=False,
            )
            env["nvidia_smi"] = {"query": query, "output": res.stdout.strip() or res.stderr}
        except Exception as exc:
            env["nvidia_smi"] = {"error": error_text(exc)}
    else:
        env["device_name"] = platform.processor() or platform.machine()
    return env


def clean(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(clean(result), indent=1))
    os.replace(tmp, path)


def fmt_s(t: float | None) -> str:
    if not t:
        return "-"
    return f"{t * 1e3:.3f}ms" if t < 1 else f"{t:.2f}s"


def summary(result: dict[str, Any]) -> str:
    env = result["env"]
    lines = [
        f"device {env.get('device_name')} | torch {env.get('torch_version')} | "
        f"CUDA {env.get('cuda_version')} | SMs {env.get('sm_count')} | "
        f"memory {(env.get('total_memory_bytes') or 0) / GIB:.0f} GiB | "
        f"wall {result['wall_s']:.0f}s"
    ]
    for name, sec in result["sections"].items():
        n_ok = sum(1 for p in sec.get("points", []) if p.get("seconds"))
        head = f"== {name}: {sec['status']} ({n_ok} points, {sec.get('elapsed_s', 0):.1f}s)"
        if sec.get("error"):
            head += f" ERROR {sec['error']}"
        if sec.get("skipped"):
            head += f" [{len(sec['skipped'])} skipped]"
        lines.append(head)
        pts = sec.get("points", [])
        if name == "model_step":
            for p in pts:
                lines.append(
                    f"  {p['kind']:8s} P={p['n_prefill_tokens']:>5} ({p['n_prompts']}x"
                    f"{p['prompt_len']}) b={p['n_decodes']:>3} c={p['decode_context']:>4}  "
                    f"eager {fmt_s(p.get('seconds')):>10} graph {fmt_s(p.get('graph_seconds')):>10}"
                )
        elif name == "gemm":
            for key, grp in itertools.groupby(pts, key=lambda p: (p["model"], p["layer"])):
                grp_l = [p for p in grp if p.get("seconds")]
                if not grp_l:
                    continue
                best_f = max(p["flops_per_s"] for p in grp_l)
                best_b = max(p["weight_bytes_per_s"] for p in grp_l)
                m1 = grp_l[0]
                lines.append(
                    f"  {key[0]}.{key[1]:8s} M={m1['M']}: {fmt_s(m1['seconds'])} "
                    f"({m1['weight_bytes_per_s'] / 1e9:.0f} GB/s) | max {best_f / 1e12:.0f} "
                    f"TFLOP/s, max weight read {best_b / 1e12:.2f} TB/s"
                )
        elif name == "attention":
            best: dict[tuple, dict] = {}
            for p in pts:
                if not p.get("seconds"):
                    continue
                key = (p["kind"], p.get("g", p.get("b")), p["c"])
                if key not in best or p["seconds"] < best[key]["seconds"]:
                    best[key] = p
            for (kind, x, c), p in best.items():
                r = p.get("flops_per_s") or p.get("kv_bytes_per_s") or 0
                unit = "TFLOP/s" if kind == "prefill" else "TB/s"
                lines.append(
                    f"  {kind:7s} {'g' if kind == 'prefill' else 'b'}={x:>5} c={c:>5}: "
                    f"{fmt_s(p['seconds']):>10} {r / 1e12:7.2f} {unit} ({p['mode']}/{p['backend']})"
                )
        elif name in ("hbm", "h2d"):
            for p in pts:
                bw = p.get("bytes_per_s")
                what = p.get("op") or f"{p.get('direction')} {p.get('host_memory')}"
                lines.append(
                    f"  {what:16s} {p['size_bytes'] / MIB:>6.0f} MiB: "
                    + (f"{bw / 1e9:8.1f} GB/s" if bw else p.get("error", "-"))
                )
        elif name == "cpu_gemm":
            for p in pts:
                f_ = p.get("flops_per_s")
                lines.append(
                    f"  {p['dtype']:8s} {p['K']:>5}->{p['N']:<5} M={p['M']:>2}: "
                    f"{fmt_s(p.get('seconds')):>10} "
                    + (f"{f_ / 1e9:7.1f} GFLOP/s" if f_ else p.get("error", "-"))
                )
    return "\n".join(lines)


def default_out() -> Path:
    out_dir = os.environ.get("OUT")
    return Path(out_dir) / "gpu_microbench.json" if out_dir else Path("gpu_microbench.json")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default: see docstring)")
    ap.add_argument(
        "--sections",
        default=",".join(SECTION_ORDER),
        help=f"comma-separated subset of {','.join(SECTION_ORDER)} (run in that order)",
    )
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (code-path test)")
    ap.add_argument(
        "--max-seconds", type=float, default=215.0, help="time cap of the whole run after start-up"
    )
    ap.add_argument("--no-graphs", action="store_true", help="no CUDA-graph timing")
    ap.add_argument(
        "--graph-max-tokens",
        type=int,
        default=4352,
        help="model_step: replay steps of at most this many tokens from a CUDA graph too",
    )
    ap.add_argument(
        "--kv-budget-gib",
        type=float,
        default=48.0,
        help="model_step: decode KV bytes above which layers share KV buffers",
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SECTION_ORDER))
    if unknown:
        ap.error(f"unknown sections {unknown}; choose from {', '.join(SECTION_ORDER)}")
    args.section_list = [s for s in SECTION_ORDER if s in chosen]
    if args.out is None:
        args.out = default_out()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ctx = Ctx(args)
    if ctx.cuda:
        torch.cuda.init()
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "script": "bench/gpu_microbench.py",
        "started_utc": utc_now(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "smoke": args.smoke,
        "env": {},
        "point_fields": POINT_FIELDS,
        "section_order": args.section_list,
        "sections": {},
    }
    try:
        result["env"] = environment(ctx)
    except Exception as exc:
        result["env"] = {"error": error_text(exc)}
    env = result["env"]
    log(
        f"device {env.get('device_name')} torch {env.get('torch_version')} "
        f"CUDA {env.get('cuda_version')} -> {args.out}"
    )
    for name in args.section_list:
        budget = SMOKE_BUDGET_S if args.smoke else SECTION_BUDGET_S[name]
        ctx.begin_section(budget)
        log(f"== {name} (budget {min(budget, ctx.time_left()):.0f} s)")
        t0 = time.perf_counter()
        sec: dict[str, Any] = {"status": "ok", "error": None, "budget_s": budget}
        try:
            if name in GPU_SECTIONS and not ctx.cuda and not args.smoke:
                raise RuntimeError("CUDA is not available (use --smoke for a CPU code-path run)")
            if ctx.time_left() <= 0:
                raise OutOfTime("no time left for this section")
            sec.update(SECTIONS[name](ctx, args))
            if sec.get("skipped"):
                sec["status"] = "partial"
        except Exception as exc:
            sec["status"] = "error"
            sec["error"] = error_text(exc)
            sec["traceback"] = traceback.format_exc()
            log(f"{name} failed: {sec['error']}")
        with contextlib.suppress(Exception):
            ctx.release()
        sec["elapsed_s"] = time.perf_counter() - t0
        sec.setdefault("points", [])
        result["sections"][name] = sec
        result["graph_failures"] = ctx.graph_failures
        result["wall_s"] = time.perf_counter() - T_START
        write_json(args.out, result)
        log(f"== {name} {sec['status']} in {sec['elapsed_s']:.1f} s")
    result["finished_utc"] = utc_now()
    result["wall_s"] = time.perf_counter() - T_START
    write_json(args.out, result)
    print(summary(result), flush=True)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
