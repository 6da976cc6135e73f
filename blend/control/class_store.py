"""Request classes of a profile in the store: computed in the profile stage, read by `blend lp`.

Invariant: `request_classes` holds the classes of the latest profile of (dataset, snapshot,
tokenizer); they are replaced (delete + insert) in the caller's transaction, so a re-profile
never duplicates them and a crash keeps the previous ones. The output lengths behind them are
the pipeline's own estimates (blend/planners/estimates.py) from what the planner would see
before a warm-up: each prompt's earlier result by the same model where there is one, the
dataset's earlier results as prefix-group hints, else max_tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from blend.control.classes import Clustering, RequestClass, cluster_requests
from blend.planners.history import HISTORY_LIMIT, requests_with_history
from blend.store import sql
from blend.store.database import Store, fetch_arrow, fetch_dicts


@dataclass(frozen=True, slots=True)
class ProfileClasses:
    """The classes of one profiled snapshot."""

    dataset: str
    snapshot: int
    tokenizer_sha256: str
    max_model_len: int  # the profiled model's context length (tokens)
    classes: tuple[RequestClass, ...]


def estimated_classes(
    con: duckdb.DuckDBPyConnection,
    params: dict,
    max_model_len: int,
    model_sha256: str | None = None,
    seed: int = 0,
) -> Clustering:
    """Cluster the profiled requests of `params` (dataset, snapshot, tokenizer_sha256) on
    their prompt tokens and the pipeline's output estimates (with the earlier results of
    `model_sha256`, if given, as the plan stage uses them).

    Without earlier results every estimate is the request's max_tokens (no own length, no
    measured prefix subtree: planners/estimates.py), so the token ids are not read at all:
    two numbers per request instead of every prompt's ids as Python lists (~36 bytes a
    token), which made this the profile's largest use of memory.
    """
    history = (
        fetch_arrow(
            con,
            sql.load("plan/history_lengths"),
            {
                "dataset": params["dataset"],
                "model_sha256": model_sha256,
                "tokenizer_sha256": params["tokenizer_sha256"],
                "limit": HISTORY_LIMIT,
            },
        ).to_pylist()
        if model_sha256 is not None
        else []
    )
    if not history:
        return classes_without_history(con, params, seed)
    return classes_from_estimates(con, params, max_model_len, history, seed)


def classes_without_history(
    con: duckdb.DuckDBPyConnection, params: dict, seed: int = 0
) -> Clustering:
    """The classes when no request has an earlier result: on (prompt tokens, max_tokens), in
    input order (the k-means start depends on it), as classes_from_estimates has them.

    The rows stream unsorted and are put in input order here: DuckDB ran out of its 1 GiB
    cap sorting the join of 10M prompts by line_no (24 bytes a request here).
    """
    line_no, prompt, max_tokens = [], [], []
    reader = con.sql(sql.load("profile/request_lengths"), params=params).to_arrow_reader()
    for batch in reader:
        line_no.append(batch.column("line_no").to_numpy())
        prompt.append(batch.column("n_prompt_tokens").to_numpy())
        max_tokens.append(batch.column("max_tokens").to_numpy())
    if not line_no:
        return cluster_requests(np.zeros(0), np.zeros(0))
    order = np.argsort(np.concatenate(line_no), kind="stable")
    return cluster_requests(
        np.concatenate(prompt)[order].astype(np.float64),
        np.concatenate(max_tokens)[order].astype(np.float64),
        seed=seed,
    )


def classes_from_estimates(
    con: duckdb.DuckDBPyConnection,
    params: dict,
    max_model_len: int,
    history: list[dict],
    seed: int = 0,
) -> Clustering:
    """The classes on the planner's estimates: every request's token ids and the history."""
    from blend.planners import estimate_outputs

    rows = fetch_arrow(
        con,
        sql.load("plan/plan_requests"),
        {**params, "done_model_sha256": None, "max_model_len": max_model_len},
    ).to_pylist()
    requests, hints = requests_with_history(rows, history)
    if not requests:
        return cluster_requests(np.zeros(0), np.zeros(0))
    estimates = estimate_outputs(requests, hints)
    prompt = np.fromiter((len(r.prompt_token_ids) for r in requests), np.float64, len(requests))
    return cluster_requests(prompt, estimates.tokens, seed=seed)


def save_classes(
    con: duckdb.DuckDBPyConnection, params: dict, classes: tuple[RequestClass, ...]
) -> None:
    """Replace the classes stored for `params` (the caller owns the transaction)."""
    con.execute(sql.load("profile/delete_request_classes"), params)
    if not classes:
        return
    n = len(classes)
    table = pa.table(
        {
            "dataset": pa.array([params["dataset"]] * n, pa.string()),
            "snapshot": pa.array([params["snapshot"]] * n, pa.int32()),
            "tokenizer_sha256": pa.array([params["tokenizer_sha256"]] * n, pa.string()),
            "class_id": pa.array([c.class_id for c in classes], pa.int32()),
            "n_requests": pa.array([c.n_requests for c in classes], pa.int64()),
            "prompt_tokens": pa.array([c.prompt_tokens for c in classes], pa.float64()),
            "output_tokens": pa.array([c.output_tokens for c in classes], pa.float64()),
        }
    )
    con.register("new_request_classes", table)
    try:
        con.execute(sql.load("profile/insert_request_classes"))
    finally:
        con.unregister("new_request_classes")


def read_classes(con: duckdb.DuckDBPyConnection, params: dict) -> tuple[RequestClass, ...]:
    rows = fetch_dicts(con, sql.load("profile/request_classes"), params)
    return tuple(
        RequestClass(r["class_id"], r["n_requests"], r["prompt_tokens"], r["output_tokens"])
        for r in rows
    )


class NoClassesError(ValueError):
    """The dataset has no profile, or its profile has no request classes."""


def load_classes(store: Store, dataset: str, snapshot: int | None = None) -> ProfileClasses:
    """The classes of the latest profile of `dataset` (or of `snapshot`)."""
    with store.connect() as con:
        profile = fetch_dicts(
            con, sql.load("plan/latest_profile"), {"dataset": dataset, "snapshot": snapshot}
        )
        if not profile:
            where = f" snapshot {snapshot}" if snapshot is not None else ""
            raise NoClassesError(
                f"dataset {dataset!r}{where} has no profile: run `blend profile --dataset "
                f"{dataset}` first"
            )
        row = profile[0]
        params = {
            "dataset": row["dataset"],
            "snapshot": row["snapshot"],
            "tokenizer_sha256": row["tokenizer_sha256"],
        }
        classes = read_classes(con, params)
    if not classes:
        raise NoClassesError(
            f"the profile of {dataset!r} snapshot {row['snapshot']} has no request classes "
            f"(no prompts, or profiled before classes existed): run `blend profile --dataset "
            f"{dataset}` again"
        )
    return ProfileClasses(
        row["dataset"], row["snapshot"], row["tokenizer_sha256"], row["max_model_len"], classes
    )
