"""Compiled kernels of kv_projection.py (see its docstring for the arrays and the invariant).

Arrays (n valid entries): r ascending (remaining steps), f (KV tokens now) in the same order,
suffix_f[k] = sum f[k:n] (suffix_f[n] = 0), T_k = suffix_f[s_k] + (r_k - 1) * (n - s_k) with
s_k the first position whose r exceeds r_k - 1, prefix_max[k] = max_{j <= k} T_j + r_j - 1,
suffix_max[k] = max_{j >= k} T_j (suffix_max[n] = 0).
"""

from __future__ import annotations

import numba
import numpy as np

_jit = numba.njit(cache=True)


@_jit
def _finish(
    n: int,
    r: np.ndarray,
    suffix_f: np.ndarray,
    prefix_max: np.ndarray,
    suffix_max: np.ndarray,
) -> None:
    """Fill prefix_max and suffix_max from r[:n] and suffix_f[:n + 1]."""
    best = -np.inf
    start = 0
    for k in range(n):
        tau = r[k] - 1.0
        while start < n and r[start] <= tau:
            start += 1
        t_k = suffix_f[start] + tau * (n - start)
        suffix_max[k] = t_k
        best = max(best, t_k + tau)
        prefix_max[k] = best
    suffix_max[n] = 0.0
    for k in range(n - 1, -1, -1):
        suffix_max[k] = max(suffix_max[k], suffix_max[k + 1])


@_jit
def build(
    f_in: np.ndarray,
    r_in: np.ndarray,
    r: np.ndarray,
    f: np.ndarray,
    suffix_f: np.ndarray,
    prefix_max: np.ndarray,
    suffix_max: np.ndarray,
) -> None:
    """Sort (f_in, r_in) by r into r and f and fill the derived arrays."""
    n = len(r_in)
    order = np.argsort(r_in, kind="mergesort")
    for k in range(n):
        r[k] = r_in[order[k]]
        f[k] = f_in[order[k]]
    suffix_f[n] = 0.0
    for k in range(n - 1, -1, -1):
        suffix_f[k] = suffix_f[k + 1] + f[k]
    _finish(n, r, suffix_f, prefix_max, suffix_max)


@_jit
def insert(
    n: int,
    f_new: float,
    r_new: float,
    r: np.ndarray,
    f: np.ndarray,
    suffix_f: np.ndarray,
    prefix_max: np.ndarray,
    suffix_max: np.ndarray,
) -> None:
    """Add one request (after the equal r's) to the n sorted ones; arrays have room."""
    j = np.searchsorted(r[:n], r_new, side="right")
    for k in range(n, j, -1):
        r[k] = r[k - 1]
        f[k] = f[k - 1]
    r[j] = r_new
    f[j] = f_new
    suffix_f[n + 1] = 0.0
    for k in range(n, -1, -1):
        suffix_f[k] = suffix_f[k + 1] + f[k]
    _finish(n + 1, r, suffix_f, prefix_max, suffix_max)


@_jit
def peak_with(
    n: int,
    u: float,
    d: float,
    r: np.ndarray,
    suffix_f: np.ndarray,
    prefix_max: np.ndarray,
    suffix_max: np.ndarray,
) -> float:
    """Peak of T with one more request of f = u, r = d (d >= 1)."""
    tau = d - 1.0
    # its own end: everyone still there at tau, plus itself at u + tau
    j = np.searchsorted(r[:n], tau, side="right")
    peak = suffix_f[j] + tau * (n - j) + u + tau
    peak = max(peak, suffix_f[0] + u)  # now
    if n == 0:
        return peak
    # breakpoints up to its end (r_k - 1 <= tau, i.e. r_k <= d) gain u + their tau
    k = np.searchsorted(r[:n], d, side="right")
    if k > 0:
        peak = max(peak, prefix_max[k - 1] + u)
    return max(peak, suffix_max[k])
