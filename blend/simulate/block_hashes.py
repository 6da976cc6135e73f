"""Chained hashes of the prompts' full KV blocks, numbered densely for the compiled cache.

Block i of a prompt stands for its tokens [0, (i + 1) * block_size): its 64-bit hash chains
the parent block's hash with the block's tokens, as vLLM's prefix cache does, so equal hashes
mean equal prefixes up to 64-bit collisions (about n^2 / 2^65 for n distinct blocks: 3e-5 at
30M blocks). Equal hashes then get equal dense ids (0 .. n_ids - 1), which the KV pool
(kv_cache.py) uses as array indices instead of dictionary keys.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

_U64 = np.uint64
_MUL1 = _U64(0xBF58476D1CE4E5B9)  # splitmix64's finalizer constants
_MUL2 = _U64(0x94D049BB133111EB)
_STEP = _U64(0x9E3779B97F4A7C15)  # odd: keeps the zero state and token 0 off a fixed point
_CHUNK_TOKENS = 1 << 23  # prompts are flattened this many tokens at a time (bounds memory)


@numba.njit(cache=True)
def _mix(x: np.uint64) -> np.uint64:
    """splitmix64's finalizer: a bijection of 64-bit words with full avalanche."""
    x ^= x >> _U64(30)
    x *= _MUL1
    x ^= x >> _U64(27)
    x *= _MUL2
    return x ^ (x >> _U64(31))


@numba.njit(cache=True)
def _chain(tokens: np.ndarray, n_blocks: np.ndarray, block_size: int, out: np.ndarray) -> None:
    """Hash the full blocks of consecutive prompts (each prompt's full-block tokens, flat).

    Each token step h -> mix((h ^ t) + STEP) is a bijection of h for a fixed t and of t for a
    fixed h, so two prefixes differing in one token never collide.
    """
    t = 0
    b = 0
    for r in range(len(n_blocks)):
        h = _U64(0)  # the parent of block 0
        for _ in range(n_blocks[r]):
            for _ in range(block_size):
                h = _mix((h ^ _U64(tokens[t])) + _STEP)
                t += 1
            out[b] = h
            b += 1


def prompt_block_ids(
    prompts: Sequence[Sequence[int] | np.ndarray], block_size: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Dense ids of every prompt's full blocks: (ids, offsets, n_ids).

    Prompt r's blocks are ids[offsets[r]:offsets[r + 1]], in order; equal ids, equal prefixes.
    """
    lengths = np.fromiter((len(p) for p in prompts), dtype=np.int64, count=len(prompts))
    n_full = lengths // block_size
    offsets = np.zeros(len(prompts) + 1, dtype=np.int64)
    np.cumsum(n_full, out=offsets[1:])
    hashes = np.empty(int(offsets[-1]), dtype=_U64)
    token_offsets = offsets * block_size  # full-block tokens before each prompt
    lo = 0
    while lo < len(prompts):
        limit = token_offsets[lo] + _CHUNK_TOKENS
        hi = max(lo + 1, int(np.searchsorted(token_offsets, limit, side="right")) - 1)
        parts = [
            np.asarray(prompts[r][: int(n_full[r]) * block_size], dtype=np.int64)
            for r in range(lo, hi)
        ]
        _chain(np.concatenate(parts), n_full[lo:hi], block_size, hashes[offsets[lo] : offsets[hi]])
        lo = hi
    unique, ids = np.unique(hashes, return_inverse=True)
    return ids.astype(np.int64, copy=False).reshape(-1), offsets, len(unique)
