"""An iteration-level simulator of a continuous-batching engine (vLLM v1's scheduler).

Invariant (as in vLLM v1): there is no prefill or decode phase; each request has
num_computed_tokens and num_tokens (prompt + outputs so far), and each step gives every running
request, in admission order, min(num_tokens - num_computed_tokens, budget left) tokens; then,
if nobody was preempted, waiting requests are admitted strictly in order (the head waits and
blocks everyone behind it when it does not fit). A request whose computed tokens reach
num_tokens samples one output token; it finishes at its output_len-th token.
KV blocks are allocated as tokens are scheduled; when they run out the most recently admitted
running request is preempted (blocks freed, recomputed later from the front of the queue).
Runs of identical decode-only steps are advanced in one go (skip_ahead), with the same result
as stepping one by one.
Where it differs from vLLM: only full prompt blocks are shareable (output tokens are unknown),
so a preempted request recomputes its generated tokens even where vLLM could still hit their
cached blocks; a block computed twice at once stays a private copy; no speculative decoding,
async scheduling or long-prefill threshold.

How: this module checks the input, numbers the prompts' full blocks (block_hashes.py: chained
64-bit hashes, one dense id per distinct prefix), lays the state out in numpy arrays and runs
the step loop compiled with numba (scheduler.py, over the KV pool of kv_cache.py and the step
model of step_kernel.py, which reproduces step_time.py to the bit). Why compiled: once
16k-token outputs fill the KV cache, vLLM preempts the newest request, re-admits it the next
step, recomputes it in chunks and soon preempts it again; those steps cannot be skipped
(40k OpenVid requests, FCFS: 560k preemptions, 11.2M steps, 755k of them stepped one by one)
and each cost tens of microseconds as numpy calls on small arrays: 69 s in all, 1.8 s
compiled. The compiled code is cached on disk next to the sources (numba cache=True): the
first call on a machine compiles for ~11 s, later processes load it in ~0.2 s.
The numba modules are imported on the first simulate() call, not with this module: vLLM 0.32
crashes while starting an engine in a process that has imported numba (its Triton-kernel
override scan calls vars() on llvmlite's library proxy; blend/engines/vllm_compat.py shields
blend's engine starts), and the CLI, which imports this module, need not load a JIT it may
not use. tests/test_imports.py keeps it so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from blend.admission.base import AdmissionPolicy
from blend.admission.warmup import RestOfRun, hand_over_if_ended
from blend.cost.model import CostModel
from blend.simulate.types import SimConfig, SimRequest, SimResult

if TYPE_CHECKING:
    from blend.simulate import scheduler as sch

_I64 = np.int64


def simulate(
    requests: Sequence[SimRequest],
    order: Sequence[int],
    cost: CostModel,
    config: SimConfig | None = None,
    *,
    skip_ahead: bool = True,
) -> SimResult:
    """Simulate feeding `requests` to the engine in `order` (a permutation of indices).

    skip_ahead=False steps one by one (same result; for checking the fast path).
    """
    from blend.simulate import scheduler as sch

    config = config or SimConfig()
    n = len(requests)
    if sorted(order) != list(range(n)):
        raise ValueError(f"order is not a permutation of the {n} requests")
    state = _new_state(requests, np.asarray(order, dtype=_I64), cost, config, skip_ahead, False)
    status = sch.run(state)
    if status != sch.OK:
        _raise(status, state, requests, config)
    return _result(state)


def simulate_online(
    requests: Sequence[SimRequest],
    policy: AdmissionPolicy,
    cost: CostModel,
    config: SimConfig | None = None,
    *,
    skip_ahead: bool = True,
    rest_of_run: RestOfRun | None = None,
) -> SimResult:
    """Simulate an engine fed by an admission policy, asked after every step that finished
    requests or ran the waiting queue dry (and whenever the engine is idle), as the executor
    asks it (admission/base.py).

    The policy must hand over every request exactly once. A warm-up policy (WarmupThenRest)
    that ends hands over, at that event, to what `rest_of_run` (the owner's re-plan) makes
    of its outcome, as the executor's run loop does when the engine loop yields to it.
    """
    from blend.simulate import scheduler as sch

    config = config or SimConfig()
    n = len(requests)
    state = _new_state(requests, np.zeros(0, dtype=_I64), cost, config, skip_ahead, True)
    view = SimEngineView(state)
    seen = np.zeros(n, dtype=np.bool_)
    while True:
        admitted = policy.admit(view)
        view.finished = []
        if rest_of_run is not None and hand_over_if_ended(policy, rest_of_run):
            admitted += policy.admit(view)  # the rest's first word at the same event
        idle = state.queues.meta[sch.RUN_LEN] == 0 and sch.waiting_count(state) == 0
        if admitted:
            _append_order(state, admitted, seen)
            if policy.num_remaining == 0 and state.config.pause_on_finish:
                # nothing left to admit: run to the end without stopping at every finish
                state = state._replace(config=state.config._replace(pause_on_finish=False))
                view.rebind(state)
        elif idle:
            if policy.num_remaining > 0:
                raise RuntimeError(
                    f"admission policy left the engine idle with {policy.num_remaining} "
                    "requests not admitted"
                )
            break
        status = sch.run(state)
        if status not in (sch.OK, sch.PAUSED):
            _raise(status, state, requests, config)
        view.take_finished()
    if not seen.all():
        raise RuntimeError(f"admission policy never admitted {int((~seen).sum())} requests")
    return _result(state)


def _append_order(state: sch.Sim, admitted: list[int], seen: np.ndarray) -> None:
    from blend.simulate import scheduler as sch

    batch = np.asarray(admitted, dtype=_I64)
    if batch.min() < 0 or batch.max() >= len(seen) or seen[batch].any():
        raise ValueError(f"admission policy admitted an unknown or repeated request: {admitted}")
    if len(np.unique(batch)) != len(batch):
        raise ValueError(f"admission policy admitted a request twice in one call: {admitted}")
    seen[batch] = True
    meta = state.queues.meta
    start = int(meta[sch.ORDER_LEN])
    state.queues.order[start : start + len(batch)] = batch
    meta[sch.ORDER_LEN] = start + len(batch)


class SimEngineView:
    """The simulated engine as an admission policy sees it (admission.base.EngineView)."""

    def __init__(self, state: sch.Sim) -> None:
        self._state = state
        self.finished: list[tuple[int, int]] = []

    def rebind(self, state: sch.Sim) -> None:
        """Read from `state` from now on (the same arrays, other settings)."""
        self._state = state

    def take_finished(self) -> None:
        """Move the requests the last run() finished into `finished` (and clear them there)."""
        from blend.simulate import scheduler as sch

        q, rq = self._state.queues, self._state.requests
        count = int(q.meta[sch.FINISHED_LEN])
        done = q.finished[:count]
        self.finished = list(zip(done.tolist(), rq.generated[done].tolist(), strict=True))
        q.meta[sch.FINISHED_LEN] = 0
        q.meta[sch.DRAINED] = 0

    @property
    def step(self) -> int:
        from blend.simulate import scheduler as sch

        return int(self._state.totals.counts[sch.N_STEPS])

    @property
    def num_running(self) -> int:
        from blend.simulate import scheduler as sch

        return int(self._state.queues.meta[sch.RUN_LEN])

    @property
    def num_waiting(self) -> int:
        from blend.simulate import scheduler as sch

        return int(sch.waiting_count(self._state))

    @property
    def kv_blocks_used(self) -> int:
        from blend.simulate import kv_cache as kv

        return int(kv.num_used(self._state.pool))

    @property
    def kv_blocks_total(self) -> int:
        from blend.simulate import kv_cache as kv

        return int(kv.capacity(self._state.pool))

    @property
    def block_size(self) -> int:
        return int(self._state.config.block_size)

    def generated_of(self, indices: np.ndarray) -> np.ndarray:
        return self._state.requests.generated[indices]


def _new_state(
    requests: Sequence[SimRequest],
    order: np.ndarray,
    cost: CostModel,
    config: SimConfig,
    skip_ahead: bool,
    online: bool,
) -> sch.Sim:
    """The simulator's state with `order` waiting (online: room to append the rest)."""
    from blend.simulate import kv_cache as kv
    from blend.simulate import scheduler as sch
    from blend.simulate.block_hashes import prompt_block_ids
    from blend.simulate.step_kernel import cost_constants

    n = len(requests)
    capacity_tokens = config.kv_capacity_tokens
    if capacity_tokens is None:
        capacity_tokens = cost.kv_capacity_tokens
    bs = config.block_size
    block_ids, offsets, n_ids = prompt_block_ids([r.prompt_token_ids for r in requests], bs)
    return sch.Sim(
        config=sch.Config(
            block_size=bs,
            max_num_batched_tokens=config.max_num_batched_tokens,
            max_num_seqs=config.max_num_seqs,
            chunked_prefill=config.chunked_prefill,
            enable_prefix_caching=config.enable_prefix_caching,
            skip_ahead=skip_ahead,
            pause_on_finish=online,
        ),
        cost=cost_constants(cost),
        requests=_request_state(requests, block_ids, offsets, bs),
        pool=kv.new_pool(capacity_tokens // bs, n_ids),
        queues=sch.new_queues(order.reshape(-1), min(n, config.max_num_seqs), n),
        totals=sch.new_totals(),
    )


def _request_state(
    requests: Sequence[SimRequest], block_ids: np.ndarray, offsets: np.ndarray, bs: int
) -> sch.Requests:
    from blend.simulate import scheduler as sch

    n = len(requests)
    prompt_len = np.fromiter((len(r.prompt_token_ids) for r in requests), dtype=_I64, count=n)
    return sch.Requests(
        prompt_len=prompt_len,
        out_len=np.fromiter((r.output_len for r in requests), dtype=_I64, count=n),
        n_full=prompt_len // bs,
        offset=offsets,
        block_ids=block_ids,
        held=np.zeros(len(block_ids), dtype=np.bool_),
        num_tokens=prompt_len.copy(),
        computed=np.zeros(n, dtype=_I64),
        num_blocks=np.zeros(n, dtype=_I64),
        n_held=np.zeros(n, dtype=_I64),
        generated=np.zeros(n, dtype=_I64),
        blocks_done=np.zeros(n, dtype=_I64),
    )


def _raise(status: int, state: sch.Sim, requests: Sequence[SimRequest], config: SimConfig) -> None:
    from blend.simulate import kv_cache as kv
    from blend.simulate import scheduler as sch

    capacity = int(kv.capacity(state.pool))
    r = int(state.queues.meta[sch.ERROR_REQUEST])
    name = requests[r].request_id
    bs = config.block_size
    if status == sch.TOO_BIG:
        raise ValueError(
            f"request {name!r} needs more than the whole KV cache ({capacity} blocks of {bs} "
            f"tokens) on its own"
        )
    raise ValueError(
        f"request {name!r} can never be scheduled: "
        f"{int(state.requests.num_tokens[r])} tokens with max_num_batched_tokens "
        f"{config.max_num_batched_tokens} (chunked_prefill={config.chunked_prefill}) and "
        f"{capacity} KV blocks of {bs}"
    )


def _result(state: sch.Sim) -> SimResult:
    from blend.simulate import kv_cache as kv
    from blend.simulate import scheduler as sch

    capacity = int(kv.capacity(state.pool))
    rq, seconds = state.requests, state.totals.seconds
    counts = [int(c) for c in state.totals.counts]
    if not np.array_equal(rq.generated, rq.out_len):
        raise RuntimeError("simulation ended with requests short of their output_len")
    input_tokens = int(rq.prompt_len.sum())
    output_tokens = int(rq.generated.sum())
    time_s = float(seconds[sch.TIME])
    n_steps = counts[sch.N_STEPS]
    steps = max(n_steps, 1)
    hit, query = counts[sch.HIT_TOKENS], counts[sch.QUERY_TOKENS]
    return SimResult(
        makespan_s=time_s,
        n_steps=n_steps,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        throughput_tok_s=(input_tokens + output_tokens) / time_s if time_s > 0 else 0.0,
        prefix_cache_hit_tokens=hit,
        prefix_cache_query_tokens=query,
        prefix_cache_hit_rate=hit / query if query else 0.0,
        n_preemptions=counts[sch.PREEMPTIONS],
        peak_kv_blocks_used=counts[sch.PEAK_BLOCKS],
        kv_capacity_blocks=capacity,
        computed_tokens=counts[sch.COMPUTED_TOKENS],
        compute_bound_s=float(seconds[sch.COMPUTE_BOUND]),
        memory_bound_s=float(seconds[sch.MEMORY_BOUND]),
        n_compute_bound_steps=counts[sch.N_COMPUTE_BOUND],
        overhead_s=float(seconds[sch.OVERHEAD]),
        weight_read_s=float(seconds[sch.WEIGHT_READ]),
        mean_batch_size=counts[sch.BATCH_SUM] / steps,
        mean_tokens_per_step=counts[sch.TOKEN_SUM] / steps,
        busy_without_weights_s=float(seconds[sch.BUSY_NO_WEIGHTS]),
        drain_s=float(seconds[sch.DRAIN]),
        compute_s=float(seconds[sch.COMPUTE]),
        kv_s=float(seconds[sch.KV_TRAFFIC]),
        kv_discarded_tokens=counts[sch.KV_DISCARDED],
        attention_s=float(seconds[sch.ATTENTION]),
        mean_kv_occupancy=counts[sch.KV_BLOCK_STEPS] / steps / max(capacity, 1),
        admission_order=state.queues.admitted[: int(state.queues.meta[sch.ADMITTED_LEN])].copy(),
    )
