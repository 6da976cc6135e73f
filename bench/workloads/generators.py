"""Synthetic workloads with the statistics of the BlendServe traces (see docs/papers.md).

Invariant: every generator is a pure function of its arguments (seeded numpy), returns
SimRequests with token-id prompts (int32 arrays, ids >= 1000 so they never collide with
template ids) and output_len >= 1, and matches its source's mean prompt/output tokens and
prefix-sharing ratio up to sampling noise.

Sources (mean input / output tokens; sharing): BurstGPT 244/27 (0.02), MMLU 804/2 few-shot
(0.86), OpenVid 121/~16K (0.00; here one shared instruction token: 0.008), ShareGPT ~300/~260
(0.02), WildChat 496/256 (0.19), Azure 2508/23 (0.01). Lengths are lognormal around the
means; sharing comes from a per-source chat/system template (chat traces), per-subject
few-shot prefixes (MMLU) or earlier turns of the same conversation (WildChat). Mixes of
BurstGPT + MMLU + OpenVid are solved for a target workload density
rho = (1 - s) sum Comp / sum Mem (blend/cost/model.py) and sharing s.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from blend.cost.model import CostModel, load_hardware, load_model_spec
from blend.planners.tree import build_compact_trie
from blend.simulate import SimRequest

VOCAB_LOW, VOCAB_HIGH = 1000, 128000  # body token ids; templates use ids below VOCAB_LOW
FULL_MIX_REQUESTS = 40_000  # requests in a main mix at scale 1
MAIN_MIXES: dict[str, tuple[float, float]] = {  # name -> (rho, sharing)
    "rho1.4-s35": (1.4, 0.35),
    "rho0.9-s35": (0.9, 0.35),
    "rho1.4-s05": (1.4, 0.05),
    "rho0.9-s05": (0.9, 0.05),
}


def default_cost() -> CostModel:
    """llama-3.1-8b on a100-80g: the cost model the paper's mixes are defined with."""
    return CostModel(load_model_spec("llama-3.1-8b"), load_hardware("a100-80g"))


def _lognormal(
    rng: np.random.Generator, mean: float, sigma: float, n: int, low: int, high: int
) -> np.ndarray:
    """Integer lengths, lognormal with the given mean (before clipping to [low, high])."""
    mu = np.log(mean) - sigma**2 / 2.0
    return np.clip(np.rint(rng.lognormal(mu, sigma, n)), low, high).astype(np.int64)


def _body(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(VOCAB_LOW, VOCAB_HIGH, n, dtype=np.int32)


def _template(source_id: int, length: int) -> np.ndarray:
    """A fixed prefix of template ids (< VOCAB_LOW), distinct per source."""
    return (np.arange(length, dtype=np.int32) * 7 + source_id * 131) % VOCAB_LOW


@dataclass(frozen=True, slots=True)
class ChatTrace:
    """Single-turn chat: a per-source template prefix, then a unique body."""

    name: str
    source_id: int
    prompt_mean: float
    prompt_sigma: float
    output_mean: float
    output_sigma: float
    sharing: float  # the template is sharing x mean prompt tokens long
    output_max: int = 32768

    def generate(self, n: int, seed: int) -> list[SimRequest]:
        rng = np.random.default_rng([seed, self.source_id])
        template = _template(self.source_id, max(0, round(self.sharing * self.prompt_mean)))
        prompt = _lognormal(rng, self.prompt_mean, self.prompt_sigma, n, 4, 32768)
        prompt = np.maximum(prompt, len(template) + 1)
        output = _lognormal(rng, self.output_mean, self.output_sigma, n, 1, self.output_max)
        body = _body(rng, int((prompt - len(template)).sum()))
        ends = np.cumsum(prompt - len(template))
        return [
            SimRequest(
                f"{self.name}-{i}",
                np.concatenate((template, body[ends[i] - (prompt[i] - len(template)) : ends[i]])),
                int(output[i]),
            )
            for i in range(n)
        ]


BURSTGPT = ChatTrace("burstgpt", 1, 244, 0.8, 27, 0.9, 0.02)
OPENVID = ChatTrace("openvid", 3, 121, 0.3, 16000, 0.15, 1 / 121)  # one shared token
SHAREGPT = ChatTrace("sharegpt", 4, 300, 1.0, 260, 0.9, 0.02)
AZURE = ChatTrace("azure", 6, 2508, 0.7, 23, 0.8, 0.01)


def mmlu(n: int, seed: int, sharing: float = 0.86, prompt_mean: float = 804) -> list[SimRequest]:
    """MMLU 5-shot: subjects share a few-shot prefix; a unique question; 1-4 output tokens."""
    rng = np.random.default_rng([seed, 2])
    n_subjects = max(1, min(57, n // 50))
    # (n - subjects) of n prompts reuse their subject's prefix: size it to hit `sharing`
    prefix_len = round(sharing * prompt_mean * n / max(1, n - n_subjects)) if n > 1 else 0
    prefix_len = min(prefix_len, int(prompt_mean) - 8)
    prefixes = [_body(rng, prefix_len) for _ in range(n_subjects)]
    question = _lognormal(rng, prompt_mean - prefix_len, 0.35, n, 8, 4096)
    subject = rng.integers(0, n_subjects, n)
    output = _lognormal(rng, 2.0, 0.4, n, 1, 8)
    return [
        SimRequest(f"mmlu-{i}", np.concatenate((prefixes[subject[i]], _body(rng, q))), int(d))
        for i, (q, d) in enumerate(zip(question.tolist(), output.tolist(), strict=True))
    ]


def wildchat(n: int, seed: int) -> list[SimRequest]:
    """Multi-turn chat: a later turn's prompt extends the previous turn's prompt and answer."""
    rng = np.random.default_rng([seed, 5])
    template = _template(5, 8)
    requests: list[SimRequest] = []
    conversation = 0
    while len(requests) < n:
        turns = int(min(n - len(requests), rng.choice([1, 2, 3], p=[0.82, 0.13, 0.05])))
        context = np.concatenate(
            (template, _body(rng, int(_lognormal(rng, 420, 0.9, 1, 8, 8192)[0])))
        )
        for turn in range(turns):
            output = int(_lognormal(rng, 256, 0.8, 1, 1, 8192)[0])
            requests.append(SimRequest(f"wildchat-{conversation}-{turn}", context, output))
            follow_up = _body(rng, output + int(_lognormal(rng, 60, 0.8, 1, 2, 4096)[0]))
            context = np.concatenate((context, follow_up))
        conversation += 1
    return requests


TRACES: dict[str, Callable[[int, int], list[SimRequest]]] = {
    "burstgpt": BURSTGPT.generate,
    "mmlu": mmlu,
    "openvid": OPENVID.generate,
    "sharegpt": SHAREGPT.generate,
    "wildchat": wildchat,
    "azure": AZURE.generate,
}


@dataclass(frozen=True, slots=True)
class WorkloadStats:
    n_requests: int
    mean_prompt_tokens: float
    mean_output_tokens: float
    sharing: float  # prefix-sharing ratio of the prompt trie (DFS-level)
    rho: float  # (1 - sharing) sum Comp / sum Mem


def workload_stats(requests: Sequence[SimRequest], cost: CostModel | None = None) -> WorkloadStats:
    cost = cost or default_cost()
    p = np.fromiter((len(r.prompt_token_ids) for r in requests), np.float64, len(requests))
    d = np.fromiter((r.output_len for r in requests), np.float64, len(requests))
    sharing = build_compact_trie([r.prompt_token_ids for r in requests]).sharing_ratio()
    comp = cost.comp_s(float(p.sum()), float(d.sum()))
    mem_total = float(cost.mem_s(p, d).sum())
    rho = (1.0 - sharing) * comp / mem_total if mem_total > 0 else float("inf")
    return WorkloadStats(len(requests), float(p.mean()), float(d.mean()), sharing, rho)


MIX_SOURCES = ("burstgpt", "mmlu", "openvid")


def mix_fractions(
    rho: float,
    sharing: float,
    per_source: dict[str, tuple[float, float, float, float]],
) -> dict[str, float]:
    """Request fractions of BurstGPT, MMLU, OpenVid hitting (rho, sharing).

    per_source: name -> mean (Comp s, Mem s, prompt tokens, shared prompt tokens) per request.
    Solves (1 - s) sum f Comp = rho sum f Mem, sum f shared = s sum f prompt, sum f = 1.
    """
    rows = [
        [(1 - sharing) * per_source[k][0] - rho * per_source[k][1] for k in MIX_SOURCES],
        [per_source[k][3] - sharing * per_source[k][2] for k in MIX_SOURCES],
        [1.0, 1.0, 1.0],
    ]
    fractions = np.linalg.solve(np.array(rows), np.array([0.0, 0.0, 1.0]))
    if (fractions < 0).any():
        raise ValueError(
            f"no mix of {', '.join(MIX_SOURCES)} has rho {rho} and sharing {sharing} "
            f"(solved fractions {np.round(fractions, 4).tolist()}): pick targets inside the grid"
        )
    return dict(zip(MIX_SOURCES, fractions.tolist(), strict=True))


def _source_means(
    requests: Sequence[SimRequest], cost: CostModel
) -> tuple[float, float, float, float]:
    stats = workload_stats(requests, cost)
    p = np.fromiter((len(r.prompt_token_ids) for r in requests), np.float64, len(requests))
    d = np.fromiter((r.output_len for r in requests), np.float64, len(requests))
    return (
        cost.comp_s(stats.mean_prompt_tokens, stats.mean_output_tokens),
        float(cost.mem_s(p, d).mean()),
        stats.mean_prompt_tokens,
        stats.sharing * stats.mean_prompt_tokens,
    )


def blend_mix(
    rho: float,
    sharing: float,
    n: int = FULL_MIX_REQUESTS,
    seed: int = 0,
    cost: CostModel | None = None,
    refine: int = 2,
) -> list[SimRequest]:
    """A shuffled BurstGPT + MMLU + OpenVid mix of about n requests at (rho, sharing).

    Fractions come from per-source means measured on samples of the sizes the mix will hold;
    `refine` rounds correct the targets by the error the previous round measured.
    """
    cost = cost or default_cost()
    target_rho, target_sharing = rho, sharing
    requests: list[SimRequest] = []
    for _ in range(refine + 1):
        means = {k: _source_means(TRACES[k](max(200, n // 3), seed + 7), cost) for k in MIX_SOURCES}
        counts = _counts(mix_fractions(target_rho, target_sharing, means), n)
        requests = [r for k in MIX_SOURCES for r in TRACES[k](counts[k], seed)]
        order = np.random.default_rng(seed).permutation(len(requests))
        requests = [requests[i] for i in order]
        got = workload_stats(requests, cost)
        target_sharing += sharing - got.sharing
        target_rho += rho - got.rho
    return _normalise_openvid(requests, rho, cost)


def _normalise_openvid(requests: list[SimRequest], rho: float, cost: CostModel) -> list[SimRequest]:
    """Scale OpenVid output lengths (by 0.7-1.4x, as the paper normalises them) to hit rho.

    Whole requests move rho in steps when few OpenVid requests are in the mix; the sharing is
    untouched (prompts do not change).
    """
    is_video = np.array([r.request_id.startswith("openvid-") for r in requests])
    if not is_video.any():
        return requests
    sharing = workload_stats(requests, cost).sharing
    p = np.fromiter((len(r.prompt_token_ids) for r in requests), np.float64, len(requests))
    d0 = np.fromiter((r.output_len for r in requests), np.float64, len(requests))

    def scaled(factor: float) -> np.ndarray:
        return np.where(is_video, np.maximum(1.0, np.rint(d0 * factor)), d0)

    def rho_at(factor: float) -> float:
        d = scaled(factor)
        mem = float(cost.mem_s(p, d).sum())
        return (1.0 - sharing) * cost.comp_s(float(p.sum()), float(d.sum())) / mem

    lo, hi = 0.7, 1.4  # rho falls as outputs grow
    for _ in range(40):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if rho_at(mid) > rho else (lo, mid)
    d = scaled((lo + hi) / 2.0)
    return [
        SimRequest(r.request_id, r.prompt_token_ids, int(d[i])) if is_video[i] else r
        for i, r in enumerate(requests)
    ]


def _counts(fractions: dict[str, float], n: int) -> dict[str, int]:
    counts = {k: round(f * n) for k, f in fractions.items()}
    counts["openvid"] = max(counts["openvid"], 1 if fractions["openvid"] > 0 else 0)
    return counts


def main_mixes(scale: float = 1.0, seed: int = 0) -> dict[str, list[SimRequest]]:
    """The paper's four main mixes, FULL_MIX_REQUESTS x scale requests each."""
    n = max(50, round(FULL_MIX_REQUESTS * scale))
    return {name: blend_mix(r, s, n, seed) for name, (r, s) in MAIN_MIXES.items()}


def few_shot_prompts(
    n: int, mean_tokens: int = 500, seed: int = 0
) -> tuple[list[np.ndarray], np.random.Generator]:
    """n prompts of ~mean_tokens tokens (lognormal, 16-4096), 25% of those over 320 tokens
    starting with one of 200 shared 300-token few-shot prefixes; int32 views of one array.

    Returns the prompts and the generator, for drawing outputs from the same seed.
    """
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(mean_tokens) - 0.08, 0.4, n), 16, 4096).astype(np.int64)
    flat = rng.integers(1000, 128000, int(lengths.sum()), dtype=np.int32)
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    prefixes = rng.integers(1000, 128000, (200, 300), dtype=np.int32)
    shared = np.flatnonzero(rng.random(n) < 0.25)
    for i in shared[lengths[shared] > 320].tolist():
        flat[offsets[i] : offsets[i] + 300] = prefixes[i % 200]
    return [flat[offsets[i] : offsets[i + 1]] for i in range(n)], rng


def grid_mixes(
    rhos: Sequence[float] = (0.8, 1.0, 1.2, 1.4),
    sharings: Sequence[float] = (0.05, 0.15, 0.25, 0.35, 0.45),
    scale: float = 1.0,
    seed: int = 0,
) -> dict[tuple[float, float], list[SimRequest]]:
    """The rho x sharing grid (docs/papers.md: rho 0.80-1.40, sharing 0.05-0.45)."""
    n = max(50, round(FULL_MIX_REQUESTS * scale))
    return {(r, s): blend_mix(r, s, n, seed) for r in rhos for s in sharings}


def write_requests_parquet(requests: Sequence[SimRequest], path: Path) -> Path:
    """Write request_id, prompt_token_ids, output_len (for `blend simulate --requests`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    lengths = np.fromiter((len(r.prompt_token_ids) for r in requests), np.int64, len(requests))
    flat = (
        np.concatenate([np.asarray(r.prompt_token_ids, dtype=np.int32) for r in requests])
        if requests
        else np.zeros(0, dtype=np.int32)
    )
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int32)
    table = pa.table(
        {
            "request_id": pa.array([r.request_id for r in requests], pa.string()),
            "prompt_token_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat)),
            "output_len": pa.array([r.output_len for r in requests], pa.int64()),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path
