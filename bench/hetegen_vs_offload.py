"""The hetegen engine against vLLM's own weight offload (`cpu_offload_gb`), side by side.

    python bench/hetegen_vs_offload.py --out /tmp/offload.json                 # demo model
    python bench/hetegen_vs_offload.py --model DIR --offload-gib 8 --requests 64

Both engines run the same requests (random token prompts, greedy, fixed max_tokens) through
the executor's engine protocol with an in-order feed: `hetegen` (blend/engines/hetegen_engine,
split layers by placement; its GPU weight budget `--hetegen-weight-gib`, default: the model's
linear weights less --offload-gib) and `vllm` with EngineConfig.cpu_offload_gb = --offload-gib
(vLLM keeps that much of the weights in CPU memory and copies them in each forward pass).
Prints and writes (JSON, --out) wall time, engine start, output tokens/s per engine, or the
error an engine raised (vLLM's CPU build may refuse cpu_offload_gb).

On a CPU-only machine both run on the CPU (hetegen's "GPU part" too): a smoke comparison that
checks both paths run, not a measurement of either method. The comparison that means
something needs a GPU and a model larger than it.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blend.engines.base import EngineConfig, EngineRequest
from blend.engines.feeds import OrderedFeed

GIB = 2**30


def requests(n: int, prompt_tokens: int, max_tokens: int, vocab: int) -> list[EngineRequest]:
    rng = random.Random(0)
    return [
        EngineRequest(
            f"r{i}",
            [rng.randrange(10, vocab) for _ in range(prompt_tokens)],
            {"max_tokens": max_tokens, "temperature": 0.0},
        )
        for i in range(n)
    ]


def run_engine(kind: str, config: EngineConfig, batch: list[EngineRequest]) -> dict[str, Any]:
    """Start the engine, run every request, return the timings (or the error it raised)."""
    started = time.perf_counter()
    try:
        if kind == "hetegen":
            from blend.engines.hetegen_engine import HeteGenEngine

            engine: Any = HeteGenEngine(config)
        else:
            from blend.engines.vllm_engine import VllmEngine

            engine = VllmEngine(config)
    except Exception as exc:  # report it beside the other engine's numbers
        return {"engine": kind, "error": f"{type(exc).__name__}: {exc}"}
    start_s = time.perf_counter() - started
    try:
        began = time.perf_counter()
        outputs = [o for finished in engine.generate(OrderedFeed(batch)) for o in finished]
        wall_s = time.perf_counter() - began
    finally:
        engine.close()
    tokens = sum(o.n_output_tokens for o in outputs)
    errors = [o.error for o in outputs if o.error]
    return {
        "engine": kind,
        "version": engine.version,
        "start_s": round(start_s, 3),
        "wall_s": round(wall_s, 3),
        "output_tokens": tokens,
        "output_tokens_per_s": round(tokens / wall_s, 2) if wall_s else None,
        "errors": errors[:3],
        "params": getattr(engine, "params", {}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: demo)")
    parser.add_argument("--offload-gib", type=float, default=0.001, help="vLLM cpu_offload_gb")
    parser.add_argument("--hetegen-weight-gib", type=float, default=None)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-num-seqs", type=int, default=16)
    parser.add_argument("--kv-cache-gib", type=float, default=0.25)
    parser.add_argument("--engines", default="hetegen,vllm", help="comma-separated")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    model = args.model
    if model is None:
        from blend.demo.model import ensure_tiny_model

        model = ensure_tiny_model(Path(".blend-bench-models"))
    from blend.engines.selection import model_weight_bytes

    weight_gib = model_weight_bytes(model) / GIB
    hetegen_gib = args.hetegen_weight_gib
    if hetegen_gib is None:
        hetegen_gib = max(0.0, weight_gib - args.offload_gib)
    vocab = json.loads((model / "config.json").read_text())["vocab_size"]
    batch = requests(args.requests, args.prompt_tokens, args.max_tokens, vocab)
    base = EngineConfig(
        model_dir=model, max_num_seqs=args.max_num_seqs, kv_cache_gib=args.kv_cache_gib
    )
    configs = {
        "hetegen": EngineConfig(
            **{**_fields(base), "engine": "hetegen", "hetegen_weight_gib": hetegen_gib}
        ),
        "vllm": EngineConfig(
            **{**_fields(base), "engine": "vllm", "cpu_offload_gb": args.offload_gib}
        ),
    }
    import torch

    results = {
        "model": str(model),
        "weight_gib": round(weight_gib, 4),
        "offload_gib": args.offload_gib,
        "device": "cuda" if torch.cuda.is_available() else "cpu (smoke comparison only)",
        "runs": [run_engine(kind, configs[kind], batch) for kind in args.engines.split(",")],
    }
    text = json.dumps(results, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


def _fields(config: EngineConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


if __name__ == "__main__":
    raise SystemExit(main())
