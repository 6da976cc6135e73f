import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from blend.planners.tree import RadixTree, adjacent_lcp, build_compact_trie, order_sharing_ratio

prompts_strategy = st.lists(st.lists(st.integers(0, 3), min_size=0, max_size=8), max_size=25)


def trie_node_count(prompts: list[list[int]]) -> int:
    """Reference: number of distinct non-empty prefixes (uncompressed trie nodes)."""
    return len({tuple(p[:k]) for p in prompts for k in range(1, len(p) + 1)})


def test_tiny_tree_structure_and_dfs_order() -> None:
    prompts = [[1, 2, 3, 4], [1, 2, 5], [1, 2, 3, 6], [7], [1, 2, 3, 4]]
    tree = RadixTree.build(prompts)
    assert tree.dfs_order() == [0, 4, 2, 1, 3]
    assert tree.unique_tokens() == 7  # 1, 12, 123, 1234, 1236, 125, 7
    assert tree.total_tokens == 16
    assert tree.sharing_ratio() == 1 - 7 / 16
    (top,) = [n for n in tree.root.children.values() if n.edge[0] == 1]
    assert top.edge == (1, 2)
    assert sorted(c.edge for c in top.children.values()) == [(3,), (5,)]


def test_prompt_ending_inside_an_edge_splits_it() -> None:
    tree = RadixTree.build([[5, 6, 7, 8], [5, 6]])
    (node,) = tree.root.children.values()
    assert node.edge == (5, 6)
    assert node.request_ids == [1]
    assert [c.edge for c in node.children.values()] == [(7, 8)]
    assert tree.dfs_order() == [1, 0]


def test_order_sharing_ratio_penalises_interleaving() -> None:
    prompts = [[1, 1, 1, 1], [2, 2, 2, 2], [1, 1, 1, 2], [2, 2, 2, 1]]
    dfs = RadixTree.build(prompts).dfs_order()
    assert order_sharing_ratio(prompts, dfs) == 6 / 16
    assert order_sharing_ratio(prompts, [0, 1, 2, 3]) == 0.0


@given(prompts_strategy)
def test_unique_tokens_equal_trie_nodes(prompts: list[list[int]]) -> None:
    assert RadixTree.build(prompts).unique_tokens() == trie_node_count(prompts)


@given(prompts_strategy)
def test_dfs_order_is_a_permutation_keeping_all_sharing(prompts: list[list[int]]) -> None:
    tree = RadixTree.build(prompts)
    order = tree.dfs_order()
    assert sorted(order) == list(range(len(prompts)))
    assert abs(order_sharing_ratio(prompts, order) - tree.sharing_ratio()) < 1e-12
    ordered = [prompts[i] for i in order]
    assert ordered == sorted(prompts)  # DFS of a token trie = lexicographic order


def reference_tree(prompts: list[list[int]]) -> RadixTree:
    """The token-by-token insertion trie the fast builder must reproduce."""
    tree = RadixTree()
    for p in prompts:
        tree.insert(p)
    return tree


def shape(tree: RadixTree) -> list[tuple]:
    return [
        (n.edge, n.depth, tuple(n.request_ids), tuple(sorted(n.children))) for n in tree.nodes()
    ]


@given(st.lists(st.lists(st.integers(0, 3), max_size=10), max_size=30))
def test_fast_builder_equals_the_insertion_trie(prompts: list[list[int]]) -> None:
    fast = RadixTree.build(prompts)
    assert shape(fast) == shape(reference_tree(prompts))
    assert (fast.num_requests, fast.total_tokens) == (len(prompts), sum(map(len, prompts)))


@given(st.lists(st.lists(st.integers(0, 3), max_size=10), max_size=30))
def test_compact_trie_matches_the_radix_tree(prompts: list[list[int]]) -> None:
    trie = build_compact_trie(prompts)
    assert trie.unique_tokens() == RadixTree.build(prompts).unique_tokens()
    leaves = trie.leaf_request[trie.preorder()]
    assert leaves[leaves >= 0].tolist() == RadixTree.build(prompts).dfs_order()
    assert sorted(trie.leaf_request[trie.leaf_request >= 0].tolist()) == list(range(len(prompts)))


def test_lcp_handles_long_shared_prefixes_and_numpy_prompts() -> None:
    base = np.arange(5000, dtype=np.int32)
    prompts = [base, np.concatenate((base[:4097], [9])), base[:10], np.array([], np.int32)]
    assert adjacent_lcp(prompts, [3, 2, 1, 0]).tolist() == [0, 0, 10, 4097]
    assert order_sharing_ratio(prompts, [0, 1, 2, 3]) == (4097 + 10) / (5000 + 4098 + 10)


def test_token_ids_outside_uint32_are_refused() -> None:
    with pytest.raises(ValueError, match="token id -1"):
        build_compact_trie([[1, -1], [1, 2]])


@given(prompts_strategy, st.integers(1, 5), st.randoms(use_true_random=False))
def test_common_prefixes_of_any_order_in_chunks_of_pairs(prompts, chunk, rnd) -> None:
    """A sorted PromptTokens finds the common prefix of any two prompts by range minima over
    its sorted LCPs, a chunk of pairs at a time: what comparing their tokens gives."""
    from blend.planners import tree
    from blend.planners.prompt_tokens import PromptTokens

    table = PromptTokens.from_lists(prompts)
    tree.sorted_with_lcp(table)
    order = list(range(len(prompts)))
    rnd.shuffle(order)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tree, "_MINIMA_CHUNK", chunk)
        assert adjacent_lcp(table, order).tolist() == adjacent_lcp(prompts, order).tolist()


@given(st.lists(st.integers(0, 10**6), max_size=60))
def test_node_levels_count_the_ancestors(draws) -> None:
    from blend.planners.arrays import level_order, node_levels

    parent = np.array([-1] + [d % (i + 1) for i, d in enumerate(draws)], dtype=np.int64)
    expected = []
    for node in range(len(parent)):
        depth, up = 0, parent[node]
        while up >= 0:
            depth, up = depth + 1, parent[up]
        expected.append(depth)
    assert node_levels(parent).tolist() == expected
    by_level = [sorted(set(np.asarray(expected)[nodes].tolist())) for nodes in level_order(parent)]
    assert by_level == [[k] for k in range(max(expected) + 1)]
