"""A radix (compressed prefix) tree over prompt token ids.

Invariant: every request is a leaf-or-inner mark on exactly one node, the node whose path from
the root spells its whole prompt; the children of a node start with distinct tokens, so each
distinct prefix of any prompt is spelled by exactly one path. Building costs O(total tokens).
The number of tokens on all edges is the number of distinct prompt prefixes: the tokens a
prefix cache computes once when requests are run in depth-first order.

Two forms: `CompactTrie` (numpy node arrays, every request its own leaf; what planners use at
scale) and `RadixTree` (node objects with token-tuple edges; the readable form). Both are built
from one lexicographic sort of the prompts plus the longest common prefix (LCP) of adjacent
prompts: the trie of a sorted string list is fully determined by those LCPs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from blend.planners.arrays import node_id_type
from blend.planners.prompt_tokens import PromptTokens

TokenIds = Sequence[int] | np.ndarray  # one prompt: a list of ids or an integer array
_MAX_TOKEN = 2**32  # token ids must lie in [0, 2**32): the sort compares big-endian uint32
_LCP_CHUNK = 8192  # adjacent pairs compared per vectorised block
_LCP_CELLS = 1 << 22  # max pair x token cells compared at once (memory bound)
COMPILED_FROM = 50_000  # prompts from which the trie's node loop runs compiled (trie_kernel)
_MINIMA_CHUNK = 1 << 20  # pairs whose range minima are found at once


def _as_array(prompt: TokenIds) -> np.ndarray:
    """The prompt as a 1-d integer array (no copy for integer arrays)."""
    if isinstance(prompt, np.ndarray) and prompt.dtype.kind in "iu" and prompt.ndim == 1:
        return prompt
    return np.asarray(prompt, dtype=np.int64).reshape(-1)


def lexicographic_order(prompts: Sequence[TokenIds]) -> np.ndarray:
    """Request indices sorted by prompt, lexicographically (a prefix first; ties in input order).

    Sorts big-endian uint32 byte strings, whose byte order is the token order (Arrow's stable
    sort of one binary array); a PromptTokens keeps its order (sorted_with_lcp).
    """
    if isinstance(prompts, PromptTokens):
        return sorted_with_lcp(prompts)[0].copy()
    return _sorted_order(PromptTokens.from_lists(prompts))


def _sorted_order(prompts: PromptTokens) -> np.ndarray:
    n = len(prompts)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    laid = prompts.values is not None and prompts.base is None and _laid_end_to_end(prompts)
    flat = prompts.values if laid and prompts.values is not None else np.concatenate(list(prompts))
    _check_tokens(flat)
    keys = flat.astype(">u4")  # the prompts end to end as big-endian words: a copy
    offsets = np.concatenate(([0], np.cumsum(prompts.lengths))).astype(np.int64) * 4
    binary = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(keys)]
    )
    return pc.sort_indices(binary).to_numpy().astype(np.int64)


def _laid_end_to_end(prompts: PromptTokens) -> bool:
    """The prompts fill their flat array in index order, nothing between them."""
    ends = prompts.starts + prompts.lengths
    return (
        int(prompts.starts[0]) == 0
        and bool((prompts.starts[1:] == ends[:-1]).all())
        and prompts.values is not None
        and int(ends[-1]) == len(prompts.values)
    )


def sorted_with_lcp(prompts: PromptTokens) -> tuple[np.ndarray, np.ndarray]:
    """The prompts' lexicographic order and adjacent common prefixes in it (lcp[0] = 0),
    computed once per PromptTokens: a subset whose parent has them derives its own (ranks
    in the parent's order; the common prefix of two prompts is the least adjacent one
    between them there), else its tokens are sorted and compared."""
    if prompts.sorted_cache is None:
        parent = prompts.base
        if parent is not None and _sort_known(parent[0]):
            prompts.sorted_cache = _derived_sort(
                sorted_with_lcp(parent[0]), parent[0].lengths, parent[1]
            )
        else:
            order = _sorted_order(prompts)
            prompts.sorted_cache = (order, _compared_lcp(prompts, order))
    return prompts.sorted_cache


def _derived_sort(
    parent_sort: tuple[np.ndarray, np.ndarray], parent_lengths: np.ndarray, picked: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A subset's order and adjacent LCPs from its parent's (no token compared)."""
    order, lcp = parent_sort
    m = len(picked)
    if m == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if m == len(order) and np.array_equal(picked, np.arange(m)):  # all of them, same order
        return order, lcp
    if bool((picked[1:] > picked[:-1]).all()):
        return _increasing_subset_sort(order, lcp, picked)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    sorted_lengths = parent_lengths[order]
    # equal prompts form a class; the subset's ties go in its own index order
    equal = np.zeros(len(order), dtype=bool)
    equal[1:] = (lcp[1:] == sorted_lengths[1:]) & (lcp[1:] == sorted_lengths[:-1])
    klass = np.cumsum(~equal)
    ranks = rank[picked]
    sub_order = np.lexsort((np.arange(m), klass[ranks])).astype(np.int64)
    by_rank = np.sort(ranks)
    sub_lcp = np.zeros(m, dtype=np.int64)
    if m > 1:
        sub_lcp[1:] = np.minimum.reduceat(lcp[: by_rank[-1] + 1], by_rank[:-1] + 1)
    return sub_order, sub_lcp


def _increasing_subset_sort(
    order: np.ndarray, lcp: np.ndarray, picked: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """_derived_sort of a subset picked in increasing index order: the parent's order with
    the others left out. Equal prompts stay by index (the parent's ties are by its index,
    and picked keeps that order), so no sort is needed (at 10M prompts the lexsort of
    _derived_sort held ~1 GB)."""
    where = np.full(len(order), -1, dtype=np.int64)
    where[picked] = np.arange(len(picked))
    mapped = where[order]
    del where
    by_rank = np.flatnonzero(mapped >= 0)  # the subset's ranks in the parent's order
    sub_order = mapped[by_rank]
    del mapped
    sub_lcp = np.zeros(len(picked), dtype=np.int64)
    if len(picked) > 1:
        sub_lcp[1:] = np.minimum.reduceat(lcp[: by_rank[-1] + 1], by_rank[:-1] + 1)
    return sub_order, sub_lcp


def adjacent_lcp(prompts: Sequence[TokenIds], order: Sequence[int] | np.ndarray) -> np.ndarray:
    """lcp[k] = common prefix length of prompts[order[k-1]] and prompts[order[k]]; lcp[0] = 0.

    Vectorised over blocks of adjacent pairs; each pair is compared in windows that double,
    so the work is about twice the shared tokens plus a few tokens per pair. A sorted
    PromptTokens compares no token: the common prefix of two prompts is the least adjacent
    one between their ranks in its kept order.
    """
    order = np.asarray(order, dtype=np.int64)
    if isinstance(prompts, PromptTokens) and _sort_known(prompts):
        by_rank, lcp = sorted_with_lcp(prompts)
        if np.array_equal(by_rank, order):
            return lcp.copy()
        rank = np.empty(len(by_rank), dtype=np.int64)
        rank[by_rank] = np.arange(len(by_rank))
        out = np.zeros(len(order), dtype=np.int64)
        if len(order) > 1:
            ranks = rank[order]
            out[1:] = _range_minima(lcp, ranks[:-1], ranks[1:])
        return out
    return _compared_lcp(prompts, order)


def _sort_known(prompts: PromptTokens) -> bool:
    """Whether the prompts' sort is kept or derives from their parent's without a token
    compared (always so for prompts that hold no ids: their root was sorted elsewhere)."""
    return (
        prompts.sorted_cache is not None
        or prompts.values is None
        or (prompts.base is not None and _sort_known(prompts.base[0]))
    )


def _range_minima(lcp: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """min(lcp[min(a, b) + 1 .. max(a, b)]) per pair of sorted ranks: the common prefix of
    the prompts at those ranks (a bottom-up segment tree, every pair a step at a time)."""
    n = len(lcp)
    size = 1 << max(0, (n - 1).bit_length())
    # prefix lengths fit 32 bits: a tree of int32 halves its memory (2 x 2^k cells)
    kind = np.int32 if n and int(lcp.max()) < np.iinfo(np.int32).max else np.int64
    big = np.iinfo(kind).max
    tree = np.full(2 * size, big, dtype=kind)
    tree[size : size + n] = lcp
    for level in range(size.bit_length() - 2, -1, -1):  # node k: min of 2k and 2k + 1
        first, stop = 1 << level, 2 << level
        np.minimum(
            tree[2 * first : 2 * stop : 2], tree[2 * first + 1 : 2 * stop : 2], out=tree[first:stop]
        )
    out = np.empty(len(a), dtype=np.int64)
    for first in range(0, len(a), _MINIMA_CHUNK):  # a chunk of pairs at a time: bounded
        part = slice(first, first + _MINIMA_CHUNK)  # scratch whatever the prompts
        lo = np.minimum(a[part], b[part]) + 1 + size
        hi = np.maximum(a[part], b[part]) + 1 + size  # exclusive
        best = np.full(len(lo), big, dtype=kind)
        while True:
            active = lo < hi
            if not active.any():
                break
            left = active & (lo & 1 == 1)
            best[left] = np.minimum(best[left], tree[lo[left]])
            lo[left] += 1
            right = active & (hi & 1 == 1)
            hi[right] -= 1
            best[right] = np.minimum(best[right], tree[hi[right]])
            lo >>= 1
            hi >>= 1
        out[part] = best
    return out


def _compared_lcp(prompts: Sequence[TokenIds], order: np.ndarray) -> np.ndarray:
    n = len(order)
    lcp = np.zeros(n, dtype=np.int64)
    for start in range(1, n, _LCP_CHUNK):
        stop = min(n, start + _LCP_CHUNK)
        arrays = [_as_array(prompts[i]) for i in order[start - 1 : stop]]
        lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
        flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
        _check_tokens(flat)
        offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        lcp[start:stop] = _pair_lcp(flat, offsets[:-1], offsets[1:], lengths[:-1], lengths[1:])
    return lcp


def _check_tokens(flat: np.ndarray) -> None:
    if flat.size and (int(flat.min()) < 0 or int(flat.max()) >= _MAX_TOKEN):
        bad = int(flat.min()) if int(flat.min()) < 0 else int(flat.max())
        raise ValueError(f"token id {bad} is outside [0, 2**32): pass tokenizer ids")


def _pair_lcp(
    flat: np.ndarray, s1: np.ndarray, s2: np.ndarray, n1: np.ndarray, n2: np.ndarray
) -> np.ndarray:
    """Common prefix lengths of the pairs flat[s1:s1+n1], flat[s2:s2+n2]."""
    limit = np.minimum(n1, n2)
    lcp = np.zeros(len(s1), dtype=np.int64)
    active = np.flatnonzero(limit > 0)
    width = 16
    while active.size:
        w = int(min(width, max(16, _LCP_CELLS // active.size)))
        pos = lcp[active][:, None] + np.arange(w)[None, :]
        valid = pos < limit[active][:, None]
        a = flat[np.where(valid, s1[active][:, None] + pos, 0)]
        b = flat[np.where(valid, s2[active][:, None] + pos, 0)]
        equal = (a == b) & valid
        all_equal = equal.all(axis=1)
        matched = np.where(all_equal, w, np.argmin(equal, axis=1))
        lcp[active] += matched
        active = active[all_equal & (lcp[active] < limit[active])]
        width = min(width * 2, 4096)
    return lcp


@dataclass(frozen=True, slots=True)
class CompactTrie:
    """A radix tree as node arrays; node 0 is the root and every request is its own leaf.

    Invariant: a node's tokens are prompt[rep][depth[parent]:depth[node]] for the request rep
    at sorted position first_rank[node]; a request whose prompt ends where other prompts go
    on (or that duplicates another) is a leaf with an empty edge (depth equal to its parent's).
    Children in ascending first_rank are in ascending token order.
    """

    # the node arrays are int32 where every node id fits (arrays.node_id_type), else int64
    parent: np.ndarray  # node id of the parent; -1 for the root
    depth: np.ndarray  # tokens from the root to the end of the node's edge
    first_rank: np.ndarray  # sorted position of the first request under the node
    leaf_request: np.ndarray  # request index of a leaf; -1 for inner nodes
    sorted_order: np.ndarray  # int64 request indices in lexicographic order
    lengths: np.ndarray  # int64 prompt length of each request (by request index)

    @property
    def num_nodes(self) -> int:
        return len(self.parent)

    @property
    def edge_len(self) -> np.ndarray:
        """Tokens on each node's edge (0 for the root and for empty-edge leaves)."""
        parent_depth = np.where(self.parent >= 0, self.depth[np.maximum(self.parent, 0)], 0)
        return self.depth - parent_depth

    def unique_tokens(self) -> int:
        return int(self.edge_len.sum())

    def sharing_ratio(self) -> float:
        total = int(self.lengths.sum())
        return 0.0 if total == 0 else 1.0 - self.unique_tokens() / total

    def preorder(self) -> np.ndarray:
        """Node ids depth-first, children in token order (a leaf after its equal-depth parent)."""
        is_leaf = self.leaf_request >= 0
        return np.lexsort((is_leaf, self.depth, self.first_rank))

    def representative(self, node: int) -> int:
        """A request whose prompt spells the node's path."""
        return int(self.sorted_order[self.first_rank[node]])


def build_compact_trie(prompts: Sequence[TokenIds]) -> CompactTrie:
    """The radix tree of `prompts` as node arrays (see CompactTrie); a PromptTokens keeps its
    trie (built once)."""
    if isinstance(prompts, PromptTokens):
        if prompts.trie_cache is None:
            order, lcp = sorted_with_lcp(prompts)
            prompts.trie_cache = _trie(order, lcp, prompts.lengths)
        trie: CompactTrie = prompts.trie_cache
        return trie
    order = lexicographic_order(prompts)
    lengths = np.fromiter((len(p) for p in prompts), dtype=np.int64, count=len(prompts))
    return _trie(order, adjacent_lcp(prompts, order), lengths)


def _trie(order: np.ndarray, lcp: np.ndarray, lengths: np.ndarray) -> CompactTrie:
    nodes: tuple[Sequence[int] | np.ndarray, ...]
    if len(order) >= COMPILED_FROM:
        from blend.planners.trie_kernel import nodes_from_lcp

        nodes = nodes_from_lcp(lengths[order], lcp, order)
    else:
        nodes = _nodes_from_lcp(lengths[order].tolist(), lcp.tolist(), order)
    parent, depth, first, leaf = nodes
    kind = node_id_type(2 * len(order) + 1)
    return CompactTrie(
        parent=np.asarray(parent, dtype=kind),
        depth=np.asarray(depth, dtype=kind),
        first_rank=np.asarray(first, dtype=kind),
        leaf_request=np.asarray(leaf, dtype=kind),
        sorted_order=order,
        lengths=lengths,
    )


def _nodes_from_lcp(
    sorted_lengths: list[int], lcp: list[int], order: np.ndarray
) -> tuple[list[int], list[int], list[int], list[int]]:
    """Node arrays of the trie of sorted strings, from their lengths and adjacent LCPs.

    Invariant: `stack` is the path from the root to the last leaf added; a new string hangs
    off that path at depth lcp, splitting an edge where the path has no node at that depth.
    """
    parent, depth, first, leaf = [-1], [0], [0], [-1]

    def add(up: int, end: int, rank: int, request: int) -> int:
        parent.append(up)
        depth.append(end)
        first.append(rank)
        leaf.append(request)
        return len(parent) - 1

    requests = order.tolist()
    stack = [0]
    for k, (length, shared) in enumerate(zip(sorted_lengths, lcp, strict=True)):
        last = -1
        while depth[stack[-1]] > shared:
            last = stack.pop()
        top = stack[-1]
        if depth[top] < shared:  # the path passes depth `shared` inside last's edge: split it
            parent[last] = top = add(top, shared, first[last], -1)
            stack.append(top)
        elif leaf[top] >= 0:  # the previous prompt ends exactly here
            up = parent[top]
            if depth[up] == shared:  # it is an empty-edge leaf: hang beside it
                stack.pop()
                top = up
            else:  # turn it into an inner node with the leaf as an empty-edge child
                parent[top] = stack[-1] = add(up, shared, first[top], -1)
                top = stack[-1]
        stack.append(add(top, length, k, requests[k]))
    return parent, depth, first, leaf


@dataclass(slots=True, eq=False)
class RadixNode:
    """One node; `edge` is the run of tokens from its parent to it."""

    edge: tuple[int, ...]
    depth: int  # tokens from the root to the end of this node's edge
    children: dict[int, RadixNode] = field(default_factory=dict)
    request_ids: list[int] = field(default_factory=list)  # requests whose prompt ends here


class RadixTree:
    """Prefix tree of the prompts of a request list (indexed 0..n-1)."""

    def __init__(self) -> None:
        self.root = RadixNode(edge=(), depth=0)
        self.num_requests = 0
        self.total_tokens = 0

    @classmethod
    def build(cls, prompts: Sequence[TokenIds]) -> RadixTree:
        """The tree of all prompts, built from their sorted order (same tree as inserting)."""
        tree = cls()
        tree.num_requests = len(prompts)
        tree.total_tokens = sum(len(p) for p in prompts)
        tree._fill_from(build_compact_trie(prompts), prompts)
        return tree

    def _fill_from(self, trie: CompactTrie, prompts: Sequence[TokenIds]) -> None:
        """Create node objects for the compact trie (mutates the tree, which must be empty)."""
        objects: dict[int, RadixNode] = {0: self.root}
        edge_len = trie.edge_len
        for node in trie.preorder().tolist()[1:]:
            up = objects[int(trie.parent[node])]
            request = int(trie.leaf_request[node])
            if request >= 0 and edge_len[node] == 0:
                up.request_ids.append(request)
                continue
            end = int(trie.depth[node])
            tokens = prompts[trie.representative(node)][end - int(edge_len[node]) : end]
            obj = RadixNode(edge=tuple(int(t) for t in tokens), depth=end)
            if request >= 0:
                obj.request_ids.append(request)
            up.children[obj.edge[0]] = obj
            objects[node] = obj

    def insert(self, prompt: Sequence[int]) -> int:
        """Add one prompt (mutates the tree); returns its request index."""
        request_index = self.num_requests
        self.num_requests += 1
        self.total_tokens += len(prompt)
        tokens = tuple(prompt)
        node, pos = self.root, 0
        while pos < len(tokens):
            child = node.children.get(tokens[pos])
            if child is None:
                leaf = RadixNode(edge=tokens[pos:], depth=len(tokens))
                node.children[tokens[pos]] = leaf
                node = leaf
                pos = len(tokens)
                break
            matched = _common_prefix_len(child.edge, tokens, pos)
            if matched < len(child.edge):
                child = self._split(node, child, matched)
            node, pos = child, pos + matched
        node.request_ids.append(request_index)
        return request_index

    @staticmethod
    def _split(parent: RadixNode, child: RadixNode, at: int) -> RadixNode:
        """Cut `child`'s edge after `at` tokens (mutates the tree); returns the new middle node."""
        middle = RadixNode(edge=child.edge[:at], depth=child.depth - len(child.edge) + at)
        parent.children[middle.edge[0]] = middle
        child.edge = child.edge[at:]
        middle.children[child.edge[0]] = child
        return middle

    def nodes(self) -> Iterator[RadixNode]:
        """All nodes, depth-first, children in ascending order of their first token."""
        stack = [self.root]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(node.children[t] for t in sorted(node.children, reverse=True))

    def unique_tokens(self) -> int:
        """Distinct prompt prefixes = tokens computed once with a perfect prefix cache."""
        return sum(len(node.edge) for node in self.nodes())

    def sharing_ratio(self) -> float:
        """Share of prompt tokens that are shared prefixes: 1 - unique / total (0 if empty)."""
        if self.total_tokens == 0:
            return 0.0
        return 1.0 - self.unique_tokens() / self.total_tokens

    def dfs_order(self) -> list[int]:
        """Request indices in depth-first order (ties in input order): maximises prefix reuse."""
        return [rid for node in self.nodes() for rid in node.request_ids]


def _common_prefix_len(edge: tuple[int, ...], tokens: tuple[int, ...], start: int) -> int:
    """Length of the common prefix of `edge` and `tokens[start:]` (compares whole slices)."""
    limit = min(len(edge), len(tokens) - start)
    if edge[:limit] == tokens[start : start + limit]:
        return limit
    lo, hi = 0, limit  # edge[:lo] matches, edge[:hi] does not: bisect on slice equality
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if edge[lo:mid] == tokens[start + lo : start + mid]:
            lo = mid
        else:
            hi = mid
    return lo


def order_sharing_ratio(prompts: Sequence[TokenIds], order: Sequence[int]) -> float:
    """Prefix sharing kept by running `prompts` in `order` with a one-request-deep cache.

    Each prompt reuses its longest common prefix with the prompt run just before it; for a
    depth-first order this equals the tree's sharing ratio, for other orders it is lower.
    """
    total = sum(len(p) for p in prompts)
    if total == 0:
        return 0.0
    return int(adjacent_lcp(prompts, order).sum()) / total
