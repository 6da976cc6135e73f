"""Per-request columns of few distinct values: where each estimate comes from, and the key of
each request's prefix group.

Invariant: a column holds one small integer a request (`codes`) into its distinct values, never
a Python object a request (at 10M requests a list of keys held ~1 GB: a pointer and a string
each). Both read as sequences (an element is made when one is indexed) and compare equal to
any sequence of the same values; `dictionary(order)` gives the values in an order as an Arrow
dictionary array (what the plan stores) without a string a position.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np
import pyarrow as pa

from blend.planners.request import EstimateSource

SOURCES = tuple(EstimateSource)  # code -> source (EstimateSources.codes)
_CODE = {source: code for code, source in enumerate(SOURCES)}
_ITER_CHUNK = 65_536  # values made at a time when a column is iterated


@dataclass(frozen=True, slots=True, eq=False)
class EstimateSources(Sequence[EstimateSource]):
    """Per request, where its estimate comes from: codes into SOURCES (int8)."""

    codes: np.ndarray

    @classmethod
    def of(cls, sources: Sequence[EstimateSource]) -> EstimateSources:
        if isinstance(sources, EstimateSources):
            return sources
        codes = np.fromiter((_CODE[EstimateSource(s)] for s in sources), np.int8, len(sources))
        return cls(codes)

    @classmethod
    def filled(cls, n: int, source: EstimateSource) -> EstimateSources:
        return cls(np.full(n, _CODE[source], dtype=np.int8))

    @staticmethod
    def code(source: EstimateSource) -> int:
        return _CODE[source]

    def __len__(self) -> int:
        return len(self.codes)

    @overload
    def __getitem__(self, index: int) -> EstimateSource: ...
    @overload
    def __getitem__(self, index: slice) -> EstimateSources: ...
    def __getitem__(self, index: int | slice) -> EstimateSource | EstimateSources:
        if isinstance(index, slice):
            return EstimateSources(self.codes[index])
        return SOURCES[int(self.codes[index])]

    def __iter__(self) -> Iterator[EstimateSource]:
        for code in self.codes.tolist():
            yield SOURCES[code]

    def __eq__(self, other: object) -> bool:
        return _equal(self, other)

    __hash__ = None  # type: ignore[assignment]

    def is_any(self, *sources: EstimateSource) -> np.ndarray:
        """bool per request: its source is one of `sources`."""
        return np.isin(self.codes, [_CODE[s] for s in sources])

    def subset(self, indices: Sequence[int] | np.ndarray) -> EstimateSources:
        return EstimateSources(self.codes[np.asarray(indices, dtype=np.int64)])

    def counts(self) -> dict[str, int]:
        """Requests per source, the sources in order of first appearance."""
        codes, first, counts = np.unique(self.codes, return_index=True, return_counts=True)
        by_first = np.argsort(first, kind="stable")
        return {SOURCES[int(codes[k])].value: int(counts[k]) for k in by_first}

    def dictionary(self, order: np.ndarray) -> pa.DictionaryArray:
        """The sources at these positions, as their values (strings) dictionary-encoded."""
        return pa.DictionaryArray.from_arrays(
            pa.array(self.codes[order], pa.int8()), pa.array([s.value for s in SOURCES])
        )


@dataclass(frozen=True, slots=True, eq=False)
class GroupKeys(Sequence[str]):
    """Per request, the key of its top-level prefix group: codes (int32) into the distinct
    keys (an Arrow string array, one string a group)."""

    codes: np.ndarray
    names: pa.Array

    @classmethod
    def of(cls, keys: Sequence[str]) -> GroupKeys:
        if isinstance(keys, GroupKeys):
            return keys
        encoded = pa.array(list(keys), pa.string()).dictionary_encode()
        return cls(encoded.indices.to_numpy().astype(np.int32), encoded.dictionary)

    def __len__(self) -> int:
        return len(self.codes)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> GroupKeys: ...
    def __getitem__(self, index: int | slice) -> str | GroupKeys:
        if isinstance(index, slice):
            return GroupKeys(self.codes[index], self.names)
        value: str = self.names[int(self.codes[index])].as_py()
        return value

    def __iter__(self) -> Iterator[str]:
        for first in range(0, len(self.codes), _ITER_CHUNK):
            chunk = self.codes[first : first + _ITER_CHUNK]
            yield from self.names.take(pa.array(chunk)).to_pylist()

    def __eq__(self, other: object) -> bool:
        return _equal(self, other)

    __hash__ = None  # type: ignore[assignment]

    def subset(self, indices: Sequence[int] | np.ndarray) -> GroupKeys:
        return GroupKeys(self.codes[np.asarray(indices, dtype=np.int64)], self.names)

    def dictionary(self, order: np.ndarray) -> pa.DictionaryArray:
        """The keys at these positions, dictionary-encoded (no string a position)."""
        return pa.DictionaryArray.from_arrays(pa.array(self.codes[order], pa.int32()), self.names)


def _equal(column: Sequence[object], other: object) -> bool:
    """Equal to any sequence of the same values (a list, another column)."""
    if not isinstance(other, Sequence) or isinstance(other, str):
        return NotImplemented
    return len(column) == len(other) and all(a == b for a, b in zip(column, other, strict=True))
