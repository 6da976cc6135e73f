"""vLLM engine arguments: vLLM's names, checked by the installed vLLM's own parser, refused
in one line before any work, and handed to the real engine (and its lineage) when good."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blend.cli import app
from blend.engines.base import EngineConfig, EngineName
from blend.engines.vllm_args import engine_kwargs
from blend.engines.vllm_options import (
    EngineOptionsError,
    VllmEngineOptions,
    parse_engine_args,
    validated_engine_kwargs,
    with_engine_kwargs,
)
from blend.store.database import Store, fetch_dicts
from tests.support.attacks import write_jsonl

runner = CliRunner()


def test_engine_arg_pairs_take_vllms_spelling_with_dashes_or_underscores() -> None:
    parsed = parse_engine_args(["kv-cache-dtype=fp8", "--max_logprobs=3", "hf_overrides={}"])
    assert parsed == {"kv_cache_dtype": "fp8", "max_logprobs": "3", "hf_overrides": "{}"}
    with pytest.raises(EngineOptionsError, match="NAME=VALUE"):
        parse_engine_args(["kv_cache_dtype"])
    with pytest.raises(EngineOptionsError, match="twice"):
        parse_engine_args(["swap_space=1", "swap-space=2"])


def test_values_are_converted_and_checked_by_vllms_parser() -> None:
    options = VllmEngineOptions(
        dtype="float32",
        max_model_len=256,
        enforce_eager=True,
        extra={"max_logprobs": "3", "hf_overrides": '{"rope_theta": 5.0}', "kv_cache_dtype": "fp8"},
    )
    kwargs = validated_engine_kwargs(options, on_cpu=False)
    assert kwargs == {
        "dtype": "float32",
        "max_model_len": 256,
        "enforce_eager": True,
        "max_logprobs": 3,  # an int, as vLLM's parser converts it
        "hf_overrides": {"rope_theta": 5.0},
        "kv_cache_dtype": "fp8",
    }
    # a flag turned off is passed as False, not dropped
    assert validated_engine_kwargs(VllmEngineOptions(enforce_eager=False), on_cpu=False) == {
        "enforce_eager": False
    }


@pytest.mark.parametrize(
    ("options", "on_cpu", "names"),
    [
        (VllmEngineOptions(dtype="float8"), False, "--dtype"),
        (VllmEngineOptions(extra={"no_such_argument": "1"}), False, "--no-such-argument"),
        (VllmEngineOptions(extra={"max_logprobs": "many"}), False, "--max-logprobs"),
        (VllmEngineOptions(quantization="zip"), False, "'zip'"),
        (VllmEngineOptions(extra={"max_num_seqs": "8"}), False, "--max-num-seqs"),
        (VllmEngineOptions(extra={"model": "x"}), False, "--model"),
        (VllmEngineOptions(extra={"tensor_parallel_size": "2"}), False, "--tensor-parallel-size"),
        (VllmEngineOptions(enable_chunked_prefill=True), True, "CPU build"),
        (VllmEngineOptions(tensor_parallel_size=2), True, "needs GPUs"),
    ],
)
def test_bad_or_owned_arguments_are_refused_naming_them(
    options: VllmEngineOptions, on_cpu: bool, names: str
) -> None:
    with pytest.raises(EngineOptionsError) as refused:
        validated_engine_kwargs(options, on_cpu=on_cpu)
    assert names in str(refused.value)


def test_checked_arguments_reach_the_engine_and_its_config(tiny_model: Path) -> None:
    options = VllmEngineOptions(
        tensor_parallel_size=2, quantization="awq", extra={"kv_cache_dtype": "fp8"}
    )
    kwargs = validated_engine_kwargs(options, on_cpu=False)
    config = with_engine_kwargs(EngineConfig(model_dir=tiny_model), kwargs)
    assert config.tensor_parallel_size == 2 and config.quantization == "awq"
    assert dict(config.engine_args) == {"kv_cache_dtype": "fp8"}
    handed = engine_kwargs(config, on_cpu=False, show_load_progress=False)
    assert handed["tensor_parallel_size"] == 2
    assert handed["quantization"] == "awq"
    assert handed["kv_cache_dtype"] == "fp8"
    assert "enforce_eager" not in handed  # not given: vLLM's default


def test_a_bad_engine_argument_fails_before_the_store_is_touched(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "hi"}])
    result = runner.invoke(
        app, ["run", str(src), "--store", str(store_dir), "--engine-arg", "no_such_argument=1"]
    )
    assert result.exit_code == 1
    assert "no-such-argument" in result.output
    assert not store_dir.exists()


def test_hetegen_with_tensor_parallelism_is_refused(tmp_path: Path, tiny_model: Path) -> None:
    from blend.engines.selection import engine_choice

    config = EngineConfig(model_dir=tiny_model, tensor_parallel_size=2)
    assert engine_choice(config).engine == "vllm"
    with pytest.raises(ValueError, match="one GPU"):
        engine_choice(
            EngineConfig(model_dir=tiny_model, tensor_parallel_size=2, engine=EngineName.HETEGEN)
        )


@pytest.mark.engine
def test_the_real_engine_runs_with_the_users_arguments(tmp_path: Path, tiny_model: Path) -> None:
    records = [
        {"custom_id": f"q{i}", "prompt": f"Question {i}?", "max_tokens": 4} for i in range(3)
    ]
    records.append({"custom_id": "long", "prompt": "word " * 400, "max_tokens": 4})
    src = write_jsonl(tmp_path / "opts.jsonl", records)
    store_dir = tmp_path / "store"
    args = ["run", str(src), "--store", str(store_dir), "--model", str(tiny_model)]
    args += ["--max-model-len", "128", "--dtype", "float32", "--engine-arg", "max_logprobs=3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    with Store.open(store_dir).connect() as con:
        rows = fetch_dicts(con, "SELECT request_id, error FROM results ORDER BY request_id")
        runs = fetch_dicts(con, "SELECT params_json FROM runs")
    errors = {r["request_id"]: r["error"] for r in rows}
    assert errors["long"] is not None  # over the 128 tokens the engine was started with
    assert all(errors[f"q{i}"] is None for i in range(3))
    params = json.loads(runs[0]["params_json"])
    assert params["max_model_len"] == 128
    assert params["dtype"] == "float32"
    assert params["engine_args"] == {"max_logprobs": 3}
