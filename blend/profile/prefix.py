"""Prefix sharing and prefix groups of a snapshot's prompts, from one sorted stream.

Invariant: the numbers equal what sql/profile/prefix_sharing.sql and prefix_groups.sql compute
(their window over every token list, kept as the reference the tests compare against), but in
memory that does not grow with the dataset. The prompts arrive in the order of
`ORDER BY token_ids, request_id` from profile/token_order.py (a sample sort in bounded
memory); this module walks that stream one Arrow table at a time and keeps only the previous
prompt, the open group and the best `top_n` groups.

In sorted order a prompt's longest common prefix (LCP) with its predecessor is its LCP with
any earlier prompt, so it adds exactly len - lcp new trie nodes; a group is a maximal run of
sorted prompts whose LCP with the predecessor is >= min_shared_tokens, sharing the minimum
adjacent LCP inside it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pyarrow as pa

# Token comparisons per vectorised step (each costs ~30 bytes of index arrays): bounds the
# scratch memory of one step at ~60 MB whatever the batch holds.
_CHUNK_TOKENS = 1 << 21


@dataclass(frozen=True, slots=True)
class SharingTotals:
    """The DFS prefix-sharing numbers (prefix_sharing.sql's row)."""

    total_tokens: int  # sum of prompt lengths
    unique_prefix_tokens: int  # nodes of the prompts' token trie
    sharing_ratio: float | None  # 1 - unique / total; None without tokens


@dataclass(frozen=True, slots=True)
class GroupRow:
    """One ranked prefix group (prefix_groups.sql's row)."""

    group_rank: int
    n_prompts: int
    shared_prefix_tokens: int
    saved_tokens: int
    first_request_id: str
    n_groups: int  # groups of >= 2 prompts in all


@dataclass(frozen=True, slots=True)
class PrefixMeasures:
    sharing: SharingTotals
    groups: tuple[GroupRow, ...]  # the best top_n, by saved tokens, then sorted position


class _Closed(NamedTuple):
    """A group that can grow no more, as the ranking needs it."""

    saved_tokens: int
    first_pos: int
    n_prompts: int
    shared: int
    first_request_id: str

    @property
    def rank_key(self) -> tuple[int, int]:
        """prefix_groups.sql's order: saved tokens descending, then sorted position."""
        return (-self.saved_tokens, self.first_pos)


@dataclass(slots=True)
class _Group:
    """A run of sorted prompts that may still grow (the last one of what was read)."""

    first_pos: int  # 1-based position of its first prompt in sorted order
    first_request_id: str
    n_prompts: int = 1
    shared: int | None = None  # min LCP of its prompts after the first (None: only one)

    def extend(self, n_more: int, min_lcp: int) -> None:
        """n_more prompts join, whose least LCP with their predecessors is min_lcp."""
        self.n_prompts += n_more
        self.shared = min_lcp if self.shared is None else min(self.shared, min_lcp)

    def closed(self) -> _Closed:
        shared = self.shared or 0
        saved = (self.n_prompts - 1) * shared
        return _Closed(saved, self.first_pos, self.n_prompts, shared, self.first_request_id)


@dataclass(slots=True)
class PrefixScan:
    """Walk prompts in (token_ids, request_id) order, batch by batch (`add`), then `result`."""

    min_shared_tokens: int
    top_n: int
    total_tokens: int = 0
    unique_tokens: int = 0
    n_rows: int = 0
    n_groups: int = 0
    _previous: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    _open: _Group | None = None
    _best: list[_Closed] = field(default_factory=list)  # the best top_n closed groups, ranked

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Take the next sorted rows: columns request_id (string) and token_ids (list<int32>)."""
        if batch.num_rows == 0:
            return
        request_ids = batch.column("request_id")
        tokens = batch.column("token_ids")
        if isinstance(tokens, pa.ChunkedArray):
            tokens = tokens.combine_chunks()
            request_ids = request_ids.combine_chunks()
        offsets, values = _flat(tokens)
        lengths = np.diff(offsets)
        lcp = _adjacent_lcp(self._previous, offsets, values)
        if self.n_rows == 0:
            lcp[0] = 0  # the first prompt has no predecessor
        self.total_tokens += int(lengths.sum())
        self.unique_tokens += int((lengths - lcp).sum())
        self._groups(lcp, request_ids)
        self.n_rows += len(lengths)
        self._previous = values[offsets[-2] : offsets[-1]].copy()

    def result(self) -> PrefixMeasures:
        """The numbers of every row added so far (the open group counts as closed)."""
        best, n_groups = self._best, self.n_groups
        if self._open is not None and self._open.n_prompts >= 2:
            best = _top([*best, self._open.closed()], self.top_n)
            n_groups += 1
        total, unique = self.total_tokens, self.unique_tokens
        sharing = SharingTotals(total, unique, 1 - unique / total if total else None)
        groups = tuple(
            GroupRow(rank, g.n_prompts, g.shared, g.saved_tokens, g.first_request_id, n_groups)
            for rank, g in enumerate(best, start=1)
        )
        return PrefixMeasures(sharing, groups)

    def _groups(self, lcp: np.ndarray, request_ids: pa.Array) -> None:
        """Extend the open group, close the ones that end in this batch, keep the best."""
        continues = lcp >= self.min_shared_tokens
        if self.n_rows == 0:
            continues[0] = False
        starts = np.flatnonzero(~continues)
        head_end = int(starts[0]) if len(starts) else len(lcp)
        if head_end and self._open is not None:
            self._open.extend(head_end, int(lcp[:head_end].min()))
        if not len(starts):
            return
        closed = [] if self._open is None else [self._open]
        # groups that start here: counts, and the min LCP of their rows after the first
        ends = np.append(starts[1:], len(lcp))
        counts = ends - starts
        inner = np.where(continues, lcp, np.iinfo(np.int64).max)
        shared = np.minimum.reduceat(inner, starts)
        last = len(starts) - 1
        self._open = _Group(
            first_pos=self.n_rows + int(starts[last]) + 1,
            first_request_id=request_ids[int(starts[last])].as_py(),
            n_prompts=int(counts[last]),
            shared=None if counts[last] < 2 else int(shared[last]),
        )
        whole = np.flatnonzero(counts[:last] >= 2)
        self.n_groups += len(whole) + sum(1 for g in closed if g.n_prompts >= 2)
        saved = (counts[whole] - 1) * shared[whole]
        # only the batch's best top_n can enter the best list (ties go to the earlier group)
        pick = whole[np.lexsort((whole, -saved))[: self.top_n]]
        candidates = [g.closed() for g in closed if g.n_prompts >= 2]
        candidates += [
            _Closed(
                int((counts[i] - 1) * shared[i]),
                self.n_rows + int(starts[i]) + 1,
                int(counts[i]),
                int(shared[i]),
                request_ids[int(starts[i])].as_py(),
            )
            for i in pick.tolist()
        ]
        if candidates:
            self._best = _top([*self._best, *candidates], self.top_n)


def prefix_measures(
    batches: Iterable[pa.RecordBatch | pa.Table], min_shared_tokens: int, top_n: int
) -> PrefixMeasures:
    """Sharing totals and the top_n prefix groups of prompts given in sorted order."""
    scan = PrefixScan(min_shared_tokens, top_n)
    for batch in batches:
        scan.add(batch)
    return scan.result()


def _top(groups: list[_Closed], top_n: int) -> list[_Closed]:
    return sorted(groups, key=lambda g: g.rank_key)[:top_n]


def _flat(tokens: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, values) of a list<int32> array, offsets rebased to start at 0."""
    if tokens.null_count:
        raise ValueError("token_ids must not be null")
    offsets = tokens.offsets.to_numpy().astype(np.int64)
    values = tokens.values.to_numpy(zero_copy_only=False)
    values = values[offsets[0] : offsets[-1]]
    return offsets - offsets[0], values


def _adjacent_lcp(previous: np.ndarray, offsets: np.ndarray, values: np.ndarray) -> np.ndarray:
    """LCP (tokens) of each row with the row before it; row 0's predecessor is `previous`."""
    lcp = np.zeros(len(offsets) - 1, np.int64)
    lcp[0] = _lcp(previous, values[offsets[0] : offsets[1]])
    lengths = np.diff(offsets)
    # rows 1..n-1 are compared over min(own length, predecessor's length) tokens
    compared = np.minimum(lengths[1:], lengths[:-1])
    row = 0
    for end in _chunk_ends(compared):
        lcp[row + 1 : end + 1] = _chunk_lcp(values, offsets[row : end + 1], compared[row:end])
        row = end
    return lcp


def _lcp(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    mismatches = np.flatnonzero(a[:n] != b[:n])
    return int(mismatches[0]) if len(mismatches) else n


def _chunk_ends(compared: np.ndarray) -> list[int]:
    """Row ends of consecutive chunks of about _CHUNK_TOKENS compared tokens (>= 1 row)."""
    cumulative = np.cumsum(compared)
    ends: list[int] = []
    start, done = 0, 0
    while start < len(compared):
        end = int(np.searchsorted(cumulative, done + _CHUNK_TOKENS, side="right"))
        end = max(end, start + 1)
        ends.append(end)
        done = int(cumulative[end - 1])
        start = end
    return ends


def _chunk_lcp(values: np.ndarray, offsets: np.ndarray, compared: np.ndarray) -> np.ndarray:
    """LCP of rows (offsets[1:]) with their predecessors (offsets[:-1]), compared tokens each."""
    total = int(compared.sum())
    if total == 0:
        return np.zeros(len(compared), np.int64)
    firsts = np.cumsum(compared) - compared  # where each row's comparisons start
    step = np.arange(total, dtype=np.int64) - np.repeat(firsts, compared)
    mine = np.repeat(offsets[1:], compared) + step
    theirs = np.repeat(offsets[:-1], compared) + step
    # where the compared tokens differ, and `total` after them all (so every row finds one)
    mismatches = np.append(np.flatnonzero(values[mine] != values[theirs]), total)
    # a row's LCP: up to the first mismatch at or after its start, if inside the row
    first = mismatches[np.searchsorted(mismatches, firsts)]
    return np.minimum(first - firsts, compared)


def lcp_with_previous(previous: np.ndarray, tokens: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a sorted list<int32> array, its LCP (tokens) with the row before it (row 0's
    predecessor is `previous`); and the last row's ids (the next batch's `previous`)."""
    offsets, values = _flat(tokens)
    return _adjacent_lcp(previous, offsets, values), values[offsets[-2] : offsets[-1]].copy()
