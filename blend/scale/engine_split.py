"""BlendServe's data-parallel split: one density-sorted plan cut into k engines' shares.

Invariant: the shares are a partition of the sequence's positions, each in sequence order.
The sequence is cut into contiguous chunks of about equal load (Comp + Mem at the estimated
lengths, blend/cost/model.py, normalised so both resources weigh the same), each cut placed at the
position of least `shared_prev` near its ideal place, so prefix groups stay together (a cut
inside a group costs that engine one more prefill of the shared prefix, counted in its load).
Chunks are paired from both ends of the sequence (compute-heavy left chunk with memory-heavy
right chunk: the paper's dual scan applied to engines) and the pairs dealt in blocks of k
consecutive pairs, one per engine per block (the largest of a block to the least loaded
engine), so every engine gets a slice of every density stratum and an estimate error of a
stratum lands on all engines alike; swaps within blocks then even out Comp and Mem. An
engine's Comp and Mem both near 1/k of the total give it 1/k of the load at about the root's
density. docs/capacity.md has the measurements.
"""

from __future__ import annotations

import numpy as np

from blend.admission.dual_scan import ScanSequence
from blend.cost.model import CostModel

CHUNKS_PER_ENGINE = 256  # chunks the sequence is cut into per engine (finer: better balance)
MIN_CHUNK = 16  # positions per chunk at least (smaller ones would cut prefix groups apart)
CUT_SLACK = 0.5  # a cut may move this share of a chunk's width to find a low shared_prev


def position_costs(sequence: ScanSequence, cost: CostModel) -> tuple[np.ndarray, np.ndarray]:
    """Per position: Comp (s, its unshared prompt plus output) and Mem (s, its KV reads) at
    the estimated output lengths."""
    p = np.asarray(sequence.prompt_tokens, dtype=np.float64)
    d = np.asarray(sequence.output_tokens, dtype=np.float64)
    unshared = np.maximum(p - np.asarray(sequence.shared_prev, dtype=np.float64), 0.0)
    return cost.comp_s(unshared, d), cost.mem_s(p, d)


def chunk_bounds(weight: np.ndarray, shared_prev: np.ndarray, n_chunks: int) -> np.ndarray:
    """Start positions of `n_chunks` contiguous chunks of about equal `weight` (ascending,
    first 0, then the ends), each inner cut moved to the least shared_prev within
    CUT_SLACK of a chunk's width of its ideal place (nearest first among equals)."""
    n = len(weight)
    n_chunks = max(1, min(n_chunks, n))
    cumulative = np.concatenate(([0.0], np.cumsum(weight)))
    total = cumulative[-1]
    if total <= 0:
        ideal = np.linspace(0, n, n_chunks + 1).round().astype(np.int64)
    else:
        targets = total * np.arange(1, n_chunks) / n_chunks
        inner = np.searchsorted(cumulative, targets, side="left").clip(1, n - 1)
        ideal = np.concatenate(([0], inner, [n])).astype(np.int64)
    width = max(1, int(CUT_SLACK * n / n_chunks))
    cuts = [0]
    for place in ideal[1:-1].tolist():
        lo, hi = max(cuts[-1] + 1, place - width), min(n - 1, place + width)
        if lo > hi:
            continue
        window = shared_prev[lo : hi + 1]
        distance = np.abs(np.arange(lo, hi + 1) - place)
        best = np.lexsort((distance, window))[0]  # least shared_prev, then nearest
        cuts.append(lo + int(best))
    return np.asarray([*sorted(set(cuts)), n], dtype=np.int64)


def split_for_engines(sequence: ScanSequence, cost: CostModel, k: int) -> list[np.ndarray]:
    """k shares of positions into `sequence` (module invariant); k=1: the whole sequence."""
    if k < 1:
        raise ValueError(f"split_for_engines: k must be >= 1 engines, got {k}")
    n = len(sequence.index)
    if k == 1 or n == 0:
        return [np.arange(n, dtype=np.int64)] + [np.zeros(0, dtype=np.int64)] * (k - 1)
    comp, mem = position_costs(sequence, cost)
    comp_total, mem_total = float(comp.sum()), float(mem.sum())
    comp_norm = comp / comp_total if comp_total > 0 else np.zeros(n)
    mem_norm = mem / mem_total if mem_total > 0 else np.zeros(n)
    shared = np.asarray(sequence.shared_prev, dtype=np.float64)
    n_chunks = max(2 * k, min(CHUNKS_PER_ENGINE * k, n // MIN_CHUNK))
    bounds = chunk_bounds(comp_norm + mem_norm, shared, n_chunks)
    # a chunk's first position computes its whole prompt (the cut ends its sharing)
    restored = np.zeros(n)
    restored[bounds[:-1]] = shared[bounds[:-1]] * cost.compute_s_per_token
    comp_norm = comp_norm + (restored / comp_total if comp_total > 0 else 0.0)
    chunk_comp = np.add.reduceat(comp_norm, bounds[:-1])
    chunk_mem = np.add.reduceat(mem_norm, bounds[:-1])
    n_chunks = len(bounds) - 1
    pairs = [(i, n_chunks - 1 - i) for i in range(n_chunks // 2)]
    if n_chunks % 2:
        pairs.append((n_chunks // 2, n_chunks // 2))
    units = [sorted({a, b}) for a, b in pairs]
    unit_comp = np.array([chunk_comp[u].sum() for u in units])
    unit_mem = np.array([chunk_mem[u].sum() for u in units])
    unit_owner = deal(unit_comp, unit_mem, k)
    owner = np.zeros(n_chunks, dtype=np.int64)
    for u, chunks in enumerate(units):
        owner[chunks] = unit_owner[u]
    position_owner = np.repeat(owner, np.diff(bounds))
    return [np.flatnonzero(position_owner == e).astype(np.int64) for e in range(k)]


def deal(comp: np.ndarray, mem: np.ndarray, k: int) -> np.ndarray:
    """Engine of each unit (normalised Comp and Mem, outermost pair first): every block of k
    consecutive units gives each engine one unit (so every engine gets a slice of every
    density stratum and estimate errors of a stratum spread over all engines), the largest
    unit of a block to the engine with the least load so far; then `refine` evens out Comp
    and Mem by swaps within blocks."""
    n = len(comp)
    owner = np.zeros(n, dtype=np.int64)
    load = np.zeros(k)
    for start in range(0, n, k):
        block = np.arange(start, min(n, start + k))
        largest_first = block[np.argsort(-(comp[block] + mem[block]), kind="stable")]
        least_loaded = np.argsort(load, kind="stable")[: len(block)]
        owner[largest_first] = least_loaded
        load[least_loaded] += comp[largest_first] + mem[largest_first]
    return refine(owner, comp, mem, k)


def refine(
    owner: np.ndarray, comp: np.ndarray, mem: np.ndarray, k: int, max_swaps: int | None = None
) -> np.ndarray:
    """Unit owners after local search: the swap of two units' engines within a block (k
    consecutive units, each on its own engine; the last block padded with empty units on the
    engines it misses) that most lowers sum_e (Comp_e - Comp/k)^2 + (Mem_e - Mem/k)^2,
    repeated while one helps (at most `max_swaps`, default 4 per block)."""
    n = len(comp)
    blocks = -(-n // k)
    pad = blocks * k - n
    missing = sorted(set(range(k)) - set(owner[(blocks - 1) * k :].tolist()))
    own = np.concatenate((owner, missing)).astype(np.int64).reshape(blocks, k)
    c = np.concatenate((comp, np.zeros(pad))).reshape(blocks, k)
    m = np.concatenate((mem, np.zeros(pad))).reshape(blocks, k)
    target_c, target_m = comp.sum() / k, mem.sum() / k
    gc = c[:, None, :] - c[:, :, None]  # [b, i, j]: unit j's Comp less unit i's
    gm = m[:, None, :] - m[:, :, None]
    for _ in range(4 * blocks if max_swaps is None else max_swaps):
        dc = (np.bincount(own.ravel(), c.ravel(), k) - target_c)[own]  # per unit: its engine's
        dm = (np.bincount(own.ravel(), m.ravel(), k) - target_m)[own]
        # i's engine takes j (gains j - i), j's engine takes i (gains i - j)
        ci, cj, mi, mj = dc[:, :, None], dc[:, None, :], dm[:, :, None], dm[:, None, :]
        change = (
            (ci + gc) ** 2
            - ci**2
            + (cj - gc) ** 2
            - cj**2
            + (mi + gm) ** 2
            - mi**2
            + (mj - gm) ** 2
            - mj**2
        )
        best = int(np.argmin(change))
        if change.flat[best] >= -1e-15:
            break
        b, i, j = np.unravel_index(best, change.shape)
        own[b, i], own[b, j] = own[b, j], own[b, i]
    return own.ravel()[:n]


def share_loads(
    sequence: ScanSequence, cost: CostModel, shares: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Per share: Comp and Mem (s) at the estimated lengths, a share's first position and
    every position that does not follow its predecessor in the sequence computing its whole
    prompt (what the share's engine prefills without the neighbour it was cut from)."""
    comp, mem = position_costs(sequence, cost)
    per_token = cost.compute_s_per_token
    comps, mems = [], []
    for share in shares:
        if len(share) == 0:
            comps.append(0.0)
            mems.append(0.0)
            continue
        cut = np.ones(len(share), dtype=bool)
        cut[1:] = np.diff(share) != 1
        restored = sequence.shared_prev[share[cut]].sum() * per_token
        comps.append(float(comp[share].sum() + restored))
        mems.append(float(mem[share].sum()))
    return np.asarray(comps), np.asarray(mems)
