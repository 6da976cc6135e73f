"""Request classes: a handful of (prompt tokens, estimated output tokens) clusters.

The fluid LP (fluid_lp.py) prices and schedules classes, not requests. A class is a k-means
cluster of the requests on (log P, log D_est): P the prompt tokens, D_est the pipeline's own
output-length estimate (blend/planners/estimates.py: what the planner sees, never true
lengths). Logs, because lengths spread over orders of magnitude and the LP's rates go with
ratios of lengths (mu_p ~ 1/P, mu_m ~ 1/D), so a 2x difference matters the same at 50 and
at 5000 tokens. A class is represented by the arithmetic means of its members' P and D_est
(the fluid model's service times are means) and its member count.

How many classes (`choose_k`): k = min(MAX_CLASSES, ceil(sqrt(n / 2))) (the usual sqrt(n/2)
rule of thumb, capped: the LP and the gate need only a handful), never more than the distinct
(P, D_est) points; clusters k-means leaves empty are dropped. Seeded: the same requests
always give the same classes. Classes are numbered by ascending mean D_est / P (prefill-heavy
first), ties by P.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.cluster.vq import kmeans2

MAX_CLASSES = 8  # classes at most (the LP and the gate need only a handful)


@dataclass(frozen=True, slots=True)
class RequestClass:
    """One class: its members' mean prompt and estimated output tokens, and their count."""

    class_id: int  # 0-based, by ascending output/prompt ratio
    n_requests: int
    prompt_tokens: float  # mean P_i (tokens)
    output_tokens: float  # mean D_i: the estimated output tokens (tokens)

    @property
    def name(self) -> str:
        return f"c{self.class_id}"


@dataclass(frozen=True, slots=True)
class Clustering:
    """Classes and each request's class (labels index `classes`)."""

    classes: tuple[RequestClass, ...]
    labels: np.ndarray  # int64 class_id per request


def choose_k(n_requests: int, n_distinct: int | None = None) -> int:
    """Classes for n requests: min(MAX_CLASSES, ceil(sqrt(n / 2)), distinct points), >= 1."""
    if n_requests < 1:
        return 0
    k = min(MAX_CLASSES, max(1, math.ceil(math.sqrt(n_requests / 2.0))))
    return min(k, n_distinct) if n_distinct is not None else k


def cluster_requests(
    prompt_tokens: np.ndarray,
    output_tokens: np.ndarray,
    *,
    k: int | None = None,
    seed: int = 0,
) -> Clustering:
    """Cluster requests by (log P, log D_est) into k classes (default `choose_k`).

    prompt_tokens, output_tokens: per request, tokens (estimates for the output).
    """
    p = np.asarray(prompt_tokens, dtype=np.float64)
    d = np.asarray(output_tokens, dtype=np.float64)
    if p.shape != d.shape or p.ndim != 1:
        raise ValueError(
            f"cluster_requests: prompt_tokens {p.shape} and output_tokens {d.shape} must be "
            "1-d arrays of the same length"
        )
    if len(p) == 0:
        return Clustering((), np.zeros(0, dtype=np.int64))
    if not (np.isfinite(p).all() and np.isfinite(d).all()) or (p < 0).any() or (d < 0).any():
        raise ValueError("cluster_requests: token counts must be finite and >= 0")
    points = np.column_stack((np.log(np.maximum(p, 1.0)), np.log(np.maximum(d, 1.0))))
    n_distinct = len(np.unique(points, axis=0))
    if k is None:
        k = choose_k(len(p), n_distinct)
    elif k < 1:
        raise ValueError(f"cluster_requests: k must be >= 1, got {k}")
    k = min(k, n_distinct)
    if k == 1:
        raw = np.zeros(len(p), dtype=np.int64)
    else:
        with warnings.catch_warnings():  # an empty cluster is dropped below, not an error
            warnings.simplefilter("ignore", UserWarning)
            _, raw = kmeans2(points, k, minit="++", seed=seed)
    return _classes(p, d, np.asarray(raw, dtype=np.int64))


def _classes(p: np.ndarray, d: np.ndarray, raw: np.ndarray) -> Clustering:
    """Number the non-empty clusters by ascending mean D / P (ties by P) and summarise them."""
    used = np.unique(raw)
    counts = np.array([np.sum(raw == c) for c in used])
    mean_p = np.array([p[raw == c].mean() for c in used])
    mean_d = np.array([d[raw == c].mean() for c in used])
    rank = np.lexsort((mean_p, mean_d / np.maximum(mean_p, 1.0)))
    relabel = np.empty(int(used.max()) + 1, dtype=np.int64)
    relabel[used[rank]] = np.arange(len(used))
    classes = tuple(
        RequestClass(i, int(counts[j]), float(mean_p[j]), float(mean_d[j]))
        for i, j in enumerate(rank.tolist())
    )
    return Clustering(classes, relabel[raw])


def assign_classes(
    classes: tuple[RequestClass, ...] | list[RequestClass],
    prompt_tokens: np.ndarray,
    output_tokens: np.ndarray,
) -> np.ndarray:
    """Each request's nearest class in (log P, log D) (int64 class_id per request)."""
    if not classes:
        raise ValueError("assign_classes: no classes to assign to")
    centres = np.log(np.maximum([[c.prompt_tokens, c.output_tokens] for c in classes], 1.0))
    points = np.column_stack(
        (
            np.log(np.maximum(np.asarray(prompt_tokens, np.float64), 1.0)),
            np.log(np.maximum(np.asarray(output_tokens, np.float64), 1.0)),
        )
    )
    distance = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    ids = np.array([c.class_id for c in classes], dtype=np.int64)
    return ids[np.argmin(distance, axis=1)]
