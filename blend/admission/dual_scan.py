"""BlendServe's dual scanner, run online: two cursors admit requests as the engine frees room.

Invariant: the left scanner takes the density-sorted sequence from its start (compute-heavy
end) and the right scanner from its end (memory-heavy end), each contiguously, so each walks
the prefix tree depth-first and keeps its sharing; they meet once and every position is
admitted once. The KV cache M (tokens, read from the engine) is split between the sides so
that the blend sits at the density of what is left, rho_rt:
    M_L = M (rho_rt - rho_R) / (rho_L - rho_R),  M_R = M - M_L    (clamped to [0, M])
(rho_L / rho_R: densities of the next `window` positions of each scanner; re-split every
`resplit_every` admissions). Each side's memory becomes its share of running requests,
N_side = M_side / (p + d/2) (p: unshared prompt tokens, d: estimated output, means over its
window; scaled down together to max_num_seqs when they exceed it), and the side further
below its share admits next (the other one may borrow what it cannot use).

What may be admitted at all follows the engine's real state: the projected peak KV of
everything in flight (kv_projection.py: true lengths so far, estimates for the rest) stays
within the cache, so vLLM never has to preempt; requests in flight stay within max_num_seqs;
prompt tokens handed over and not yet computed stay within `queue_steps` steps of
max_num_batched_tokens, so the engine's first-come-first-served queue never decides the
blend. A left request that outlives its estimate moves to the right share (its estimate
doubles). Pacing (beyond the paper): compute-heavy requests (whose compute outweighs their KV
reads) are admitted no faster than spreads their work evenly over the steps the memory-heavy
requests in flight still need, so that their prefill fills the memory-bound decode steps of
long generations instead of finishing first and leaving those alone at the end;
memory-heavy ones start as soon as the KV projection lets them.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from blend.admission.base import EngineView
from blend.admission.kv_projection import KvProjection
from blend.admission.kv_projection import kernels as kv_kernels
from blend.cost.model import CostModel
from blend.engines.settings import DEFAULT_ENGINE_SETTINGS, EngineSettings
from blend.planners.blendserve.scan import split_memory
from blend.planners.tree import adjacent_lcp

LEFT, RIGHT = 0, 1


@dataclass(frozen=True, slots=True)
class ScanSequence:
    """The plan's density-sorted sequence, per position (float64 arrays unless named)."""

    index: np.ndarray  # int64 request index handed to the engine
    prompt_tokens: np.ndarray
    shared_prev: np.ndarray  # prompt tokens shared with the previous position
    output_tokens: np.ndarray  # estimated output tokens
    # std of log output length behind each estimate (0: a point estimate); see kv_projection
    output_spread: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.index)
        if self.output_spread is None:
            object.__setattr__(self, "output_spread", np.zeros(n))
        for name in ("prompt_tokens", "shared_prev", "output_tokens", "output_spread"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"ScanSequence.{name} has {len(getattr(self, name))} != {n}")


def scan_sequence(
    prompts: Sequence[np.ndarray | Sequence[int]],
    indices: np.ndarray,
    output_tokens: np.ndarray,
    output_spread: np.ndarray | None = None,
) -> ScanSequence:
    """The admission view of an ordered list of requests (indices into `prompts`)."""
    lengths = np.fromiter((len(prompts[i]) for i in indices.tolist()), np.float64, len(indices))
    shared = adjacent_lcp(prompts, indices).astype(np.float64)
    return ScanSequence(indices.astype(np.int64), lengths, shared, output_tokens, output_spread)


@dataclass(frozen=True, slots=True)
class DualScanOptions:
    window: int = 256  # positions ahead of a scanner that give its density
    resplit_every: int = 32  # admissions between memory re-splits
    kv_fill: float = 0.98  # projected peak KV kept within this share of the cache
    queue_steps: float = 2.0  # prompt tokens not yet computed: at most this many steps' worth
    borrow: bool = True  # a side may exceed its share while the other side cannot admit
    pace: bool = True  # spread the left side's work over the right side's remaining steps
    pace_burst_steps: float = 8.0  # left credit saved up at most (steps' worth of work)


class _Prefix:
    """O(1) sums over any window [a, b) of the sequence."""

    def __init__(self, values: np.ndarray) -> None:
        self._cum = np.concatenate(([0.0], np.cumsum(values, dtype=np.float64)))

    def sum(self, a: int, b: int) -> float:
        return float(self._cum[b] - self._cum[a])


@dataclass(slots=True)
class _InFlight:
    side: int
    estimate: float  # estimated output tokens


class DualScanAdmission:
    """The online dual scan over `sequence` (see the module invariant)."""

    def __init__(
        self,
        sequence: ScanSequence,
        cost: CostModel,
        options: DualScanOptions | None = None,
        settings: EngineSettings = DEFAULT_ENGINE_SETTINGS,
    ) -> None:
        self.sequence = sequence
        self.options = options or DualScanOptions()
        self.settings = settings  # the engine's: its running-request limit and step budget
        self.lo, self.hi = 0, len(sequence.index)  # left takes lo, right takes hi - 1
        self.n_resplits = 0
        self.n_moved = 0  # left requests moved right after outliving their estimate
        self._count = [0, 0]  # requests in flight per side
        self._slots = [1.0, 1.0]  # N_L, N_R: running requests each side should hold
        self._share = [0.0, 0.0]  # M_L, M_R (tokens)
        self._inflight: dict[int, _InFlight] = {}
        self.adopted: set[int] = set()  # requests in flight it did not admit (adopt)
        self._checks: list[tuple[int, int]] = []  # (step, index): outlive checks of left ones
        self._since_split = 0
        self._capacity = 0.0
        self._block_size = 1
        self._shared_tree: np.ndarray | None = None  # range minima of shared_prev (blocks)
        self._projection = KvProjection(self._shared_between)
        p, d = sequence.prompt_tokens, sequence.output_tokens
        comp_per_token = cost.compute_s_per_token
        self._comp = _Prefix(cost.comp_s(p, d))
        self._mem = _Prefix(cost.mem_s(p, d))
        self._prompt = _Prefix(p)
        self._shared = _Prefix(sequence.shared_prev)
        self._output = _Prefix(d)
        unshared = np.maximum(p - sequence.shared_prev, 0.0)
        comp = cost.comp_s(unshared, d)
        mem = cost.mem_s(p, d)
        # compute-heavy positions (their own compute outweighs their KV reads): paced
        self._dense = comp >= mem
        self._work = _Prefix(np.where(self._dense, unshared + d, 0.0))  # paced tokens
        self._credit = 0.0  # compute-heavy tokens that may still be admitted now (pacing)
        # tokens a step computes in the time it reads the weights: below, reading dominates
        self._knee_tokens = (
            cost.model.weight_bytes / cost.hardware.effective_bandwidth / max(comp_per_token, 1e-30)
        )
        self._inflight_dense: set[int] = set()  # compute-heavy requests in flight
        self._last_step = 0
        self.remaining_steps = 0.0  # the last pacing estimate of the right side's steps
        self._critical = 0.0  # steps the longest memory-heavy request in flight has left
        self._spread: np.ndarray = np.asarray(sequence.output_spread, dtype=np.float64)

    @property
    def num_remaining(self) -> int:
        return self.hi - self.lo

    def admit(self, engine: EngineView) -> list[int]:
        if self._capacity == 0.0:
            self._capacity = float(engine.kv_blocks_total * engine.block_size)
            self._block_size = engine.block_size
            bs = self._block_size
            self._shared_tree = kv_kernels().min_tree(self.sequence.shared_prev // bs * bs)
        for index, _ in engine.finished:
            self._release(index)
        self._move_outliers(engine)
        room = self.settings.max_num_seqs - engine.num_running - engine.num_waiting
        if room <= 0 or self.lo >= self.hi:  # nothing can join: skip the projection
            return []
        self._projection.refresh(engine.generated_of)
        # prompt tokens handed over and not yet computed; a dry queue is the engine asking
        # for more (the last request it started may still be prefilling in chunks, but its
        # tokens are no longer queued ahead of anything)
        pending = self._projection.pending_prompt_tokens if engine.num_waiting else 0.0
        self._critical = self._longest_memory_heavy()
        self._earn_credit(engine.step)
        if self._since_split == 0 or self._since_split >= self.options.resplit_every:
            self._resplit()
        in_flight = len(self._inflight) + len(self.adopted)
        limit_queue = self.options.queue_steps * self.settings.max_num_batched_tokens
        admitted: list[int] = []
        while self.lo < self.hi and len(admitted) < room:
            idle = not self._inflight and not self.adopted
            # each request may hold up to a block more than its tokens (blocks fill as it
            # grows): those in flight, those admitted in this call and the candidate (counted
            # once per call, six requests admitted into an empty cache were projected at
            # 296 tokens of 304 and needed 39 blocks of 38: vLLM preempted one)
            holders = in_flight + len(admitted) + 1
            limit_kv = self.options.kv_fill * self._capacity - holders * self._block_size
            side = self._pick(limit_kv, pending, limit_queue, empty=idle)
            if side is None:
                break
            k = self.lo if side == LEFT else self.hi - 1
            pending += self._prefill(k, side)
            admitted.append(self._take(side, engine.step))
            if self._since_split >= self.options.resplit_every:
                self._resplit()
        return admitted

    # -- bookkeeping -----------------------------------------------------------------------

    def adopt(self, index: int, prompt_tokens: float, estimate: float, spread: float) -> None:
        """Count a request someone else admitted and that still runs (the warm-up's, at the
        re-plan) in the KV projection, until it finishes (its finish reaches admit)."""
        self.adopted.add(index)
        self._projection.add_foreign(index, float(prompt_tokens), float(estimate), float(spread))

    def _release(self, index: int) -> None:
        if index in self.adopted:
            self.adopted.discard(index)
            self._projection.remove(index)
            return
        entry = self._inflight.pop(index)
        self._inflight_dense.discard(index)
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
            self._count[LEFT] -= 1
            entry.side = RIGHT
            self._count[RIGHT] += 1
            self._projection.set_estimate(index, entry.estimate)
            self.n_moved += 1

    def _earn_credit(self, step: int) -> None:
        """Compute-heavy work (tokens) that may be admitted now: what is left of it spread
        evenly over the steps the memory-heavy requests in flight still need by their
        estimates (those past their estimate count for nothing: how long they still run is
        unknown), and never less than a step's GEMM roofline knee, below which the weights'
        read is not hidden (so pacing never leaves steps weight-bound).
        """
        elapsed = max(0, step - self._last_step)
        self._last_step = step
        if not self.options.pace:
            return
        self.remaining_steps = max(1.0, self._critical)
        rate = max(self._work.sum(self.lo, self.hi) / self.remaining_steps, self._knee_tokens)
        cap = self.options.pace_burst_steps * rate
        self._credit = min(cap, self._credit + max(1, elapsed) * rate)

    def _longest_memory_heavy(self) -> float:
        """Steps the longest memory-heavy request in flight has left by its estimate (the
        projection tracks them, read at its refresh: call right after it)."""
        return self._projection.longest_tracked

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
        slots = [
            m_left / self._footprint(lo, left_end),
            m_right / self._footprint(right_start, hi),
        ]
        scale = min(1.0, self.settings.max_num_seqs / max(sum(slots), 1e-9))
        self._slots = [max(1.0, n * scale) for n in slots]
        self._since_split = 0
        self.n_resplits += 1

    def _footprint(self, a: int, b: int) -> float:
        """Mean KV tokens a request of [a, b) holds over its life: unshared prompt + d / 2."""
        count = max(1, b - a)
        unshared = (self._prompt.sum(a, b) - self._shared.sum(a + 1, b)) / count
        return max(1.0, unshared + self._output.sum(a, b) / count / 2.0)

    def _rho(self, a: int, b: int) -> float:
        mem = self._mem.sum(a, b)
        if mem <= 0:
            return 1e12
        prompt = self._prompt.sum(a, b)
        sharing = self._shared.sum(a + 1, b) / prompt if prompt > 0 else 0.0
        return (1.0 - sharing) * self._comp.sum(a, b) / mem

    # -- admission ---------------------------------------------------------------------------

    def _shared_between(self, positions: np.ndarray) -> np.ndarray:
        """Prompt KV tokens (whole blocks) each of these ascending positions shares with the
        one before it: the least shared_prev between them (the sequence keeps a prefix's
        requests together, so this is what their prompts have in common at least)."""
        if self._shared_tree is None:
            return np.zeros(len(positions))
        return kv_kernels().adjacent_minima(self._shared_tree, positions)

    def _unshared(self, k: int, side: int) -> float:
        """KV tokens position k adds to the cache for as long as it runs: its prompt's
        blocks, less the whole blocks of the prefix it shares with the position its scanner
        took just before, when that one is still in flight and expected to outlast it (else
        the shared blocks would stay on its account after that one ends)."""
        seq, bs = self.sequence, self._block_size
        neighbour = k - 1 if side == LEFT else k + 1
        shared_blocks = 0
        if 0 <= neighbour < len(seq.index):
            other = int(seq.index[neighbour])
            if other in self._inflight and self._projection.lifetime(other) >= max(
                1.0, float(seq.output_tokens[k])
            ):
                shared = seq.shared_prev[k] if side == LEFT else seq.shared_prev[k + 1]
                shared_blocks = int(shared // bs)
        return self._prompt_kv(k) - shared_blocks * bs

    def _prompt_kv(self, k: int) -> float:
        """KV tokens of position k's prompt blocks."""
        bs = self._block_size
        return float(math.ceil(self.sequence.prompt_tokens[k] / bs) * bs)

    def _prefill(self, k: int, side: int) -> float:
        """Prompt tokens position k computes: those past the prefix it shares with the
        position its scanner took before (cached whether or not that one still runs)."""
        seq = self.sequence
        if side == LEFT:
            shared = seq.shared_prev[k] if k > 0 else 0.0
        else:
            shared = seq.shared_prev[k + 1] if k + 1 < len(seq.index) else 0.0
        return float(seq.prompt_tokens[k] - shared)

    def _pick(
        self, limit_kv: float, pending: float, limit_queue: float, *, empty: bool
    ) -> int | None:
        """The side to admit from next: the one further below its share among those whose
        next request fits (KV projection, prefill queue, pacing); None if neither fits.
        The critical path first: a right request expected to outlast every memory-heavy
        request in flight would lengthen the run by starting later, so its side goes first."""
        deficits = [(self._slots[s] - self._count[s]) / self._slots[s] for s in (LEFT, RIGHT)]
        preferred = LEFT if deficits[LEFT] >= deficits[RIGHT] else RIGHT
        if self.lo < self.hi and self._is_critical(self.hi - 1):
            preferred = RIGHT
        for side in (preferred, 1 - preferred):
            if self.lo == self.hi:
                return None
            k = self.lo if side == LEFT else self.hi - 1
            unshared = self._unshared(k, side)
            if empty:  # never leave the engine idle
                return side
            if pending > 0 and pending + self._prefill(k, side) > limit_queue:
                continue
            estimate = float(self.sequence.output_tokens[k])
            within_share = self._count[side] < self._slots[side] or self._count[side] == 0
            if not (within_share or self.options.borrow):
                continue
            paced = (
                not self._dense[k]
                or not self.options.pace
                or self._credit >= unshared + estimate
                or not self._inflight_dense
            )
            if paced and self._projection.peak_while(unshared, estimate) <= limit_kv:
                return side
        return None

    def _is_critical(self, k: int) -> bool:
        """Whether memory-heavy position k would outlast every memory-heavy request in flight
        and is longer than what the left side offers next."""
        estimate = float(self.sequence.output_tokens[k])
        left = float(self.sequence.output_tokens[self.lo])
        return not self._dense[k] and estimate > self._critical and estimate > left

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
        entry = _InFlight(side, estimate)
        if self._dense[k]:
            self._credit -= unshared + estimate
            self._inflight_dense.add(index)
        self._inflight[index] = entry
        self._count[side] += 1
        self._since_split += 1
        self._projection.add(
            index,
            self._prompt_kv(k),
            estimate,
            position=k,
            prefill_tokens=self._prefill(k, side),
            spread=float(self._spread[k]),
            tracked=not self._dense[k],
        )
        self._projection.commit(unshared, estimate)
        if side == LEFT:  # checked once it should be done: its prefill plus its decodes
            heapq.heappush(self._checks, (step + 2 + math.ceil(estimate), index))
        return index
