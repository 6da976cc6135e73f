"""Many prompts' token ids as one flat array, and requests as columns over it.

Invariant: a `PromptTokens` holds every prompt as a view into one flat integer array (4 bytes
a token from DuckDB's INTEGER[] column, no Python int per token: a list of ints costs ~36
bytes a token, which at 1M prompts of 250 tokens is 9 GB). Indexing gives a numpy view;
`subset` shares the flat array. The lexicographic order of its prompts and the common
prefixes of neighbours in that order (what the prefix trie, the warm-up, the bounds and every
planner need) are computed once and kept (`sorted_cache`); a subset derives its own from its
parent's without comparing a token again (planners/tree.py: sorted_with_lcp).
`PlanRequests` are the plan stage's requests as such columns: a `PlanRequest` object is made
only when one is indexed.

A PromptTokens may also hold no token ids at all (`sorted_prompts`): only the lengths and the
sort, made elsewhere in bounded memory (plan/sorted_requests.py), and a `fetch` that reads the
ids of a few prompts on demand (the search's sample), or streams those of many in batches
(`fetch_batches`: the group keys, one id list of every group). Everything the trie, the
estimates and the planners need comes from the sort, so at 10M prompts the plan holds a few
numbers per prompt instead of every token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np
import pyarrow as pa

from blend.planners.request import EstimateSource, PlanRequest

# Token ids of some prompts a batch at a time, in any order: (positions k into the indices
# asked for, the ids of prompt indices[k] for each)
TokenBatches = Iterator[tuple[np.ndarray, list[np.ndarray]]]


@dataclass(eq=False, slots=True)
class PromptTokens(Sequence[np.ndarray]):
    """Prompts as views of one flat array: prompt i is values[starts[i]:][: lengths[i]]
    (or, without values, prompts known by their lengths and sort, read by `fetch`)."""

    values: np.ndarray | None  # integer token ids, every prompt's, flat (None: not held)
    starts: np.ndarray  # int64 offset of each prompt in values
    lengths: np.ndarray  # int64 tokens of each prompt
    # (order, lcp) once computed: the lexicographic order and adjacent common prefixes
    sorted_cache: tuple[np.ndarray, np.ndarray] | None = None
    trie_cache: Any = None  # the CompactTrie once built (planners/tree.py)
    # where a subset came from: (parent, the parent's indices of these prompts)
    base: tuple[PromptTokens, np.ndarray] | None = field(default=None, repr=False)
    # without values: the token ids of these prompt indices, read from where they are kept
    fetch: Callable[[np.ndarray], list[np.ndarray]] | None = field(default=None, repr=False)
    # without values: the ids of many prompts streamed in batches (None: `fetch` in chunks)
    fetch_batches: Callable[[np.ndarray], TokenBatches] | None = field(default=None, repr=False)

    @classmethod
    def sorted_prompts(
        cls,
        lengths: np.ndarray,
        order: np.ndarray,
        lcp: np.ndarray,
        fetch: Callable[[np.ndarray], list[np.ndarray]],
        fetch_batches: Callable[[np.ndarray], TokenBatches] | None = None,
    ) -> PromptTokens:
        """Prompts without their ids: lengths, the lexicographic order (ties by index) and
        adjacent common prefixes in it (lcp[0] = 0), and how to read a few prompts' ids (and,
        optionally, stream many)."""
        lengths = np.asarray(lengths, dtype=np.int64)
        if len(order) != len(lengths) or len(lcp) != len(lengths):
            raise ValueError(f"{len(order)} sorted and {len(lcp)} LCPs for {len(lengths)} prompts")
        return cls(
            None,
            _no_starts(len(lengths)),
            lengths,
            sorted_cache=(order, lcp),
            fetch=fetch,
            fetch_batches=fetch_batches,
        )

    @classmethod
    def from_arrow(cls, column: pa.Array | pa.ChunkedArray) -> PromptTokens:
        """From a list<int> column (no copy of the ids where the column is one chunk)."""
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        if column.null_count:
            raise ValueError("token_ids has nulls: every request needs its prompt's tokens")
        offsets = np.asarray(column.offsets, dtype=np.int64)
        values = column.values.to_numpy(zero_copy_only=False)
        return cls(values, offsets[:-1].copy(), np.diff(offsets))

    @classmethod
    def from_lists(cls, prompts: Sequence[Sequence[int] | np.ndarray]) -> PromptTokens:
        """Copied from any sequence of token id lists or arrays."""
        lengths = np.fromiter((len(p) for p in prompts), np.int64, len(prompts))
        values = np.empty(int(lengths.sum()), dtype=np.int64)
        # a block of prompts at a time: an array per prompt for all of them at once, beside
        # their concatenation, was twice the ids' memory (8 GB for 1M prompts of 500 tokens)
        at = 0
        for first in range(0, len(prompts), _COPY_BLOCK):
            block = [
                np.asarray(prompts[i], dtype=np.int64).reshape(-1)
                for i in range(first, min(first + _COPY_BLOCK, len(prompts)))
            ]
            copied = np.concatenate(block)
            values[at : at + len(copied)] = copied
            at += len(copied)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
        return cls(values, starts[: len(prompts)], lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...
    @overload
    def __getitem__(self, index: slice) -> PromptTokens: ...
    def __getitem__(self, index: int | slice) -> np.ndarray | PromptTokens:
        if isinstance(index, slice):
            return self.subset(np.arange(len(self))[index])
        if self.values is None:
            return self.tokens_of(np.array([index]))[0]
        start = int(self.starts[index])
        return self.values[start : start + int(self.lengths[index])]

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.values is None:  # read a chunk at a time
            for first in range(0, len(self), _FETCH_CHUNK):
                yield from self.tokens_of(np.arange(first, min(len(self), first + _FETCH_CHUNK)))
            return
        values = self.values
        for start, length in zip(self.starts.tolist(), self.lengths.tolist(), strict=True):
            yield values[start : start + length]

    def tokens_of(self, indices: np.ndarray) -> list[np.ndarray]:
        """The token ids of these prompts (by index), read in one go where not held."""
        indices = np.asarray(indices, dtype=np.int64)
        if self.values is not None:
            values = self.values
            return [
                values[s : s + n]
                for s, n in zip(
                    self.starts[indices].tolist(), self.lengths[indices].tolist(), strict=True
                )
            ]
        root, picked = self.root()
        if root.fetch is None:
            raise ValueError("these prompts hold no token ids and cannot read them")
        return root.fetch(picked[indices])

    def tokens_in_batches(self, indices: np.ndarray) -> TokenBatches:
        """The token ids of these prompts (by index), a batch at a time in any order (see
        TokenBatches): streamed from where they are kept, so that the ids of millions of
        prompts are never held at once."""
        indices = np.asarray(indices, dtype=np.int64)
        if self.values is None:
            root, picked = self.root()
            if root.fetch_batches is not None:
                yield from root.fetch_batches(picked[indices])
                return
        for first in range(0, len(indices), _FETCH_CHUNK):
            chunk = np.arange(first, min(len(indices), first + _FETCH_CHUNK))
            yield chunk, self.tokens_of(indices[chunk])

    def root(self) -> tuple[PromptTokens, np.ndarray]:
        """The PromptTokens this one is a subset of (itself if none), and the root's
        indices of these prompts."""
        node, picked = self, np.arange(len(self), dtype=np.int64)
        while (base := node.base) is not None:
            node, picked = base[0], base[1][picked]
        return node, picked

    def subset(self, indices: Sequence[int] | np.ndarray) -> PromptTokens:
        """These prompts (by index), sharing the flat array; their sort is derived lazily."""
        picked = np.asarray(indices, dtype=np.int64)
        starts = self.starts[picked] if self.values is not None else _no_starts(len(picked))
        return PromptTokens(self.values, starts, self.lengths[picked], base=(self, picked))

    def total_tokens(self) -> int:
        return int(self.lengths.sum())


_COPY_BLOCK = 4096  # prompts from_lists copies at a time
_FETCH_CHUNK = 65_536  # prompts read at a time when iterating prompts not held


def _no_starts(n: int) -> np.ndarray:
    """Offsets of prompts whose ids are not held: zeros never written, so the pages stay
    unmapped (a subset of 10M such prompts would otherwise copy 80 MB of zeros)."""
    return np.zeros(n, dtype=np.int64)


def joined(first: PromptTokens, second: PromptTokens) -> PromptTokens | None:
    """`first`'s prompts then `second`'s, as a subset of the PromptTokens both were taken
    from (its sort derives theirs, no token compared); None if they have no common root or
    it holds no sort."""
    root, a = first.root()
    other, b = second.root()
    if other is not root or root.sorted_cache is None:
        return None
    return root.subset(np.concatenate((a, b)))


def prompts_of(requests: Sequence[PlanRequest]) -> Sequence[Sequence[int] | np.ndarray]:
    """The requests' prompts: the shared PromptTokens of PlanRequests (whose sort is kept),
    else a list of each request's token ids."""
    if isinstance(requests, PlanRequests):
        return requests.prompts
    return [r.prompt_token_ids for r in requests]


def subset_of(requests: Sequence[PlanRequest], indices: np.ndarray) -> Sequence[PlanRequest]:
    """These requests (by index), as columns where they were columns."""
    if isinstance(requests, PlanRequests):
        return requests.subset(indices)
    return [requests[i] for i in np.asarray(indices, dtype=np.int64).tolist()]


@dataclass(eq=False, slots=True)
class PlanRequests(Sequence[PlanRequest]):
    """Requests as columns: ids, prompts, output limits and own lengths (-1: unknown)."""

    request_ids: pa.Array  # string (a subset's: dictionary-encoded, see _taken_ids)
    prompts: PromptTokens
    max_tokens: np.ndarray  # integers (int32 as read from the store)
    output_len: np.ndarray  # integers, -1 where unknown
    known_from: EstimateSource = EstimateSource.OWN  # where the known lengths come from

    def __post_init__(self) -> None:
        n = len(self.prompts)
        for name in ("request_ids", "max_tokens", "output_len"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"PlanRequests.{name} has {len(getattr(self, name))} != {n}")

    def __len__(self) -> int:
        return len(self.prompts)

    @overload
    def __getitem__(self, index: int) -> PlanRequest: ...
    @overload
    def __getitem__(self, index: slice) -> PlanRequests: ...
    def __getitem__(self, index: int | slice) -> PlanRequest | PlanRequests:
        if isinstance(index, slice):
            return self.subset(np.arange(len(self))[index])
        own = int(self.output_len[index])
        return PlanRequest(
            self.request_ids[index].as_py(),
            self.prompts[index],
            int(self.max_tokens[index]),
            own if own >= 0 else None,
            self.known_from if own >= 0 else None,
        )

    def __iter__(self) -> Iterator[PlanRequest]:
        for i in range(len(self)):
            yield self[i]

    def subset(self, indices: Sequence[int] | np.ndarray) -> PlanRequests:
        picked = np.asarray(indices, dtype=np.int64)
        return PlanRequests(
            _taken_ids(self.request_ids, picked),
            self.prompts.subset(picked),
            self.max_tokens[picked],
            self.output_len[picked],
            self.known_from,
        )


def _taken_ids(ids: pa.Array, picked: np.ndarray) -> pa.Array:
    """These ids (by index) as codes into the full array (a dictionary array: `as_py` and a
    cast to string give the ids), not a copy of the strings: the re-plan of 10M requests
    took two subsets of ~10M ids each (0.15-0.4 GB a copy, by the ids' length)."""
    if isinstance(ids, pa.DictionaryArray):
        return ids.take(pa.array(picked))
    code = pa.int32() if len(ids) <= np.iinfo(np.int32).max else pa.int64()
    return pa.DictionaryArray.from_arrays(pa.array(picked, code), ids)


def take_prompts(
    prompts: Sequence[Sequence[int] | np.ndarray], indices: np.ndarray
) -> list[Sequence[int] | np.ndarray]:
    """These prompts (by index) as a list: read in one go from a PromptTokens that holds no
    ids (one store query for a whole sample, not one per prompt)."""
    if isinstance(prompts, PromptTokens):
        return list(prompts.tokens_of(indices))
    return [prompts[i] for i in np.asarray(indices, dtype=np.int64).tolist()]
