"""The compiled step loop of the engine simulator: vLLM v1's scheduler on numpy arrays.

engine.py's module docstring describes the scheduling rules; this module implements them with
numba over the state in Sim, one request at a time (engine.py says why compiled).
run() returns OK or an error code, with the request at fault in queues.meta[ERROR_REQUEST]
(engine.py raises the error: compiled code raises only constant messages).

Everything here and in kv_cache.py / step_kernel.py compiles without numba's reference
counting (_nrt=False): every array comes from Python and outlives the call, and nothing here
allocates or returns an array; numba would otherwise add an atomic increment and decrement per
array per call, which took 70% of the time (40k OpenVid requests: 6.4 s -> 1.8 s).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numba
import numpy as np

from blend.simulate import kv_cache as kv
from blend.simulate import step_kernel as sk

_jit = numba.njit(_nrt=False)  # not cached on its own: see _make_run

# run()'s result: done (nothing running or waiting); a request alone exceeds the cache; stuck;
# paused after a step that finished requests or ran the waiting queue dry (Config.pause_on_finish:
# the caller may add more)
OK, TOO_BIG, STUCK, PAUSED = 0, 1, 2, 3
# Queues.meta fields
RUN_LEN, STACK_LEN, ORDER_POS, SHORT_OF_BLOCKS, ERROR_REQUEST = range(5)
ORDER_LEN, FINISHED_LEN, ADMITTED_LEN = 5, 6, 7  # valid entries of order, finished, admitted
DRAINED = 8  # 1 after a step that scheduled the last waiting request (the queue ran dry)
# Totals.seconds fields (sums over steps, s)
TIME, COMPUTE_BOUND, MEMORY_BOUND, OVERHEAD, WEIGHT_READ, BUSY_NO_WEIGHTS, DRAIN = range(7)
COMPUTE, KV_TRAFFIC, ATTENTION = 7, 8, 9  # compute, KV-traffic, prefill-attention times (s)
# Totals.counts fields
N_COMPUTE_BOUND, N_STEPS, BATCH_SUM, TOKEN_SUM, PREEMPTIONS, PEAK_BLOCKS = range(6)
HIT_TOKENS, QUERY_TOKENS, COMPUTED_TOKENS, KV_DISCARDED = range(6, 10)
KV_BLOCK_STEPS = 10  # KV blocks in use after each step's allocation, summed over steps


class Config(NamedTuple):
    """The simulated engine's settings (SimConfig) and the stepping mode."""

    block_size: int
    max_num_batched_tokens: int
    max_num_seqs: int
    chunked_prefill: bool
    enable_prefix_caching: bool
    skip_ahead: bool
    pause_on_finish: bool  # return PAUSED after each step that finished requests or drained
    #                        the waiting queue (an admission policy's events)


class Requests(NamedTuple):
    """Per request (int64 arrays indexed by request), and per prompt block (flat arrays)."""

    prompt_len: np.ndarray  # tokens
    out_len: np.ndarray  # output tokens it finishes at
    n_full: np.ndarray  # full prompt blocks
    offset: np.ndarray  # its blocks are block_ids[offset[r] : offset[r] + n_full[r]]
    block_ids: np.ndarray  # dense ids of all full prompt blocks (block_hashes.py)
    held: np.ndarray  # bool, parallel to block_ids: its request holds that cached block
    num_tokens: np.ndarray  # prompt + outputs so far
    computed: np.ndarray  # tokens whose KV is computed
    num_blocks: np.ndarray  # KV blocks held (cached and private)
    n_held: np.ndarray  # cached blocks held (the rest are private)
    generated: np.ndarray  # output tokens so far
    blocks_done: np.ndarray  # prompt blocks registered or hit (those held are among them)


class Queues(NamedTuple):
    """Waiting and running requests, and per-step scratch."""

    # the order requests arrive in: order[meta[ORDER_POS]:meta[ORDER_LEN]] wait, never started;
    # an online caller appends to it between run() calls
    order: np.ndarray
    stack: np.ndarray  # preempted requests waiting; the last one heads the waiting queue
    run: np.ndarray  # running requests in admission order (this step's admissions appended)
    grant: np.ndarray  # tokens scheduled this step, parallel to run
    scratch: np.ndarray  # int64, as long as run
    finished: np.ndarray  # requests in the order they finished: [:meta[FINISHED_LEN]]
    admitted: np.ndarray  # requests in the order they were first scheduled: [:meta[ADMITTED_LEN]]
    meta: np.ndarray  # int64, fields RUN_LEN ... ADMITTED_LEN


class Totals(NamedTuple):
    seconds: np.ndarray  # float64, fields TIME ... ATTENTION
    counts: np.ndarray  # int64, fields N_COMPUTE_BOUND ... KV_BLOCK_STEPS


def new_queues(order: np.ndarray, max_running: int, n_requests: int | None = None) -> Queues:
    """Every request of `order` (int64) waiting, room for max_running running ones.

    n_requests (default len(order)) sizes the queues for an online caller that starts with a
    partial order and appends the rest (into queues.order, growing meta[ORDER_LEN]).
    """
    n = len(order) if n_requests is None else n_requests
    meta = np.zeros(DRAINED + 1, dtype=np.int64)
    meta[ORDER_LEN] = len(order)
    full_order = np.zeros(n, dtype=np.int64)
    full_order[: len(order)] = order
    return Queues(
        order=full_order,
        stack=np.zeros(n, dtype=np.int64),
        run=np.zeros(max_running, dtype=np.int64),
        grant=np.zeros(max_running, dtype=np.int64),
        scratch=np.zeros(max_running, dtype=np.int64),
        finished=np.zeros(n, dtype=np.int64),
        admitted=np.zeros(n, dtype=np.int64),
        meta=meta,
    )


def new_totals() -> Totals:
    return Totals(np.zeros(ATTENTION + 1), np.zeros(KV_BLOCK_STEPS + 1, dtype=np.int64))


class Sim(NamedTuple):
    config: Config
    cost: np.ndarray  # step_kernel.cost_constants
    requests: Requests
    pool: kv.BlockPool
    queues: Queues
    totals: Totals


def _make_run(fingerprint: int) -> Callable[[Sim], int]:
    """The compiled entry point, cached on disk under a key that covers the modules it calls.

    numba's cache checks only the cached function's own file: run() compiles the helpers below
    and kv_cache.py's and step_kernel.py's functions into itself, so a hash of those files is
    put in its closure, which numba's cache key does include. The helpers are not cached on
    their own (a stale helper could be linked into a fresh run()).
    """

    @numba.njit(cache=True, _nrt=False)
    def run(s: Sim) -> int:
        """Simulate until nothing runs or waits (mutates s): OK, PAUSED or an error code."""
        _ = fingerprint
        meta = s.queues.meta
        while meta[RUN_LEN] > 0 or _n_waiting(s) > 0:
            waiting = _n_waiting(s)
            if meta[SHORT_OF_BLOCKS] or not (s.config.skip_ahead and _skip_decodes(s)):
                meta[SHORT_OF_BLOCKS] = 0
                status = _step(s)
                if status != OK:
                    return status
            if waiting > 0 and _n_waiting(s) == 0:
                meta[DRAINED] = 1
            if s.config.pause_on_finish and (meta[FINISHED_LEN] > 0 or meta[DRAINED] > 0):
                return PAUSED
        return OK

    return run  # type: ignore[no-any-return]


def _sources_fingerprint() -> int:
    """A hash of the other compiled modules run() is built from."""
    digest = hashlib.sha256()
    for module in (kv, sk):
        digest.update(Path(str(module.__file__)).read_bytes())
    return int.from_bytes(digest.digest()[:7], "little")


# -- the waiting queue: preempted requests (a stack) in front of the arrival order -----------


def waiting_count(s: Sim) -> int:
    """Requests waiting (preempted or never started), from Python."""
    q = s.queues
    return int(q.meta[STACK_LEN] + q.meta[ORDER_LEN] - q.meta[ORDER_POS])


@_jit
def _n_waiting(s: Sim) -> int:
    q = s.queues
    return q.meta[STACK_LEN] + q.meta[ORDER_LEN] - q.meta[ORDER_POS]


@_jit
def _head(s: Sim) -> int:
    q = s.queues
    if q.meta[STACK_LEN] > 0:
        return q.stack[q.meta[STACK_LEN] - 1]
    return q.order[q.meta[ORDER_POS]]


@_jit
def _pop_head(s: Sim) -> None:
    """Take the head off the waiting queue (a first admission is noted in q.admitted)."""
    q = s.queues
    if q.meta[STACK_LEN] > 0:
        q.meta[STACK_LEN] -= 1
    else:
        q.admitted[q.meta[ADMITTED_LEN]] = q.order[q.meta[ORDER_POS]]
        q.meta[ADMITTED_LEN] += 1
        q.meta[ORDER_POS] += 1


# -- one step --------------------------------------------------------------------------------


@_jit
def _step(s: Sim) -> int:
    """Schedule, cost and advance one step (mutates the state); OK or an error code."""
    q = s.queues
    budget = s.config.max_num_batched_tokens
    status, preempted = _schedule_running(s, budget)
    if status != OK:
        return status
    n_run = q.meta[RUN_LEN]
    for k in range(n_run):
        budget -= q.grant[k]
    n_new = 0 if preempted else _schedule_waiting(s, budget, n_run)
    n_batch = n_run + n_new
    q.meta[RUN_LEN] = n_batch
    _note_peak(s)
    scheduled = False
    for k in range(n_batch):
        scheduled = scheduled or q.grant[k] > 0
    if not scheduled:
        q.meta[ERROR_REQUEST] = _head(s)
        return STUCK
    _charge_step(s, n_batch, n_new > 0)
    _advance(s, n_batch)
    return OK


@_jit
def _schedule_running(s: Sim, budget: int) -> tuple[int, bool]:
    """Tokens for each running request, in order (q.grant); allocates their blocks.

    When the blocks run out at request i, requests are preempted from the back until request
    i fits (or is itself preempted, which ends the step's running phase), as vLLM's loop over
    running requests does; need_cum[k] (in q.scratch) is the blocks requests 0..k need.
    """
    q, rq, bs = s.queues, s.requests, s.config.block_size
    n = q.meta[RUN_LEN]
    if n == 0:
        return OK, False
    need_cum = q.scratch
    before = 0  # tokens wanted by the requests ahead
    total = 0
    for k in range(n):
        r = q.run[k]
        rem = rq.num_tokens[r] - rq.computed[r]
        grant = min(rem, max(0, budget - before))
        before += rem
        q.grant[k] = grant
        total += max(_ceil_div(rq.computed[r] + grant, bs) - rq.num_blocks[r], 0)
        need_cum[k] = total
    kept = n
    preempted = False
    while need_cum[kept - 1] > kv.num_free(s.pool):
        first_short = np.searchsorted(need_cum[:n], kv.num_free(s.pool), side="right")
        victim = q.run[kept - 1]
        if first_short == 0 and kept == 1:
            q.meta[ERROR_REQUEST] = victim
            return TOO_BIG, preempted
        kept -= 1
        _preempt(s, victim)
        preempted = True
        if kept == first_short:  # the short request itself was preempted
            break
    q.meta[RUN_LEN] = kept
    kv.allocate(s.pool, need_cum[kept - 1])
    for k in range(kept):
        r = q.run[k]
        rq.num_blocks[r] += need_cum[k] - (need_cum[k - 1] if k else 0)
        _register_prompt_blocks(s, r, q.grant[k])
    return OK, preempted


@_jit
def _preempt(s: Sim, r: int) -> None:
    """Free r's blocks and put it at the front of the queue (recompute policy)."""
    q, rq = s.queues, s.requests
    _free_blocks(s, r)
    s.totals.counts[KV_DISCARDED] += rq.computed[r]  # to be computed again
    rq.computed[r] = 0
    rq.blocks_done[r] = 0
    q.stack[q.meta[STACK_LEN]] = r
    q.meta[STACK_LEN] += 1
    s.totals.counts[PREEMPTIONS] += 1


@_jit
def _schedule_waiting(s: Sim, budget: int, n_run: int) -> int:
    """Admit waiting requests strictly in order while they fit, after the n_run running ones;
    returns how many."""
    q = s.queues
    n_new = 0
    while budget > 0 and _n_waiting(s) > 0 and n_run + n_new < s.config.max_num_seqs:
        r = _head(s)
        fits, hit, grant, new_blocks = _try_admission(s, r, budget)
        if not fits:
            break
        _pop_head(s)
        _admit(s, r, hit, grant, new_blocks)
        q.run[n_run + n_new] = r
        q.grant[n_run + n_new] = grant
        n_new += 1
        budget -= grant
    return n_new


@_jit
def _try_admission(s: Sim, r: int, budget: int) -> tuple[bool, int, int, int]:
    """Whether r can start now with `budget` tokens, its hit blocks, grant and new blocks;
    changes nothing."""
    rq, cfg, bs = s.requests, s.config, s.config.block_size
    blocks = rq.block_ids[rq.offset[r] : rq.offset[r] + rq.n_full[r]]
    hit = 0
    if cfg.enable_prefix_caching:
        # At least one token is computed, to sample from (vLLM: num_tokens - 1).
        hit = kv.longest_hit(s.pool, blocks, (rq.num_tokens[r] - 1) // bs)
    start = hit * bs
    new_tokens = rq.num_tokens[r] - start
    if not cfg.chunked_prefill and new_tokens > budget:
        return False, 0, 0, 0
    grant = min(new_tokens, budget)
    new_blocks = _ceil_div(start + grant, bs) - hit
    if new_blocks > kv.num_free(s.pool) - kv.num_evictable(s.pool, blocks[:hit]):
        return False, 0, 0, 0
    return True, hit, grant, new_blocks


@_jit
def _admit(s: Sim, r: int, hit: int, grant: int, new_blocks: int) -> None:
    rq, bs = s.requests, s.config.block_size
    kv.touch(s.pool, rq.block_ids[rq.offset[r] : rq.offset[r] + hit])
    rq.held[rq.offset[r] : rq.offset[r] + hit] = True
    rq.n_held[r] = hit
    kv.allocate(s.pool, new_blocks)
    rq.num_blocks[r] = hit + new_blocks
    rq.computed[r] = hit * bs
    rq.blocks_done[r] = hit
    s.totals.counts[HIT_TOKENS] += hit * bs
    s.totals.counts[QUERY_TOKENS] += rq.num_tokens[r]
    _register_prompt_blocks(s, r, grant)


@_jit
def _register_prompt_blocks(s: Sim, r: int, grant: int) -> None:
    """Make prompt blocks completed by this step's tokens shareable at once (vLLM v1)."""
    rq = s.requests
    upto = min((rq.computed[r] + grant) // s.config.block_size, rq.n_full[r])
    for i in range(rq.blocks_done[r], upto):
        at = rq.offset[r] + i
        if kv.register(s.pool, rq.block_ids[at]):
            rq.held[at] = True
            rq.n_held[r] += 1
    rq.blocks_done[r] = max(rq.blocks_done[r], upto)


@_jit
def _charge_step(s: Sim, n_batch: int, admitted: bool) -> None:
    q, rq = s.queues, s.requests
    n_prefill = n_decode = n_scheduled = 0
    decode_kv = prefill_kv = 0
    attention = 0.0
    for k in range(n_batch):
        r, grant = q.run[k], q.grant[k]
        start = rq.computed[r]
        if grant == 1 and start >= rq.prompt_len[r]:
            n_decode += 1
            decode_kv += start
        elif grant > 0:
            n_prefill += grant
            attention += sk.attention_flops(s.cost, grant, start)
            prefill_kv += start + 2 * grant
        if grant > 0:
            n_scheduled += 1
    cost = sk.step(
        s.cost,
        n_prefill,
        n_decode,
        float(decode_kv + 2 * n_decode),
        attention,
        float(prefill_kv),
    )
    _add(s, cost, 1, n_scheduled, n_prefill + n_decode, admitted)
    s.totals.counts[KV_BLOCK_STEPS] += kv.num_used(s.pool)


@_jit
def _add(
    s: Sim,
    cost: tuple[float, float, float, int, float, float, float, float, float, float],
    n_steps: int,
    n_requests: int,
    n_tokens: int,
    admitted: bool,
) -> None:
    """Add a step's (or a decode run's) cost and counts to the totals."""
    seconds, counts = s.totals.seconds, s.totals.counts
    seconds[TIME] += cost[sk.TOTAL]
    seconds[COMPUTE_BOUND] += cost[sk.COMPUTE_BOUND]
    seconds[MEMORY_BOUND] += cost[sk.MEMORY_BOUND]
    seconds[OVERHEAD] += cost[sk.OVERHEAD]
    seconds[WEIGHT_READ] += cost[sk.WEIGHT_READ]
    seconds[BUSY_NO_WEIGHTS] += cost[sk.BUSY_NO_WEIGHTS]
    seconds[COMPUTE] += cost[sk.COMPUTE_S]
    seconds[KV_TRAFFIC] += cost[sk.KV_S]
    seconds[ATTENTION] += cost[sk.ATTENTION_S]
    # the drain: steps after the last one that admitted a request
    seconds[DRAIN] = 0.0 if admitted else seconds[DRAIN] + cost[sk.TOTAL]
    counts[N_COMPUTE_BOUND] += cost[sk.N_COMPUTE_BOUND]
    counts[N_STEPS] += n_steps
    counts[BATCH_SUM] += n_requests
    counts[TOKEN_SUM] += n_tokens
    counts[COMPUTED_TOKENS] += n_tokens


@_jit
def _advance(s: Sim, n_batch: int) -> None:
    """Apply the step's tokens; sample where a request caught up; retire finished ones."""
    q, rq = s.queues, s.requests
    for k in range(n_batch):
        r, grant = q.run[k], q.grant[k]
        rq.computed[r] += grant
        if grant > 0 and rq.computed[r] == rq.num_tokens[r]:
            rq.generated[r] += 1
            rq.num_tokens[r] += 1
    _retire(s, n_batch)


@_jit
def _retire(s: Sim, n_batch: int) -> None:
    """Free the finished requests' blocks (in running order) and drop them from the run."""
    q, rq = s.queues, s.requests
    kept = 0
    for k in range(n_batch):
        r = q.run[k]
        if rq.generated[r] >= rq.out_len[r]:
            _free_blocks(s, r)
            q.finished[q.meta[FINISHED_LEN]] = r
            q.meta[FINISHED_LEN] += 1
        else:
            q.run[kept] = r
            kept += 1
    q.meta[RUN_LEN] = kept


@_jit
def _free_blocks(s: Sim, r: int) -> None:
    rq = s.requests
    lo, done = rq.offset[r], rq.blocks_done[r]
    private = rq.num_blocks[r] - rq.n_held[r]
    kv.free(s.pool, rq.block_ids[lo : lo + done], rq.held[lo : lo + done], private)
    rq.n_held[r] = 0
    rq.num_blocks[r] = 0


@_jit
def _note_peak(s: Sim) -> None:
    counts = s.totals.counts
    counts[PEAK_BLOCKS] = max(counts[PEAK_BLOCKS], kv.num_used(s.pool))


@_jit
def _ceil_div(a: int, b: int) -> int:
    return (a + b - 1) // b


@_jit
def _ceil_sum(n: int, b: int) -> int:
    """sum of ceil(x / b) for x = 1 .. n."""
    q, r = n // b, n % b
    return b * q * (q + 1) // 2 + r * (q + 1)


# -- skip-ahead ------------------------------------------------------------------------------


@_jit
def _skip_decodes(s: Sim) -> bool:
    """Advance a run of identical decode-only steps at once; False if none applies now.

    Applies when every running request is decoding and the waiting head cannot start; both
    stay true until a request finishes or the free blocks run out, since decodes only take
    blocks (a head blocked for lack of blocks or hits stays blocked).
    """
    q, rq, cfg = s.queues, s.requests, s.config
    n = q.meta[RUN_LEN]
    if n == 0 or n > cfg.max_num_batched_tokens:
        return False
    for k in range(n):
        r = q.run[k]
        if rq.num_tokens[r] - rq.computed[r] != 1 or rq.computed[r] < rq.prompt_len[r]:
            return False
    budget = cfg.max_num_batched_tokens - n
    if (
        _n_waiting(s) > 0
        and budget > 0
        and n < cfg.max_num_seqs
        and _try_admission(s, _head(s), budget)[0]
    ):
        return False
    steps, short_of_blocks = _decode_steps_that_fit(s, n)
    if steps >= 1:
        _advance_decodes(s, n, steps)
    # Out of blocks, the next step preempts: it cannot be skipped, no need to look again.
    q.meta[SHORT_OF_BLOCKS] = 1 if short_of_blocks else 0
    return steps >= 1


@_jit
def _decode_steps_that_fit(s: Sim, n: int) -> tuple[int, bool]:
    """Most decode steps (up to the first finish) whose new blocks fit in the free ones, and
    whether the blocks (rather than a finish) are the limit.

    A running request holds exactly ceil(computed / bs) blocks, so it takes its next block at
    step o = held * bs - computed + 1 (1 <= o <= bs) and one more every bs steps after: the
    (free + 1)-th block of all requests is taken at step (free // n) * bs + the (free % n)-th
    smallest o, and the steps before it fit.
    """
    q, rq, bs = s.queues, s.requests, s.config.block_size
    limit = rq.out_len[q.run[0]] - rq.generated[q.run[0]]
    first = q.scratch[:n]
    for k in range(n):
        r = q.run[k]
        limit = min(limit, rq.out_len[r] - rq.generated[r])
        first[k] = rq.num_blocks[r] * bs - rq.computed[r] + 1
    free = kv.num_free(s.pool)
    short_at = (free // n) * bs + _kth_smallest(first, free % n)
    return min(limit, short_at - 1), short_at - 1 < limit


@_jit
def _kth_smallest(a: np.ndarray, k: int) -> int:
    """The k-th smallest (0-based) of a, which it reorders (quickselect, in place)."""
    lo, hi = 0, len(a) - 1
    while lo < hi:
        pivot = a[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return a[k]
    return a[k]


@_jit
def _advance_decodes(s: Sim, n: int, steps: int) -> None:
    q, rq, bs = s.queues, s.requests, s.config.block_size
    context = 0
    need = 0
    for k in range(n):
        r = q.run[k]
        context += rq.computed[r]
        need += max(_ceil_div(rq.computed[r] + steps, bs) - rq.num_blocks[r], 0)
    cost = sk.decode_run(s.cost, n, float(context + 2 * n), steps)
    _add(s, cost, steps, n * steps, n * steps, False)
    # blocks in use after each step's allocation: step j holds ceil((computed + j + 1) / bs)
    # blocks of each request, which held ceil(computed / bs) before the run
    block_steps = steps * kv.num_used(s.pool)
    for k in range(n):
        r = q.run[k]
        c = rq.computed[r]
        block_steps += _ceil_sum(c + steps, bs) - _ceil_sum(c, bs) - steps * rq.num_blocks[r]
    s.totals.counts[KV_BLOCK_STEPS] += block_steps
    kv.allocate(s.pool, need)
    for k in range(n):
        r = q.run[k]
        rq.num_blocks[r] = max(rq.num_blocks[r], _ceil_div(rq.computed[r] + steps, bs))
        rq.computed[r] += steps
        rq.num_tokens[r] += steps
        rq.generated[r] += steps
    _note_peak(s)
    _retire(s, n)


run = _make_run(_sources_fingerprint())
