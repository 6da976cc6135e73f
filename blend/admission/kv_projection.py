"""The KV cache the requests in flight will hold from now on, if they run to their estimates.

Invariant: a request in flight holds f = (its unshared prompt tokens) + (output tokens so
far) KV tokens now and grows by one token per step until its estimated remaining output r is
done, then frees everything; a request past its estimate is assumed to run as long again as
it has (r = its output so far). So the projected KV at step tau from now is
    T(tau) = sum over requests with r > tau of (f + tau),
and T only peaks just before a request ends (tau = r - 1) or now (tau = 0). `peak_with(u, d)`
answers, in O(log n), the peak of T once a new request of u prompt tokens and d estimated
output tokens joins; admission keeps that peak within the cache, which is what keeps vLLM from
preempting (recomputing) requests for lack of blocks.

How: the requests sorted by r, with suffix sums of f, T at every breakpoint, a prefix maximum
of T + tau and a suffix maximum of T. A request joining moves every breakpoint before its own
end up by its f + tau (prefix maximum of T + tau), leaves the later ones (suffix maximum of T),
and adds its own. The kernels are compiled with numba (an admission decision per request,
tens of thousands per run; numpy's call overhead alone was most of a simulation's time).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

_KERNELS: Any = None


def _kernels() -> Any:
    """The compiled kernels (numba is imported on first use, never with this module)."""
    global _KERNELS
    if _KERNELS is None:
        from blend.admission import kv_projection_kernels

        _KERNELS = kv_projection_kernels
    return _KERNELS


class KvProjection:
    """Requests in flight (by index) and the peak of their projected KV use (tokens)."""

    def __init__(self, capacity: int = 64) -> None:
        self._slot: dict[int, int] = {}  # request index -> slot
        self._free: list[int] = []
        self._index = np.full(capacity, -1, dtype=np.int64)  # per slot; -1: empty
        self._unshared = np.zeros(capacity)
        self._estimate = np.zeros(capacity)
        # the sorted view (see the module docstring): n entries valid
        self._n = 0
        self._r = np.zeros(capacity + 1)
        self._f = np.zeros(capacity + 1)
        self._suffix_f = np.zeros(capacity + 2)
        self._prefix_max = np.zeros(capacity + 1)
        self._suffix_max = np.zeros(capacity + 2)
        # prompt tokens of requests that had produced no token at the last refresh
        self.pending_prompt_tokens = 0.0

    def __len__(self) -> int:
        return len(self._slot)

    def add(self, index: int, unshared_prompt_tokens: float, estimated_output: float) -> None:
        """A request handed to the engine (fresh: nothing generated yet)."""
        if not self._free:
            self._grow()
        slot = self._free.pop()
        self._slot[index] = slot
        self._index[slot] = index
        self._unshared[slot] = unshared_prompt_tokens
        self._estimate[slot] = estimated_output

    def remove(self, index: int) -> None:
        slot = self._slot.pop(index, None)
        if slot is not None:
            self._index[slot] = -1
            self._free.append(slot)

    def set_estimate(self, index: int, estimated_output: float) -> None:
        self._estimate[self._slot[index]] = estimated_output

    def refresh(self, generated_of: Callable[[np.ndarray], np.ndarray]) -> None:
        """Re-read the output tokens so far of every request in flight and rebuild."""
        live = np.flatnonzero(self._index >= 0)
        g = generated_of(self._index[live]).astype(np.float64) if len(live) else np.zeros(0)
        self._n = len(live)
        self.pending_prompt_tokens = float(self._unshared[live][g == 0].sum())
        _kernels().build(
            self._unshared[live] + g,
            np.where(self._estimate[live] > g, self._estimate[live] - g, np.maximum(g, 1.0)),
            self._r,
            self._f,
            self._suffix_f,
            self._prefix_max,
            self._suffix_max,
        )

    def commit(self, unshared_prompt_tokens: float, estimated_output: float) -> None:
        """Count a request just admitted (call add() too) without re-reading the engine."""
        _kernels().insert(
            self._n,
            unshared_prompt_tokens,
            max(1.0, estimated_output),
            self._r,
            self._f,
            self._suffix_f,
            self._prefix_max,
            self._suffix_max,
        )
        self._n += 1

    def peak(self) -> float:
        """The peak projected KV use (tokens) of the requests counted."""
        if self._n == 0:
            return 0.0
        return float(max(self._suffix_max[0], self._suffix_f[0]))

    def peak_with(self, unshared_prompt_tokens: float, estimated_output: float) -> float:
        """The peak projected KV use (tokens) if this request joined now."""
        return float(
            _kernels().peak_with(
                self._n,
                unshared_prompt_tokens,
                max(1.0, estimated_output),
                self._r,
                self._suffix_f,
                self._prefix_max,
                self._suffix_max,
            )
        )

    def _grow(self) -> None:
        old = len(self._index)
        new = 2 * old
        self._free.extend(range(new - 1, old - 1, -1))
        self._index = np.concatenate((self._index, np.full(new - old, -1, dtype=np.int64)))
        self._unshared = np.concatenate((self._unshared, np.zeros(new - old)))
        self._estimate = np.concatenate((self._estimate, np.zeros(new - old)))
        n = self._n
        for name, size in (("_r", new + 1), ("_f", new + 1), ("_prefix_max", new + 1)):
            grown = np.zeros(size)
            grown[:n] = getattr(self, name)[:n]
            setattr(self, name, grown)
        for name in ("_suffix_f", "_suffix_max"):
            grown = np.zeros(new + 2)
            grown[: n + 1] = getattr(self, name)[: n + 1]
            setattr(self, name, grown)
