"""Where a simulated run loses time against its bounds: exact, additive breakdowns of the gap.

Two bounds, two breakdowns: T_opt (optimal.py, an engine that overlaps GEMMs with attention;
GapBreakdown below) and T_seq (sequential_bound.py, the engine blend runs: vLLM;
SequentialGap at the end).


    makespan = T_opt                                     (docs/papers.md: max((1 - s) Comp, Mem))
             + bound_decode_sharing_s   the formula applies (1 - s) to decode tokens too, which
                                        no engine can share: max(C_tight, Mem) - T_opt
             + extra_work_s             work of the bound's side beyond the tight bound: prompt
                                        tokens whose prefix was computed before (sharing lost),
                                        recomputation after preemption, prefill attention FLOPs
                                        (compute side); re-read KV of recomputed requests
                                        (memory side)
             + weight_reads_s           the weights read once per step, where that read is not
                                        hidden under the step's compute (and the offloaded
                                        layers' and tensor-parallel all-reduces' seconds)
             + other_side_s             steps whose other resource took longer than the bound's
                                        side (compute-bound ones in a memory-bound run and vice
                                        versa): batches that KV capacity or max_num_seqs kept
                                        small, blend imbalance, the drain tail
             + overhead_s               the fixed per-step overhead
C_tight = ((1 - s) sum p + sum (d - 1)) 2P / F, the compute that cannot be avoided (see
optimal.py); the bound's side is compute when C_tight >= Mem, else memory. Every term is >= 0
and they add up to the makespan exactly, from sums the simulator keeps per step
(SimResult.compute_s, kv_s, busy_without_weights_s). drain_s (the time after the last
admission) and kv_discarded_tokens (KV thrown away by preemptions) are reported beside it:
they overlap the terms above rather than add to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from blend.cost.model import CostModel
from blend.cost.step_time import busy_time
from blend.simulate.sequential_bound import SequentialBound
from blend.simulate.types import SimRequest, SimResult


@dataclass(frozen=True, slots=True)
class GapBreakdown:
    """The makespan as T_opt plus the causes of the gap (seconds; see the module docstring)."""

    optimal_s: float
    bound_decode_sharing_s: float
    extra_work_s: float
    weight_reads_s: float
    other_side_s: float
    overhead_s: float
    makespan_s: float
    bound_side: str  # "compute" or "memory": the larger of C_tight and Mem
    drain_s: float  # time after the last admission (part of the terms above)
    kv_discarded_tokens: int  # KV tokens thrown away by preemptions (recomputed later)

    @property
    def terms(self) -> dict[str, float]:
        """The additive terms, in waterfall order (they sum to makespan_s)."""
        return {
            "optimal_s": self.optimal_s,
            "bound_decode_sharing_s": self.bound_decode_sharing_s,
            "extra_work_s": self.extra_work_s,
            "weight_reads_s": self.weight_reads_s,
            "other_side_s": self.other_side_s,
            "overhead_s": self.overhead_s,
        }

    def to_json(self) -> dict[str, float | int | str]:
        return asdict(self)


def tight_compute_s(requests: Sequence[SimRequest], cost: CostModel, sharing_ratio: float) -> float:
    """Compute no engine avoids: distinct prompt tokens plus every fed-back output token (s)."""
    prompt = sum(len(r.prompt_token_ids) for r in requests)
    fed_back = sum(r.output_len - 1 for r in requests)
    tokens = (1.0 - sharing_ratio) * prompt + fed_back
    return 2.0 * cost.roofline_params * tokens / cost.hardware.effective_flops


def gap_breakdown(
    result: SimResult,
    requests: Sequence[SimRequest],
    cost: CostModel,
    sharing_ratio: float,
    optimal_s: float,
) -> GapBreakdown:
    """Split result.makespan_s - optimal_s into its causes (see the module docstring)."""
    memory_bound = sum(cost.mem_s(len(r.prompt_token_ids), r.output_len) for r in requests)
    compute_bound = tight_compute_s(requests, cost, sharing_ratio)
    bound_side = "compute" if compute_bound >= memory_bound else "memory"
    side_actual_s = result.compute_s if bound_side == "compute" else result.kv_s
    tight = max(compute_bound, memory_bound)
    busy = result.makespan_s - result.overhead_s
    return GapBreakdown(
        optimal_s=optimal_s,
        bound_decode_sharing_s=tight - optimal_s,
        extra_work_s=side_actual_s - tight,
        weight_reads_s=busy - result.busy_without_weights_s,
        other_side_s=result.busy_without_weights_s - side_actual_s,
        overhead_s=result.overhead_s,
        makespan_s=result.makespan_s,
        bound_side=bound_side,
        drain_s=result.drain_s,
        kv_discarded_tokens=result.kv_discarded_tokens,
    )


@dataclass(frozen=True, slots=True)
class SequentialGap:
    """The makespan as T_seq (sequential_bound.py) plus where a run lost time against it.

        makespan = T_seq
                 + extra_steps_overhead_s   (N - N_min) o: steps beyond the fewest possible
                 + extra_steps_weights_s    the weight reads of those steps where the GEMMs
                                            do not hide them: B(C, A, N w, Mem) - B(.., N_min w, ..)
                 + extra_work_s             GEMM, attention and KV work beyond the bound's:
                                            prefix sharing lost, recomputation after
                                            preemption, KV writes and prompt reads:
                                            B(G, A', N w, K) - B(C, A, N w, Mem)
                 + uneven_steps_s           the run's steps against the same work spread evenly
                                            over as many steps: small steps whose weight read is
                                            not hidden (a thin drain tail) and lumpy ones;
                                            sum_i B(step i) - B(G, A', N w, K) (and offloaded
                                            layers' time, and all-reduces beyond the bound's X,
                                            if any)
    B is the step model's busy time (step_time.busy_time); G, A', K the run's GEMM, prefill
    attention and KV-traffic times; N its steps. Every term is >= 0 (B is increasing and
    superadditive) and they add up to the makespan exactly.
    """

    t_seq_s: float
    extra_steps_overhead_s: float
    extra_steps_weights_s: float
    extra_work_s: float
    uneven_steps_s: float
    makespan_s: float
    n_steps: int
    n_min_steps: int
    drain_s: float  # time after the last admission (part of the terms above)

    @property
    def terms(self) -> dict[str, float]:
        """The additive terms, in waterfall order (they sum to makespan_s)."""
        return {
            "t_seq_s": self.t_seq_s,
            "extra_steps_overhead_s": self.extra_steps_overhead_s,
            "extra_steps_weights_s": self.extra_steps_weights_s,
            "extra_work_s": self.extra_work_s,
            "uneven_steps_s": self.uneven_steps_s,
        }

    def to_json(self) -> dict[str, float | int]:
        return asdict(self)


def sequential_gap(result: SimResult, bound: SequentialBound, cost: CostModel) -> SequentialGap:
    """Split result.makespan_s - T_seq into its causes (see SequentialGap)."""
    hw = cost.hardware
    weight_s = cost.weight_read_s
    n, n_min = result.n_steps, bound.n_min_steps
    c, a, mem = bound.compute_s, bound.prefill_attention_s, bound.kv_reads_s
    bound_busy = bound.makespan_s - bound.overhead_s - bound.collective_s
    at_n_steps = busy_time(hw, c, a, n * weight_s, mem)
    gemm = result.compute_s - result.attention_s
    actual_at_n = busy_time(hw, gemm, result.attention_s, n * weight_s, result.kv_s)
    extra_overhead = result.overhead_s - bound.overhead_s
    return SequentialGap(
        t_seq_s=bound.makespan_s,
        extra_steps_overhead_s=extra_overhead,
        extra_steps_weights_s=at_n_steps - bound_busy,
        extra_work_s=actual_at_n - at_n_steps,
        uneven_steps_s=result.makespan_s - result.overhead_s - actual_at_n - bound.collective_s,
        makespan_s=result.makespan_s,
        n_steps=n,
        n_min_steps=n_min,
        drain_s=result.drain_s,
    )
