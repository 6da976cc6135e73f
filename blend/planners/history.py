"""Earlier results as length knowledge: a request whose prompt was answered before (with the
same sampling) knows its own output length; other earlier answers are hints for their prefix
groups. The plan stage, the re-plan, capacity planning and the request classes read history
the same way."""

from __future__ import annotations

from collections.abc import Sequence

from blend.planners.estimates import EstimateSource, LengthHint
from blend.planners.request import PlanRequest

HISTORY_LIMIT = 200_000  # earlier results read as length hints at most (the newest)


def requests_with_history(
    rows: Sequence[dict], history: Sequence[dict]
) -> tuple[list[PlanRequest], list[LengthHint]]:
    """PlanRequests of `rows` (request_id, token_ids, max_tokens, prompt_sha256,
    sampling_json) and length hints of `history` (earlier results with the same sampling):
    a request whose own prompt has an earlier result knows its length (OWN); the others
    become HISTORY hints for their prefix groups."""
    known = {(h["prompt_sha256"], h["sampling_json"]): h["n_output_tokens"] for h in history}
    requests = []
    for row in rows:
        own = known.get((row["prompt_sha256"], row["sampling_json"]))
        requests.append(
            PlanRequest(
                row["request_id"],
                row["token_ids"],
                row["max_tokens"],
                own,
                EstimateSource.OWN if own is not None else None,
            )
        )
    mine = {(row["prompt_sha256"], row["sampling_json"]) for row in rows}
    samplings = {row["sampling_json"] for row in rows}
    hints = [
        LengthHint(h["token_ids"], h["n_output_tokens"], EstimateSource.HISTORY)
        for h in history
        if (h["prompt_sha256"], h["sampling_json"]) not in mine and h["sampling_json"] in samplings
    ]
    return requests, hints
