"""Synthetic prompt files for the scale benchmark (bench/scale.py), written as streamed JSONL.

Invariant: a file is a pure function of (shape, rows, seed); lines are valid ingest records
(`{"custom_id", "prompt"}` or `{"custom_id", "messages"}`), written one at a time, so any
row count fits in memory. Words come from the demo corpus (~3 tokens each with the demo
tokenizer).

Shapes:
  fewshot  a few hundred long few-shot templates (instruction + worked examples, 60-240 words)
           shared by many prompts (Zipf popularity), each followed by a unique question of
           8-40 words; one row in five is a chat (the template as the system message, the
           question as the user's)
  unique   unique prompts of 20-150 words, no shared text: sharing only by chance
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import orjson

from blend.demo.model import CORPUS_PATH

SHAPES = ("fewshot", "unique")
N_TEMPLATES = 300
_WORDS = CORPUS_PATH.read_text(encoding="utf-8").split()


def write_prompts(path: Path, shape: str, rows: int, seed: int = 0) -> None:
    """Write `rows` prompts of `shape` to `path` (JSON Lines)."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r} (known: {', '.join(SHAPES)})")
    records = _fewshot(rows, seed) if shape == "fewshot" else _unique(rows, seed)
    with path.open("wb", buffering=1 << 20) as f:
        for record in records:
            f.write(orjson.dumps(record) + b"\n")


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choices(_WORDS, k=n))


def _fewshot(rows: int, seed: int) -> Iterator[dict[str, object]]:
    rng = random.Random(seed)
    templates = [_template(rng, i) for i in range(N_TEMPLATES)]
    weights = [1.0 / (rank + 1) ** 1.1 for rank in range(N_TEMPLATES)]
    for i in range(rows):
        template = rng.choices(templates, weights)[0]
        question = _words(rng, rng.randint(8, 40)) + f" ({i})"  # unique even by chance
        if i % 5 == 4:
            yield {
                "custom_id": f"req-{i}",
                "messages": [
                    {"role": "system", "content": template},
                    {"role": "user", "content": question},
                ],
            }
        else:
            yield {"custom_id": f"req-{i}", "prompt": f"{template}\nQ: {question}\nA:"}


def _template(rng: random.Random, index: int) -> str:
    """An instruction and a few worked examples: 60-240 words."""
    examples = [
        f"Q: {_words(rng, rng.randint(8, 25))}\nA: {_words(rng, rng.randint(5, 30))}"
        for _ in range(rng.randint(2, 6))
    ]
    return f"Task {index}: {_words(rng, rng.randint(10, 40))}\n\n" + "\n\n".join(examples)


def _unique(rows: int, seed: int) -> Iterator[dict[str, object]]:
    rng = random.Random(seed)
    for i in range(rows):
        yield {"custom_id": f"req-{i}", "prompt": f"({i}) {_words(rng, rng.randint(20, 150))}"}
