"""Compiled kernels of kv_projection.py (see its docstring for the projection).

Entries (n valid; each holds a + b x tau KV tokens at step tau from now while tau < r): r
ascending (remaining steps), a (KV tokens now) and b (tokens it grows by a step) in the same
order; suffix_a[k] = sum a[k:n], suffix_b[k] = sum b[k:n] (both 0 at n);
T_k = suffix_a[s_k] + (r_k - 1) * suffix_b[s_k] with s_k the first position whose r exceeds
r_k - 1 (the projected KV just before entry k ends); prefix_max[k] = max_{j <= k} T_j + r_j - 1;
suffix_max[k] = max_{j >= k} T_j (suffix_max[n] = 0).
"""

from __future__ import annotations

import math

import numba
import numpy as np

_jit = numba.njit(cache=True)


@_jit
def _finish(
    n: int,
    r: np.ndarray,
    suffix_a: np.ndarray,
    suffix_b: np.ndarray,
    prefix_max: np.ndarray,
    suffix_max: np.ndarray,
) -> None:
    """Fill prefix_max and suffix_max from r[:n] and the suffix sums."""
    best = -np.inf
    start = 0
    for k in range(n):
        tau = r[k] - 1.0
        while start < n and r[start] <= tau:
            start += 1
        t_k = suffix_a[start] + tau * suffix_b[start]
        suffix_max[k] = t_k
        best = max(best, t_k + tau)
        prefix_max[k] = best
    suffix_max[n] = 0.0
    for k in range(n - 1, -1, -1):
        suffix_max[k] = max(suffix_max[k], suffix_max[k + 1])


@_jit
def _suffix_sums(n: int, a: np.ndarray, b: np.ndarray, sf: np.ndarray, sw: np.ndarray) -> None:
    sf[n] = 0.0
    sw[n] = 0.0
    for k in range(n - 1, -1, -1):
        sf[k] = sf[k + 1] + a[k]
        sw[k] = sw[k + 1] + b[k]


@_jit
def build(
    a_in: np.ndarray,
    r_in: np.ndarray,
    b_in: np.ndarray,
    r: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    suffix_a: np.ndarray,
    suffix_b: np.ndarray,
    prefix_max: np.ndarray,
    suffix_max: np.ndarray,
) -> None:
    """Sort the entries (a = a_in, b = b_in, r_in) by r into r, a, b; fill the rest."""
    n = len(r_in)
    order = np.argsort(r_in, kind="mergesort")
    for k in range(n):
        r[k] = r_in[order[k]]
        b[k] = b_in[order[k]]
        a[k] = a_in[order[k]]
    _suffix_sums(n, a, b, suffix_a, suffix_b)
    _finish(n, r, suffix_a, suffix_b, prefix_max, suffix_max)


@_jit
def insert(
    n: int,
    f_new: float,
    r_new: float,
    r: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    suffix_a: np.ndarray,
    suffix_b: np.ndarray,
    prefix_max: np.ndarray,
    suffix_max: np.ndarray,
) -> None:
    """Add one entry (a = f_new, b = 1) after the equal r's of the n sorted ones (with room)."""
    j = np.searchsorted(r[:n], r_new, side="right")
    for k in range(n, j, -1):
        r[k] = r[k - 1]
        a[k] = a[k - 1]
        b[k] = b[k - 1]
    r[j] = r_new
    a[j] = f_new
    b[j] = 1.0
    _suffix_sums(n + 1, a, b, suffix_a, suffix_b)
    _finish(n + 1, r, suffix_a, suffix_b, prefix_max, suffix_max)


@_jit
def peak_with(
    n: int,
    u: float,
    d: float,
    r: np.ndarray,
    suffix_a: np.ndarray,
    suffix_b: np.ndarray,
    prefix_max: np.ndarray,
    suffix_max: np.ndarray,
    while_only: bool = False,
) -> float:
    """Peak of T with one more entry of a = u, b = 1, r = d (d >= 1); with `while_only`, the
    peak over now .. its end only (the part of the future the entry changes)."""
    tau = d - 1.0
    # its own end: everyone still there at tau, plus itself at u + tau
    j = np.searchsorted(r[:n], tau, side="right")
    peak = suffix_a[j] + tau * suffix_b[j] + u + tau
    peak = max(peak, suffix_a[0] + u)  # now
    if n == 0:
        return peak
    # breakpoints up to its end (r_k - 1 <= tau, i.e. r_k <= d) gain u + their tau
    k = np.searchsorted(r[:n], d, side="right")
    if k > 0:
        peak = max(peak, prefix_max[k - 1] + u)
    if while_only:  # the later breakpoints are the same with or without it
        return peak
    return max(peak, suffix_max[k])


@_jit
def prefix_entries(
    own_kv: np.ndarray,
    prompt_kv: np.ndarray,
    shared: np.ndarray,
    r: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The KV of m requests in flight (in sequence order) as growing and fixed entries.

    own_kv[i]: tokens request i holds beyond its prompt (its output so far); prompt_kv[i]: its
    prompt's KV tokens; shared[i] (i >= 1): prompt KV tokens requests i - 1 and i share (the
    same blocks, held once, until the last of those holding them ends); r: (m, q) remaining
    steps, q equal-weight quantiles per request. Each request holds its unshared prompt and
    its output (growing by one a step) until its own end; each run of requests sharing a
    prefix holds the blocks of that prefix below their common depth until the last of them
    ends (per quantile, the latest of their quantiles). Returns (a, b, r) per entry.
    """
    m, q = r.shape
    n_max = 2 * m * q
    a_out = np.zeros(n_max)
    b_out = np.zeros(n_max)
    r_out = np.zeros(n_max)
    weight = 1.0 / q
    count = 0
    depth = np.zeros(m + 1)  # stack of open runs: shared depth (tokens) and latest end
    latest = np.zeros((m + 1, q))
    top = 0  # depth[0] = 0: the root, never emitted
    for i in range(m):
        left = shared[i] if i > 0 else 0.0
        right = shared[i + 1] if i + 1 < m else 0.0
        own_prompt = prompt_kv[i] - max(left, right)
        for c in range(q):
            a_out[count] = weight * (own_prompt + own_kv[i])
            b_out[count] = weight
            r_out[count] = r[i, c]
            count += 1
            latest[top, c] = max(latest[top, c], r[i, c])
        carried = r[i].copy()  # the latest ends of the runs closed here, and its own
        while depth[top] > right:
            parent = max(right, depth[top - 1])
            for c in range(q):
                a_out[count] = weight * (depth[top] - parent)
                r_out[count] = latest[top, c]
                count += 1
                carried[c] = max(carried[c], latest[top, c])
            top -= 1
            if depth[top] >= right:
                for c in range(q):
                    latest[top, c] = max(latest[top, c], carried[c])
        if depth[top] < right:
            top += 1
            depth[top] = right
            for c in range(q):
                latest[top, c] = carried[c]
    return a_out[:count], b_out[:count], r_out[:count]


@_jit
def min_tree(values: np.ndarray) -> np.ndarray:
    """A segment tree for range minima over `values` (leaves at [size, size + n))."""
    size = 1
    while size < len(values):
        size *= 2
    tree = np.full(2 * size, np.inf)
    tree[size : size + len(values)] = values
    for k in range(size - 1, 0, -1):
        tree[k] = min(tree[2 * k], tree[2 * k + 1])
    return tree


@_jit
def adjacent_minima(tree: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """For ascending positions p_0 < p_1 < ...: out[i] = min(values[p_{i-1} + 1 .. p_i])
    (out[0] = 0), the prefix each shares with the one before it when values are the shared
    prefixes of neighbours."""
    size = len(tree) // 2
    out = np.zeros(len(positions))
    for i in range(1, len(positions)):
        lo = positions[i - 1] + 1 + size
        hi = positions[i] + 1 + size  # exclusive
        best = np.inf
        while lo < hi:
            if lo & 1:
                best = min(best, tree[lo])
                lo += 1
            if hi & 1:
                hi -= 1
                best = min(best, tree[hi])
            lo //= 2
            hi //= 2
        out[i] = best
    return out


# Acklam's rational approximation of the standard normal quantile (relative error < 1.2e-9),
# refined by one Halley step against erfc to full double precision
_A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
      1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)  # fmt: skip
_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
      6.680131188771972e01, -1.328068155288572e01)  # fmt: skip
_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
      -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)  # fmt: skip
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00,
      3.754408661907416e00)  # fmt: skip


@_jit
def ndtr(x: float) -> float:
    """P(Z <= x) for a standard normal Z."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


@_jit
def ndtri(p: float) -> float:
    """The standard normal quantile of p in (0, 1) (the upper half by symmetry: 1 - p is
    exact there, p itself near 1 is not)."""
    if p > 0.5:
        return -_lower_ndtri(1.0 - p)
    return _lower_ndtri(p)


@_jit
def _lower_ndtri(p: float) -> float:
    """ndtri for p in (0, 0.5]."""
    if p < 0.02425:
        q = math.sqrt(-2.0 * math.log(p))
        x = (((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5]) / (
            (((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1.0
        )
    else:
        q = p - 0.5
        r = q * q
        x = (
            (((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5])
            * q
            / (((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1.0)
        )
    e = ndtr(x) - p  # Halley's step
    u = e * math.sqrt(2.0 * math.pi) * math.exp(x * x / 2.0)
    return x - u / (1.0 + x * u / 2.0)


@_jit
def _remaining_row(
    estimate: float, spread: float, g: float, midpoints: np.ndarray, out: np.ndarray
) -> None:
    """One request's remaining steps per quantile into out (kv_projection.remaining_steps)."""
    q = len(midpoints)
    d = max(estimate, 1.0)
    if spread <= 0.0:
        point = d - g if d > g else d  # past a point estimate: another estimate's worth
        for c in range(q):
            out[c] = point
        return
    sigma = max(spread, 1e-9)
    mu = math.log(d) - sigma * sigma / 2.0  # the lognormal whose mean is the estimate
    survived = ndtr((math.log(max(g, 1e-9)) - mu) / sigma)  # P(length <= g)
    for c in range(q):
        p = min(survived + midpoints[c] * (1.0 - survived), 1.0 - 1e-12)
        out[c] = max(math.ceil(math.exp(mu + sigma * ndtri(p)) - g), 1.0)


@_jit
def remaining_steps(
    estimate: np.ndarray, spread: np.ndarray, generated: np.ndarray, midpoints: np.ndarray
) -> np.ndarray:
    """kv_projection.remaining_steps, compiled: (requests, quantiles) remaining steps."""
    m, q = len(estimate), len(midpoints)
    out = np.empty((m, q))
    for i in range(m):
        _remaining_row(estimate[i], spread[i], float(generated[i]), midpoints, out[i])
    return out


_MEMO_G = 1 << 31  # a memo key is pair x _MEMO_G + g (g: whole tokens below this)


@_jit
def _memo_slot(keys: np.ndarray, key: int) -> int:
    """The memo's slot of `key` (open addressing, linear probing): where it is, or the empty
    slot (-1) where it would go."""
    mask = len(keys) - 1
    h = (key * 0x9E3779B1) & mask  # Fibonacci hashing; wraps as int64, kept non-negative
    while keys[h] != -1 and keys[h] != key:
        h = (h + 1) & mask
    return h


@_jit
def own_entries(
    live: np.ndarray,
    g: np.ndarray,
    shared: np.ndarray,
    prompt_kv: np.ndarray,
    estimate: np.ndarray,
    spread: np.ndarray,
    prefill: np.ndarray,
    pair: np.ndarray,
    tracked: np.ndarray,
    lifetime: np.ndarray,
    midpoints: np.ndarray,
    memo_keys: np.ndarray,
    memo_values: np.ndarray,
    memo_count: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """The entries of the requests in flight at slots `live` (in sequence order; g: their
    output tokens so far, shared: the prompt KV tokens each shares with the one before it,
    clamped here to both prompts), as prefix_entries makes them; writes each one's lifetime
    (its latest quantile) and returns (a, b, r, pending, longest): the prompt tokens of those
    with no token yet, and the most steps a `tracked` one has left by its estimate (0 if none).

    Remaining steps depend only on (estimate, spread, g): memoised per (pair, g), `pair`
    numbering the slots' (estimate, spread), so a request reaching a length another of its
    group reached reuses the same numbers (computed by the same code: bit for bit). The memo:
    int64 keys (-1: empty; a power of two of them), (keys, quantiles) values, and the count
    of keys held in memo_count[0]; filled to three quarters at most."""
    m, q = len(live), len(midpoints)
    r = np.empty((m, q))
    prompt = np.empty(m)
    pending = 0.0  # whole tokens: the sum is exact in any order
    longest = 0.0
    seen = False
    for i in range(m):
        s = live[i]
        gi = g[i]
        prompt[i] = prompt_kv[s]
        if gi == 0.0:
            pending += prefill[s]
        if spread[s] > 0.0 and pair[s] >= 0 and 0.0 <= gi < _MEMO_G and gi == math.floor(gi):
            key = pair[s] * _MEMO_G + np.int64(gi)
            h = _memo_slot(memo_keys, key)
            if memo_keys[h] == key:
                r[i] = memo_values[h]
            else:
                _remaining_row(estimate[s], spread[s], gi, midpoints, r[i])
                if 4 * memo_count[0] < 3 * len(memo_keys):
                    memo_keys[h] = key
                    memo_values[h] = r[i]
                    memo_count[0] += 1
        else:
            _remaining_row(estimate[s], spread[s], gi, midpoints, r[i])
        latest = r[i, 0]
        for c in range(1, q):
            latest = max(latest, r[i, c])
        lifetime[s] = latest
        if tracked[s]:
            left = estimate[s] - gi
            longest = left if not seen else max(longest, left)
            seen = True
    if m > 0:
        shared[0] = 0.0
    for i in range(1, m):
        shared[i] = min(shared[i], min(prompt[i], prompt[i - 1]))
    a, b, r_entries = prefix_entries(g, prompt, shared, r)
    return a, b, r_entries, pending, longest
