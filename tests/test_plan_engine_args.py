"""vLLM's engine arguments that change a plan's price: --gpu-memory-utilization (the KV cache
vLLM leaves beside the weights) and --max-model-len (prompts over it are no work), through
the plan, the executor's re-plan, the capacity prediction and the simulator."""

from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
from typer.testing import CliRunner

from blend.cli import app
from blend.cost.model import load_hardware, load_model_spec
from blend.cost.resolve import resolve_cost
from blend.engines.base import EngineConfig
from blend.engines.tokenize import tokenizer_sha256
from blend.execute.stage import execute_plan
from blend.plan.items import read_plan_header
from blend.plan.stage import PlanOptions, plan_dataset
from blend.store.database import Store, fetch_dicts
from tests.support.fake_engine import FakeEngine
from tests.support.seeds import seed_groups

runner = CliRunner()


def vllm_kv_tokens(model: str, hardware: str, utilization: float) -> int:
    """vLLM's rule from the specs' sizes: u x the GPU's memory less the weights, in tokens."""
    spec, gpu = load_model_spec(model), load_hardware(hardware)
    weights = spec.n_params * spec.dtype_bytes
    per_token = 2 * spec.n_layers * spec.n_kv_heads * spec.head_dim * spec.dtype_bytes
    return int((utilization * gpu.mem_bytes - weights) // per_token)


def params(store: Store, plan_id: str) -> dict:
    return orjson.loads(read_plan_header(store, plan_id).params_json)


def test_a_plan_prices_the_kv_cache_gpu_memory_utilization_leaves(
    store: Store, tiny_model: Path
) -> None:
    """`blend plan --gpu-memory-utilization 0.5`: BlendServe's plan holds the KV cache it
    priced, vLLM's rule at 0.5 against 0.9 (vLLM's default) without the option; the plan
    records the option, and the executor prices with it again."""
    seed_groups(store, tokenizer_sha256(tiny_model))
    base = ["plan", "--dataset", "ds", "--planner", "blendserve", "--model", str(tiny_model)]
    base += ["--model-spec", "llama-3.1-8b", "--hardware", "h100-80g", "--store", str(store.root)]
    plans = {}
    for extra in ([], ["--gpu-memory-utilization", "0.5"]):
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == 0, result.output
        found = re.search(r"^plan (\S+): ", result.output, flags=re.MULTILINE)
        assert found is not None, result.output
        plan_id = found.group(1)
        plans[tuple(extra)] = params(store, plan_id), read_plan_header(store, plan_id)
    (default, default_header), (half, half_header) = plans.values()
    assert default["kv_capacity_tokens"] == vllm_kv_tokens("llama-3.1-8b", "h100-80g", 0.9)
    assert half["kv_capacity_tokens"] == vllm_kv_tokens("llama-3.1-8b", "h100-80g", 0.5)
    # 0.4 of the 80 GiB fewer bytes of KV: 262,144 tokens of llama-3.1-8b's 128 KiB each
    assert default["kv_capacity_tokens"] - half["kv_capacity_tokens"] == 262_144
    assert (default_header.gpu_memory_utilization, half_header.gpu_memory_utilization) == (
        None,
        0.5,
    )
    assert half["options"]["gpu_memory_utilization"] == 0.5
    # what the executor prices from the stored plan (blend execute defaults to its share)
    h = half_header
    again = resolve_cost(
        h.model_spec, h.hardware, None, h.tensor_parallel_size, h.gpu_memory_utilization
    )
    assert again.kv_capacity_tokens == half["kv_capacity_tokens"]


def test_gpu_memory_utilization_does_not_apply_to_the_cpu_build(
    store: Store, tiny_model: Path
) -> None:
    """cpu-local's memory is the CPU build's KV space (VLLM_CPU_KVCACHE_SPACE), which the
    option does not size: the same KV cache is priced with it or without it."""
    seed_groups(store, tokenizer_sha256(tiny_model))
    spec = {"planner": "blendserve", "model_spec": "llama-3.1-8b", "hardware": "cpu-local"}
    kv = [
        params(store, plan_dataset(store, "ds", options, model_dir=tiny_model).plan_id)[
            "kv_capacity_tokens"
        ]
        for options in (PlanOptions(**spec), PlanOptions(**spec, gpu_memory_utilization=0.5))
    ]
    assert kv[0] == kv[1] > 0


def test_prompts_over_max_model_len_are_in_the_plan_but_no_work(
    store: Store, tiny_model: Path
) -> None:
    """--max-model-len 41 (the model's is 1024): group b's 41-token prompts leave no room for
    an output. They stay in the plan, last, so the run writes their error rows, but are no
    work: not in the warm-up, the planner's order, the bounds or the re-plan after the
    warm-up."""
    rows = seed_groups(store, tokenizer_sha256(tiny_model))
    over = {rid for rid, ids, _ in rows if len(ids) >= 41}
    assert len(over) == 12 and all(len(ids) == 40 for rid, ids, _ in rows if rid not in over)
    spec = {"planner": "blendserve", "warmup_fraction": 0.1, "seed": 1}
    whole = plan_dataset(store, "ds", PlanOptions(**spec), model_dir=tiny_model)
    short = plan_dataset(store, "ds", PlanOptions(**spec, max_model_len=41), model_dir=tiny_model)
    assert (whole.n_over_length, short.n_over_length, short.max_model_len) == (0, 12, 41)
    assert whole.n_requests == short.n_requests == 24 and short.n_already_done == 0
    assert short.bounds is not None and whole.bounds is not None
    assert short.bounds.t_seq_s < whole.bounds.t_seq_s  # group a's work alone
    with store.connect() as con:
        items = fetch_dicts(
            con,
            "SELECT request_id, side, est_output_tokens, est_source FROM plan_items "
            "WHERE plan_id = ? ORDER BY seq",
            [short.plan_id],
        )
    tail, planned = items[-12:], items[:-12]
    assert {r["request_id"] for r in tail} == over
    assert all(
        (r["side"], r["est_output_tokens"], r["est_source"]) == (None, 0, None) for r in tail
    )
    assert not over & {r["request_id"] for r in planned}
    assert params(store, short.plan_id)["options"]["max_model_len"] == 41

    config = EngineConfig(model_dir=tiny_model, max_model_len=41)
    run = execute_plan(store, short.plan_id, config, engine_factory=lambda c: FakeEngine(c, 41))
    with store.connect() as con:
        errors = fetch_dicts(
            con, "SELECT request_id, error FROM results WHERE run_id = ?", [run.run_id]
        )
        order = fetch_dicts(
            con,
            "SELECT request_id, est_source FROM run_orders WHERE run_id = ? ORDER BY seq",
            [run.run_id],
        )
    refused = {r["request_id"] for r in errors if r["error"] is not None}
    assert refused == over and len(errors) == 24
    assert all(r["error"].startswith("prompt too long") for r in errors if r["error"])
    # the re-plan ordered group a's rest and left group b last, unpriced
    n_rest = 12 - short.n_warmup
    assert [r["request_id"][0] for r in order] == ["a"] * n_rest + ["b"] * 12
    assert all(r["est_source"] is None for r in order[n_rest:])


def test_capacity_and_simulate_price_both_options(
    store: Store, tiny_model: Path, tmp_path: Path
) -> None:
    """`blend capacity` and `blend simulate` take the same options: the KV cache priced at
    --gpu-memory-utilization 0.5 is vLLM's rule's, and prompts over --max-model-len are
    counted, not simulated."""
    seed_groups(store, tokenizer_sha256(tiny_model))  # 12 prompts of 40 tokens, 12 of 41
    kv = {u: vllm_kv_tokens("llama-3.1-8b", "h100-80g", u) for u in (0.5, 0.9)}
    spec = ["--model-spec", "llama-3.1-8b", "--hardware", "h100-80g", "--json"]
    capacity = ["capacity", "--dataset", "ds", "--deadline", "06:00", "--start", "05:00"]
    capacity += [*spec, "--max-engines", "1", "--model", str(tiny_model)]
    capacity += ["--store", str(store.root), "--max-model-len", "41"]
    workload = tmp_path / "requests.jsonl"  # prompts of 10, 20 and 30 tokens (bytes)
    lines = [{"request_id": f"r{n}", "prompt": "x" * n, "output_len": 4} for n in (10, 20, 30)]
    workload.write_text("".join(json.dumps(line) + "\n" for line in lines))
    simulate = ["simulate", "--requests", str(workload), "--planner", "dfs", *spec]
    simulate += ["--max-model-len", "21"]
    for command, over, kept in ((capacity, 12, 12), (simulate, 1, 2)):
        default = runner.invoke(app, command)
        half = runner.invoke(app, [*command, "--gpu-memory-utilization", "0.5"])
        assert default.exit_code == half.exit_code == 0, default.output + half.output
        reports = json.loads(default.output), json.loads(half.output)
        assert [r["kv_capacity_tokens"] for r in reports] == [kv[0.9], kv[0.5]]
        for report in reports:
            assert (report["n_over_length"], report["n_requests"]) == (over, kept)
