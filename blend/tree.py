"""A radix (compressed prefix) tree over prompt token ids.

Invariant: every request is a leaf-or-inner mark on exactly one node, the node whose path from
the root spells its whole prompt; the children of a node start with distinct tokens, so each
distinct prefix of any prompt is spelled by exactly one path. Building costs O(total tokens).
The number of tokens on all edges is the number of distinct prompt prefixes: the tokens a
prefix cache computes once when requests are run in depth-first order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field


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
    def build(cls, prompts: Sequence[Sequence[int]]) -> RadixTree:
        tree = cls()
        for prompt in prompts:
            tree.insert(prompt)
        return tree

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
    """Length of the common prefix of `edge` and `tokens[start:]`."""
    limit = min(len(edge), len(tokens) - start)
    i = 0
    while i < limit and edge[i] == tokens[start + i]:
        i += 1
    return i


def order_sharing_ratio(prompts: Sequence[Sequence[int]], order: Sequence[int]) -> float:
    """Prefix sharing kept by running `prompts` in `order` with a one-request-deep cache.

    Each prompt reuses its longest common prefix with the prompt run just before it; for a
    depth-first order this equals the tree's sharing ratio, for other orders it is lower.
    """
    total = sum(len(p) for p in prompts)
    if total == 0:
        return 0.0
    shared = 0
    previous: tuple[int, ...] = ()
    for index in order:
        current = tuple(prompts[index])
        shared += _common_prefix_len(previous, current, 0)
        previous = current
    return shared / total
