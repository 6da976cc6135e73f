"""BlendServe's dual scanner, run online: two cursors admit requests as the engine frees room.

Invariant: the left scanner takes the density-sorted sequence from its start (compute-heavy
end) and the right scanner from its end (memory-heavy end), each contiguously, so each walks
the prefix tree depth-first and keeps its sharing; they meet once and every position is
admitted once. The KV cache M (tokens, read from the engine) is split between the sides so
that the blend sits at the density of what is left, rho_rt:
    M_L = M (rho_rt - rho_R) / (rho_L - rho_R),  M_R = M - M_L    (clamped to [0, M])
(rho_L / rho_R: densities of the next `window` positions of each scanner; re-split every
`resplit_every` admissions). Each side is charged the average KV footprint of its requests in
flight, unshared prompt + estimated output / 2 (BlendServe's N = M_side / (p + d/2)), and the
side further below its share admits next. What may be admitted at all follows the engine's
real state: the projected peak KV of everything in flight (kv_projection.py: true lengths so
far, estimates for the rest) stays within the cache, so vLLM never has to preempt; requests
in flight stay within max_num_seqs; prompt tokens handed over and not yet computed stay within
`queue_steps` steps of max_num_batched_tokens, so the engine's first-come-first-served queue
never decides the blend. A left request that outlives its estimate moves to the right share
(its estimate doubles).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from blend.admission.base import EngineView
from blend.admission.kv_projection import KvProjection
from blend.cost import CostModel
from blend.planners.blendserve.scan import split_memory

LEFT, RIGHT = 0, 1


@dataclass(frozen=True, slots=True)
class ScanSequence:
    """The plan's density-sorted sequence, per position (float64 arrays unless named)."""

    index: np.ndarray  # int64 request index handed to the engine
    prompt_tokens: np.ndarray
    shared_prev: np.ndarray  # prompt tokens shared with the previous position
    output_tokens: np.ndarray  # estimated output tokens

    def __post_init__(self) -> None:
        n = len(self.index)
        for name in ("prompt_tokens", "shared_prev", "output_tokens"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"ScanSequence.{name} has {len(getattr(self, name))} != {n}")


@dataclass(frozen=True, slots=True)
class DualScanOptions:
    max_num_seqs: int = 256  # the engine's running-request limit
    max_num_batched_tokens: int = 8192  # the engine's tokens per step
    window: int = 256  # positions ahead of a scanner that give its density
    resplit_every: int = 32  # admissions between memory re-splits
    kv_fill: float = 0.98  # projected peak KV kept within this share of the cache
    queue_steps: float = 2.0  # prompt tokens not yet computed: at most this many steps' worth
    borrow: bool = False  # a side may exceed its share while the other side cannot admit


class _Prefix:
    """O(1) sums over any window [a, b) of the sequence."""

    def __init__(self, values: np.ndarray) -> None:
        self._cum = np.concatenate(([0.0], np.cumsum(values, dtype=np.float64)))

    def sum(self, a: int, b: int) -> float:
        return float(self._cum[b] - self._cum[a])


@dataclass(slots=True)
class _InFlight:
    side: int
    charge: float  # average KV footprint charged to its side (tokens)
    unshared: float  # prompt tokens it computes (not shared with its scanner's previous one)
    estimate: float  # estimated output tokens


class DualScanAdmission:
    """The online dual scan over `sequence` (see the module invariant)."""

    def __init__(
        self, sequence: ScanSequence, cost: CostModel, options: DualScanOptions | None = None
    ) -> None:
        self.sequence = sequence
        self.options = options or DualScanOptions()
        self.lo, self.hi = 0, len(sequence.index)  # left takes lo, right takes hi - 1
        self.n_resplits = 0
        self.n_moved = 0  # left requests moved right after outliving their estimate
        self._used = [0.0, 0.0]  # charged KV tokens per side
        self._count = [0, 0]  # requests in flight per side
        self._share = [0.0, 0.0]  # M_L, M_R (tokens)
        self._inflight: dict[int, _InFlight] = {}
        self._checks: list[tuple[int, int]] = []  # (step, index): outlive checks of left ones
        self._since_split = 0
        self._capacity = 0.0
        self._block_size = 1
        self._projection = KvProjection()
        p, d = sequence.prompt_tokens, sequence.output_tokens
        comp_per_token = cost.comp_s(1.0, 0.0)
        mem_per_read = cost.mem_s(1.0, 1.0) - cost.mem_s(0.0, 1.0)
        self._comp = _Prefix(comp_per_token * (p + d))
        self._mem = _Prefix(mem_per_read * (p * d + d * d / 2.0))
        self._prompt = _Prefix(p)
        self._shared = _Prefix(sequence.shared_prev)
        self._position = {int(i): k for k, i in enumerate(sequence.index.tolist())}

    @property
    def num_remaining(self) -> int:
        return self.hi - self.lo

    def admit(self, engine: EngineView) -> list[int]:
        if self._capacity == 0.0:
            self._capacity = float(engine.kv_blocks_total * engine.block_size)
            self._block_size = engine.block_size
        for index, _ in engine.finished:
            self._release(index)
        self._move_outliers(engine)
        self._projection.refresh(engine.generated_of)
        pending = self._projection.pending_prompt_tokens
        if self._since_split == 0 or self._since_split >= self.options.resplit_every:
            self._resplit()
        # each request may hold up to a block more than its tokens (blocks fill as it grows)
        limit_kv = self.options.kv_fill * self._capacity - len(self._inflight) * self._block_size
        limit_queue = self.options.queue_steps * self.options.max_num_batched_tokens
        room = self.options.max_num_seqs - engine.num_running - engine.num_waiting
        admitted: list[int] = []
        while self.lo < self.hi and len(admitted) < room:
            side = self._pick(limit_kv, pending, limit_queue, empty=not self._inflight)
            if side is None:
                break
            k = self.lo if side == LEFT else self.hi - 1
            pending += self._unshared(k, side)
            admitted.append(self._take(side, engine.step))
            if self._since_split >= self.options.resplit_every:
                self._resplit()
        return admitted

    # -- bookkeeping -----------------------------------------------------------------------

    def _release(self, index: int) -> None:
        entry = self._inflight.pop(index)
        self._used[entry.side] -= entry.charge
        self._count[entry.side] -= 1
        self._projection.remove(index)

    def _move_outliers(self, engine: EngineView) -> None:
        """Left requests past their estimated end that are still running move right."""
        due: list[int] = []
        while self._checks and self._checks[0][0] <= engine.step:
            index = heapq.heappop(self._checks)[1]
            entry = self._inflight.get(index)
            if entry is not None and entry.side == LEFT:
                due.append(index)
        if not due:
            return
        generated = engine.generated_of(np.asarray(due, dtype=np.int64)).tolist()
        for index, tokens in zip(due, generated, strict=True):
            entry = self._inflight[index]
            if tokens <= entry.estimate:  # not done yet: its prefill waited; look again later
                next_check = engine.step + int(entry.estimate - tokens) + 1
                heapq.heappush(self._checks, (next_check, index))
                continue
            entry.estimate = 2.0 * max(entry.estimate, tokens)
            self._used[LEFT] -= entry.charge
            self._count[LEFT] -= 1
            entry.side, entry.charge = RIGHT, entry.unshared + entry.estimate / 2.0
            self._used[RIGHT] += entry.charge
            self._count[RIGHT] += 1
            self._projection.set_estimate(index, entry.estimate)
            self.n_moved += 1

    def _resplit(self) -> None:
        lo, hi, w = self.lo, self.hi, self.options.window
        if lo >= hi:
            return
        left_end, right_start = min(hi, lo + w), max(lo, hi - w)
        m_left, m_right = split_memory(
            self._capacity,
            self._rho(lo, left_end),
            self._rho(right_start, hi),
            self._rho(lo, hi),
        )
        self._share = [m_left, m_right]
        self._since_split = 0
        self.n_resplits += 1

    def _rho(self, a: int, b: int) -> float:
        mem = self._mem.sum(a, b)
        if mem <= 0:
            return 1e12
        prompt = self._prompt.sum(a, b)
        sharing = self._shared.sum(a + 1, b) / prompt if prompt > 0 else 0.0
        return (1.0 - sharing) * self._comp.sum(a, b) / mem

    # -- admission ---------------------------------------------------------------------------

    def _unshared(self, k: int, side: int) -> float:
        """KV tokens position k adds to the cache: its prompt, less the prefix it shares with
        the position its scanner took just before while that one is still in flight (whose
        blocks it then reuses), rounded up to whole blocks."""
        seq = self.sequence
        neighbour = k - 1 if side == LEFT else k + 1
        shared = 0.0
        if 0 <= neighbour < len(seq.index) and int(seq.index[neighbour]) in self._inflight:
            shared = seq.shared_prev[k] if side == LEFT else seq.shared_prev[k + 1]
        tokens = float(seq.prompt_tokens[k] - shared)
        return math.ceil(tokens / self._block_size) * self._block_size

    def _pick(
        self, limit_kv: float, pending: float, limit_queue: float, *, empty: bool
    ) -> int | None:
        """The side to admit from next: the one further below its share among those whose
        next request fits (KV projection, prefill queue); None if neither fits."""
        deficits = [
            (self._share[s] - self._used[s]) / max(self._share[s], 1.0) for s in (LEFT, RIGHT)
        ]
        preferred = LEFT if deficits[LEFT] >= deficits[RIGHT] else RIGHT
        for side in (preferred, 1 - preferred):
            if self.lo == self.hi:
                return None
            k = self.lo if side == LEFT else self.hi - 1
            unshared = self._unshared(k, side)
            if empty:  # never leave the engine idle
                return side
            if pending > 0 and pending + unshared > limit_queue:
                continue
            estimate = float(self.sequence.output_tokens[k])
            within_share = (
                self._used[side] + unshared + estimate / 2.0 <= self._share[side]
                or self._count[side] == 0
            )
            if not (within_share or self.options.borrow):
                continue
            if self._projection.peak_with(unshared, estimate) <= limit_kv:
                return side
        return None

    def _take(self, side: int, step: int) -> int:
        if side == LEFT:
            k = self.lo
            self.lo += 1
        else:
            self.hi -= 1
            k = self.hi
        unshared = self._unshared(k, side)
        estimate = float(self.sequence.output_tokens[k])
        index = int(self.sequence.index[k])
        entry = _InFlight(side, unshared + estimate / 2.0, unshared, estimate)
        self._inflight[index] = entry
        self._used[side] += entry.charge
        self._count[side] += 1
        self._since_split += 1
        self._projection.add(index, unshared, estimate)
        self._projection.commit(unshared, estimate)
        if side == LEFT:  # checked once it should be done: its prefill plus its decodes
            heapq.heappush(self._checks, (step + 2 + math.ceil(estimate), index))
        return index
