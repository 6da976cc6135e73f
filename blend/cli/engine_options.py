"""vLLM's engine arguments as command-line options, by vLLM's own names (checked by the
installed vLLM's parser: blend/engines/vllm_options.py), shown in a panel of their own."""

from __future__ import annotations

from typing import Annotated

import typer

VLLM_PANEL = "vLLM engine (vLLM's names; checked by the installed vLLM)"

TensorParallelOpt = Annotated[
    int | None,
    typer.Option(
        "--tensor-parallel-size",
        "-tp",
        min=1,
        help="GPUs one engine splits the weights and the KV cache over (default 1; blend "
        "execute: the plan's). Plans and simulations price it.",
        rich_help_panel=VLLM_PANEL,
    ),
]
DtypeOpt = Annotated[
    str | None,
    typer.Option(
        "--dtype",
        help="Weights and activations: auto, bfloat16, float16, float32 (default auto).",
        rich_help_panel=VLLM_PANEL,
    ),
]
MaxModelLenOpt = Annotated[
    int | None,
    typer.Option(
        "--max-model-len",
        min=1,
        help="Tokens of prompt and output together (default: the model's; blend execute: "
        "the plan's). Plans and simulations leave longer prompts out of the work: they "
        "become error rows.",
        rich_help_panel=VLLM_PANEL,
    ),
]
GpuMemoryOpt = Annotated[
    float | None,
    typer.Option(
        "--gpu-memory-utilization",
        min=0.0,
        max=1.0,
        help="Share of each GPU's memory vLLM may take for weights and KV cache (default "
        "0.9; blend execute: the plan's). Plans and simulations price the KV cache it "
        "leaves. GPU only: vLLM's CPU build ignores it (--kv-cache-gib there).",
        rich_help_panel=VLLM_PANEL,
    ),
]
QuantizationOpt = Annotated[
    str | None,
    typer.Option(
        "--quantization",
        "-q",
        help="Weight quantization method: awq, gptq, fp8, ... (default: the model's).",
        rich_help_panel=VLLM_PANEL,
    ),
]
EnforceEagerOpt = Annotated[
    bool | None,
    typer.Option(
        "--enforce-eager/--no-enforce-eager",
        help="Run without CUDA graphs (starts faster, steps slower; default: vLLM's).",
        show_default=False,
        rich_help_panel=VLLM_PANEL,
    ),
]
ChunkedPrefillOpt = Annotated[
    bool | None,
    typer.Option(
        "--enable-chunked-prefill/--no-enable-chunked-prefill",
        help="Split long prompts over steps (GPU only; default: vLLM's, on).",
        show_default=False,
        rich_help_panel=VLLM_PANEL,
    ),
]
EngineArgOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--engine-arg",
        metavar="NAME=VALUE",
        help="Any other vLLM engine argument (dashes or underscores), e.g. "
        "kv_cache_dtype=fp8 or max_num_partial_prefills=2; repeat for more.",
        rich_help_panel=VLLM_PANEL,
    ),
]
