"""The LP prefill gate for one engine: the fluid LP's prefill shares decide who enters next.

Invariant: the requests are grouped into classes (blend/control/classes.py: k-means on log
prompt tokens and log estimated output tokens, the plan's estimates, never true lengths),
each class kept in the plan's order (so a DFS plan keeps its prefix sharing within a class).
The saturated fluid LP (blend/control/fluid_lp.py, every class backlogged: an offline job)
over the classes that still have requests to admit gives x*_i, the share of the prefill slot
each class should hold. In a phase, the gate admits next from the class whose admitted
prefill tokens are furthest below its share (the least A_i / x*_i; ties: the most requests
left): prefill time is proportional to prefill tokens, so tokens follow x*. Classes the LP
leaves at x* = 0 wait. When a class with x* > 0 has nothing left to admit, the LP is solved
again for the classes left and a new phase starts (the offline LP sequence of
blend/control/phase_plan.py, run online; the phases are recorded in `phases`). With
shares=JOB the shares come instead from the fluid model's least-makespan LP over the
requests left (phase_plan.fluid_min_plan): every class prefilled in proportion to its prefill
work left, so long generations start throughout the job rather than in a last phase of their
own (the revenue LP's vertex solutions serve one or two classes a phase).

Room, like the dual scan's (dual_scan.py): requests in flight stay within max_num_seqs; the
projected peak KV of everything in flight (kv_projection.py: lengths so far, estimates for
the rest) stays within kv_fill of the cache, so vLLM never preempts; prompt tokens handed
over and not yet computed stay within queue_steps steps' worth of max_num_batched_tokens, so
the engine's first-come-first-served queue never decides the mix. When the chosen class's
next request does not fit the gate waits (admitting another class would bend the mix),
except on an empty engine, which is never left idle: every request is admitted exactly once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from blend.admission.base import EngineView
from blend.admission.dual_scan import ScanSequence
from blend.admission.kv_projection import KvProjection
from blend.admission.kv_projection import kernels as kv_kernels
from blend.control.classes import RequestClass, cluster_requests
from blend.control.fluid_inputs import class_fluid_inputs
from blend.control.fluid_lp import FluidParams, LpVariant, Prices, solve_fluid_lp
from blend.control.phase_plan import class_specs, fluid_min_plan
from blend.cost.model import CostModel
from blend.engines.settings import DEFAULT_ENGINE_SETTINGS, EngineSettings


class GateShares(StrEnum):
    PHASES = "phases"  # the saturated revenue LP of the classes left (the LP sequence)
    JOB = "job"  # the least-makespan LP of the classes left (fluid_min_plan's prefill time)


@dataclass(frozen=True, slots=True)
class LpGateOptions:
    kv_fill: float = 0.98  # projected peak KV kept within this share of the cache
    queue_steps: float = 2.0  # prompt tokens not yet computed: at most this many steps' worth
    n_classes: int | None = None  # classes (None: classes.choose_k)
    seed: int = 0  # k-means seed
    prices: Prices = field(default_factory=Prices)
    variant: LpVariant = LpVariant.BUNDLED
    shares: GateShares = GateShares.PHASES  # which LP gives the prefill shares


@dataclass(frozen=True, slots=True)
class GatePhase:
    """One phase of the gate: from `step` on, these prefill shares (x* / sum x*)."""

    step: int
    shares: dict[str, float]  # class name -> share of the prefill slot
    revenue_per_gpu_s: float  # the phase LP's R*


class LpGateAdmission:
    """The LP prefill gate over `sequence` (module invariant)."""

    def __init__(
        self,
        sequence: ScanSequence,
        cost: CostModel,
        options: LpGateOptions | None = None,
        settings: EngineSettings = DEFAULT_ENGINE_SETTINGS,
    ) -> None:
        self.sequence, self.cost = sequence, cost
        self.options = options or LpGateOptions()
        self.settings = settings  # the engine's: its running-request limit and step budget
        clustering = cluster_requests(
            sequence.prompt_tokens,
            sequence.output_tokens,
            k=self.options.n_classes,
            seed=self.options.seed,
        )
        self.classes: tuple[RequestClass, ...] = clustering.classes
        self.labels = clustering.labels  # class id per position
        k = len(self.classes)
        # positions of each class, in plan order, and how far each has been admitted
        self._members = [np.flatnonzero(self.labels == c) for c in range(k)]
        self._next = np.zeros(k, dtype=np.int64)
        self._shares = np.zeros(k)  # the phase's x* / sum x*
        self._admitted = np.zeros(k)  # prefill tokens admitted per class this phase
        self.phases: list[GatePhase] = []
        self.fluid: FluidParams | None = None
        self._remaining = len(sequence.index)
        self._capacity = 0.0
        self._block_size = 1
        self._shared_tree: np.ndarray | None = None
        self._projection = KvProjection(self._shared_between)
        self._position_of: dict[int, int] = {}  # request index in flight -> position

    @property
    def num_remaining(self) -> int:
        return self._remaining

    def admit(self, engine: EngineView) -> list[int]:
        if self._capacity == 0.0:
            self._start(engine)
        for index, _ in engine.finished:
            self._position_of.pop(index, None)
            self._projection.remove(index)
        self._projection.refresh(engine.generated_of)
        pending = self._projection.pending_prompt_tokens
        limit_kv = self.options.kv_fill * self._capacity - len(self._position_of) * self._block_size
        limit_queue = self.options.queue_steps * self.settings.max_num_batched_tokens
        room = self.settings.max_num_seqs - engine.num_running - engine.num_waiting
        admitted: list[int] = []
        while self._remaining > 0 and len(admitted) < room:
            c = self._pick(engine.step)
            k = int(self._members[c][self._next[c]])
            prompt = float(self.sequence.prompt_tokens[k])
            estimate = float(self.sequence.output_tokens[k])
            prompt_kv = self._prompt_kv(prompt)
            empty = not self._position_of and not admitted
            if not empty:
                if pending > 0 and pending + prompt > limit_queue:
                    break
                if self._projection.peak_with(prompt_kv, estimate) > limit_kv:
                    break
            admitted.append(self._take(c, k, prompt_kv, estimate))
            pending += prompt
            limit_kv -= self._block_size
        return admitted

    # -- phases ------------------------------------------------------------------------------

    def _start(self, engine: EngineView) -> None:
        self._capacity = float(engine.kv_blocks_total * engine.block_size)
        self._block_size = engine.block_size
        bs = self._block_size
        self._shared_tree = kv_kernels().min_tree(self.sequence.shared_prev // bs * bs)
        if self.classes:
            settings = EngineSettings(
                self.settings.max_num_batched_tokens, max(2, self.settings.max_num_seqs)
            )
            self.fluid = class_fluid_inputs(
                self.cost, settings, self.classes, int(self._capacity)
            ).params

    def _left(self) -> np.ndarray:
        """Requests left to admit per class."""
        return np.array([len(m) for m in self._members]) - self._next

    def _resolve(self, step: int) -> None:
        """A new phase: the LP (options.shares) over the classes with requests left."""
        left = self._left()
        active = np.flatnonzero(left > 0)
        assert self.fluid is not None
        if self.options.shares is GateShares.JOB:
            self._start_phase(step, active, self._job_shares(active, left), 0.0)
            return
        solution = solve_fluid_lp(
            [class_specs(self.classes)[i] for i in active.tolist()],
            self.fluid,
            self.options.prices,
            self.options.variant,
            saturated=True,
        )
        shares = np.zeros(len(self.classes))
        if solution.x.sum() > 0:
            shares[active] = solution.x / solution.x.sum()
        else:  # the LP prefills nothing (cannot happen with positive prices): by work left
            shares[active] = self._job_shares(active, left)
        self._start_phase(step, active, shares[active], solution.revenue_per_gpu_s)

    def _job_shares(self, active: np.ndarray, left: np.ndarray) -> np.ndarray:
        """Prefill shares of the least-makespan LP over the requests left to admit."""
        assert self.fluid is not None
        left_classes = [
            RequestClass(
                j, int(left[i]), self.classes[i].prompt_tokens, self.classes[i].output_tokens
            )
            for j, i in enumerate(active.tolist())
        ]
        _, prefill_s = fluid_min_plan(left_classes, self.fluid)
        return prefill_s / prefill_s.sum()

    def _start_phase(
        self, step: int, active: np.ndarray, shares: np.ndarray, revenue: float
    ) -> None:
        self._shares = np.zeros(len(self.classes))
        self._shares[active] = shares
        self._admitted = np.zeros(len(self.classes))
        self.phases.append(
            GatePhase(
                step,
                {
                    self.classes[i].name: float(self._shares[i])
                    for i in active
                    if self._shares[i] > 0
                },
                revenue,
            )
        )

    def _pick(self, step: int) -> int:
        """The class to admit from next (module invariant)."""
        left = self._left()
        if not self.phases or ((self._shares > 0) & (left == 0)).any():
            self._resolve(step)
            left = self._left()
        eligible = np.flatnonzero((self._shares > 0) & (left > 0))
        ratio = self._admitted[eligible] / self._shares[eligible]
        best = eligible[np.lexsort((-left[eligible], ratio))[0]]
        return int(best)

    # -- bookkeeping -------------------------------------------------------------------------

    def _take(self, c: int, k: int, prompt_kv: float, estimate: float) -> int:
        self._next[c] += 1
        self._remaining -= 1
        self._admitted[c] += float(self.sequence.prompt_tokens[k])
        index = int(self.sequence.index[k])
        self._position_of[index] = k
        spread = self.sequence.output_spread
        self._projection.add(
            index,
            prompt_kv,
            estimate,
            position=k,
            spread=float(spread[k]) if spread is not None else 0.0,
        )
        self._projection.commit(prompt_kv, estimate)
        return index

    def _prompt_kv(self, prompt_tokens: float) -> float:
        bs = self._block_size
        return float(math.ceil(prompt_tokens / bs) * bs)

    def _shared_between(self, positions: np.ndarray) -> np.ndarray:
        """Prompt KV tokens (whole blocks) each of these ascending positions shares with the
        one before it (the least shared_prev between them, as the dual scan reads it)."""
        if self._shared_tree is None:
            return np.zeros(len(positions))
        return kv_kernels().adjacent_minima(self._shared_tree, positions)
