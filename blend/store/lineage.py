"""Lineage: what every result row and file can be traced to.

Hashes identify the exact model and tokenizer bytes; the git revision identifies the code.
OpenLineage run events (START, then COMPLETE or FAIL) describe each execution of a run: its
input is the prompts snapshot, its output the run's results folder.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import subprocess
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import blend
from blend.store.names import NameKind, path_under, validate_name

log = logging.getLogger(__name__)

OPENLINEAGE_NAMESPACE = "blend"
OPENLINEAGE_JOB = "blend.execute.stage"
OPENLINEAGE_MODES = ("file", "client", "off")

_MODEL_FILE_SUFFIXES = (".json", ".safetensors", ".bin", ".model", ".jinja", ".txt", ".py")


def sha256_files(paths: list[Path], chunk_bytes: int = 1 << 20) -> str:
    """sha256 over the names and bytes of `paths`, in sorted name order."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(path.name.encode())
        with path.open("rb") as f:
            while chunk := f.read(chunk_bytes):
                digest.update(chunk)
    return digest.hexdigest()


def model_sha256(model_dir: Path) -> str:
    """Hash of a model folder's weight, config and tokenizer files (top level only)."""
    files = [
        p for p in Path(model_dir).iterdir() if p.is_file() and p.suffix in _MODEL_FILE_SUFFIXES
    ]
    if not files:
        raise FileNotFoundError(f"no model files in {model_dir}")
    return sha256_files(files)


def git_revision(start: Path | None = None) -> str | None:
    """The project's git commit (with "-dirty" if modified), or None outside a checkout."""
    cwd = start or Path(blend.__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return rev + ("-dirty" if dirty else "")


@dataclass(frozen=True, slots=True)
class RunLineage:
    """Lineage of one run, stored in every result file's key-value metadata."""

    run_id: str
    plan_id: str
    dataset: str
    snapshot: int
    planner: str
    model: str
    model_sha256: str
    tokenizer_sha256: str
    engine: str
    engine_version: str
    engine_params_json: str
    flow_run_id: str | None  # Prefect flow run, when run by a flow
    deployment_name: str | None  # Prefect deployment that started the flow run
    git_revision: str | None
    blend_version: str = blend.__version__
    # the Hugging Face commit of a model from the hub's cache (blend/engines/model_source.py;
    # `model` is then its id); None for a model folder outside it
    model_revision: str | None = None

    def as_metadata(self) -> dict[str, str]:
        """Parquet footer metadata: keys prefixed `blend.`, None values left out."""
        return {f"blend.{k}": str(v) for k, v in asdict(self).items() if v is not None}


def openlineage_run_id(run_id: str) -> str:
    """The OpenLineage run id (a UUID) of a blend run: the same for every execution of it."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"blend:run:{run_id}"))


class LineageEvents:
    """Emits the OpenLineage events of one execution; failures to emit are logged, not raised.

    mode "file" appends events as JSON lines to <store>/lineage/<run_id>.jsonl; "client" uses
    openlineage-python's own configuration (openlineage.yml, OPENLINEAGE_URL,
    OPENLINEAGE__TRANSPORT__* variables); "off" emits nothing.
    """

    def __init__(self, mode: str, store_root: Path, lineage: RunLineage, results_dir: Path):
        if mode not in OPENLINEAGE_MODES:
            raise ValueError(f"Unknown OpenLineage mode: {mode!r} (use one of {OPENLINEAGE_MODES})")
        self._mode = mode
        self._store_root = store_root
        self._lineage = lineage
        self._results_dir = results_dir
        self._client: Any = None

    @property
    def events_path(self) -> Path:
        run_id = validate_name(self._lineage.run_id, NameKind.RUN_ID, "the lineage events file")
        return path_under(self._store_root, "lineage", f"{run_id}.jsonl")

    def start(self) -> None:
        self._emit("START")

    def finish(self, status: str, n_rows: int, error: str = "") -> None:
        """COMPLETE for a completed run, FAIL otherwise (with the error message)."""
        self._emit("COMPLETE" if status == "completed" else "FAIL", n_rows=n_rows, error=error)

    def _emit(self, state: str, n_rows: int | None = None, error: str = "") -> None:
        if self._mode == "off":
            return
        try:
            self._client_or_create().emit(self._event(state, n_rows, error))
        except Exception:  # lineage must never fail the run it describes
            log.warning("could not emit OpenLineage %s event", state, exc_info=True)

    def _client_or_create(self) -> Any:
        if self._client is None:
            from openlineage.client import OpenLineageClient

            if self._mode == "client":
                self._client = OpenLineageClient()
            else:
                from openlineage.client.transport.file import FileConfig, FileTransport

                self.events_path.parent.mkdir(parents=True, exist_ok=True)
                config = FileConfig(log_file_path=str(self.events_path), append=True)
                self._client = OpenLineageClient(transport=FileTransport(config))
        return self._client

    def _event(self, state: str, n_rows: int | None, error: str) -> Any:
        from openlineage.client.event_v2 import (
            InputDataset,
            Job,
            OutputDataset,
            Run,
            RunEvent,
            RunState,
        )
        from openlineage.client.facet_v2 import error_message_run, output_statistics_output_dataset

        lin = self._lineage
        run_facets: dict[str, Any] = {"blend": _blend_run_facet(lin)}
        if error:
            run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=error, programmingLanguage="python"
            )
        output_facets: dict[str, Any] = {}
        if n_rows is not None:
            output_facets["outputStatistics"] = (
                output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=n_rows)
            )
        return RunEvent(
            eventType=RunState[state],
            eventTime=datetime.now(UTC).isoformat(),
            run=Run(runId=openlineage_run_id(lin.run_id), facets=run_facets),
            job=Job(namespace=OPENLINEAGE_NAMESPACE, name=OPENLINEAGE_JOB),
            producer=f"https://github.com/blend/blend/tree/{blend.__version__}",
            inputs=[
                InputDataset(
                    namespace=OPENLINEAGE_NAMESPACE,
                    name=f"{self._store_root}/{lin.dataset}@{lin.snapshot}",
                )
            ],
            outputs=[
                OutputDataset(
                    namespace=OPENLINEAGE_NAMESPACE,
                    name=str(self._results_dir),
                    outputFacets=output_facets,
                )
            ],
        )


def _blend_run_facet(lineage: RunLineage) -> Any:
    """A custom run facet carrying the blend lineage of the run (as in the Parquet footers)."""
    facet_class = _blend_run_facet_class()
    names = {f.name for f in attr_fields(facet_class)}
    return facet_class(**{k: v for k, v in asdict(lineage).items() if k in names})


def attr_fields(cls: type) -> Any:
    import attr

    return attr.fields(cls)


@functools.cache
def _blend_run_facet_class() -> type:
    import attr
    from openlineage.client.facet_v2 import RunFacet

    @attr.define
    class BlendRunFacet(RunFacet):
        run_id: str
        plan_id: str
        planner: str
        model: str
        model_sha256: str
        tokenizer_sha256: str
        engine: str
        engine_version: str
        flow_run_id: str | None = None
        deployment_name: str | None = None
        git_revision: str | None = None
        model_revision: str | None = None

        @staticmethod
        def _get_schema() -> str:
            return "https://github.com/blend/blend/spec/BlendRunFacet.json"

    return BlendRunFacet
