"""Workload families: parameterised generators, many different workloads from one family.

Invariant: `FAMILIES[name].instance(n, seed)` is a pure function of (n, seed) (seeded numpy
generators, no global RNG). Its Workload holds n requests (main-mix: n up to rounding) with
unique request ids, int32 prompts made of template ids (< VOCAB_LOW) and body ids in
[VOCAB_LOW, VOCAB_HIGH) ending in a unique body, and 1 <= output_len <= max_tokens[i], where
max_tokens[i] is the output limit a real user would set for that kind of request (outputs
that would run longer stop at it). Each family draws its shape (class weights, length means
and spreads, prefix sharing) from the seed within the ranges its class docstring states, and
`params` records the draw. Shape parameters come from a generator seeded by (family, seed)
only, so a seed keeps its shape at every n (fewshot-eval: unless n caps its task count); the
samples come from a second generator.

Lengths are in tokens. Prompts are views of one flat array per instance (a shared prefix
copied in front of each unique body), so 40k requests take well under a second to build
(main-mix: blend_mix's few seconds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from bench.workloads.generators import (
    MAIN_MIXES,
    WorkloadStats,
    _body,
    _lognormal,
    _template,
    blend_mix,
    workload_stats,
)
from blend.cost.model import CostModel
from blend.simulate import SimRequest
from blend.simulate.io import Workload

Params = dict[str, Any]  # drawn parameters of an instance: JSON-friendly values


@dataclass(frozen=True, slots=True)
class FamilyInstance:
    """One drawn workload of a family, with the parameters that shaped it."""

    family: str  # the family's name
    name: str  # "<family>-n<n>-s<seed>"
    description: str  # one line: the family and its drawn shape
    workload: Workload  # requests + planner-visible max_tokens
    params: Params = field(default_factory=dict)  # the drawn parameters


@runtime_checkable
class WorkloadFamily(Protocol):
    """A parameterised workload generator; instance(n, seed) is pure in (n, seed)."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    def instance(self, n: int, seed: int) -> FamilyInstance: ...


# ---------------------------------------------------------------------------------------------
# Shared machinery


@dataclass(frozen=True, slots=True)
class _Draft:
    """Per-request arrays of an instance before its prompts are assembled."""

    kinds: Sequence[str]  # component names (for request ids)
    kind: np.ndarray  # component index per request
    prefixes: Sequence[np.ndarray]  # shared prefixes (int32); prefix index 0 is empty
    prefix: np.ndarray  # index into prefixes per request
    body_len: np.ndarray  # unique prompt tokens per request (>= 1)
    output_len: np.ndarray  # true output tokens per request (>= 1)
    max_tokens: np.ndarray  # planner-visible output limit per request


_EMPTY = np.zeros(0, dtype=np.int32)


def _rngs(family_id: int, seed: int, n: int) -> tuple[np.random.Generator, np.random.Generator]:
    """(shape generator, sample generator) of one instance; the shape one ignores n."""
    if n < 1 or seed < 0:
        raise ValueError(f"need n >= 1 and seed >= 0, got n={n}, seed={seed}")
    return np.random.default_rng([family_id, seed, 0]), np.random.default_rng([family_id, seed, 1])


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _assign(rng: np.random.Generator, weights: Sequence[float], n: int) -> np.ndarray:
    """Component index per request: counts proportional to weights (largest remainder),
    shuffled."""
    w = np.asarray(weights, dtype=np.float64)
    exact = w / w.sum() * n
    counts = np.floor(exact).astype(np.int64)
    counts[np.argsort(counts - exact, kind="stable")[: n - int(counts.sum())]] += 1
    return rng.permutation(np.repeat(np.arange(len(w)), counts))


def _per_kind(
    rng: np.random.Generator,
    kind: np.ndarray,
    means: Sequence[float],
    sigmas: Sequence[float],
    lows: Sequence[int],
    highs: Sequence[int],
) -> np.ndarray:
    """Lognormal integer lengths per request, with its component's mean, sigma and clip."""
    out = np.empty(len(kind), dtype=np.int64)
    for k in range(len(means)):
        idx = np.flatnonzero(kind == k)
        out[idx] = _lognormal(rng, means[k], sigmas[k], len(idx), int(lows[k]), int(highs[k]))
    return out


def _prompts(
    rng: np.random.Generator,
    prefixes: Sequence[np.ndarray],
    prefix: np.ndarray,
    body_len: np.ndarray,
) -> list[np.ndarray]:
    """Prompt i = prefixes[prefix[i]] + a fresh body of body_len[i] tokens; views of one array."""
    body = _body(rng, int(body_len.sum()))
    ends = np.cumsum(body_len)
    pieces: list[np.ndarray] = []
    for p, start, stop in zip(
        prefix.tolist(), (ends - body_len).tolist(), ends.tolist(), strict=True
    ):
        pieces.append(prefixes[p])
        pieces.append(body[start:stop])
    flat = np.concatenate(pieces) if pieces else _EMPTY
    prefix_len = np.fromiter((len(a) for a in prefixes), np.int64, len(prefixes))
    offsets = np.concatenate(([0], np.cumsum(prefix_len[prefix] + body_len))).tolist()
    return [flat[offsets[i] : offsets[i + 1]] for i in range(len(prefix))]


def _workload(family: str, rng: np.random.Generator, draft: _Draft) -> Workload:
    """The Workload of a draft; checks 1 <= output_len <= max_tokens."""
    if (draft.body_len < 1).any() or (draft.output_len < 1).any():
        raise AssertionError(f"{family}: a request with an empty body or no output")
    if (draft.output_len > draft.max_tokens).any():
        raise AssertionError(f"{family}: an output longer than its max_tokens")
    prompts = _prompts(rng, draft.prefixes, draft.prefix, draft.body_len)
    requests = [
        SimRequest(f"{family}-{draft.kinds[k]}-{i}", prompt, d)
        for i, (k, prompt, d) in enumerate(
            zip(draft.kind.tolist(), prompts, draft.output_len.tolist(), strict=True)
        )
    ]
    return Workload(requests=requests, max_tokens=[int(m) for m in draft.max_tokens.tolist()])


def _instance(
    family: str, description: str, n: int, seed: int, workload: Workload, params: Params
) -> FamilyInstance:
    shape = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
    return FamilyInstance(
        family=family,
        name=f"{family}-n{n}-s{seed}",
        description=f"{description} [{shape}]",
        workload=workload,
        params=params,
    )


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        shown = ",".join(_short(v) for v in value[:8])
        return f"[{shown}{',...' if len(value) > 8 else ''}]"
    return str(value)


def _round(values: np.ndarray | Sequence[float], digits: int = 4) -> list[float]:
    return [round(float(v), digits) for v in values]


# ---------------------------------------------------------------------------------------------
# dolly: instruction classes of Dolly-15k

# class -> (requests in Dolly-15k, mean prompt tokens, mean output tokens, max_tokens)
DOLLY_CLASSES: dict[str, tuple[int, float, float, int]] = {
    "brainstorming": (1766, 61, 331, 2048),
    "classification": (2136, 123, 142, 1024),
    "closed_qa": (1773, 992, 182, 1024),
    "creative_writing": (709, 89, 915, 4096),
    "general_qa": (2191, 69, 572, 2048),
    "information_extraction": (1506, 1139, 273, 2048),
    "open_qa": (3742, 45, 293, 2048),
    "summarization": (1188, 1177, 436, 4096),
}
_DOLLY_SYSTEM_SOURCE, _DOLLY_CLASS_SOURCE = 20, 21  # template source ids (classes: 21-28)


@dataclass(frozen=True, slots=True)
class DollyFamily:
    """Dolly-15k-like instruction classes (mean prompt/output tokens per class: DOLLY_CLASSES).

    Drawn: class weights ~ Dirichlet(8 x Dolly-15k shares) (or `weights`, normalised);
    prompt and output lognormal sigmas in [0.5, 0.9]; a system prompt of 0-64 template tokens
    shared by all requests; a per-class instruction template of 4-12 tokens. A request's
    class length (template + unique body) and output are lognormal around the class means;
    the system prompt comes on top. Outputs stop at the class's max_tokens (1024-4096).
    """

    name: str = "dolly"
    description: str = "Dolly-15k instruction classes, drawn class weights and spreads"
    weights: tuple[float, ...] | None = None  # fixed class weights (8, DOLLY_CLASSES order)

    def params(self, rng: np.random.Generator) -> Params:
        shares = np.array([v[0] for v in DOLLY_CLASSES.values()], dtype=np.float64)
        drawn = rng.dirichlet(8.0 * shares / shares.sum())
        weights = drawn if self.weights is None else np.asarray(self.weights, np.float64)
        if weights.shape != (len(DOLLY_CLASSES),) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(
                f"dolly weights: need {len(DOLLY_CLASSES)} weights >= 0, got {weights}"
            )
        return {
            "class_weights": _round(weights / weights.sum()),
            "prompt_sigma": _uniform(rng, 0.5, 0.9),
            "output_sigma": _uniform(rng, 0.5, 0.9),
            "system_prompt_tokens": int(rng.integers(0, 65)),
            "template_tokens": rng.integers(4, 13, len(DOLLY_CLASSES)).tolist(),
        }

    def instance(self, n: int, seed: int) -> FamilyInstance:
        shape_rng, rng = _rngs(101, seed, n)
        p = self.params(shape_rng)
        classes = list(DOLLY_CLASSES.values())
        templates = np.asarray(p["template_tokens"], dtype=np.int64)
        kind = _assign(rng, p["class_weights"], n)
        length = _per_kind(
            rng,
            kind,
            [c[1] for c in classes],
            [p["prompt_sigma"]] * len(classes),
            (templates + 1).tolist(),
            [8192] * len(classes),
        )
        limits = np.array([c[3] for c in classes], dtype=np.int64)
        output = _per_kind(
            rng, kind, [c[2] for c in classes], [p["output_sigma"]] * len(classes),
            [1] * len(classes), limits.tolist(),
        )  # fmt: skip
        system = _template(_DOLLY_SYSTEM_SOURCE, p["system_prompt_tokens"])
        prefixes = [_EMPTY] + [
            np.concatenate((system, _template(_DOLLY_CLASS_SOURCE + k, int(t))))
            for k, t in enumerate(templates.tolist())
        ]
        draft = _Draft(
            kinds=list(DOLLY_CLASSES),
            kind=kind,
            prefixes=prefixes,
            prefix=kind + 1,
            body_len=length - templates[kind],
            output_len=output,
            max_tokens=limits[kind],
        )
        return _instance(self.name, self.description, n, seed, _workload(self.name, rng, draft), p)


# ---------------------------------------------------------------------------------------------
# fewshot-eval: few-shot evaluation tasks plus generation tasks

EVAL_MAX_TOKENS, GENERATION_MAX_TOKENS = 16, 1024


@dataclass(frozen=True, slots=True)
class FewShotEvalFamily:
    """Few-shot evaluation: tasks share a long few-shot prefix, then a unique short question.

    Drawn: 4-48 tasks (at most n / 20), task weights ~ Dirichlet(2); per-task prefix lengths
    uniform in [500, H] with H in [800, 3000] (mean prompt <= ~1900 tokens); question mean in
    [30, 120] (lognormal, sigma 0.5, clipped to 20-200); a share in [0.1, 0.4] of the tasks
    (at least one when there are two) generate 100-1000 tokens (per-task mean in [150, 600],
    max_tokens 1024); the others answer 1-8 tokens (per-task mean in [1, 4], max_tokens 16).
    Sharing is about 0.85-0.97 (prefixes of 500+ tokens before questions of 20-200).
    """

    name: str = "fewshot-eval"
    description: str = "few-shot evaluation tasks (long shared prefixes) plus generation tasks"

    def params(self, rng: np.random.Generator, n: int) -> Params:
        drawn_tasks = round(_log_uniform(rng, 4, 48))
        prefix_high = _uniform(rng, 800, 3000)
        gen_share = _uniform(rng, 0.1, 0.4)
        question_mean = _log_uniform(rng, 30, 120)
        n_tasks = max(1, min(drawn_tasks, n // 20))
        n_gen = min(n_tasks - 1, max(1, round(gen_share * n_tasks)))
        is_gen = np.zeros(n_tasks, dtype=bool)
        is_gen[rng.choice(n_tasks, n_gen, replace=False)] = True
        return {
            "n_tasks": n_tasks,
            "generation_share": gen_share,
            "question_mean": question_mean,
            "prefix_high": prefix_high,
            "task_weights": _round(rng.dirichlet(np.full(n_tasks, 2.0))),
            "prefix_tokens": rng.integers(500, round(prefix_high) + 1, n_tasks).tolist(),
            "generation_tasks": np.flatnonzero(is_gen).tolist(),
            "output_means": np.where(
                is_gen, np.exp(rng.uniform(np.log(150), np.log(600), n_tasks)),
                rng.uniform(1.0, 4.0, n_tasks),
            ).round(2).tolist(),
        }  # fmt: skip

    def instance(self, n: int, seed: int) -> FamilyInstance:
        shape_rng, rng = _rngs(102, seed, n)
        p = self.params(shape_rng, n)
        n_tasks = p["n_tasks"]
        is_gen = np.isin(np.arange(n_tasks), p["generation_tasks"])
        limits = np.where(is_gen, GENERATION_MAX_TOKENS, EVAL_MAX_TOKENS)
        task = _assign(rng, p["task_weights"], n)
        question = _lognormal(rng, p["question_mean"], 0.5, n, 20, 200)
        output = _per_kind(
            rng, task, p["output_means"], [0.5] * n_tasks,
            np.where(is_gen, 100, 1).tolist(), np.where(is_gen, 1000, 8).tolist(),
        )  # fmt: skip
        prefixes = [_EMPTY] + [_body(shape_rng, int(t)) for t in p["prefix_tokens"]]
        kinds = [f"{'gen' if g else 'eval'}{k}" for k, g in enumerate(is_gen.tolist())]
        draft = _Draft(kinds, task, prefixes, task + 1, question, output, limits[task])
        return _instance(self.name, self.description, n, seed, _workload(self.name, rng, draft), p)


# ---------------------------------------------------------------------------------------------
# chat-reasoning: chat, summarisation and long reasoning

CHAT_REASONING_KINDS = ("chat", "summarize", "reason")
_CHAT_TEMPLATE_SOURCE = 30  # template source ids: chat template 30, instructions 31-33


@dataclass(frozen=True, slots=True)
class ChatReasoningFamily:
    """Chat (ShareGPT-like, ~300/260 tokens), summarisation and long reasoning.

    Drawn: shares ~ Dirichlet(2, 1, 1), each at least 0.05; a chat template of 8-64 tokens
    shared by all, and a per-kind instruction of 4-24 tokens. Chat: prompt lognormal(300, 1.0),
    output lognormal(260, 0.9), max_tokens 1024. Summarisation: prompt mean in [1500, 3000]
    (sigma 0.35, clipped to 1000-4000), output mean in [150, 300] (clipped to 100-400),
    max_tokens 4096. Reasoning: prompt mean in [150, 400] (clipped to 100-600), output mean in
    [2000, 8000] with sigma in [0.4, 0.8], max_tokens 16384 (mean <= 4000) or 32768.
    """

    name: str = "chat-reasoning"
    description: str = "chat, long-document summarisation and long-output reasoning"

    def params(self, rng: np.random.Generator) -> Params:
        shares = np.maximum(rng.dirichlet([2.0, 1.0, 1.0]), 0.05)
        reason_mean = _uniform(rng, 2000, 8000)
        return {
            "shares": _round(shares / shares.sum()),
            "chat_template_tokens": int(rng.integers(8, 65)),
            "instruction_tokens": rng.integers(4, 25, 3).tolist(),
            "summarize_prompt_mean": _uniform(rng, 1500, 3000),
            "summarize_output_mean": _uniform(rng, 150, 300),
            "reason_prompt_mean": _uniform(rng, 150, 400),
            "reason_output_mean": reason_mean,
            "reason_output_sigma": _uniform(rng, 0.4, 0.8),
            "reason_max_tokens": 16384 if reason_mean <= 4000 else 32768,
        }

    def instance(self, n: int, seed: int) -> FamilyInstance:
        shape_rng, rng = _rngs(103, seed, n)
        p = self.params(shape_rng)
        limits = np.array([1024, 4096, p["reason_max_tokens"]], dtype=np.int64)
        kind = _assign(rng, p["shares"], n)
        body = _per_kind(
            rng, kind, [300, p["summarize_prompt_mean"], p["reason_prompt_mean"]],
            [1.0, 0.35, 0.5], [4, 1000, 100], [8192, 4000, 600],
        )  # fmt: skip
        output = _per_kind(
            rng, kind, [260, p["summarize_output_mean"], p["reason_output_mean"]],
            [0.9, 0.35, p["reason_output_sigma"]], [1, 100, 1], [1024, 400, p["reason_max_tokens"]],
        )  # fmt: skip
        chat = _template(_CHAT_TEMPLATE_SOURCE, p["chat_template_tokens"])
        prefixes = [_EMPTY] + [
            np.concatenate((chat, _template(_CHAT_TEMPLATE_SOURCE + 1 + k, int(t))))
            for k, t in enumerate(p["instruction_tokens"])
        ]
        draft = _Draft(CHAT_REASONING_KINDS, kind, prefixes, kind + 1, body, output, limits[kind])
        return _instance(self.name, self.description, n, seed, _workload(self.name, rng, draft), p)


# ---------------------------------------------------------------------------------------------
# heavy-tail: ShareGPT-like chat with heavy-tailed outputs

HEAVY_TAIL_MAX_TOKENS = 16384
_HEAVY_TAIL_SOURCE = 40


@dataclass(frozen=True, slots=True)
class HeavyTailFamily:
    """ShareGPT-like chat whose output lengths are heavy-tailed; low sharing.

    Drawn: prompt mean in [100, 800] (log-uniform, sigma in [0.7, 1.1]); output mean in
    [150, 600] (log-uniform) with a lognormal tail (sigma in [1.2, 1.6]) or a Lomax (Pareto II)
    tail (shape in [1.8, 2.6]), a coin flip; a system template of 2-16 tokens is the only
    shared prefix. max_tokens 16384 (outputs stop there).
    """

    name: str = "heavy-tail"
    description: str = "chat with heavy-tailed output lengths, low sharing"

    def params(self, rng: np.random.Generator) -> Params:
        tail = "lognormal" if rng.random() < 0.5 else "lomax"
        return {
            "prompt_mean": _log_uniform(rng, 100, 800),
            "prompt_sigma": _uniform(rng, 0.7, 1.1),
            "output_mean": _log_uniform(rng, 150, 600),
            "tail": tail,
            "tail_param": _uniform(rng, 1.2, 1.6)
            if tail == "lognormal"
            else _uniform(rng, 1.8, 2.6),
            "system_template_tokens": int(rng.integers(2, 17)),
        }

    def instance(self, n: int, seed: int) -> FamilyInstance:
        shape_rng, rng = _rngs(104, seed, n)
        p = self.params(shape_rng)
        body = _lognormal(rng, p["prompt_mean"], p["prompt_sigma"], n, 4, 16384)
        output = _heavy_tail(rng, p["output_mean"], p["tail"], p["tail_param"], n)
        prefixes = [_EMPTY, _template(_HEAVY_TAIL_SOURCE, p["system_template_tokens"])]
        draft = _Draft(
            ["chat"], np.zeros(n, np.int64), prefixes, np.ones(n, np.int64), body, output,
            np.full(n, HEAVY_TAIL_MAX_TOKENS, np.int64),
        )  # fmt: skip
        return _instance(self.name, self.description, n, seed, _workload(self.name, rng, draft), p)


def _heavy_tail(
    rng: np.random.Generator, mean: float, tail: str, param: float, n: int
) -> np.ndarray:
    """Output lengths (tokens) with the given mean before clipping to [1, 16384]."""
    if tail == "lognormal":
        return _lognormal(rng, mean, param, n, 1, HEAVY_TAIL_MAX_TOKENS)
    lomax = rng.pareto(param, n) * mean * (param - 1.0)  # Lomax mean: scale / (shape - 1)
    return np.clip(np.rint(lomax), 1, HEAVY_TAIL_MAX_TOKENS).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# main-mix: the paper's BurstGPT + MMLU + OpenVid mixes over the rho x sharing grid

MAIN_MIX_MAX_TOKENS = {"burstgpt": 1024, "mmlu": 16, "openvid": 32768}
MAIN_MIX_MIN_REQUESTS = 50  # below, the per-source counts cannot hit the targets


def paper_mix_workload(name: str, n: int, seed: int = 0) -> Workload:
    """One of the paper's four fixed main mixes (generators.MAIN_MIXES) as a workload:
    blend_mix's requests as drawn, each source's output limit as its max_tokens."""
    rho, sharing = MAIN_MIXES[name]
    requests = blend_mix(rho, sharing, n, seed)
    limits: list[int | None] = [MAIN_MIX_MAX_TOKENS[r.request_id.split("-")[0]] for r in requests]
    return Workload(requests, limits)


@dataclass(frozen=True, slots=True)
class MainMixFamily:
    """blend_mix(rho, sharing, n, seed) with rho in [0.8, 1.4] and sharing in [0.05, 0.45].

    max_tokens by source: BurstGPT 1024, MMLU 16, OpenVid 32768 (outputs stop there). The mix
    holds n requests up to rounding of its per-source counts (a few more or fewer); n must be
    at least MAIN_MIX_MIN_REQUESTS. With few OpenVid requests (small n) the realised rho
    moves in steps and can miss the drawn one (see blend_mix); family_stats gives the real one.
    """

    name: str = "main-mix"
    description: str = "BurstGPT + MMLU + OpenVid mixed for a drawn density and sharing"

    def params(self, rng: np.random.Generator) -> Params:
        return {"rho": _uniform(rng, 0.8, 1.4), "sharing": _uniform(rng, 0.05, 0.45)}

    def instance(self, n: int, seed: int) -> FamilyInstance:
        shape_rng, _ = _rngs(105, seed, n)
        if n < MAIN_MIX_MIN_REQUESTS:
            raise ValueError(f"main-mix needs n >= {MAIN_MIX_MIN_REQUESTS}, got {n}")
        p = self.params(shape_rng)
        requests, limits = [], []
        for r in blend_mix(p["rho"], p["sharing"], n, seed):
            limit = MAIN_MIX_MAX_TOKENS[r.request_id.split("-", 1)[0]]
            requests.append(
                SimRequest(f"main-mix-{r.request_id}", r.prompt_token_ids, min(r.output_len, limit))
            )
            limits.append(limit)
        workload = Workload(requests=requests, max_tokens=list(limits))
        return _instance(self.name, self.description, n, seed, workload, p)


# ---------------------------------------------------------------------------------------------
# random: randomised mixtures for property-style benchmarks

RANDOM_MEAN_PROMPT_CAP = 2000.0  # tokens: prompt means are scaled down to keep the mean below


@dataclass(frozen=True, slots=True)
class RandomFamily:
    """A random mixture of 2-5 components, weights ~ Dirichlet(1).

    Per component: prompt mean log-uniform in [20, 4000] and output mean log-uniform in
    [2, 8000], lognormal sigmas in [0.2, 1.2]; with probability 0.6 a sharing structure of 1-200
    prefix groups (log-uniform) whose prefix is 0-2000 tokens (at most 0.9 x the prompt mean;
    the prefix is part of the prompt), else unique prompts; max_tokens the power of two at or
    above the output's 99.9th percentile (16-32768; outputs stop there). Prompt means (and
    prefixes) are scaled down when the mixture's mean prompt would pass 2000 tokens.
    """

    name: str = "random"
    description: str = "random mixture of lognormal components with random prefix groups"

    def params(self, rng: np.random.Generator) -> Params:
        k = int(rng.integers(2, 6))
        weights = rng.dirichlet(np.ones(k))
        prompt_mean = np.exp(rng.uniform(np.log(20), np.log(4000), k))
        prompt_sigma = rng.uniform(0.2, 1.2, k)
        output_mean = np.exp(rng.uniform(np.log(2), np.log(8000), k))
        output_sigma = rng.uniform(0.2, 1.2, k)
        shared = rng.random(k) < 0.6
        groups = np.where(shared, np.rint(np.exp(rng.uniform(0, np.log(200), k))), 0)
        prefix = np.where(shared, rng.integers(0, 2001, k), 0)
        scale = min(1.0, RANDOM_MEAN_PROMPT_CAP / float(weights @ prompt_mean))
        prompt_mean *= scale
        prefix = np.minimum(np.rint(prefix * scale), np.floor(0.9 * prompt_mean))
        q999 = np.exp(np.log(output_mean) - output_sigma**2 / 2 + 3.09 * output_sigma)
        limit = 2 ** np.ceil(np.log2(np.clip(q999, 16, 32768)))
        return {
            "n_components": k,
            "weights": _round(weights),
            "prompt_mean": _round(prompt_mean, 1),
            "prompt_sigma": _round(prompt_sigma, 3),
            "output_mean": _round(output_mean, 1),
            "output_sigma": _round(output_sigma, 3),
            "prefix_groups": groups.astype(int).tolist(),
            "prefix_tokens": prefix.astype(int).tolist(),
            "max_tokens": limit.astype(int).tolist(),
            "prompt_scale": round(scale, 4),
        }

    def instance(self, n: int, seed: int) -> FamilyInstance:
        shape_rng, rng = _rngs(106, seed, n)
        p = self.params(shape_rng)
        k = p["n_components"]
        prefix_len = np.asarray(p["prefix_tokens"], dtype=np.int64)
        limits = np.asarray(p["max_tokens"], dtype=np.int64)
        kind = _assign(rng, p["weights"], n)
        body_mean = np.asarray(p["prompt_mean"]) - prefix_len  # the prefix is part of the prompt
        body = _per_kind(rng, kind, body_mean.tolist(), p["prompt_sigma"], [1] * k, [32768] * k)
        output = _per_kind(rng, kind, p["output_mean"], p["output_sigma"], [1] * k, limits.tolist())
        prefixes, prefix = _random_groups(rng, kind, p["prefix_groups"], prefix_len)
        names = [f"c{c}" for c in range(k)]
        draft = _Draft(names, kind, prefixes, prefix, body, output, limits[kind])
        return _instance(self.name, self.description, n, seed, _workload(self.name, rng, draft), p)


def _random_groups(
    rng: np.random.Generator, kind: np.ndarray, groups: Sequence[int], prefix_len: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray]:
    """Prefixes (index 0 empty) and each request's prefix index: a uniform group of its
    component's prefix groups, or none."""
    prefixes: list[np.ndarray] = [_EMPTY]
    prefix = np.zeros(len(kind), dtype=np.int64)
    for c, g in enumerate(groups):
        if g == 0 or prefix_len[c] == 0:
            continue
        idx = np.flatnonzero(kind == c)
        prefix[idx] = len(prefixes) + rng.integers(0, g, len(idx))
        prefixes.extend(_body(rng, int(prefix_len[c])) for _ in range(g))
    return prefixes, prefix


# ---------------------------------------------------------------------------------------------
# fewshot-generation: long shared few-shot context beside long open-ended generations

FEWSHOT_GENERATION_MAX_TOKENS = 16384


@dataclass(frozen=True, slots=True)
class FewShotGenerationFamily:
    """Few-shot tasks whose long shared context (800-4000 tokens) comes before either a short
    answer or a long open-ended generation: prefix sharing and the longest outputs in the
    same prefix groups, so no order has both for free.

    Drawn: 3-24 tasks (at most n / 20), weights ~ Dirichlet(1.5); per-task prefix uniform in
    [800, 4000]; question mean in [20, 200] (lognormal, sigma 0.6, clipped to 4-1000); a share
    in [0.2, 0.6] of the tasks (at least one, and one short task when there are two) generate
    at a per-task mean log-uniform in [500, 6000] with sigma in [0.3, 0.9]; the others answer
    at a mean log-uniform in [2, 40] (sigma 0.5). max_tokens: 16384 for every request (a user
    who sets one limit for the job) or 16384 for generations and 256 for answers, a coin flip.
    """

    name: str = "fewshot-generation"
    description: str = "few-shot context shared by short answers and long generations"

    def params(self, rng: np.random.Generator, n: int) -> Params:
        drawn_tasks = round(_log_uniform(rng, 3, 24))
        n_tasks = max(1, min(drawn_tasks, n // 20))
        gen_share = _uniform(rng, 0.2, 0.6)
        n_gen = max(1, min(n_tasks - 1, round(gen_share * n_tasks))) if n_tasks > 1 else 1
        is_gen = np.zeros(n_tasks, dtype=bool)
        is_gen[rng.choice(n_tasks, n_gen, replace=False)] = True
        gen_mean = np.exp(rng.uniform(np.log(500), np.log(6000), n_tasks))
        short_mean = np.exp(rng.uniform(np.log(2), np.log(40), n_tasks))
        return {
            "n_tasks": n_tasks,
            "generation_share": gen_share,
            "task_weights": _round(rng.dirichlet(np.full(n_tasks, 1.5))),
            "prefix_tokens": rng.integers(800, 4001, n_tasks).tolist(),
            "question_mean": _log_uniform(rng, 20, 200),
            "generation_tasks": np.flatnonzero(is_gen).tolist(),
            "output_means": np.where(is_gen, gen_mean, short_mean).round(2).tolist(),
            "output_sigmas": np.where(is_gen, rng.uniform(0.3, 0.9, n_tasks), 0.5)
            .round(3)
            .tolist(),
            "one_limit": bool(rng.random() < 0.5),
        }

    def instance(self, n: int, seed: int) -> FamilyInstance:
        shape_rng, rng = _rngs(107, seed, n)
        p = self.params(shape_rng, n)
        n_tasks = p["n_tasks"]
        is_gen = np.isin(np.arange(n_tasks), p["generation_tasks"])
        short_limit = FEWSHOT_GENERATION_MAX_TOKENS if p["one_limit"] else 256
        limits = np.where(is_gen, FEWSHOT_GENERATION_MAX_TOKENS, short_limit)
        task = _assign(rng, p["task_weights"], n)
        question = _lognormal(rng, p["question_mean"], 0.6, n, 4, 1000)
        output = _per_kind(
            rng, task, p["output_means"], p["output_sigmas"], [1] * n_tasks, limits.tolist()
        )
        prefixes = [_EMPTY] + [_body(shape_rng, int(t)) for t in p["prefix_tokens"]]
        kinds = [f"{'gen' if g else 'short'}{k}" for k, g in enumerate(is_gen.tolist())]
        draft = _Draft(kinds, task, prefixes, task + 1, question, output, limits[task])
        return _instance(self.name, self.description, n, seed, _workload(self.name, rng, draft), p)


# ---------------------------------------------------------------------------------------------
# bimodal: two output modes inside every prefix group (estimates by group are poor)

BIMODAL_MAX_TOKENS = 16384


@dataclass(frozen=True, slots=True)
class BimodalFamily:
    """Prefix groups (a shared instruction, then a unique input) whose outputs are bimodal:
    most requests answer briefly, a drawn share write at length, and nothing in the prompt
    tells which, so a group's mean output is a poor estimate of any of its requests.

    Drawn: 4-64 groups (at most n / 10), weights ~ Dirichlet(1); prefix uniform in
    [50, 1500]; unique input mean log-uniform in [50, 1000] (sigma 0.8, clipped to 4-8000);
    per group, a long share in [0.05, 0.5], a short mean log-uniform in [5, 100] (sigma 0.6)
    and a long mean log-uniform in [1000, 8000] (sigma in [0.3, 0.7]). max_tokens 16384.
    """

    name: str = "bimodal"
    description: str = "prefix groups with short and long outputs mixed (poor estimates)"

    def params(self, rng: np.random.Generator, n: int) -> Params:
        n_groups = max(1, min(round(_log_uniform(rng, 4, 64)), n // 10))
        return {
            "n_groups": n_groups,
            "group_weights": _round(rng.dirichlet(np.ones(n_groups))),
            "prefix_tokens": rng.integers(50, 1501, n_groups).tolist(),
            "input_mean": _log_uniform(rng, 50, 1000),
            "long_share": _round(rng.uniform(0.05, 0.5, n_groups)),
            "short_mean": _round(np.exp(rng.uniform(np.log(5), np.log(100), n_groups)), 2),
            "long_mean": _round(np.exp(rng.uniform(np.log(1000), np.log(8000), n_groups)), 1),
            "long_sigma": _round(rng.uniform(0.3, 0.7, n_groups), 3),
        }

    def instance(self, n: int, seed: int) -> FamilyInstance:
        shape_rng, rng = _rngs(108, seed, n)
        p = self.params(shape_rng, n)
        group = _assign(rng, p["group_weights"], n)
        body = _lognormal(rng, p["input_mean"], 0.8, n, 4, 8000)
        is_long = rng.random(n) < np.asarray(p["long_share"])[group]
        kind = np.where(is_long, 2 * group + 1, 2 * group)  # per group: short, long
        short_mean, long_mean = p["short_mean"], p["long_mean"]
        means = [m for pair in zip(short_mean, long_mean, strict=True) for m in pair]
        sigmas = [s for sigma in p["long_sigma"] for s in (0.6, sigma)]
        n_kinds = 2 * p["n_groups"]
        output = _per_kind(rng, kind, means, sigmas, [1] * n_kinds, [BIMODAL_MAX_TOKENS] * n_kinds)
        prefixes = [_EMPTY] + [_body(shape_rng, int(t)) for t in p["prefix_tokens"]]
        kinds = [f"g{g}{m}" for g in range(p["n_groups"]) for m in ("short", "long")]
        limits = np.full(n, BIMODAL_MAX_TOKENS, np.int64)
        draft = _Draft(kinds, kind, prefixes, group + 1, body, output, limits)
        return _instance(self.name, self.description, n, seed, _workload(self.name, rng, draft), p)


# ---------------------------------------------------------------------------------------------
# rare-long: mostly short outputs, a rare very long tail, RAG contexts

RARE_LONG_MAX_TOKENS = 16384
_RARE_LONG_SOURCE = 50


@dataclass(frozen=True, slots=True)
class RareLongFamily:
    """Chat with retrieved documents: mostly short answers and a rare, very long tail, the
    requests that decide the makespan and that a warm-up sample of 1% rarely sees.

    Drawn: a system template of 8-64 tokens shared by all; a share in [0.2, 0.8] of the
    requests carry one of 10-500 retrieved documents (uniform choice; each 300-3000 tokens,
    shared by the requests that retrieve it); question mean log-uniform in [20, 400] (sigma
    0.8, clipped to 4-4000); outputs lognormal with mean in [10, 150] (sigma in [0.4, 1.0]),
    except a tail share log-uniform in [0.001, 0.02] whose outputs are log-uniform in
    [4000, 16384]. max_tokens 16384.
    """

    name: str = "rare-long"
    description: str = "RAG chat, mostly short answers, a rare very long tail"

    def params(self, rng: np.random.Generator) -> Params:
        n_docs = round(_log_uniform(rng, 10, 500))
        return {
            "system_template_tokens": int(rng.integers(8, 65)),
            "rag_share": _uniform(rng, 0.2, 0.8),
            "n_documents": n_docs,
            "document_tokens": rng.integers(300, 3001, n_docs).tolist(),
            "question_mean": _log_uniform(rng, 20, 400),
            "output_mean": _log_uniform(rng, 10, 150),
            "output_sigma": _uniform(rng, 0.4, 1.0),
            "tail_share": _log_uniform(rng, 0.001, 0.02),
        }

    def instance(self, n: int, seed: int) -> FamilyInstance:
        shape_rng, rng = _rngs(109, seed, n)
        p = self.params(shape_rng)
        system = _template(_RARE_LONG_SOURCE, p["system_template_tokens"])
        documents = [
            np.concatenate((system, _body(shape_rng, int(t)))) for t in p["document_tokens"]
        ]
        prefixes = [_EMPTY, system, *documents]
        with_doc = rng.random(n) < p["rag_share"]
        prefix = np.where(with_doc, 2 + rng.integers(0, len(documents), n), 1)
        body = _lognormal(rng, p["question_mean"], 0.8, n, 4, 4000)
        output = _lognormal(rng, p["output_mean"], p["output_sigma"], n, 1, RARE_LONG_MAX_TOKENS)
        tail = rng.random(n) < p["tail_share"]
        long = np.exp(rng.uniform(np.log(4000), np.log(RARE_LONG_MAX_TOKENS), n))
        output = np.where(tail, np.rint(long).astype(np.int64), output)
        kind = tail.astype(np.int64)
        limits = np.full(n, RARE_LONG_MAX_TOKENS, np.int64)
        draft = _Draft(["chat", "long"], kind, prefixes, prefix, body, output, limits)
        return _instance(self.name, self.description, n, seed, _workload(self.name, rng, draft), p)


# ---------------------------------------------------------------------------------------------
# Registry and statistics

FAMILIES: dict[str, WorkloadFamily] = {
    f.name: f
    for f in (
        DollyFamily(),
        FewShotEvalFamily(),
        ChatReasoningFamily(),
        HeavyTailFamily(),
        MainMixFamily(),
        RandomFamily(),
        FewShotGenerationFamily(),
        BimodalFamily(),
        RareLongFamily(),
    )
}


def draw_instance(family: str, n: int, seed: int) -> FamilyInstance:
    """FAMILIES[family].instance(n, seed), with the known names in the error."""
    if family not in FAMILIES:
        raise KeyError(f"no workload family {family!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[family].instance(n, seed)


def family_stats(instance: FamilyInstance, cost: CostModel | None = None) -> WorkloadStats:
    """n, mean prompt/output tokens, sharing and density rho of an instance (workload_stats)."""
    return workload_stats(instance.workload.requests, cost)
