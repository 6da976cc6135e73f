"""Support (not a test module): seeded JSON Lines mixing every shape the two ingest paths
must agree on - accepted, rejected, undecidable by the vectorised path, blank."""

from __future__ import annotations

import json
import random
from pathlib import Path

import orjson

_TEXTS = [
    "plain words",
    'quote " and \\ backslash',
    "new\nline and\ttab\r",
    "bell \x07 and \x01 controls, \b\f",
    "unicode café 漢字 😀",
    "nbsp-only-around\u00a0x\u3000",
    "\u2028separator\u2029",
    "x",
]
_ROLES = ["system", "user", "assistant"]


def _record(rng: random.Random, i: int) -> dict[str, object]:
    record: dict[str, object] = {}
    id_kind = rng.random()
    if id_kind < 0.5:
        record["custom_id"] = f"r{i}" if rng.random() < 0.9 else f"r{rng.randrange(i + 1)}"
    elif id_kind < 0.7:
        record["id"] = i if rng.random() < 0.9 else rng.randrange(i + 1)
    text = rng.choice(_TEXTS) + f" {rng.randrange(50)}"
    if rng.random() < 0.6:
        record["prompt"] = text
    else:
        record["messages"] = [
            {"role": rng.choice(_ROLES), "content": rng.choice(_TEXTS), "name": "ignored"}
            for _ in range(rng.randint(1, 3))
        ]
    if rng.random() < 0.5:
        record["max_tokens"] = rng.choice([1, 16, 256, 1 << 20])
    if rng.random() < 0.4:
        record["temperature"] = rng.choice([0, 0.0, -0.0, 0.7, 1, 1e-7, 2.5])
    if rng.random() < 0.1:
        record["seed"] = rng.randrange(-(1 << 40), 1 << 40)
    if rng.random() < 0.05:
        record["top_p"] = rng.choice([0.5, 1])
    if rng.random() < 0.03:
        record["stop"] = rng.choice(["\n", ["a", "b"], []])
    if rng.random() < 0.03:
        record["sampling"] = rng.choice([{"top_k": 5}, {"max_tokens": 9}, {}])
    if rng.random() < 0.05:
        record["metadata"] = rng.choice([{"k": [1, 2]}, "s", 3, None])
    return record


_BAD = [
    b"not json",
    b"[1, 2]",
    b"{}",
    b'{"prompt": ""}',
    b'{"prompt": "   "}',
    b'{"prompt": "\\u3000"}',
    b'{"prompt": 5}',
    b'{"prompt": null, "messages": null}',
    b'{"messages": []}',
    b'{"messages": [null]}',
    b'{"messages": [{"role": "tool", "content": "x"}]}',
    b'{"messages": [{"role": "user", "content": " "}]}',
    b'{"messages": [{"role": "user"}]}',
    b'{"prompt": "a", "messages": [{"role": "user", "content": "x"}]}',
    b'{"prompt": "a", "temperature": -1}',
    b'{"prompt": "a", "temperature": true}',
    b'{"prompt": "a", "max_tokens": 0}',
    b'{"prompt": "a", "max_tokens": 16.0}',
    b'{"prompt": "a", "max_tokens": "16"}',
    b'{"prompt": "a", "max_tokens": 99999999999}',
    b'{"prompt": "a", "n": 2}',
    b'{"prompt": "a", "min_tokens": 5, "max_tokens": 2}',
    b'{"prompt": "a", "temperature": 1e400}',
    b'{"prompt": "a", "prompt": "b"}',
    b'{"prompt": "a", "pro\\u006dpt": "b"}',
    b'{"custom_id": "", "prompt": "a"}',
    b'{"custom_id": 5, "prompt": "a"}',
    b'{"custom_id": null, "id": true, "prompt": "a"}',
    b'{"id": 1.5, "prompt": "a"}',
    b'{"prompt": "caf\xe9"}',
    b'{"prompt": "a\x00b"}',
    b'{"prompt": "bad \\ud800"}',
    b'{"prompt": "a", "temperature": 0.5, "sampling": {"temperature": 0.7}}',
    b'{"prompt": "a", "temperature": null, "sampling": {"temperature": 0.7}}',
    b'{"prompt": "a", "extra": ' + b"[" * 1100 + b"]" * 1100 + b"}",
    b'{"prompt": "a"} trailing',
    b' {"prompt": "leading space"}',
    b'{"prompt": "a"}\r\r',
    b'{"method": "POST", "url": "/v1/completions", "body": {"prompt": "x"}}',
]
_BLANK = [b"", b"  ", b"\t", b"\r"]


def write_mixed(path: Path, n_lines: int, seed: int = 0, long_line_bytes: int = 0) -> Path:
    """n_lines lines, about 70% good; long_line_bytes > 0 adds a few lines that long."""
    rng = random.Random(seed)
    out = [b"\xef\xbb\xbf"] if rng.random() < 0.5 else []
    for i in range(n_lines):
        roll = rng.random()
        if roll < 0.7:
            record = _record(rng, i)
            line = orjson.dumps(record) if rng.random() < 0.7 else json.dumps(record).encode()
        elif roll < 0.95:
            line = rng.choice(_BAD)
        else:
            line = rng.choice(_BLANK)
        if long_line_bytes and rng.random() < 0.01:
            line = orjson.dumps({"prompt": "y" * long_line_bytes})
        terminator = b"\r\n" if rng.random() < 0.1 else b"\n"
        out.append(line + terminator)
    data = b"".join(out)
    path.write_bytes(data.removesuffix(b"\n") if rng.random() < 0.5 else data)
    return path
