"""The fluid LP's inputs (alpha, beta, gamma, B, C) from the calibrated cost model.

The LP (fluid_lp.py) models a GPU's iterations with two numbers: a mixed iteration (one
prefill chunk of C tokens plus B - 1 decodes) takes tau = alpha + beta C, a decode-only one
takes 1 / gamma. Here both come from the simulator's own step model (blend/simulate/
step_time.py, the calibrated roofline of the model on the hardware), so the LP and the
simulator agree on what an iteration costs. Assumptions, stated:
- B = the engine's max_num_seqs, capped by the requests KV memory holds at the typical
  footprint (P + D / 2 tokens each): the fluid model has no memory constraint of its own,
  and slots memory cannot hold are slots the engine never runs. At least 2.
- C = the step's token budget less the B - 1 decode tokens that share it
  (max_num_batched_tokens - (B - 1)), at least 1: vLLM fills a step with every running
  decode first and gives the rest to prefill chunks.
- Typical request: P = the mean prompt and D = the mean (estimated) output over the classes,
  weighted by their counts. A decode reads the KV of a context of P + D / 2 tokens (the
  mean over its life) and writes one; a prefill chunk token attends to (P + 1) / 2 tokens
  on average (a prompt's attention FLOPs spread over its tokens) and reads and writes its
  own KV entry.
- alpha, beta: least squares over mixed steps with chunks of C / 8 .. C tokens beside B - 1
  decodes (the step model is piecewise: compute-bound chunks are close to linear in the
  chunk, memory-bound ones flat; the fit's rms error is reported). gamma: 1 / the time of a
  decode-only step of B decodes.
- Step overhead (the calibrated per-step fixed cost) is part of every step, so it lands in
  alpha and in 1 / gamma.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from blend.control.classes import RequestClass
from blend.control.fluid_lp import FluidParams
from blend.cost.model import CostModel
from blend.cost.step_time import prefill_attention_flops, step_time_s
from blend.engines.settings import EngineSettings

FIT_POINTS = 8  # chunk sizes the mixed-step line is fitted over


@dataclass(frozen=True, slots=True)
class FluidInputs:
    """FluidParams plus what they were derived from."""

    params: FluidParams
    prompt_tokens: float  # typical P (tokens)
    output_tokens: float  # typical D (tokens)
    decode_context_tokens: float  # KV a decode reads (tokens): P + D / 2
    kv_slots: int  # requests KV memory holds at the typical footprint
    fit_rms_rel: float  # rms relative error of alpha + beta C' over the fitted steps


def typical_request(classes: Sequence[RequestClass]) -> tuple[float, float]:
    """(P, D): the count-weighted means over the classes (tokens)."""
    if not classes:
        raise ValueError("typical_request: no classes")
    n = np.array([max(c.n_requests, 0) for c in classes], dtype=np.float64)
    weights = n / n.sum() if n.sum() > 0 else np.full(len(classes), 1.0 / len(classes))
    p = float(weights @ np.array([c.prompt_tokens for c in classes]))
    d = float(weights @ np.array([c.output_tokens for c in classes]))
    return p, d


def fluid_inputs(
    cost: CostModel,
    settings: EngineSettings,
    prompt_tokens: float,
    output_tokens: float,
    kv_capacity_tokens: int | None = None,
) -> FluidInputs:
    """alpha, beta, gamma, B, C for `cost` on an engine with `settings`, for requests of
    typically `prompt_tokens` + `output_tokens` (module docstring: the assumptions).
    kv_capacity_tokens: the engine's KV cache (default: the cost model's)."""
    if prompt_tokens <= 0 or output_tokens <= 0:
        raise ValueError(
            f"fluid_inputs: typical prompt and output tokens must be > 0, got "
            f"P={prompt_tokens}, D={output_tokens}"
        )
    capacity = cost.kv_capacity_tokens if kv_capacity_tokens is None else kv_capacity_tokens
    context = prompt_tokens + output_tokens / 2.0
    kv_slots = int(capacity // context)
    slots = max(2, min(settings.max_num_seqs, kv_slots))
    chunk = max(1, settings.max_num_batched_tokens - (slots - 1))
    decode_kv = (slots - 1) * (context + 2.0)
    attention_per_token = prefill_attention_flops(cost, 1, 0) * (prompt_tokens + 1.0) / 2.0

    def mixed_step_s(chunk_tokens: int) -> float:
        return step_time_s(
            cost,
            chunk_tokens,
            slots - 1,
            decode_kv,
            prefill_attention_flops=attention_per_token * chunk_tokens,
            prefill_kv_tokens=2.0 * chunk_tokens,
        )

    sizes = np.unique(np.linspace(max(1, chunk // FIT_POINTS), chunk, FIT_POINTS).astype(int))
    times = np.array([mixed_step_s(int(c)) for c in sizes])
    if len(sizes) >= 2:
        beta, alpha = np.polyfit(sizes.astype(np.float64), times, 1)
    else:  # a one-token chunk: no line to fit; all of it is the fixed part
        beta, alpha = 0.0, float(times[0])
    beta, alpha = max(float(beta), 0.0), max(float(alpha), 0.0)
    fitted = alpha + beta * sizes
    rms = float(np.sqrt(np.mean(((fitted - times) / times) ** 2)))
    solo_s = step_time_s(cost, 0, slots, slots * (context + 2.0))
    params = FluidParams(
        alpha_s=alpha,
        beta_s_per_token=beta,
        gamma_tok_s=1.0 / solo_s,
        slots=slots,
        chunk_tokens=chunk,
    )
    return FluidInputs(params, prompt_tokens, output_tokens, context, kv_slots, rms)


def class_fluid_inputs(
    cost: CostModel,
    settings: EngineSettings,
    classes: Sequence[RequestClass],
    kv_capacity_tokens: int | None = None,
) -> FluidInputs:
    """fluid_inputs at the classes' typical request."""
    p, d = typical_request(classes)
    return fluid_inputs(cost, settings, p, d, kv_capacity_tokens)
