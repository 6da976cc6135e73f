"""The demo dataset: a few hundred prompts shaped like a real nightly job.

Four kinds, each with its own output limit, drawn deterministically (seeded) from the
bundled corpus so that profiling and planning have real structure to find:
- eval:      few-shot evaluation prompts; each subject shares a long (~400-token) prefix of
             worked examples, the question differs; 4 output tokens (compute-heavy).
- chat:      chat requests sharing one long system prompt; 96 output tokens.
- summarise: long documents with short summaries (compute-heavy, little sharing);
             a few are longer than the demo model's context and become error rows.
- explain:   short questions with long answers (memory-heavy).
Plus a handful of broken lines, as real inputs have, which ingest keeps in `rejects`.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from blend.demo.model import CORPUS_PATH


@dataclass(frozen=True, slots=True)
class DemoSize:
    """How many prompts of each kind (defaults: ~330 prompts in all)."""

    eval_subjects: int = 4
    eval_questions_per_subject: int = 30
    chat: int = 80
    summarise: int = 50
    summarise_over_length: int = 3
    explain: int = 80
    broken_lines: bool = True

    @classmethod
    def small(cls) -> DemoSize:
        """A quick variant for tests (~40 prompts)."""
        return cls(
            eval_subjects=2,
            eval_questions_per_subject=6,
            chat=8,
            summarise=6,
            summarise_over_length=1,
            explain=8,
        )


def corpus_paragraphs() -> list[str]:
    """Paragraphs of the bundled corpus with at least a few words each."""
    text = CORPUS_PATH.read_text(encoding="utf-8")
    paragraphs = [re.sub(r"\s+", " ", p).strip() for p in text.split("\n\n")]
    return [p for p in paragraphs if len(p.split()) >= 8]


def corpus_sentences(paragraphs: list[str]) -> list[str]:
    return [s.strip() for p in paragraphs for s in re.split(r"(?<=[.!?])\s+", p) if len(s) > 30]


def write_demo_dataset(path: Path, size: DemoSize | None = None, seed: int = 0) -> Path:
    """Write the demo JSONL to `path` (deterministic for a given size and seed)."""
    size = size or DemoSize()
    rng = random.Random(seed)
    paragraphs = corpus_paragraphs()
    sentences = corpus_sentences(paragraphs)
    records: list[dict] = []
    records += _eval_prompts(rng, sentences, size)
    records += _chat_prompts(rng, sentences, paragraphs, size)
    records += _summarise_prompts(rng, paragraphs, size)
    records += _explain_prompts(rng, sentences, size)
    rng.shuffle(records)  # a nightly input arrives mixed, not grouped by kind
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    if size.broken_lines:
        lines = _with_broken_lines(lines, records, rng)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    temporary.replace(path)
    return path


def _eval_prompts(rng: random.Random, sentences: list[str], size: DemoSize) -> list[dict]:
    records = []
    for s in range(size.eval_subjects):
        shots = "\n\n".join(
            "Question: Is the following statement about Python accurate?\n"
            f"{rng.choice(sentences)}\nAnswer: {rng.choice(['A', 'B'])}"
            for _ in range(8)
        )
        prefix = (
            f"The following are multiple choice questions (with answers) about Python, "
            f"subject {s + 1}. Answer A for accurate, B for inaccurate.\n\n{shots}\n\n"
        )
        for q in range(size.eval_questions_per_subject):
            records.append(
                {
                    "custom_id": f"eval-{s + 1}-{q + 1:03d}",
                    "prompt": f"{prefix}Question: Is the following statement about Python "
                    f"accurate?\n{rng.choice(sentences)}\nAnswer:",
                    "max_tokens": 4,
                    "temperature": 0.0,
                }
            )
    return records


def _chat_prompts(
    rng: random.Random, sentences: list[str], paragraphs: list[str], size: DemoSize
) -> list[dict]:
    system = (
        "You are a patient Python tutor. Answer precisely, quote the language reference where "
        "it helps, and keep examples short. Reference notes follow.\n\n"
        + "\n\n".join(rng.sample(paragraphs, 4))
    )
    return [
        {
            "custom_id": f"chat-{i + 1:03d}",
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": f"Can you explain this? {rng.choice(sentences)}"},
            ],
            "max_tokens": 96,
            "temperature": 0.7,
            "seed": i,
        }
        for i in range(size.chat)
    ]


def _summarise_prompts(rng: random.Random, paragraphs: list[str], size: DemoSize) -> list[dict]:
    records = []
    for i in range(size.summarise):
        over_length = i < size.summarise_over_length
        n_paragraphs = rng.randint(30, 36) if over_length else rng.randint(5, 9)
        document = "\n\n".join(rng.sample(paragraphs, n_paragraphs))
        records.append(
            {
                "custom_id": f"summarise-{i + 1:03d}",
                "prompt": f"Summarise the following document in one sentence.\n\n{document}\n\n"
                "Summary:",
                "max_tokens": 32,
                "temperature": 0.2,
                "seed": 1000 + i,
            }
        )
    return records


def _explain_prompts(rng: random.Random, sentences: list[str], size: DemoSize) -> list[dict]:
    topics = [s.split(" ")[:6] for s in rng.sample(sentences, size.explain)]
    return [
        {
            "custom_id": f"explain-{i + 1:03d}",
            "messages": [
                {"role": "user", "content": f"Write a detailed tutorial about: {' '.join(t)}"}
            ],
            "max_tokens": 256,
            "temperature": 0.9,
            "top_p": 0.95,
            "seed": 2000 + i,
        }
        for i, t in enumerate(topics)
    ]


def _with_broken_lines(lines: list[str], records: list[dict], rng: random.Random) -> list[str]:
    """Insert the kinds of bad rows a real export contains (kept in `rejects` by ingest)."""
    broken = [
        '{"custom_id": "broken-json", "prompt": "unterminated',
        json.dumps({"custom_id": "empty-prompt", "prompt": "   ", "max_tokens": 8}),
        json.dumps({"custom_id": "bad-temperature", "prompt": "Hi", "temperature": "hot"}),
        json.dumps({"custom_id": records[0]["custom_id"], "prompt": "a duplicate id"}),
    ]
    out = list(lines)
    for line in broken:
        out.insert(rng.randint(1, len(out)), line)
    return out
