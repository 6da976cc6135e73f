"""The compiled node loop (planners/trie_kernel.py) builds the trie the Python loop builds:
the same nodes, numbered the same way (planners number and tie-break by node id)."""

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from blend.planners import tree
from blend.planners.prompt_tokens import PromptTokens
from blend.planners.trie_kernel import nodes_from_lcp

# small alphabets and lengths: prefixes of each other, duplicates and empty prompts abound
prompts_strategy = st.lists(
    st.lists(st.integers(0, 2), min_size=0, max_size=6), min_size=1, max_size=60
)


@settings(max_examples=200, deadline=None)
@given(prompts_strategy)
def test_the_compiled_loop_builds_the_same_nodes(prompts: list[list[int]]) -> None:
    table = PromptTokens.from_arrow(pa.array(prompts, pa.list_(pa.int32())))
    order, lcp = tree.sorted_with_lcp(table)
    lengths = table.lengths[order]
    expected = tree._nodes_from_lcp(lengths.tolist(), lcp.tolist(), order)
    for python, compiled in zip(expected, nodes_from_lcp(lengths, lcp, order), strict=True):
        assert compiled.tolist() == list(python)


def test_large_inputs_take_the_compiled_loop(monkeypatch) -> None:
    rng = np.random.default_rng(2)
    prompts = [rng.integers(0, 3, int(rng.integers(0, 8))).tolist() for _ in range(500)]
    small = tree.build_compact_trie(prompts)
    monkeypatch.setattr(tree, "COMPILED_FROM", 10)
    large = tree.build_compact_trie(prompts)
    for name in ("parent", "depth", "first_rank", "leaf_request"):
        assert np.array_equal(getattr(small, name), getattr(large, name)), name
