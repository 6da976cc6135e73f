"""One engine of a multi-engine run: executes the share of the plan the driver hands it.

Invariant: the worker never reads the DuckDB store; everything it runs (token ids, sampling,
the admission sequence, lineage) comes in its `Share`, and everything it produces leaves as
atomic Parquet parts in the run folder (blend/scale/parts.py) named after its tag. A share's
requests are handed to the engine once each, by the plan's admission policy over the share's
part of the sequence, so the worker writes each of them at most once; what it had not flushed
when it dies is re-run by the driver on another engine.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from blend.admission.dual_scan import ScanSequence
from blend.admission.factory import admission_policy
from blend.admission.feed import AdmissionFeed
from blend.cost.model import CostModel
from blend.engines.base import EngineConfig, EngineOutput, EngineRequest
from blend.engines.settings import EngineSettings
from blend.engines.supervisor import EngineFactory, RestartPolicy, SupervisedEngine
from blend.planners.base import AdmissionKind
from blend.scale.parts import RunFolder
from blend.store.lineage import RunLineage
from blend.store.results import PartWriter, ResultRow


@dataclass(frozen=True, slots=True)
class ShareRequest:
    """One plan item as the driver hands it to an engine."""

    seq: int  # plan position
    request: EngineRequest
    prompt_sha256: str
    sampling_json: str


@dataclass(frozen=True, slots=True)
class Share:
    """The plan items one engine runs: `sequence` in admission order (index: plan positions),
    `requests` aligned with it (requests[i].seq == sequence.index[i])."""

    share_index: int  # which of the K shares (an orphaned share keeps its index)
    sequence: ScanSequence
    requests: tuple[ShareRequest, ...]


@dataclass(frozen=True, slots=True)
class RunContext:
    """What every engine of the run shares."""

    folder: RunFolder
    lineage: RunLineage  # the run's lineage (engine fields: the first engine's)
    admission: AdmissionKind
    cost: CostModel
    flush_rows: int
    flush_seconds: float
    n_engines: int


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """Who an engine is, where it runs and what it runs with."""

    tag: str
    index: int  # engine slot 0..K-1 (a replacement reuses none: it gets a new tag)
    node: str  # host name of the node the engine runs on
    pid: int
    name: str
    version: str
    engine_params_json: str
    settings: EngineSettings
    start_seconds: float


@dataclass(frozen=True, slots=True)
class ShareReport:
    """What one engine did with one share (this execution)."""

    tag: str
    share_index: int
    n_rows: int
    output_tokens: int
    busy_seconds: float
    wall_seconds: float
    n_engine_restarts: int
    prefix_cache_queries: int
    prefix_cache_hits: int


class EngineWorker:
    """An engine and the loop that runs shares on it (a Ray actor's body; plain in tests)."""

    def __init__(
        self,
        tag: str,
        index: int,
        factory: EngineFactory,
        config: EngineConfig,
        restart_policy: RestartPolicy,
    ) -> None:
        self.tag, self.index = tag, index
        self._engine = SupervisedEngine(factory, config, restart_policy)
        self._parts_written = 0

    def pid(self) -> int:
        return os.getpid()

    def info(self) -> EngineInfo:
        engine = self._engine
        return EngineInfo(
            tag=self.tag,
            index=self.index,
            node=socket.gethostname(),
            pid=os.getpid(),
            name=engine.name,
            version=engine.version,
            engine_params_json=engine.params_json(),
            settings=engine.settings,
            start_seconds=engine.start_seconds,
        )

    def run_share(self, share: Share, context: RunContext) -> ShareReport:
        """Run every request of `share`; each finished request becomes a row in a part."""
        started = time.perf_counter()
        info = self.info()
        engine_meta = {
            "blend.engine_tag": self.tag,
            "blend.engine_index": str(self.index),
            "blend.engine_node": info.node,
            "blend.engine_pid": str(info.pid),
            "blend.n_engines": str(context.n_engines),
            "blend.share_index": str(share.share_index),
        }
        writer = PartWriter(
            Path(context.folder.uri),  # not written to: parts go through `write`
            {**context.lineage.as_metadata(), **engine_meta},
            flush_rows=context.flush_rows,
            flush_seconds=context.flush_seconds,
            start_index=self._parts_written,
            part_metadata=lambda: {"blend.engine_params_json": self._engine.params_json()},
            write=lambda rows, meta, index: context.folder.write_part(self.tag, rows, meta, index),
        )
        source = _ShareSource(share.requests)
        policy = admission_policy(
            context.admission, share.sequence, context.cost, self._engine.settings
        )
        busy_before = self._engine.busy_seconds
        failures_before = len(self._engine.failures)
        stats_before = self._engine.stats()
        try:
            writer.write_steps(
                self._engine.generate(AdmissionFeed(policy, source)),
                lambda output: _row(context.lineage, source.finish(output), output),
            )
        finally:
            writer.close()
        self._parts_written += writer.rows_added
        stats = self._engine.stats()
        return ShareReport(
            tag=self.tag,
            share_index=share.share_index,
            n_rows=writer.rows_added,
            output_tokens=writer.output_tokens,
            busy_seconds=self._engine.busy_seconds - busy_before,
            wall_seconds=time.perf_counter() - started,
            n_engine_restarts=len(self._engine.failures) - failures_before,
            prefix_cache_queries=stats.prefix_cache_queries - stats_before.prefix_cache_queries,
            prefix_cache_hits=stats.prefix_cache_hits - stats_before.prefix_cache_hits,
        )

    def close(self) -> None:
        self._engine.close()


class _ShareSource:
    """The share's requests by plan position (blend.admission.feed.RequestSource)."""

    def __init__(self, requests: Sequence[ShareRequest]) -> None:
        self._by_seq = {r.seq: r for r in requests}
        self._in_flight: dict[str, ShareRequest] = {}

    def take(self, seqs: Sequence[int]) -> list[EngineRequest]:
        out = []
        for seq in seqs:
            item = self._by_seq[int(seq)]
            self._in_flight[item.request.request_id] = item
            out.append(item.request)
        return out

    def finish(self, output: EngineOutput) -> ShareRequest:
        return self._in_flight.pop(output.request_id)


def _row(lineage: RunLineage, item: ShareRequest, output: EngineOutput) -> ResultRow:
    return ResultRow.of(
        lineage,
        output,
        seq=item.seq,
        prompt_sha256=item.prompt_sha256,
        sampling_json=item.sampling_json,
    )
