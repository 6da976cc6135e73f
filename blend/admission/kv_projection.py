"""The KV cache the requests in flight will hold from now on, as their lengths are expected.

Invariant: a request in flight holds its unshared prompt blocks plus its output tokens so far,
g, and grows by one token per step until it ends, then frees what it held alone; prompt blocks
it shares with other requests in flight (a common prefix: the same blocks, held once) stay
until the last of those requests ends. How many steps a request has left is what its estimate
says, as a distribution: with a spread (the standard deviation of log length among the
measurements behind its estimate), its length is taken as lognormal with the estimate as mean,
conditioned on the g tokens it has produced, and the request counts as QUANTILES equal-weight
entries at the quantile midpoints of its remaining steps; without one, every quantile is the
estimate (a request past such an estimate is taken to run another estimate's worth). The
projected KV at step tau from now is
    T(tau) = sum over entries with r > tau of (a + b x tau),
growing entries (b = weight) for what a request holds alone, fixed ones (b = 0) for the shared
prefix blocks; T only peaks just before an entry ends (tau = r - 1) or now (tau = 0).
`peak_with(u, d)` answers, in O(log n), the peak of T once a new request of u KV tokens of its
own and d estimated output tokens joins, and `peak_while(u, d)` the peak over its own life
(now .. d): the breakpoints it changes. Admission keeps the latter within the cache, which is
what keeps vLLM from preempting (recomputing) requests for lack of blocks without letting a
far peak of the requests in flight (a long generation guessed long) block short requests
that will be gone by then. Spreading a request
over its quantiles keeps a group of requests with the same estimate from looking as if they
all ended at once (a peak no real run reaches).

How: the entries sorted by r, with suffix sums of a and of b, T at every breakpoint, a prefix
maximum of T + tau and a suffix maximum of T; a request joining moves every breakpoint before
its own end up by its u + tau (prefix maximum of T + tau), leaves the later ones (suffix
maximum of T), and adds its own. The kernels are compiled with numba (an admission decision
per request, tens of thousands per run); a refresh is one compiled pass over the requests in
flight (own_entries), with each request's remaining steps memoised per (estimate, spread,
tokens so far): a prefix group's requests share an estimate, so a length is computed once
per group, not once per request and refresh.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

QUANTILES = 4  # entries a request with a spread counts as
_MIDPOINTS = (np.arange(QUANTILES) + 0.5) / QUANTILES
# slots of the memo of remaining steps (a power of two; 5 MiB): started afresh half full
MEMO_SLOTS = 1 << 17
_KERNELS: Any = None


def kernels() -> Any:
    """The compiled kernels (numba is imported on first use, never with this module)."""
    global _KERNELS
    if _KERNELS is None:
        from blend.admission import kv_projection_kernels

        _KERNELS = kv_projection_kernels
    return _KERNELS


def remaining_steps(estimate: np.ndarray, spread: np.ndarray, generated: np.ndarray) -> np.ndarray:
    """(requests, QUANTILES) remaining steps, each quantile of equal weight (module docstring);
    a request without a spread has every quantile at its point estimate (compiled:
    kv_projection_kernels.remaining_steps, called at every admission event)."""
    return kernels().remaining_steps(
        np.asarray(estimate, dtype=np.float64),
        np.asarray(spread, dtype=np.float64),
        np.asarray(generated, dtype=np.float64),
        _MIDPOINTS,
    )


SharedBetween = Callable[[np.ndarray], np.ndarray]


def _no_sharing(positions: np.ndarray) -> np.ndarray:
    return np.zeros(len(positions))


class KvProjection:
    """Requests in flight (by index) and the peak of their projected KV use (tokens).

    `shared_between(positions)`: for requests in flight at these ascending positions (of the
    order they were planned in), the prompt KV tokens each shares with the one before it
    (whole blocks; 0 for the first); none shared by default.
    """

    # the sorted view of the entries, each holding a + b x tau (see kv_projection_kernels.py)
    _r: np.ndarray
    _a: np.ndarray
    _b: np.ndarray
    _suffix_a: np.ndarray
    _suffix_b: np.ndarray
    _prefix_max: np.ndarray
    _suffix_max: np.ndarray

    def __init__(self, shared_between: SharedBetween = _no_sharing, capacity: int = 64) -> None:
        self._shared_between = shared_between
        self._slot: dict[int, int] = {}  # request index -> slot
        self._free: list[int] = list(range(capacity - 1, -1, -1))
        self._index = np.full(capacity, -1, dtype=np.int64)  # per slot; -1: empty
        self._position = np.zeros(capacity, dtype=np.int64)
        self._prompt_kv = np.zeros(capacity)
        self._estimate = np.zeros(capacity)
        self._spread = np.zeros(capacity)
        self._prefill = np.zeros(capacity)
        self._lifetime = np.zeros(capacity)  # latest remaining steps at the last refresh
        self._tracked = np.zeros(capacity, dtype=np.bool_)  # counted in longest_tracked
        # each slot's (estimate, spread) numbered: remaining steps are memoised per number
        # and length so far (own_entries), in a table of MEMO_SLOTS
        self._pair = np.full(capacity, -1, dtype=np.int64)
        self._pairs: dict[tuple[float, float], int] = {}
        self._memo_keys = np.zeros(0, dtype=np.int64)  # allocated at the first refresh
        self._memo_values = np.zeros((0, QUANTILES))
        self._memo_count = np.zeros(1, dtype=np.int64)
        # requests someone else admitted (the warm-up's, still running at the re-plan): their
        # KV counts, without prefix sharing; index -> (prompt KV tokens, estimate, spread)
        self._foreign: dict[int, tuple[float, float, float]] = {}
        self._n = 0  # entries of the sorted view
        self._alloc(2 * capacity * QUANTILES)
        # prompt tokens still to compute of requests with no token yet at the last refresh
        self.pending_prompt_tokens = 0.0
        # steps the longest `tracked` request has left by its estimate (estimate less its
        # tokens so far, at the last refresh; 0.0 if none is in flight)
        self.longest_tracked = 0.0

    def __len__(self) -> int:
        return len(self._slot)

    def add(
        self,
        index: int,
        prompt_kv: float,
        estimated_output: float,
        *,
        position: int = 0,
        prefill_tokens: float | None = None,
        spread: float = 0.0,
        tracked: bool = False,
    ) -> None:
        """A request handed to the engine (fresh: nothing generated yet): its prompt's KV
        tokens, its estimate, its position (for shared_between), the prompt tokens it will
        compute (default: all of them; whole tokens), the spread of its length, and whether
        it counts in longest_tracked."""
        if not self._free:
            self._grow()
        slot = self._free.pop()
        self._slot[index] = slot
        self._index[slot] = index
        self._position[slot] = position
        self._prompt_kv[slot] = prompt_kv
        self._estimate[slot] = estimated_output
        self._spread[slot] = spread
        self._lifetime[slot] = max(1.0, estimated_output)
        self._prefill[slot] = prompt_kv if prefill_tokens is None else prefill_tokens
        self._tracked[slot] = tracked
        self._pair[slot] = self._pair_of(estimated_output, spread)

    def add_foreign(
        self, index: int, prompt_kv: float, estimated_output: float, spread: float
    ) -> None:
        """A request in flight that this projection's owner did not admit (counted from the
        next refresh, by its quantiles, sharing nothing)."""
        self._foreign[index] = (prompt_kv, estimated_output, spread)

    def remove(self, index: int) -> None:
        self._foreign.pop(index, None)
        slot = self._slot.pop(index, None)
        if slot is not None:
            self._index[slot] = -1
            self._free.append(slot)

    def set_estimate(self, index: int, estimated_output: float) -> None:
        slot = self._slot[index]
        self._estimate[slot] = estimated_output
        self._pair[slot] = self._pair_of(estimated_output, float(self._spread[slot]))

    def _pair_of(self, estimate: float, spread: float) -> int:
        key = (float(estimate), float(spread))
        number = self._pairs.get(key)
        if number is None:
            number = self._pairs[key] = len(self._pairs)
        return number

    def lifetime(self, index: int) -> float:
        """Steps the request has left at the latest of its quantiles (as of the last refresh,
        or its estimate if admitted since)."""
        return float(self._lifetime[self._slot[index]])

    def refresh(self, generated_of: Callable[[np.ndarray], np.ndarray]) -> None:
        """Re-read the output tokens so far of every request in flight and rebuild (one
        compiled pass: own_entries, then the sorted view)."""
        compiled = kernels()
        if not len(self._memo_keys) or 2 * self._memo_count[0] > MEMO_SLOTS:
            self._memo_keys = np.full(MEMO_SLOTS, -1, dtype=np.int64)  # started afresh
            self._memo_values = np.zeros((MEMO_SLOTS, QUANTILES))
            self._memo_count[0] = 0
        live = np.flatnonzero(self._index >= 0)
        live = live[np.argsort(self._position[live], kind="stable")]
        g = generated_of(self._index[live]).astype(np.float64) if len(live) else np.zeros(0)
        shared = np.array(self._shared_between(self._position[live]), dtype=np.float64)
        a, b, r_entries, pending, longest = compiled.own_entries(
            live,
            g,
            shared,
            self._prompt_kv,
            self._estimate,
            self._spread,
            self._prefill,
            self._pair,
            self._tracked,
            self._lifetime,
            _MIDPOINTS,
            self._memo_keys,
            self._memo_values,
            self._memo_count,
        )
        self.pending_prompt_tokens = float(pending)
        self.longest_tracked = float(longest)
        if self._foreign:
            a, b, r_entries = self._with_foreign(generated_of, a, b, r_entries)
        if len(r_entries) + 1 > len(self._r):
            self._alloc(2 * len(r_entries))
        self._n = len(r_entries)
        compiled.build(a, r_entries, b, *self._arrays())

    def _with_foreign(
        self,
        generated_of: Callable[[np.ndarray], np.ndarray],
        a: np.ndarray,
        b: np.ndarray,
        r: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The entries with the foreign requests' added: each its QUANTILES equal-weight
        entries of its prompt and its output so far, growing a token a step."""
        index = np.fromiter(self._foreign, np.int64, len(self._foreign))
        prompt, estimate, spread = (
            np.asarray(v) for v in zip(*self._foreign.values(), strict=True)
        )
        g = generated_of(index).astype(np.float64)
        remaining = remaining_steps(estimate, spread, g)
        weight = 1.0 / QUANTILES
        held = np.repeat((prompt + g) * weight, QUANTILES)
        return (
            np.concatenate((a, held)),
            np.concatenate((b, np.full(len(held), weight))),
            np.concatenate((r, remaining.reshape(-1))),
        )

    def commit(self, unshared_prompt_tokens: float, estimated_output: float) -> None:
        """Count a request just admitted, holding these KV tokens alone, at its estimate (call
        add() too; the next refresh counts it by its quantiles and shared prefix) without
        re-reading the engine."""
        if self._n + 1 > len(self._r) - 1:
            self._alloc(2 * len(self._r), keep=self._n)
        kernels().insert(
            self._n, unshared_prompt_tokens, max(1.0, estimated_output), *self._arrays()
        )
        self._n += 1

    def peak(self) -> float:
        """The peak projected KV use (tokens) of the requests counted."""
        if self._n == 0:
            return 0.0
        return float(max(self._suffix_max[0], self._suffix_a[0]))

    def peak_with(self, unshared_prompt_tokens: float, estimated_output: float) -> float:
        """The peak projected KV use (tokens) if this request joined now (at its estimate),
        holding these KV tokens alone."""
        return self._peak_with(unshared_prompt_tokens, estimated_output, while_only=False)

    def peak_while(self, unshared_prompt_tokens: float, estimated_output: float) -> float:
        """The peak projected KV use (tokens) from now to this request's expected end if it
        joined now: the part of the projection it changes. A peak further out, from requests
        already in flight, is theirs whether it joins or not: a request that ends before it
        neither causes it nor makes it worse."""
        return self._peak_with(unshared_prompt_tokens, estimated_output, while_only=True)

    def _peak_with(self, unshared: float, estimated_output: float, *, while_only: bool) -> float:
        return float(
            kernels().peak_with(
                self._n,
                unshared,
                max(1.0, estimated_output),
                self._r,
                self._suffix_a,
                self._suffix_b,
                self._prefix_max,
                self._suffix_max,
                while_only,
            )
        )

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return (
            self._r,
            self._a,
            self._b,
            self._suffix_a,
            self._suffix_b,
            self._prefix_max,
            self._suffix_max,
        )

    def _alloc(self, entries: int, keep: int = 0) -> None:
        """Room for `entries` entries in the sorted view (the first `keep` kept)."""
        old = getattr(self, "_r", None)
        fresh = {
            "_r": entries + 1,
            "_a": entries + 1,
            "_b": entries + 1,
            "_prefix_max": entries + 1,
            "_suffix_a": entries + 2,
            "_suffix_b": entries + 2,
            "_suffix_max": entries + 2,
        }
        for name, size in fresh.items():
            grown = np.zeros(size)
            if old is not None and keep:
                grown[: keep + 2] = getattr(self, name)[: keep + 2]
            setattr(self, name, grown)

    def _grow(self) -> None:
        old = len(self._index)
        new = 2 * old
        self._free.extend(range(new - 1, old - 1, -1))
        self._index = np.concatenate((self._index, np.full(new - old, -1, dtype=np.int64)))
        self._position = np.concatenate((self._position, np.zeros(new - old, dtype=np.int64)))
        for name in ("_prompt_kv", "_estimate", "_spread", "_prefill", "_lifetime"):
            setattr(self, name, np.concatenate((getattr(self, name), np.zeros(new - old))))
        self._tracked = np.concatenate((self._tracked, np.zeros(new - old, dtype=np.bool_)))
        self._pair = np.concatenate((self._pair, np.full(new - old, -1, dtype=np.int64)))
        if len(self._r) - 1 < 2 * new * QUANTILES:
            self._alloc(2 * new * QUANTILES, keep=self._n)
