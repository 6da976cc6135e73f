"""The compiled event loop of the fleet simulator: n engines in the paper's slot model.

Invariant: every job is in exactly one place (not yet arrived, a waiting queue, a prefill
slot, a decode buffer, a decode slot, done, or abandoned), and job_state says which; the
per-queue counts, the prefills in service X and the engines' slot counts always agree with it.

Events, earliest first (engine ends win ties, then arrivals): an engine ends an iteration, a
request arrives, a waiting request abandons. Each engine steps its own iterations: a mixed
iteration (a prefill in its prefill slot) takes tau and gives the prefill slot C tokens (a
prefill that finishes passes what is left of the C to the next one the gate admits, as a
chunked-prefill budget does) and every decode slot one token; a decode-only iteration takes
1 / gamma. Work placed on an engine in the middle of its iteration starts at the next one.
Abandonment is memoryless (rate theta per waiting request), so a queue's next abandonment is
drawn from its current size and redrawn whenever the size changes; a random waiting request
of that queue leaves.

Compiled with numba because n = 500 engines for ~10 minutes of simulated time is ~10^7
iterations; fleet.simulate builds the state (FleetState) and reads the result back.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

_jit = numba.njit(cache=True)

INF = np.inf
# job_state
FUTURE, WAITING, PREFILLING, BUFFERED, DECODING, DONE, ABANDONED = range(7)
# queue rows: decode buffers (any engine, solo engines only, mixed engines only), prefill queue
BUF_ANY, BUF_SOLO, BUF_MIXED, PREFILL_QUEUE = range(4)
# engine modes, and the rows of the engine sets (free decode slot on a mixed / solo engine;
# free prefill slot)
MIXED, SOLO = 0, 1
FREE_PREFILL = 2
# gates (which class a free prefill slot takes next)
GATE_TARGET, GATE_PRIORITY, GATE_FCFS = range(3)
# decode routers (where a finished prefill decodes)
ROUTE_SOLO_FIRST, ROUTE_SPLIT, ROUTE_LOCAL = range(3)
# ints fields
N_ENGINES, SLOTS, CHUNK, N_CLASSES, GATE, ROUTER = range(6)
NEXT_ARRIVAL, SAMPLE_INDEX, PROCESSING, HEAP_SIZE, DEC_ON_MIXED, DEC_ON_SOLO = range(6, 12)
HOLD_WHILE_BUFFERED, BUFFERED_TOTAL, REOPENED = 12, 13, 14
N_INTS = 15
# floats fields
TAU_MIXED, TAU_SOLO, HORIZON, WARMUP, SAMPLE_DT, NEXT_SAMPLE = range(6)
N_FLOATS = 6
# counts columns (per class)
ARRIVED, PREFILLED, COMPLETED, ABANDONED_WAITING, ABANDONED_BUFFER = range(5)
ARRIVED_MEASURED, COMPLETED_MEASURED = 5, 6
N_COUNTS = 7
# money columns (per class, measured after the warm-up)
BUNDLED, PREFILL_VALUE, DECODE_VALUE, TPOT_SUM = range(4)
N_MONEY = 4


class FleetState(NamedTuple):
    """All of the simulation's state (mutated by run)."""

    ints: np.ndarray  # int64[N_INTS]: settings and scalar counters (fields above)
    floats: np.ndarray  # float64[N_FLOATS]: times (s)
    # per class
    prompt: np.ndarray  # int64: prompt tokens
    output: np.ndarray  # int64: output tokens
    value: np.ndarray  # float64: c_p P + c_d D, earned when the decode finishes
    prefill_value: np.ndarray  # float64: c_p P
    decode_value: np.ndarray  # float64: c_d D
    theta: np.ndarray  # float64: abandonment rate of a waiting request (1/s)
    gate_target: np.ndarray  # float64: n x*_i (prefills in service the gate aims at)
    queue_target: np.ndarray  # float64: n q*_p,i (the gate's tie-break)
    priority: np.ndarray  # float64: the priority gate's key (larger first)
    solo_probability: np.ndarray  # float64: the split router's chance of the solo pool
    admissible: np.ndarray  # int64: 0 where the gate never admits the class
    # per job (sorted by arrival time)
    arrival: np.ndarray  # float64: arrival time (s)
    job_class: np.ndarray  # int64
    job_state: np.ndarray  # int64 (FUTURE..ABANDONED)
    queued_at: np.ndarray  # float64: when it entered its current queue (s)
    decode_start: np.ndarray  # float64: when it took a decode slot (s)
    # queues: one FIFO region per (row, class), class_offset[i] .. class_offset[i + 1]
    class_offset: np.ndarray  # int64[K + 1]
    queue_jobs: np.ndarray  # int64[4, N]
    queue_head: np.ndarray  # int64[4, K]: absolute positions in queue_jobs
    queue_tail: np.ndarray  # int64[4, K]
    queue_count: np.ndarray  # int64[4, K]: live entries
    next_abandon: np.ndarray  # float64[4, K]
    in_prefill: np.ndarray  # int64[K]: X_i
    # engines
    mode: np.ndarray  # int64[n]: MIXED or SOLO
    decode_cap: np.ndarray  # int64[n]: decode slots
    prefill_job: np.ndarray  # int64[n]: -1 when free
    prefill_left: np.ndarray  # int64[n]: prompt tokens still to prefill
    slot_job: np.ndarray  # int64[n, B]: -1 when free
    slot_left: np.ndarray  # int64[n, B]: output tokens still to decode
    slot_fresh: np.ndarray  # int64[n, B]: 1: placed mid-iteration, starts next iteration
    n_decoding: np.ndarray  # int64[n]
    busy: np.ndarray  # int64[n]: 1 while an iteration runs
    iteration_mixed: np.ndarray  # int64[n]: the running iteration is mixed
    heap_time: np.ndarray  # float64[n]: iteration ends (a binary min-heap)
    heap_engine: np.ndarray  # int64[n]
    set_items: np.ndarray  # int64[3, n]: engine sets (rows MIXED, SOLO, FREE_PREFILL)
    set_pos: np.ndarray  # int64[3, n]: position in set_items, -1 when not a member
    set_size: np.ndarray  # int64[3]
    # results
    counts: np.ndarray  # int64[K, N_COUNTS]
    money: np.ndarray  # float64[K, N_MONEY]
    sample_time: np.ndarray  # float64[S]
    sample_waiting: np.ndarray  # int64[S, K]: prefill queue
    sample_buffered: np.ndarray  # int64[S, K]: decode buffers
    sample_prefilling: np.ndarray  # int64[S, K]: X
    sample_decoding: np.ndarray  # int64[S, 2]: decodes on mixed / solo engines


# ---- engine sets and the heap ----


@_jit
def _set_add(s: FleetState, row: int, e: int) -> None:
    if s.set_pos[row, e] >= 0:
        return
    s.set_items[row, s.set_size[row]] = e
    s.set_pos[row, e] = s.set_size[row]
    s.set_size[row] += 1


@_jit
def _set_remove(s: FleetState, row: int, e: int) -> None:
    p = s.set_pos[row, e]
    if p < 0:
        return
    last = s.set_items[row, s.set_size[row] - 1]
    s.set_items[row, p] = last
    s.set_pos[row, last] = p
    s.set_size[row] -= 1
    s.set_pos[row, e] = -1


@_jit
def _set_pick(s: FleetState, row: int) -> int:
    return s.set_items[row, np.random.randint(0, s.set_size[row])]


@_jit
def _heap_push(s: FleetState, t: float, e: int) -> None:
    i = s.ints[HEAP_SIZE]
    s.ints[HEAP_SIZE] += 1
    while i > 0:
        parent = (i - 1) // 2
        if s.heap_time[parent] <= t:
            break
        s.heap_time[i], s.heap_engine[i] = s.heap_time[parent], s.heap_engine[parent]
        i = parent
    s.heap_time[i], s.heap_engine[i] = t, e


@_jit
def _heap_pop(s: FleetState) -> int:
    top = s.heap_engine[0]
    size = s.ints[HEAP_SIZE] - 1
    s.ints[HEAP_SIZE] = size
    t, e = s.heap_time[size], s.heap_engine[size]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and s.heap_time[child + 1] < s.heap_time[child]:
            child += 1
        if s.heap_time[child] >= t:
            break
        s.heap_time[i], s.heap_engine[i] = s.heap_time[child], s.heap_engine[child]
        i = child
    if size > 0:
        s.heap_time[i], s.heap_engine[i] = t, e
    return top


# ---- queues ----


@_jit
def _live_state(row: int) -> int:
    return WAITING if row == PREFILL_QUEUE else BUFFERED


@_jit
def _redraw_abandon(s: FleetState, row: int, c: int, t: float) -> None:
    """Memoryless: the next abandonment of a queue of q requests is Exp(theta q) away."""
    q = s.queue_count[row, c]
    if q > 0 and s.theta[c] > 0:
        s.next_abandon[row, c] = t + np.random.exponential(1.0 / (s.theta[c] * q))
    else:
        s.next_abandon[row, c] = INF


@_jit
def _enqueue(s: FleetState, row: int, j: int, t: float) -> None:
    c = s.job_class[j]
    s.queue_jobs[row, s.queue_tail[row, c]] = j
    s.queue_tail[row, c] += 1
    s.queue_count[row, c] += 1
    s.queued_at[j] = t
    s.job_state[j] = _live_state(row)
    if row != PREFILL_QUEUE:
        s.ints[BUFFERED_TOTAL] += 1
    _redraw_abandon(s, row, c, t)


@_jit
def _head(s: FleetState, row: int, c: int) -> int:
    """The oldest live job of a queue (dead entries at the head are skipped), or -1."""
    if s.queue_count[row, c] == 0:
        return -1
    live = _live_state(row)
    h = s.queue_head[row, c]
    while s.job_state[s.queue_jobs[row, h]] != live:
        h += 1
    s.queue_head[row, c] = h
    return s.queue_jobs[row, h]


@_jit
def _buffer_left(s: FleetState) -> None:
    """A request left a decode buffer: a held gate reopens when the buffers are empty."""
    s.ints[BUFFERED_TOTAL] -= 1
    if s.ints[HOLD_WHILE_BUFFERED] and s.ints[BUFFERED_TOTAL] == 0:
        s.ints[REOPENED] = 1


@_jit
def _dequeue_head(s: FleetState, row: int, c: int, t: float) -> int:
    j = _head(s, row, c)
    s.queue_head[row, c] += 1
    s.queue_count[row, c] -= 1
    _redraw_abandon(s, row, c, t)
    if row != PREFILL_QUEUE:
        _buffer_left(s)
    return j


@_jit
def _compact(s: FleetState, row: int, c: int) -> None:
    """Squeeze the dead entries out of a queue's region (order kept; the tail stays put)."""
    live = _live_state(row)
    write = s.queue_tail[row, c]
    for p in range(s.queue_tail[row, c] - 1, s.queue_head[row, c] - 1, -1):
        j = s.queue_jobs[row, p]
        if s.job_state[j] == live:
            write -= 1
            s.queue_jobs[row, write] = j
    s.queue_head[row, c] = write


@_jit
def _abandon(s: FleetState, row: int, c: int, t: float) -> None:
    """A uniformly random live request of the queue leaves."""
    if s.queue_tail[row, c] - s.queue_head[row, c] > 2 * s.queue_count[row, c] + 32:
        _compact(s, row, c)
    live = _live_state(row)
    head, span = s.queue_head[row, c], s.queue_tail[row, c] - s.queue_head[row, c]
    while True:
        j = s.queue_jobs[row, head + np.random.randint(0, span)]
        if s.job_state[j] == live:
            break
    s.job_state[j] = ABANDONED
    s.queue_count[row, c] -= 1
    s.counts[c, ABANDONED_WAITING if row == PREFILL_QUEUE else ABANDONED_BUFFER] += 1
    _redraw_abandon(s, row, c, t)
    if row != PREFILL_QUEUE:
        _buffer_left(s)


# ---- policies ----


@_jit
def _gate(s: FleetState) -> int:
    """The class a free prefill slot takes next, or -1."""
    gate, best, k = s.ints[GATE], -1, s.ints[N_CLASSES]
    if s.ints[HOLD_WHILE_BUFFERED] and s.ints[BUFFERED_TOTAL] > 0:
        return -1  # a new prefill's decode would only wait behind them
    best_key, best_tie = INF, -INF
    for c in range(k):
        if s.queue_count[PREFILL_QUEUE, c] == 0 or s.admissible[c] == 0:
            continue
        if gate == GATE_TARGET:  # smallest (X_i - n x*_i) / x*_i, ties: largest queue excess
            key = (s.in_prefill[c] - s.gate_target[c]) / s.gate_target[c]
            tie = s.queue_count[PREFILL_QUEUE, c] - s.queue_target[c]
        elif gate == GATE_PRIORITY:  # largest priority first
            key, tie = -s.priority[c], 0.0
        else:  # FCFS: the oldest waiting request of any class
            key, tie = s.queued_at[_head(s, PREFILL_QUEUE, c)], 0.0
        if key < best_key or (key == best_key and tie > best_tie):
            best, best_key, best_tie = c, key, tie
    return best


@_jit
def _oldest_buffered(s: FleetState, row_b: int) -> tuple[int, int]:
    """(row, class) of the oldest request in BUF_ANY or row_b, or (-1, -1)."""
    best_row, best_class, best_t = -1, -1, INF
    for row in (BUF_ANY, row_b):
        for c in range(s.ints[N_CLASSES]):
            if s.queue_count[row, c] > 0:
                t = s.queued_at[_head(s, row, c)]
                if t < best_t:
                    best_row, best_class, best_t = row, c, t
    return best_row, best_class


# ---- engines ----


@_jit
def _sync_sets(s: FleetState, e: int) -> None:
    """Keep e's membership of the free-decode and free-prefill sets true to its slots."""
    local = s.ints[ROUTER] == ROUTE_LOCAL
    if not local and s.n_decoding[e] < s.decode_cap[e]:
        _set_add(s, s.mode[e], e)
    else:
        _set_remove(s, s.mode[e], e)
    takes_prefill = s.mode[e] == MIXED and s.prefill_job[e] < 0
    if local:  # its decode will stay here: admit only with a slot for it
        takes_prefill = takes_prefill and s.n_decoding[e] < s.decode_cap[e]
    if takes_prefill:
        _set_add(s, FREE_PREFILL, e)
    else:
        _set_remove(s, FREE_PREFILL, e)


@_jit
def _start_iteration(s: FleetState, e: int, t: float) -> None:
    """Start e's next iteration at t if it has work (else it sleeps until work comes)."""
    if s.mode[e] == MIXED and s.prefill_job[e] >= 0:
        s.iteration_mixed[e] = 1
        duration = s.floats[TAU_MIXED]
    elif s.n_decoding[e] > 0:
        s.iteration_mixed[e] = 0
        duration = s.floats[TAU_SOLO]
    else:
        return
    s.busy[e] = 1
    _heap_push(s, t + duration, e)


@_jit
def _wake(s: FleetState, e: int, t: float) -> None:
    if s.busy[e] == 0 and s.ints[PROCESSING] != e:
        _start_iteration(s, e, t)


@_jit
def _place_decode(s: FleetState, j: int, e: int, t: float) -> None:
    b = s.ints[SLOTS]
    slot = 0
    while s.slot_job[e, slot] >= 0 and slot < b - 1:
        slot += 1
    s.slot_job[e, slot] = j
    s.slot_left[e, slot] = s.output[s.job_class[j]]
    s.slot_fresh[e, slot] = s.busy[e]
    s.n_decoding[e] += 1
    s.ints[DEC_ON_MIXED + s.mode[e]] += 1
    s.job_state[j] = DECODING
    s.decode_start[j] = t
    _sync_sets(s, e)
    _wake(s, e, t)


@_jit
def _route_decode(s: FleetState, j: int, e: int, t: float) -> None:
    """A finished prefill (on engine e) goes to a decode slot or waits in a decode buffer."""
    router = s.ints[ROUTER]
    if router == ROUTE_LOCAL:
        _place_decode(s, j, e, t)
        return
    if router == ROUTE_SOLO_FIRST:
        for pool in (SOLO, MIXED):
            if s.set_size[pool] > 0:
                _place_decode(s, j, _set_pick(s, pool), t)
                return
        _enqueue(s, BUF_ANY, j, t)
        return
    solo = np.random.random() < s.solo_probability[s.job_class[j]]
    pool = SOLO if solo else MIXED
    if s.set_size[pool] > 0:
        _place_decode(s, j, _set_pick(s, pool), t)
    else:
        _enqueue(s, BUF_SOLO if solo else BUF_MIXED, j, t)


@_jit
def _admit_prefill(s: FleetState, e: int, t: float) -> bool:
    c = _gate(s)
    if c < 0:
        return False
    j = _dequeue_head(s, PREFILL_QUEUE, c, t)
    s.job_state[j] = PREFILLING
    s.prefill_job[e] = j
    s.prefill_left[e] = s.prompt[c]
    s.in_prefill[c] += 1
    _sync_sets(s, e)
    return True


@_jit
def _finish_decode(s: FleetState, e: int, slot: int, t: float) -> None:
    j = s.slot_job[e, slot]
    c = s.job_class[j]
    s.slot_job[e, slot] = -1
    s.n_decoding[e] -= 1
    s.ints[DEC_ON_MIXED + s.mode[e]] -= 1
    s.job_state[j] = DONE
    s.counts[c, COMPLETED] += 1
    if t >= s.floats[WARMUP]:
        s.counts[c, COMPLETED_MEASURED] += 1
        s.money[c, BUNDLED] += s.value[c]
        s.money[c, DECODE_VALUE] += s.decode_value[c]
        s.money[c, TPOT_SUM] += (t - s.decode_start[j]) / s.output[c]


@_jit
def _finish_prefill(s: FleetState, e: int, t: float) -> None:
    j = s.prefill_job[e]
    c = s.job_class[j]
    s.prefill_job[e] = -1
    s.in_prefill[c] -= 1
    s.counts[c, PREFILLED] += 1
    if t >= s.floats[WARMUP]:
        s.money[c, PREFILL_VALUE] += s.prefill_value[c]
    _route_decode(s, j, e, t)


@_jit
def _end_iteration(s: FleetState, e: int, t: float) -> None:
    s.busy[e] = 0
    s.ints[PROCESSING] = e
    for slot in range(s.ints[SLOTS]):  # decodes that ran this iteration move one token
        if s.slot_job[e, slot] < 0:
            continue
        if s.slot_fresh[e, slot]:
            s.slot_fresh[e, slot] = 0
            continue
        s.slot_left[e, slot] -= 1
        if s.slot_left[e, slot] == 0:
            _finish_decode(s, e, slot, t)
    _sync_sets(s, e)
    if s.iteration_mixed[e]:  # the prefill slot's C tokens, passed on as prefills finish
        budget = s.ints[CHUNK]
        while budget > 0 and s.prefill_job[e] >= 0:
            used = min(budget, s.prefill_left[e])
            s.prefill_left[e] -= used
            budget -= used
            if s.prefill_left[e] == 0:
                _finish_prefill(s, e, t)
                _sync_sets(s, e)
                if budget > 0 and s.set_pos[FREE_PREFILL, e] >= 0:
                    _admit_prefill(s, e, t)
    if s.ints[ROUTER] != ROUTE_LOCAL:  # freed decode slots take buffered decodes
        row_b = BUF_SOLO if s.mode[e] == SOLO else BUF_MIXED
        while s.n_decoding[e] < s.decode_cap[e]:
            row, c = _oldest_buffered(s, row_b)
            if row < 0:
                break
            _place_decode(s, _dequeue_head(s, row, c, t), e, t)
    if s.mode[e] == MIXED and s.prefill_job[e] < 0 and s.set_pos[FREE_PREFILL, e] >= 0:
        _admit_prefill(s, e, t)
    s.ints[PROCESSING] = -1
    _start_iteration(s, e, t)


@_jit
def _arrive(s: FleetState, t: float) -> None:
    j = s.ints[NEXT_ARRIVAL]
    s.ints[NEXT_ARRIVAL] += 1
    c = s.job_class[j]
    s.counts[c, ARRIVED] += 1
    if t >= s.floats[WARMUP]:
        s.counts[c, ARRIVED_MEASURED] += 1
    _enqueue(s, PREFILL_QUEUE, j, t)
    if s.set_size[FREE_PREFILL] > 0:
        e = _set_pick(s, FREE_PREFILL)
        if _admit_prefill(s, e, t):
            _wake(s, e, t)


@_jit
def _fill_prefill_slots(s: FleetState, t: float) -> None:
    """The held gate reopened: every free prefill slot takes a request while any wait."""
    s.ints[REOPENED] = 0
    while s.set_size[FREE_PREFILL] > 0:
        e = _set_pick(s, FREE_PREFILL)
        if not _admit_prefill(s, e, t):
            break
        _wake(s, e, t)


@_jit
def _sample(s: FleetState, t_next: float) -> None:
    """Record the state at every sample time before t_next."""
    while s.floats[NEXT_SAMPLE] <= t_next and s.ints[SAMPLE_INDEX] < s.sample_time.shape[0]:
        i = s.ints[SAMPLE_INDEX]
        s.sample_time[i] = s.floats[NEXT_SAMPLE]
        for c in range(s.ints[N_CLASSES]):
            s.sample_waiting[i, c] = s.queue_count[PREFILL_QUEUE, c]
            s.sample_buffered[i, c] = (
                s.queue_count[BUF_ANY, c] + s.queue_count[BUF_SOLO, c] + s.queue_count[BUF_MIXED, c]
            )
            s.sample_prefilling[i, c] = s.in_prefill[c]
        s.sample_decoding[i, 0] = s.ints[DEC_ON_MIXED]
        s.sample_decoding[i, 1] = s.ints[DEC_ON_SOLO]
        s.ints[SAMPLE_INDEX] += 1
        s.floats[NEXT_SAMPLE] += s.floats[SAMPLE_DT]


@_jit
def run(s: FleetState, seed: int) -> None:
    """Simulate from time 0 to the horizon (mutates s)."""
    np.random.seed(seed)
    n_jobs, k = s.arrival.shape[0], s.ints[N_CLASSES]
    for e in range(s.ints[N_ENGINES]):
        _sync_sets(s, e)
    while True:
        a = s.ints[NEXT_ARRIVAL]
        t_arrival = s.arrival[a] if a < n_jobs else INF
        t_engine = s.heap_time[0] if s.ints[HEAP_SIZE] > 0 else INF
        t_abandon, ab_row, ab_class = INF, 0, 0
        for row in range(4):
            for c in range(k):
                if s.next_abandon[row, c] < t_abandon:
                    t_abandon, ab_row, ab_class = s.next_abandon[row, c], row, c
        t = min(t_engine, t_arrival, t_abandon)
        if t > s.floats[HORIZON]:
            break
        _sample(s, t)
        if t_engine <= t_arrival and t_engine <= t_abandon:
            _end_iteration(s, _heap_pop(s), t)
        elif t_arrival <= t_abandon:
            _arrive(s, t)
        else:
            _abandon(s, ab_row, ab_class, t)
        if s.ints[REOPENED]:
            _fill_prefill_slots(s, t)
    _sample(s, s.floats[HORIZON])
