"""Prompts too long for the engine's context: items of a plan, but no work in it.

Invariant: a prompt of n tokens with n + 1 > max_model_len (the user's --max-model-len when
it is smaller than the model's own length, else the model's) cannot produce one token: the
engine refuses it at once and the run writes its error row. The plan keeps such a prompt as
an item, after every planned one, so that row is written; it has no estimate (0 output
tokens) and no place in the planner's order, the warm-up, the bounds or the engine settings:
the plan's requests are read without it (plan/request_columns.sql), and the re-plan after
the warm-up leaves it out the same way (execute/replan.py).
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from blend.plan.sorted_requests import RequestQuery
from blend.store import sql
from blend.store.database import fetch_arrow


def context_limit(model_max_len: int, max_model_len: int | None) -> int:
    """The context the engine runs with (tokens): the user's `max_model_len` where given and
    smaller than the model's (vLLM refuses a larger one), else the model's."""
    return model_max_len if max_model_len is None else min(model_max_len, max_model_len)


def read_over_length(con: duckdb.DuckDBPyConnection, query: RequestQuery) -> pa.Table:
    """request_id, n_prompt_tokens of the query's prompts over its context
    (query.max_model_len), in input order (plan/over_length_requests.sql)."""
    return fetch_arrow(con, sql.load("plan/over_length_requests"), query.rows())


def with_over_length(items: pa.Table, over: pa.Table, batch_size: int) -> pa.Table:
    """`items` (a plan's, seq 0..n-1) followed by one item per row of `over`: seq and batch
    going on from them, no side, nothing shared, no output, no estimate source or group."""
    k = over.num_rows
    if k == 0:
        return items
    seq = np.arange(items.num_rows, items.num_rows + k, dtype=np.int64)
    schema = items.schema
    columns = {
        "seq": pa.array(seq),
        "request_id": over["request_id"].cast(pa.string()),
        "batch": pa.array(seq // batch_size),
        "prompt_tokens": over["n_prompt_tokens"].cast(pa.int64()),
        "shared_prev": pa.array(np.zeros(k, dtype=np.int64)),
        "est_output_tokens": pa.array(np.zeros(k)),
        "est_spread": pa.array(np.zeros(k)),
    }
    tail = pa.table([columns.get(f.name, pa.nulls(k, f.type)) for f in schema], schema=schema)
    return pa.concat_tables([items, tail])
