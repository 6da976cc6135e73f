"""Store rows as ingest and profile would leave them, written directly (dataset 'ds')."""

from __future__ import annotations

from blend.store.database import Store

PROMPTS = {  # request_id -> token ids; "long" does not fit the fake engine's 64 tokens
    "a": [1, 2, 3],
    "b": [1, 2, 4],
    "c": [7, 8],
    "long": list(range(10, 80)),
    "d": [1, 2, 3, 9],
}


def seed_store(store: Store, tokenizer_hash: str) -> None:
    """Rows as ingest and profile would leave them, written directly."""
    with store.connect() as con:
        for line_no, (rid, ids) in enumerate(PROMPTS.items(), start=1):
            con.execute(
                "INSERT INTO prompts VALUES ('ds', 1, ?, ?, ?, ?, NULL, ?, 3)",
                [rid, line_no, f"sha-{rid}", f"prompt {rid}", '{"max_tokens": 3}'],
            )
            con.execute(
                "INSERT INTO prompt_tokens VALUES ('ds', 1, ?, ?, ?, ?)",
                [rid, tokenizer_hash, len(ids), ids],
            )
        con.execute(
            "INSERT INTO profiles (dataset, snapshot, tokenizer_sha256, model, max_model_len, "
            "profiled_at, n_prompts, input_tokens, n_over_length, unique_prefix_tokens) "
            "VALUES ('ds', 1, ?, 'tiny', 64, now(), 5, 82, 1, 0)",
            [tokenizer_hash],
        )


GROUPS = {"a": (list(range(1, 40)), 3), "b": (list(range(50, 90)), 9)}  # prefix, max_tokens


def seed_groups(store: Store, tokenizer_hash: str, per_group: int = 12, snapshot: int = 1):
    """Two prefix groups of prompts, as ingest and profile would leave them."""
    rows = []
    for name, (prefix, max_tokens) in GROUPS.items():
        for i in range(per_group):
            rows.append((f"{name}{i}", [*prefix, 200 + i], max_tokens))
    with store.connect() as con:
        for line_no, (rid, ids, max_tokens) in enumerate(rows, start=1):
            con.execute(
                "INSERT INTO prompts VALUES ('ds', ?, ?, ?, ?, ?, NULL, ?, ?)",
                [
                    snapshot,
                    rid,
                    line_no,
                    f"sha-{rid}",
                    f"p {rid}",
                    f'{{"max_tokens": {max_tokens}}}',
                    max_tokens,
                ],
            )
            con.execute(
                "INSERT INTO prompt_tokens VALUES ('ds', ?, ?, ?, ?, ?)",
                [snapshot, rid, tokenizer_hash, len(ids), ids],
            )
        con.execute(
            "INSERT INTO profiles (dataset, snapshot, tokenizer_sha256, model, max_model_len, "
            "profiled_at, n_prompts, input_tokens, n_over_length, unique_prefix_tokens) "
            "VALUES ('ds', ?, ?, 'tiny', 1024, now(), ?, 0, 0, 0)",
            [snapshot, tokenizer_hash, len(rows)],
        )
    return rows
