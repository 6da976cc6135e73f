"""vLLM's engine arguments as a user gives them to blend, checked by the installed vLLM.

A vLLM user knows `--tensor-parallel-size 4 --dtype bfloat16 --quantization awq
--enforce-eager`; blend takes the same names with the same meaning (a few as options of its
own, any other one as `--engine-arg NAME=VALUE`) and hands them to the parser vLLM builds
for its own command line (`EngineArgs.add_cli_args`). So the names, choices and value types
are the installed vLLM's, and a typo fails before any work starts, in vLLM's words.

Arguments blend sets itself are refused here, each with the option that sets it: the model,
the two step budgets (the plan's, searched after the warm-up), the seed, the KV size of the
CPU build. On the CPU build chunked prefill is refused: vLLM 0.32's CPU runner crashes on a
seeded request in a partial prefill (blend turns it off there, see vllm_args.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from blend.engines.base import EngineConfig

# EngineArgs fields blend sets from its own options (name -> the option that sets it)
OWNED_BY_BLEND = {
    "model": "--model",
    "max_num_seqs": "--max-num-seqs (default: the plan's)",
    "max_num_batched_tokens": "--max-num-batched-tokens (default: the plan's)",
    "seed": "the run's seed",
    "kv_cache_memory_bytes": "--kv-cache-gib (CPU build)",
    "num_gpu_blocks_override": "blend's benchmarks only",
}


class EngineOptionsError(ValueError):
    """An engine argument the installed vLLM does not take, or one blend sets itself."""


@dataclass(frozen=True, slots=True)
class VllmEngineOptions:
    """The engine arguments a user gave (None: not given, vLLM's default applies).

    The named ones are the arguments a GPU user reaches for first; `extra` holds any other
    EngineArgs field by its vLLM name (dashes or underscores) with its value as text, as on
    vLLM's command line ("true"/"false" for a flag, JSON for a dict).
    """

    tensor_parallel_size: int | None = None  # GPUs one engine splits the weights and KV over
    dtype: str | None = None  # weights and activations: auto, bfloat16, float16, float32
    max_model_len: int | None = None  # tokens of prompt + output (default: the model's)
    gpu_memory_utilization: float | None = None  # share of GPU memory vLLM may take (0-1]
    quantization: str | None = None  # weight quantization method (awq, gptq, fp8, ...)
    enforce_eager: bool | None = None  # no CUDA graphs (starts faster, steps slower)
    enable_chunked_prefill: bool | None = None  # split long prompts over steps
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def given(self) -> bool:
        return bool(self.extra) or any(
            getattr(self, name) is not None for name in _NAMED if name != "extra"
        )

    def command_line(self) -> list[str]:
        """The arguments as vLLM's command line spells them."""
        args: list[str] = []
        for name in _NAMED:
            value = getattr(self, name)
            if value is not None:
                args += _flag(name, value)
        for name, text in self.extra.items():
            args += _flag(name, _text_value(text))
        return args


_NAMED = (
    "tensor_parallel_size",
    "dtype",
    "max_model_len",
    "gpu_memory_utilization",
    "quantization",
    "enforce_eager",
    "enable_chunked_prefill",
)


def parse_engine_args(pairs: Sequence[str], where: str = "--engine-arg") -> dict[str, str]:
    """NAME=VALUE texts -> {vllm_name: value}; names may use dashes (vLLM's command line) or
    underscores (EngineArgs' fields)."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip().lstrip("-").replace("-", "_")
        if not sep or not name:
            raise EngineOptionsError(
                f"{where} {pair!r}: expected NAME=VALUE, e.g. kv_cache_dtype=fp8"
            )
        if name in parsed:
            raise EngineOptionsError(f"{where} {name}: given twice")
        parsed[name] = value
    return parsed


def validated_engine_kwargs(options: VllmEngineOptions, *, on_cpu: bool) -> dict[str, Any]:
    """EngineArgs keyword arguments for `options`, parsed and checked by the installed vLLM's
    own argument parser (names, choices, types); only the arguments given are returned.

    Raises EngineOptionsError naming the argument: unknown to this vLLM, a bad value, one
    blend sets itself, an unknown quantization method, or chunked prefill on the CPU build.
    Imports vLLM (seconds): call it only when arguments were given.
    """
    for name in [*options.extra, *(n for n in _NAMED if getattr(options, n) is not None)]:
        if name in OWNED_BY_BLEND:
            raise EngineOptionsError(
                f"engine argument {name}: blend sets it itself, use {OWNED_BY_BLEND[name]}"
            )
    overlap = sorted(set(options.extra) & set(_NAMED))
    if overlap:
        flags = ", ".join("--" + n.replace("_", "-") for n in overlap)
        raise EngineOptionsError(f"--engine-arg {overlap[0]}: use {flags} instead")
    try:
        parsed = _vllm_parser().parse_args(options.command_line())
    except (_ParseError, argparse.ArgumentError) as exc:
        raise EngineOptionsError(f"vLLM engine argument: {exc}") from None
    # argparse's dest of every EngineArgs option is the field's name
    kwargs = {name: getattr(parsed, name) for name in _given_names(options)}
    quantization = kwargs.get("quantization")
    if quantization is not None:
        _check_quantization(quantization)
    if on_cpu and kwargs.get("enable_chunked_prefill"):
        raise EngineOptionsError(
            "--enable-chunked-prefill: not on vLLM's CPU build (its CPU runner crashes on a "
            "seeded request in a partial prefill); blend runs whole prompts there"
        )
    tp = kwargs.get("tensor_parallel_size")
    if on_cpu and tp not in (None, 1):
        raise EngineOptionsError(
            f"--tensor-parallel-size {tp}: vLLM's CPU build runs one engine per process here; "
            "tensor parallelism needs GPUs"
        )
    return kwargs


def with_engine_kwargs(config: EngineConfig, kwargs: Mapping[str, Any]) -> EngineConfig:
    """`config` with checked engine arguments (validated_engine_kwargs): the ones
    EngineConfig has as fields set there, the others kept in its `engine_args`."""
    if not kwargs:
        return config
    fields = {f.name for f in dataclasses.fields(EngineConfig)}
    named = {name: value for name, value in kwargs.items() if name in fields}
    rest = {name: value for name, value in kwargs.items() if name not in fields}
    return dataclasses.replace(config, **named, engine_args={**config.engine_args, **rest})


def _given_names(options: VllmEngineOptions) -> set[str]:
    return {n for n in _NAMED if getattr(options, n) is not None} | set(options.extra)


def _flag(name: str, value: object) -> list[str]:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return [flag] if value else ["--no-" + name.replace("_", "-")]
    if isinstance(value, dict | list):
        return [flag, json.dumps(value)]
    return [flag, str(value)]


def _text_value(text: str) -> object:
    """A flag's value as vLLM's command line takes it: true/false become the flag or its
    --no- form; anything else stays text for vLLM's parser to convert."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return text


class _ParseError(Exception):
    pass


def _vllm_parser() -> Any:
    """vLLM's own parser of its engine arguments, raising instead of exiting."""
    try:
        from vllm.engine.arg_utils import EngineArgs
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError as exc:
        raise EngineOptionsError(
            f"engine arguments need vLLM to check them, and it cannot be imported ({exc}): "
            'install blend with the "cpu" or "gpu" extra'
        ) from None

    class _Parser(FlexibleArgumentParser):  # type: ignore[misc, valid-type]
        def error(self, message: str) -> Any:  # argparse would print usage and exit
            raise _ParseError(message)

        def exit(self, status: int = 0, message: str | None = None) -> Any:
            raise _ParseError(message or f"exit {status}")

    return EngineArgs.add_cli_args(_Parser(add_help=False, exit_on_error=False))


def vllm_is_cpu_build() -> bool:
    """True on vLLM's CPU build (imports vLLM's platform detection: seconds)."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def _check_quantization(method: str) -> None:
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS

    if method not in QUANTIZATION_METHODS:
        raise EngineOptionsError(
            f"--quantization {method!r}: this vLLM knows {', '.join(QUANTIZATION_METHODS)}"
        )
