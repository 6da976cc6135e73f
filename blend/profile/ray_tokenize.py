"""The profile's tokenization on a Ray cluster: prompt batches to tokenizer actors.

Invariant: the same as token_batches' (profile/token_batches.py): one token batch per prompt
batch, in order, each the encoder's ids; only the driver reads and writes the store. The
actors get the tokenizer's files from the driver (not a model folder on their node), so every
node encodes with the tokenizer whose sha256 the profile records.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from blend.engines.tokenize import load_shipped_tokenizer, tokenizer_files
from blend.profile.token_batches import BatchEncoder, Encoder, in_order
from blend.scale.ray_cluster import connect_ray


class RayTokenizer:
    """A Ray actor's body: one tokenizer, loaded once from the driver's files."""

    def __init__(self, files: dict[str, bytes], model_dir: str, encoder: Encoder) -> None:
        # one thread per actor: Ray places one actor per CPU
        import os

        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        self._encode = BatchEncoder(load_shipped_tokenizer(files, model_dir), encoder)

    def encode(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return self._encode(batch)


def ray_token_batches(
    batches: Iterable[pa.RecordBatch],
    model_dir: Path,
    encoder: Encoder,
    *,
    actors: int | None,
    address: str | None,
    in_flight: int = 2,
) -> Iterator[pa.RecordBatch]:
    """The token batch of each prompt batch, in order, from Ray actors (None: one per CPU of
    the cluster), batches dealt round-robin."""
    ray, _ = connect_ray(address)
    n = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
    actor_class = ray.remote(num_cpus=1)(RayTokenizer)
    files = ray.put(tokenizer_files(model_dir))  # once in the object store, not once per actor
    fleet = [actor_class.remote(files, str(model_dir), encoder) for _ in range(n)]
    try:
        calls = (fleet[index % n].encode.remote(batch) for index, batch in enumerate(batches))
        yield from in_order(calls, n * in_flight, lambda ref: _get(ray, ref))
    finally:
        for actor in fleet:
            ray.kill(actor)


def _get(ray: Any, ref: Any) -> pa.RecordBatch:
    """The call's batch; an actor's error (a ChatTemplateError naming rows...) raised as
    itself, not wrapped in Ray's RayTaskError, so callers see what the local path raises."""
    try:
        batch: pa.RecordBatch = ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, Exception) and not isinstance(cause, ray.exceptions.RayError):
            raise cause from None
        raise
    return batch
