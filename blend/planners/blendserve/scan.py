"""The dual scanner: blend the densest and the sparsest ends of the sorted leaf sequence.

Invariant: the left scanner takes the sequence from its start and the right scanner from its
end, each contiguously (so each walks the tree depth-first from its end and keeps sharing);
they meet exactly once, and every position is emitted once. KV memory M is split so that the
blend sits at the density of what is left, rho_rt:
    M_L = M (rho_rt - rho_R) / (rho_L - rho_R),  M_R = M - M_L   (clamped to [0, M]),
side memory becomes running requests N = M_side / (p + d/2) (KV tokens a request holds on
average) and a chunked-prefill budget C = N p / d per step. The two streams are merged on a
virtual clock in decode steps: a request holds one of its side's N slots for d + 1 steps, so
the engine, admitting in plan order, keeps about N_L left and N_R right requests running.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from blend.planners.base import ScanSide
from blend.planners.blendserve.density import RHO_CAP


def split_memory(
    m_tokens: float, rho_left: float, rho_right: float, rho_root: float
) -> tuple[float, float]:
    """(M_L, M_R): M_L rho_L + M_R rho_R = M rho_rt, clamped to [0, M].

    rho_rt above rho_L gives all memory to the left, below rho_R all to the right; when the
    sides are equally dense (rho_L <= rho_R) any split gives the same blend: half each.
    """
    if rho_left <= rho_right:
        return m_tokens / 2.0, m_tokens / 2.0
    share = (rho_root - rho_right) / (rho_left - rho_right)
    m_left = m_tokens * min(1.0, max(0.0, share))
    return m_left, m_tokens - m_left


@dataclass(frozen=True, slots=True)
class SideBudget:
    """One scanner's share of the engine at one re-split."""

    rho: float  # density of the window the scanner stands on
    memory_tokens: float  # M_side: KV tokens given to this side
    num_running: float  # N: requests of this side that fit in M_side
    prefill_tokens_per_step: float  # C = N p / d: chunked-prefill tokens per engine step
    #                                 (p counts the prompt tokens not shared with a neighbour)

    @property
    def tokens_per_step(self) -> float:
        """Tokens this side schedules per engine step: its prefill budget plus N decodes."""
        return self.prefill_tokens_per_step + self.num_running

    def as_params(self, side: str) -> dict[str, float]:
        return {
            f"rho_{side}": self.rho,
            f"m_{side}_tokens": self.memory_tokens,
            f"n_{side}": self.num_running,
            f"c_{side}_tokens_per_step": self.prefill_tokens_per_step,
        }


@dataclass(frozen=True, slots=True)
class DualScan:
    positions: list[int]  # indices into the sorted sequence, in plan order
    sides: list[ScanSide]  # the scanner of each emitted position
    first_left: SideBudget  # budgets at the first split (the plan's headline numbers)
    first_right: SideBudget
    rho_root: float  # density of the whole sequence
    num_resplits: int
    meet: int  # the left scanner took positions [0, meet), the right one [meet, n)
    step_tokens: list[tuple[int, float]]  # (positions emitted, C_L + C_R + N_L + N_R) per split

    def engine_tokens_per_step(self) -> int:
        """The per-step token budget the blend is planned around: C_L + C_R + N_L + N_R at the
        first split, while both ends are blended (the engine's max_num_batched_tokens)."""
        return int(np.ceil(self.first_left.tokens_per_step + self.first_right.tokens_per_step))


class _Windows:
    """O(1) density and mean lengths of any window of the sequence (prefix sums)."""

    def __init__(
        self,
        comp_s: np.ndarray,
        mem_s: np.ndarray,
        p: np.ndarray,
        d: np.ndarray,
        shared: np.ndarray,
    ) -> None:
        def cum(x: np.ndarray) -> list[float]:
            return np.concatenate(([0.0], np.cumsum(x, dtype=np.float64))).tolist()

        self.comp, self.mem, self.p, self.d, self.shared = (
            cum(comp_s),
            cum(mem_s),
            cum(p),
            cum(d),
            cum(shared),
        )

    def rho(self, a: int, b: int) -> float:
        mem = self.mem[b] - self.mem[a]
        if mem <= 0:
            return RHO_CAP
        prompt = self.p[b] - self.p[a]
        sharing = (self.shared[b] - self.shared[a]) / prompt if prompt > 0 else 0.0
        return (1.0 - sharing) * (self.comp[b] - self.comp[a]) / mem

    def budget(self, a: int, b: int, rho: float, memory_tokens: float) -> SideBudget:
        count = max(1, b - a)
        p_mean = (self.p[b] - self.p[a]) / count
        d_mean = max(1.0, (self.d[b] - self.d[a]) / count)
        unique_mean = p_mean - (self.shared[b] - self.shared[a]) / count
        running = memory_tokens / max(1.0, p_mean + d_mean / 2.0)
        return SideBudget(rho, memory_tokens, running, running * unique_mean / d_mean)


def dual_scan(
    comp_s: np.ndarray,
    mem_s: np.ndarray,
    prompt_len: np.ndarray,
    output_len: np.ndarray,
    shared_len: np.ndarray,
    kv_tokens: float,
    *,
    window: int = 256,
    resplit_every: int = 32,
) -> DualScan:
    """Interleave the two scanners over a sequence sorted by density, densest first.

    Per position: Comp and Mem (s), prompt and estimated output tokens, and the prompt
    tokens it shares with the previous position. `window` positions ahead of each scanner
    give rho_L / rho_R; the memory is re-split every `resplit_every` emitted positions.
    """
    n = len(prompt_len)
    w = _Windows(comp_s, mem_s, prompt_len, output_len, shared_len)
    steps = (np.asarray(output_len, dtype=np.float64) + 1.0).tolist()
    positions: list[int] = []
    sides: list[ScanSide] = []
    lo, hi = 0, n
    clock_left = clock_right = 0.0
    first: tuple[SideBudget, SideBudget] | None = None
    left = right = SideBudget(0.0, 0.0, 0.0, 0.0)
    resplits = 0
    step_tokens: list[tuple[int, float]] = []
    while lo < hi:
        if len(positions) % resplit_every == 0:
            left, right = _resplit(w, lo, hi, window, kv_tokens)
            first = first or (left, right)
            resplits += 1
            tokens = left.tokens_per_step + right.tokens_per_step
            step_tokens.append((min(resplit_every, hi - lo), tokens))
        if left.num_running <= 0.0:
            clock_left = max(clock_left, clock_right)
        if right.num_running <= 0.0:
            clock_right = max(clock_right, clock_left)
        take_left = right.num_running <= 0.0 or (
            left.num_running > 0.0 and clock_left <= clock_right
        )
        if take_left:
            positions.append(lo)
            sides.append(ScanSide.LEFT)
            clock_left += steps[lo] / left.num_running
            lo += 1
        else:
            hi -= 1
            positions.append(hi)
            sides.append(ScanSide.RIGHT)
            clock_right += steps[hi] / right.num_running
    empty = SideBudget(0.0, 0.0, 0.0, 0.0)
    first_left, first_right = first or (empty, empty)
    return DualScan(
        positions, sides, first_left, first_right, w.rho(0, n), resplits, lo, step_tokens
    )


def _resplit(
    w: _Windows, lo: int, hi: int, window: int, kv_tokens: float
) -> tuple[SideBudget, SideBudget]:
    """Budgets of both sides for the remaining positions [lo, hi)."""
    left_end = min(hi, lo + window)
    right_start = max(lo, hi - window)
    rho_left, rho_right = w.rho(lo, left_end), w.rho(right_start, hi)
    m_left, m_right = split_memory(kv_tokens, rho_left, rho_right, w.rho(lo, hi))
    return (
        w.budget(lo, left_end, rho_left, m_left),
        w.budget(right_start, hi, rho_right, m_right),
    )
