"""Options and arguments that several commands share: one definition each, so a name, its
meaning and its help text are the same wherever it appears."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from blend.planners import PlannerName
from blend.store.database import Store
from blend.store.names import InvalidNameError, NameKind, validate_name

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def name_rule(kind: NameKind) -> Callable[[str | None], str | None]:
    """A typer callback refusing values that break the naming rule (blend.store.names)."""

    def check(value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return validate_name(value, kind)
        except InvalidNameError as exc:
            raise typer.BadParameter(str(exc)) from None

    return check


StoreOpt = Annotated[
    Path | None,
    typer.Option("--store", help="Store folder (default: $BLEND_STORE or ./blend-store)."),
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Model folder, or Hugging Face model id (org/name, org/name@revision) from the "
        "local Hugging Face cache, never downloaded (default: the tiny demo model, created "
        "once).",
    ),
]
DatasetOpt = Annotated[
    str, typer.Option("--dataset", help="Dataset name.", callback=name_rule(NameKind.DATASET))
]
PlannerOpt = Annotated[PlannerName, typer.Option(help="How to order the requests.")]
ModelSpecOpt = Annotated[
    str | None,
    typer.Option(
        "--model-spec",
        help="Cost model of the model (a spec name or JSON file; default: the model "
        "folder's config.json).",
    ),
]
# the same options where a spec must be named (no model folder to read it from)
ModelSpecNameOpt = Annotated[
    str,
    typer.Option(
        "--model-spec", help="Model spec: a name (blend/cost/specs/models.json) or a JSON file."
    ),
]
HardwareNameOpt = Annotated[
    str,
    typer.Option(
        "--hardware",
        help="Hardware: a name (a100-80g, h100-80g, h200, cpu-local) or a JSON file.",
    ),
]
HardwareOpt = Annotated[
    str | None,
    typer.Option(
        help="Hardware the engines run on (a100-80g, h100-80g, h200, cpu-local or a JSON "
        "file; default: this machine's)."
    ),
]
WarmupOpt = Annotated[
    float,
    typer.Option(
        "--warmup-fraction",
        help="Share of the requests without a measured length that run first, to measure "
        "output lengths (0: no warm-up).",
    ),
]
SearchOpt = Annotated[
    bool,
    typer.Option(
        "--search-settings/--no-search-settings",
        help="After the warm-up, choose the engine's token budget and running-request limit "
        "by simulating the plan (restarting the engine when the gain is worth it).",
    ),
]
TokensOpt = Annotated[
    int | None,
    typer.Option(
        "--max-num-batched-tokens",
        help="Tokens per engine step (default: vLLM's offline default, then the search's).",
    ),
]
SeqsOpt = Annotated[
    int | None,
    typer.Option(
        "--max-num-seqs",
        help="Running requests at most (default: vLLM's offline default, then the search's).",
    ),
]
EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        help="vllm, hetegen (CPU+GPU split layers, for models larger than the GPU) or auto: "
        "hetegen when the weights and the KV cache do not fit the GPU.",
    ),
]
IncrementalOpt = Annotated[
    bool,
    typer.Option(
        "--incremental/--full",
        help="Plan only prompts without a result from this model and sampling (--model), "
        "or all of them.",
    ),
]

EnginesOpt = Annotated[
    int,
    typer.Option(
        "--engines",
        min=1,
        help="Engines that run the plan in parallel, one share each, as Ray actors (one GPU "
        "each where the cluster has GPUs; Ray: $RAY_ADDRESS, else a local cluster).",
    ),
]
ResultsUriOpt = Annotated[
    str | None,
    typer.Option(
        "--results-uri",
        help="With --engines: the store's results folder as the engines reach it (e.g. "
        "s3://bucket/results; default: its local path, shared by every node).",
    ),
]


def resolve_model(store: Store, model: str | Path | None) -> Path:
    """The folder of the model `--model` names (blend.engines.model_source: a folder, or a
    Hugging Face id found in the local cache), or the demo model (created on first use).
    A model that is not there ends the command at once: one line, exit 1."""
    if model is not None:
        from blend.engines.model_source import ModelNotFoundError, locate_model

        try:
            return locate_model(str(model)).path
        except InvalidNameError as exc:
            raise typer.BadParameter(str(exc), param_hint="--model") from None
        except ModelNotFoundError as exc:  # the message starts with the value given
            typer.echo(f"blend failed: --model {exc}", err=True)  # as blend.cli.main says it
            raise typer.Exit(1) from None
    from blend.demo.model import ensure_tiny_model

    return ensure_tiny_model(store.models_dir)


SeedOpt = Annotated[
    int,
    typer.Option(
        "--seed",
        help="Seed of the warm-up sample and of the random planner's shuffle (same seed, same "
        "plan).",
    ),
]
