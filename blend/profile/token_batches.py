"""Prompt batches into token batches on every core: in this process, or in a process pool.

Invariant: `token_batches` yields one token batch (request_id, token_ids) per prompt batch,
in the prompt batches' order, each the encoder's ids for that batch; so whichever way it runs
(in process, a pool of worker processes, Ray actors: profile/ray_tokenize.py) the token rows,
and the order they are written in, are the same. At most `in_flight` batches per worker are
handed out ahead of the one being written, so memory stays bounded by batches, not prompts.

Why processes: the fast tokenizer's batch call (Rust, rayon threads) gained nothing on the
second core here (docs/reliability.md, "Tokenization on every core"), and the chat template
is Python (jinja2); separate processes, one tokenizer each, run both on every core.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
from transformers import PreTrainedTokenizerFast

from blend.engines.tokenize import load_tokenizer

# encode_batch's signature (blend/engines/tokenize.py); a module-level function, so that
# worker processes receive it by reference (a stand-in, e.g. bench/scale.py's byte tokenizer)
Encoder = Callable[..., list[list[int]]]

PARENT_POLL_S = 0.5  # how often a pool worker checks that its driver still lives
T = TypeVar("T")
R = TypeVar("R")

TOKEN_SCHEMA = pa.schema([("request_id", pa.string()), ("token_ids", pa.list_(pa.int32()))])


@dataclass(frozen=True, slots=True)
class TokenizeOptions:
    """Where the profile tokenizes.

    workers: processes on this machine (None: one per core this process may use; 1: in this
    process); on Ray, actors (None: one per CPU of the cluster). ray: tokenize on Ray actors,
    at ray_address, else $RAY_ADDRESS, else a new local cluster (blend/scale/ray_cluster.py).
    """

    workers: int | None = None
    ray: bool = False
    ray_address: str | None = None
    in_flight: int = 2  # prompt batches handed to each worker ahead of the one written
    # fewer prompts than this per worker start fewer workers (a start costs ~2-3 s of imports)
    min_prompts_per_worker: int = 10_000

    def check(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1 (got {self.workers})")
        if self.in_flight < 1:
            raise ValueError(f"in_flight must be >= 1 (got {self.in_flight})")


class BatchEncoder:
    """One tokenizer, loaded once, turning prompt batches into token batches."""

    def __init__(self, tokenizer: PreTrainedTokenizerFast, encoder: Encoder) -> None:
        self._tokenizer = tokenizer
        self._encoder = encoder

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """(request_id, prompt, messages_json) rows -> (request_id, token_ids) rows."""
        ids = self._encoder(
            self._tokenizer,
            batch.column("prompt").to_pylist(),
            batch.column("messages_json").to_pylist(),
            row_names=batch.column("request_id").to_pylist(),
        )
        token_ids = pa.array(ids, pa.list_(pa.int32()))
        return pa.record_batch([batch.column("request_id"), token_ids], schema=TOKEN_SCHEMA)


def local_workers(options: TokenizeOptions, n_prompts: int) -> int:
    """Processes to tokenize n_prompts on this machine: the cores (or options.workers), fewer
    when each would get under min_prompts_per_worker prompts; 1 means in this process."""
    cores = options.workers or len(os.sched_getaffinity(0))
    by_size = math.ceil(n_prompts / max(1, options.min_prompts_per_worker))
    return max(1, min(cores, by_size))


def token_batches(
    batches: Iterable[pa.RecordBatch],
    model_dir: Path,
    encoder: Encoder,
    workers: int,
    in_flight: int = 2,
) -> Iterator[pa.RecordBatch]:
    """The token batch of each prompt batch, in order, from `workers` processes (1: this one)."""
    if workers == 1:
        yield from map(BatchEncoder(load_tokenizer(model_dir), encoder), batches)
        return
    # spawn: a fork of a process that holds DuckDB's and the tokenizer's threads can deadlock
    pool = ProcessPoolExecutor(
        workers,
        multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(model_dir, encoder),
    )
    try:
        yield from in_order(
            (pool.submit(_encode_in_worker, batch) for batch in batches),
            workers * in_flight,
            Future.result,
        )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def in_order(submitted: Iterator[T], ahead: int, result: Callable[[T], R]) -> Iterator[R]:
    """The results of submitted calls, in submission order, with at most `ahead` submitted
    and not yet taken (each next submission is made only when one is taken)."""
    pending: deque[T] = deque()
    for call in submitted:
        pending.append(call)
        if len(pending) >= ahead:
            yield result(pending.popleft())
    while pending:
        yield result(pending.popleft())


_worker: BatchEncoder | None = None  # a pool worker's tokenizer, loaded once by _start_worker


def _start_worker(model_dir: Path, encoder: Encoder) -> None:
    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's: it ends the pool
    threading.Thread(target=_exit_with, args=(os.getppid(),), daemon=True).start()
    # one thread per worker: the processes are the parallelism (TOKENIZERS_PARALLELISM is
    # read at each batch call, so it holds although the tokenizer module is imported)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _worker = BatchEncoder(load_tokenizer(model_dir), encoder)


def _exit_with(driver: int) -> None:
    """End this worker once its driver is gone (killed: SIGKILL, the OOM killer), which
    a pool worker does not notice by itself: it would wait for work forever."""
    while os.getppid() == driver:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def _encode_in_worker(batch: pa.RecordBatch) -> pa.RecordBatch:
    assert _worker is not None, "the pool's initializer loads the tokenizer"
    return _worker(batch)
