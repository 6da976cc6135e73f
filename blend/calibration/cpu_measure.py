"""Time steps of the local vLLM CPU engine over a grid, for blend/calibration/cpu_fit.py.

The engine runs in process on a random-weight Llama (cpu_fit.BENCH_SHAPE) with chunked
prefill off, as blend's executor runs it on the CPU; its steps are driven through the raw
LLMEngine (add_request / step), so that each timed step holds exactly the work of one grid
point: m prompts of L tokens prefilled at once, or n requests decoding at a context of c.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from blend.calibration.cpu_fit import BENCH_SHAPE, Sample, model_spec
from blend.cost.model import CostModel, HardwareSpec
from blend.cost.step_time import prefill_attention_flops
from blend.demo.model import ensure_tiny_model
from blend.engines.base import EngineConfig
from blend.engines.vllm_args import engine_environment, scoped_environment
from blend.engines.vllm_compat import shield_llvmlite_from_kernel_scan

MAX_BATCHED_TOKENS = 4096  # >= max_model_len: needed without chunked prefill
CPU_BLOCK_SIZE = 128  # tokens per KV block of vLLM's CPU build
KV_CACHE_BYTES = 2**30  # 1 GiB: the whole grid fits

OnSample = Callable[[Sample], None]


def default_models_dir() -> Path:
    return Path(tempfile.gettempdir()) / "blend-bench-models"


def start_engine(
    model_dir: Path,
    *,
    max_num_seqs: int = 256,
    enable_prefix_caching: bool = False,
    num_blocks: int | None = None,
) -> Any:
    """An in-process vLLM LLMEngine on the CPU (chunked prefill off, as blend's executor)."""
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
        kv_cache_memory_bytes=KV_CACHE_BYTES,
        dtype="bfloat16",
        seed=0,
    )
    in_process = EngineConfig(model_dir=model_dir, multiprocessing=False)
    with scoped_environment(engine_environment(in_process, on_cpu=True)):
        return LLMEngine.from_engine_args(args)


def engine_num_blocks(engine: Any) -> int:
    return int(engine.vllm_config.cache_config.num_gpu_blocks)


def _greedy(max_tokens: int) -> Any:
    from vllm import SamplingParams

    return SamplingParams(max_tokens=max_tokens, ignore_eos=True, temperature=0.0)


def add_prompts(engine: Any, prompts: list[list[int]], max_tokens: int | list[int]) -> list[str]:
    """Hand `prompts` to the engine (greedy, ignoring EOS); returns their request ids."""
    from vllm.inputs import TokensPrompt

    limits = max_tokens if isinstance(max_tokens, list) else [max_tokens] * len(prompts)
    ids = []
    for prompt, limit in zip(prompts, limits, strict=True):
        request_id = uuid.uuid4().hex
        engine.add_request(request_id, TokensPrompt(prompt_token_ids=prompt), _greedy(limit))
        ids.append(request_id)
    return ids


def random_prompts(rng: np.random.Generator, n: int, length: int) -> list[list[int]]:
    # Ids 16..vocab-1: clear of the special tokens at the start of the demo vocabulary.
    return [rng.integers(16, BENCH_SHAPE.vocab_size, length).tolist() for _ in range(n)]


def time_step(engine: Any) -> tuple[float, float, list[Any]]:
    """(wall seconds, CPU seconds of this process, outputs) of one engine step.

    CPU time leaves out the time other processes take from this one on a shared machine
    (the engine computes on one core, in this process, when run in process).
    """
    wall, cpu = time.perf_counter(), time.process_time()
    outputs = engine.step()
    return time.perf_counter() - wall, time.process_time() - cpu, outputs


def prefill_samples(
    engine: Any,
    cost: CostModel,
    rng: np.random.Generator,
    repeats: int,
    on_sample: OnSample | None = None,
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
                if on_sample is not None:
                    on_sample(samples[-1])
    return samples


def decode_samples(
    engine: Any,
    rng: np.random.Generator,
    n_steps: int,
    grid: list[tuple[int, int]],
    on_sample: OnSample | None = None,
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
        if on_sample is not None:
            on_sample(samples[-1])
        engine.abort_request(ids)
        while engine.has_unfinished_requests():
            engine.step()
    return samples


def describe(sample: Sample) -> str:
    """One line for a log: the grid point and its step time."""
    return (
        f"{sample.kind} x{sample.n_requests} context {sample.context}: "
        f"{sample.seconds * 1e3:.1f} ms CPU, {sample.wall_seconds * 1e3:.1f} ms wall"
    )


def measure(
    models_dir: Path,
    repeats: int,
    decode_steps: int,
    on_sample: OnSample | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> list[Sample]:
    """The whole grid on a fresh engine: prefill (repeats per point), then decode; `say`
    hears of the engine start and the time taken."""
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
    say(f"engine started in {start_s:.1f} s; {engine_num_blocks(engine)} KV blocks")
    add_prompts(engine, random_prompts(rng, 2, 64), 4)  # warm-up (first steps compile/allocate)
    while engine.has_unfinished_requests():
        engine.step()
    grid = [(n, c) for n in (1, 8, 32) for c in (128, 1024)]
    samples = prefill_samples(engine, cost, rng, repeats, on_sample)
    samples += decode_samples(engine, rng, decode_steps, grid, on_sample)
    say(f"measured for {time.perf_counter() - started:.0f} s")
    return samples
