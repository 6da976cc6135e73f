"""`blend lp`: the fluid LP of a profiled dataset's request classes (x*, y*, R*, throughput),
explained: the hardware and model it assumes come first, and the implied throughput is the
LP's fluid optimum on that hardware, never a measurement of this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from blend.cli.options import (
    DatasetOpt,
    HardwareOpt,
    ModelOpt,
    ModelSpecOpt,
    SeqsOpt,
    StoreOpt,
    TokensOpt,
    resolve_model,
)
from blend.cli.tables import print_numbers_table

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

VARIANTS = ("bundled", "per-phase", "sli-aware")


def lp_command(
    dataset: DatasetOpt,
    model_spec: ModelSpecOpt = None,
    hardware: HardwareOpt = None,
    variant: Annotated[
        str, typer.Option(help="LP variant: bundled, per-phase or sli-aware.")
    ] = "bundled",
    max_tpot_s: Annotated[
        float | None,
        typer.Option("--max-tpot-s", help="sli-aware: mean time per output token at most (s)."),
    ] = None,
    prefill_price: Annotated[
        float, typer.Option("--prefill-price", help="c_p: value of a prompt token.")
    ] = 1.0,
    decode_price: Annotated[
        float, typer.Option("--decode-price", help="c_d: value of an output token.")
    ] = 1.0,
    max_num_batched_tokens: TokensOpt = None,
    max_num_seqs: SeqsOpt = None,
    snapshot: Annotated[int | None, typer.Option(help="Snapshot (default: latest).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    model: ModelOpt = None,
    store: StoreOpt = None,
) -> None:
    """Solve the fluid LP for the profiled request classes (every class backlogged: an
    offline job) on the named hardware (default: this machine's) and print, in words, how
    it shares one GPU between the classes (x*, y*), its objective R*, the throughput it
    implies (a model of that hardware, not a measurement) and the LP sequence's makespan."""
    from blend.control.fluid_lp import LpInfeasibleError

    if variant not in VARIANTS:
        raise typer.BadParameter(
            f"{variant!r}: use one of {', '.join(VARIANTS)}", param_hint="--variant"
        )
    try:
        summary = lp_summary(
            dataset,
            model_spec=model_spec,
            hardware=hardware,
            variant=variant,
            max_tpot_s=max_tpot_s,
            prices=(prefill_price, decode_price),
            settings=(max_num_batched_tokens, max_num_seqs),
            snapshot=snapshot,
            model=model,
            store=store,
        )
    except (LpInfeasibleError, ValueError) as exc:
        err_console.print(f"[red]lp failed:[/red] {exc}")
        raise typer.Exit(1) from None
    if as_json:
        console.print_json(json.dumps(summary))
    else:
        print_summary(summary)


def lp_summary(
    dataset: str,
    *,
    model_spec: str | None,
    hardware: str | None,
    variant: str,
    max_tpot_s: float | None,
    prices: tuple[float, float],
    settings: tuple[int | None, int | None],
    snapshot: int | None,
    model: str | Path | None,  # a model folder or Hugging Face id (cli/options.resolve_model)
    store: Path | None,
) -> dict[str, Any]:
    """Everything `blend lp` prints, as JSON-friendly values."""
    from blend.control.class_store import load_classes
    from blend.control.fluid_inputs import class_fluid_inputs
    from blend.control.fluid_lp import LpVariant, Prices, SliConstraints, solve_fluid_lp
    from blend.control.phase_plan import class_specs, phase_plan
    from blend.cost.machine import check_hardware
    from blend.cost.resolve import resolve_cost
    from blend.engines.settings import EngineSettings, SettingsSource, vllm_default_settings
    from blend.store.database import Store
    from blend.store.names import NameKind, validate_name

    validate_name(dataset, NameKind.DATASET, "--dataset")
    opened = Store.open(store)
    profile = load_classes(opened, dataset, snapshot)
    model_dir = None
    if model_spec is None:
        model_dir = resolve_model(opened, model)
    cost = resolve_cost(model_spec, hardware, model_dir)
    tokens, seqs = settings
    if (tokens is None) != (seqs is None):
        raise ValueError("give both --max-num-batched-tokens and --max-num-seqs, or neither")
    engine = (
        EngineSettings(tokens, seqs, True, SettingsSource.EXPLICIT)
        if tokens is not None and seqs is not None
        else vllm_default_settings(
            cost.hardware, profile.max_model_len, tensor_parallel_size=cost.tensor_parallel_size
        )
    )
    inputs = class_fluid_inputs(cost, engine, profile.classes)
    chosen = LpVariant(variant)
    sli = SliConstraints(max_tpot_s=max_tpot_s) if chosen is LpVariant.SLI_AWARE else None
    price = Prices(*prices)
    solution = solve_fluid_lp(
        class_specs(profile.classes), inputs.params, price, chosen, sli, saturated=True
    )
    plan = phase_plan(profile.classes, inputs.params, prices=price, variant=chosen)
    params = inputs.params
    check = check_hardware(cost.hardware.name)
    return {
        "dataset": profile.dataset,
        "snapshot": profile.snapshot,
        "model_spec": cost.model.name,
        "hardware": cost.hardware.name,
        "device": cost.hardware.device,  # gpu | cpu
        "machine": check.machine.description,  # what this machine has
        "hardware_matches_machine": check.matches,
        "hardware_note": check.note(),  # None when the LP is priced for this machine
        "engine": {
            "max_num_batched_tokens": engine.max_num_batched_tokens,
            "max_num_seqs": engine.max_num_seqs,
        },
        "variant": chosen.value,
        "prices": {
            "prefill_per_token": price.prefill_per_token,
            "decode_per_token": price.decode_per_token,
        },
        "inputs": {
            "alpha_s": params.alpha_s,
            "beta_s_per_token": params.beta_s_per_token,
            "gamma_tok_s": params.gamma_tok_s,
            "slots": params.slots,
            "chunk_tokens": params.chunk_tokens,
            "tau_mixed_s": params.tau_mixed_s,
            "tau_solo_s": params.tau_solo_s,
            "typical_prompt_tokens": inputs.prompt_tokens,
            "typical_output_tokens": inputs.output_tokens,
            "fit_rms_rel": inputs.fit_rms_rel,
        },
        "classes": [
            {"n_requests": c.n_requests, **row}
            for c, row in zip(profile.classes, solution.table(), strict=True)
        ],
        "revenue_per_gpu_s": solution.revenue_per_gpu_s,
        "mixed_fraction": solution.mixed_fraction,
        "throughput_tok_s": solution.throughput_tok_s,
        "phase_plan": plan.to_json(),
    }


def summary_lines(s: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The words around the table: what the LP assumes (before it) and what its numbers
    mean (after it), for a summary from lp_summary."""
    engine, i, plan = s["engine"], s["inputs"], s["phase_plan"]
    hardware = s["hardware"]
    unit = "GPU" if s["device"] == "gpu" else "CPU"
    settings = f"{engine['max_num_batched_tokens']} tokens x {engine['max_num_seqs']} seqs"
    before = [
        f"fluid LP ({s['variant']}) of {s['dataset']!r} snapshot {s['snapshot']}, assuming "
        f"{s['model_spec']} on one {hardware} {unit} with vLLM at {settings}: a model of what "
        "that hardware could do with these request classes, not a measurement of this machine"
    ]
    if s["hardware_note"] is not None:
        before.append(f"hardware: {s['hardware_note']}")
    prices = s["prices"]
    after = [
        f"x*: the share of the {unit}'s prefill capacity the LP gives each class (they sum to the "
        f"mixed share, {s['mixed_fraction']:.3f}); y* mixed / solo: the decode slots it keeps "
        "for the class in mixed steps (a prefill chunk beside decodes) and in decode-only "
        "steps; done/s: the class's requests finished per second; P and D est: mean prompt "
        "tokens and the pipeline's estimated output tokens (max_tokens where nothing was "
        "measured yet)",
        f"R* {s['revenue_per_gpu_s']:,.1f}: what the LP maximises, value earned per {unit}-second "
        f"at {prices['prefill_per_token']:g} per prompt token and "
        f"{prices['decode_per_token']:g} per output token (--prefill-price, --decode-price)",
        f"implied throughput {s['throughput_tok_s']:,.0f} tok/s per {unit}: prompt + estimated "
        f"output tokens of the requests finished per second at the LP's fluid optimum on "
        f"{hardware} (every class backlogged, every request its class's mean size, no KV "
        "limit, no engine start, no tail). It is not a measurement: a real run's tok/s is "
        "in run_summary.throughput_tok_s, and `blend simulate` predicts one with the "
        "scheduler's limits",
        f"inputs ({s['model_spec']} on {hardware}, {settings}): alpha "
        f"{i['alpha_s'] * 1e3:.2f} ms + beta {i['beta_s_per_token'] * 1e6:.3f} us per prefill "
        f"token for a mixed step, gamma {i['gamma_tok_s']:.1f} tok/s per decode slot in a "
        f"decode-only step, B {i['slots']} slots, C {i['chunk_tokens']} prefill tokens a step",
        f"LP sequence (every class backlogged): {len(plan['phases'])} phases, predicted "
        f"makespan {plan['makespan_s']:,.1f} s on one {hardware} {unit} (fluid model, no engine "
        "start)",
    ]
    return before, after


def print_summary(s: dict[str, Any]) -> None:
    before, after = summary_lines(s)
    for line in before:
        console.print(escape(line))
    columns = ("class", "requests", "P", "D est", "x*", "y* mixed", "y* solo", "done/s")
    rows = [
        (
            c["class"],
            f"{c['n_requests']:,}",
            f"{c['prompt_tokens']:,.0f}",
            f"{c['output_tokens']:,.0f}",
            f"{c['x']:.4f}",
            f"{c['y_mixed']:.1f}",
            f"{c['y_solo']:.1f}",
            f"{c['completions_per_s']:.3f}",
        )
        for c in s["classes"]
    ]
    print_numbers_table(console, columns, rows, text_columns=("class",))
    for line in after:
        console.print(escape(line))
