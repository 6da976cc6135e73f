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
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from blend.cost import CostModel
from blend.simulate.kv_cache import KVBlockPool, prompt_block_hashes
from blend.simulate.step_time import (
    StepCost,
    decode_run_cost,
    prefill_attention_flops,
    step_cost,
)
from blend.simulate.types import SimConfig, SimRequest, SimResult

_I64 = np.int64


@dataclass(frozen=True, slots=True)
class _Admission:
    hit_blocks: int  # leading prompt blocks found in the prefix cache
    grant: int  # tokens scheduled this step
    new_blocks: int  # blocks to allocate beyond the hit ones


@dataclass(slots=True)
class _Totals:
    time_s: float = 0.0
    compute_bound_s: float = 0.0
    memory_bound_s: float = 0.0
    n_compute_bound_steps: int = 0
    overhead_s: float = 0.0
    weight_read_s: float = 0.0
    n_steps: int = 0
    batch_sum: int = 0  # requests scheduled, summed over steps
    token_sum: int = 0  # tokens scheduled, summed over steps

    def add(self, cost: StepCost, n_steps: int, n_requests: int, n_tokens: int) -> None:
        self.time_s += cost.total_s
        self.compute_bound_s += cost.compute_bound_s
        self.memory_bound_s += cost.memory_bound_s
        self.n_compute_bound_steps += cost.n_compute_bound_steps
        self.overhead_s += cost.overhead_s
        self.weight_read_s += cost.weight_read_s
        self.n_steps += n_steps
        self.batch_sum += n_requests
        self.token_sum += n_tokens


def _ceil_div(a: np.ndarray, b: int) -> np.ndarray:
    return -(-a // b)


class _Simulator:
    """One simulated run; state lives in numpy arrays indexed by request."""

    def __init__(
        self,
        requests: Sequence[SimRequest],
        order: Sequence[int],
        cost: CostModel,
        config: SimConfig,
        skip_ahead: bool,
    ) -> None:
        n = len(requests)
        if sorted(order) != list(range(n)):
            raise ValueError(f"order is not a permutation of the {n} requests")
        capacity_tokens = config.kv_capacity_tokens
        if capacity_tokens is None:
            capacity_tokens = cost.kv_capacity_tokens
        self.cost, self.config, self.skip_ahead = cost, config, skip_ahead
        self.bs = config.block_size
        self.pool = KVBlockPool(capacity_tokens // self.bs)
        self.requests = requests
        self.prompt_len = np.array([len(r.prompt_token_ids) for r in requests], dtype=_I64)
        self.out_len = np.array([r.output_len for r in requests], dtype=_I64)
        self.num_tokens = self.prompt_len.copy()  # prompt + outputs so far
        self.computed = np.zeros(n, dtype=_I64)  # tokens whose KV is computed
        self.num_blocks = np.zeros(n, dtype=_I64)  # KV blocks held
        self.generated = np.zeros(n, dtype=_I64)  # output tokens so far
        self.blocks_done = np.zeros(n, dtype=_I64)  # prompt blocks registered or hit
        self.n_full = self.prompt_len // self.bs  # full prompt blocks
        self._hashes: list[list[int] | None] = [None] * n
        self.held: list[list[int]] = [[] for _ in range(n)]  # cached blocks held, in order
        self.waiting: deque[int] = deque(int(i) for i in order)
        self.run = np.zeros(0, dtype=_I64)  # running requests, in admission order
        self.totals = _Totals()
        self.n_preemptions = 0
        self.peak_blocks = 0
        self.hit_tokens = 0
        self.query_tokens = 0
        self.computed_tokens = 0
        self._short_of_blocks = False  # the last decode run stopped for lack of blocks

    # -- public ------------------------------------------------------------------------------

    def run_to_end(self) -> SimResult:
        while len(self.run) or self.waiting:
            if self._short_of_blocks or not (self.skip_ahead and self._skip_decodes()):
                self._short_of_blocks = False
                self._step()
        return self._result()

    # -- one step ----------------------------------------------------------------------------

    def _step(self) -> None:
        """Schedule, cost and advance one step (mutates the state)."""
        budget = self.config.max_num_batched_tokens
        grant, preempted = self._schedule_running(budget)
        budget -= int(grant.sum())
        new: list[int] = []
        new_grants: list[int] = []
        if not preempted:
            self._schedule_waiting(budget, new, new_grants)
        self.peak_blocks = max(self.peak_blocks, self.pool.num_used)
        batch = np.concatenate([self.run, np.array(new, dtype=_I64)])
        grants = np.concatenate([grant, np.array(new_grants, dtype=_I64)])
        if not grants.any():
            self._raise_stuck()
        self._charge_step(batch, grants)
        self.run = batch
        self._advance(batch, grants)

    def _schedule_running(self, budget: int) -> tuple[np.ndarray, bool]:
        """Tokens for each running request, in order; allocates their blocks.

        When the blocks run out at request i, requests are preempted from the back until
        request i fits (or is itself preempted, which ends the step's running phase): the
        loop over requests of vLLM, done with a cumulative sum and one search per victim.
        """
        run = self.run
        if not len(run):
            return np.zeros(0, dtype=_I64), False
        computed = self.computed[run]
        rem = self.num_tokens[run] - computed
        before = np.cumsum(rem) - rem
        grant = np.clip(budget - before, 0, rem)
        need = np.maximum(_ceil_div(computed + grant, self.bs) - self.num_blocks[run], 0)
        need_cum = np.cumsum(need)
        kept = len(run)
        preempted = False
        while need_cum[kept - 1] > self.pool.num_free:
            first_short = int(np.searchsorted(need_cum, self.pool.num_free, side="right"))
            victim = int(run[kept - 1])
            if first_short == 0 and kept == 1:
                raise ValueError(
                    f"request {self.requests[victim].request_id!r} needs more than the whole "
                    f"KV cache ({self.pool.capacity} blocks of {self.bs} tokens) on its own"
                )
            kept -= 1
            self._preempt(victim)
            preempted = True
            if kept == first_short:  # the short request itself was preempted
                break
        if kept < len(run):
            run, grant, need = run[:kept], grant[:kept], need[:kept]
            self.run = run
        self.pool.allocate(int(need_cum[kept - 1]) if kept else 0)
        self.num_blocks[run] += need
        self._register_prompt_blocks(run, grant)
        return grant, preempted

    def _preempt(self, r: int) -> None:
        """Free r's blocks and put it at the front of the queue (recompute policy)."""
        self._free_blocks(r)
        self.computed[r] = 0
        self.blocks_done[r] = 0
        self.waiting.appendleft(r)
        self.n_preemptions += 1

    def _schedule_waiting(self, budget: int, new: list[int], new_grants: list[int]) -> None:
        """Admit waiting requests strictly in order while they fit (mutates the state)."""
        max_seqs = self.config.max_num_seqs
        while budget > 0 and self.waiting and len(self.run) + len(new) < max_seqs:
            r = self.waiting[0]
            admission = self._try_admission(r, budget)
            if admission is None:
                break
            self.waiting.popleft()
            self._admit(r, admission)
            new.append(r)
            new_grants.append(admission.grant)
            budget -= admission.grant

    def _try_admission(self, r: int, budget: int) -> _Admission | None:
        """Whether r can start now with `budget` tokens; changes nothing."""
        hashes = self._prompt_hashes(r)
        hit = 0
        if self.config.enable_prefix_caching:
            # At least one token is computed, to sample from (vLLM: num_tokens - 1).
            hit = self.pool.longest_hit(hashes, int(self.num_tokens[r] - 1) // self.bs)
        start = hit * self.bs
        new_tokens = int(self.num_tokens[r]) - start
        if not self.config.chunked_prefill and new_tokens > budget:
            return None
        grant = min(new_tokens, budget)
        new_blocks = -(-(start + grant) // self.bs) - hit
        if new_blocks > self.pool.num_free - self.pool.num_evictable(hashes[:hit]):
            return None
        return _Admission(hit_blocks=hit, grant=grant, new_blocks=new_blocks)

    def _admit(self, r: int, admission: _Admission) -> None:
        hit = admission.hit_blocks
        hits = self._prompt_hashes(r)[:hit]
        self.pool.touch(hits)
        self.pool.allocate(admission.new_blocks)
        self.held[r] = list(hits)
        self.num_blocks[r] = hit + admission.new_blocks
        self.computed[r] = hit * self.bs
        self.blocks_done[r] = hit
        self.hit_tokens += hit * self.bs
        self.query_tokens += int(self.num_tokens[r])
        self._register_prompt_blocks(np.array([r], dtype=_I64), np.array([admission.grant]))

    def _register_prompt_blocks(self, reqs: np.ndarray, grant: np.ndarray) -> None:
        """Make prompt blocks completed by this step's tokens shareable at once (vLLM v1)."""
        upto = np.minimum((self.computed[reqs] + grant) // self.bs, self.n_full[reqs])
        todo = np.nonzero(upto > self.blocks_done[reqs])[0]
        for k in todo:
            r = int(reqs[k])
            hashes = self._prompt_hashes(r)
            for i in range(int(self.blocks_done[r]), int(upto[k])):
                if self.pool.register(hashes[i]):
                    self.held[r].append(hashes[i])
            self.blocks_done[r] = upto[k]

    def _prompt_hashes(self, r: int) -> list[int]:
        hashes = self._hashes[r]
        if hashes is None:
            hashes = prompt_block_hashes(self.requests[r].prompt_token_ids, self.bs)
            self._hashes[r] = hashes
        return hashes

    def _charge_step(self, batch: np.ndarray, grants: np.ndarray) -> None:
        start = self.computed[batch]
        decode = (grants == 1) & (start >= self.prompt_len[batch])
        prefill = (grants > 0) & ~decode
        n_decode = int(decode.sum())
        g, c = grants[prefill], start[prefill]
        n_prefill = int(g.sum())
        attention = float(
            sum(
                prefill_attention_flops(self.cost, int(a), int(b))
                for a, b in zip(g, c, strict=True)
            )
        )
        cost = step_cost(
            self.cost,
            n_prefill_tokens=n_prefill,
            n_decode_seqs=n_decode,
            decode_kv_tokens=float(start[decode].sum() + 2 * n_decode),
            prefill_attention_flops=attention,
            prefill_kv_tokens=float((c + 2 * g).sum()),
        )
        n_tokens = n_prefill + n_decode
        self.totals.add(cost, 1, int((grants > 0).sum()), n_tokens)
        self.computed_tokens += n_tokens

    def _advance(self, batch: np.ndarray, grants: np.ndarray) -> None:
        """Apply the step's tokens; sample where a request caught up; retire finished ones."""
        self.computed[batch] += grants
        sampled = batch[(grants > 0) & (self.computed[batch] == self.num_tokens[batch])]
        self.generated[sampled] += 1
        self.num_tokens[sampled] += 1
        self._retire()

    def _retire(self) -> None:
        done = self.generated[self.run] >= self.out_len[self.run]
        if done.any():
            for r in self.run[done]:
                self._free_blocks(int(r))
                self._hashes[int(r)] = None  # never looked up again: keep memory flat
            self.run = self.run[~done]

    def _free_blocks(self, r: int) -> None:
        held = self.held[r]
        self.pool.free(held, int(self.num_blocks[r]) - len(held))
        self.held[r] = []
        self.num_blocks[r] = 0

    def _raise_stuck(self) -> None:
        r = self.waiting[0]
        raise ValueError(
            f"request {self.requests[r].request_id!r} can never be scheduled: "
            f"{int(self.num_tokens[r])} tokens with max_num_batched_tokens "
            f"{self.config.max_num_batched_tokens} (chunked_prefill="
            f"{self.config.chunked_prefill}) and {self.pool.capacity} KV blocks of {self.bs}"
        )

    # -- skip-ahead --------------------------------------------------------------------------

    def _skip_decodes(self) -> bool:
        """Advance a run of identical decode-only steps at once; False if none applies now.

        Applies when every running request is decoding and the waiting head cannot start; both
        stay true until a request finishes or the free blocks run out, since decodes only take
        blocks (a head blocked for lack of blocks or hits stays blocked).
        """
        run = self.run
        n = len(run)
        if n == 0 or n > self.config.max_num_batched_tokens:
            return False
        computed = self.computed[run]
        if not (
            np.all(self.num_tokens[run] - computed == 1)
            and np.all(computed >= self.prompt_len[run])
        ):
            return False
        budget = self.config.max_num_batched_tokens - n
        if (
            self.waiting
            and budget > 0
            and n < self.config.max_num_seqs
            and self._try_admission(self.waiting[0], budget) is not None
        ):
            return False
        steps, short_of_blocks = self._decode_steps_that_fit(run, computed)
        if steps >= 1:
            self._advance_decodes(run, computed, steps)
        # Out of blocks, the next step preempts: it cannot be skipped, no need to look again.
        self._short_of_blocks = short_of_blocks
        return steps >= 1

    def _decode_steps_that_fit(self, run: np.ndarray, computed: np.ndarray) -> tuple[int, bool]:
        """Most decode steps (up to the first finish) whose new blocks fit in the free ones,
        and whether the blocks (rather than a finish) are the limit.

        A running request holds exactly ceil(computed / bs) blocks, so it takes its next block
        at step o = held * bs - computed + 1 (1 <= o <= bs) and one more every bs steps after:
        the (free + 1)-th block of all requests is taken at step (free // n) * bs + the
        (free % n)-th smallest o, and the steps before it fit.
        """
        limit = int((self.out_len[run] - self.generated[run]).min())
        free = self.pool.num_free
        n = len(run)
        first = self.num_blocks[run] * self.bs - computed + 1
        rounds, rank = divmod(free, n)
        short_at = rounds * self.bs + int(np.partition(first, rank)[rank])
        return min(limit, short_at - 1), short_at - 1 < limit

    def _advance_decodes(self, run: np.ndarray, computed: np.ndarray, steps: int) -> None:
        n = len(run)
        cost = decode_run_cost(self.cost, n, float(computed.sum() + 2 * n), steps)
        self.totals.add(cost, steps, n * steps, n * steps)
        self.computed_tokens += n * steps
        target = _ceil_div(computed + steps, self.bs)
        need = np.maximum(target - self.num_blocks[run], 0)
        self.pool.allocate(int(need.sum()))
        self.num_blocks[run] += need
        self.peak_blocks = max(self.peak_blocks, self.pool.num_used)
        self.computed[run] += steps
        self.num_tokens[run] += steps
        self.generated[run] += steps
        self._retire()

    # -- result ------------------------------------------------------------------------------

    def _result(self) -> SimResult:
        t = self.totals
        if not np.array_equal(self.generated, self.out_len):
            raise RuntimeError("simulation ended with requests short of their output_len")
        input_tokens = int(self.prompt_len.sum())
        output_tokens = int(self.generated.sum())
        steps = max(t.n_steps, 1)
        return SimResult(
            makespan_s=t.time_s,
            n_steps=t.n_steps,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            throughput_tok_s=(input_tokens + output_tokens) / t.time_s if t.time_s > 0 else 0.0,
            prefix_cache_hit_tokens=self.hit_tokens,
            prefix_cache_query_tokens=self.query_tokens,
            prefix_cache_hit_rate=self.hit_tokens / self.query_tokens if self.query_tokens else 0.0,
            n_preemptions=self.n_preemptions,
            peak_kv_blocks_used=self.peak_blocks,
            kv_capacity_blocks=self.pool.capacity,
            computed_tokens=self.computed_tokens,
            compute_bound_s=t.compute_bound_s,
            memory_bound_s=t.memory_bound_s,
            n_compute_bound_steps=t.n_compute_bound_steps,
            overhead_s=t.overhead_s,
            weight_read_s=t.weight_read_s,
            mean_batch_size=t.batch_sum / steps,
            mean_tokens_per_step=t.token_sum / steps,
        )


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
    return _Simulator(requests, order, cost, config or SimConfig(), skip_ahead).run_to_end()
