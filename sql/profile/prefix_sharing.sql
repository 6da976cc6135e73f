-- prefix_sharing: DFS prefix-sharing ratio = 1 - trie nodes / prompt tokens, in O(total tokens).
-- The reference: the profile stage computes the same numbers in bounded memory (blend/profile/
-- prefix.py; tests/profile/test_prefix_bounded.py holds them equal), as this window over every
-- token list cannot spill (it needs memory per prompt).
-- Invariant: in lexicographic order, a prompt's longest common prefix (LCP) with its predecessor is
-- its longest common prefix with any earlier prompt, so it adds exactly len - lcp_prev new trie
-- nodes; summing that over the sorted prompts counts the nodes in O(total tokens) after the sort.
-- Identical prompts add no node (fully shared); the first prompt and empty prompts have lcp_prev 0.
WITH tokens AS (
    SELECT request_id, token_ids
    FROM prompt_tokens
    WHERE dataset = $dataset
      AND snapshot = $snapshot
      AND tokenizer_sha256 = $tokenizer_sha256
),

sorted AS (
    SELECT
        token_ids,
        -- list_zip(.., true) stops at the shorter list, so `matches` has min(len, len_prev) items.
        list_transform(
            list_zip(token_ids, coalesce(lag(token_ids) OVER w, []), true),
            lambda pair: pair[1] = pair[2]
        ) AS matches
    FROM tokens
    WINDOW w AS (ORDER BY token_ids, request_id)
),

lcp AS (
    SELECT
        len(token_ids) AS n_tokens,
        -- list_position is 1-based and NULL when there is no mismatch (one list prefixes the other).
        coalesce(list_position(matches, false) - 1, len(matches)) AS lcp_prev
    FROM sorted
),

final AS (
    SELECT
        coalesce(sum(n_tokens), 0)::BIGINT AS total_tokens,
        coalesce(sum(n_tokens - lcp_prev), 0)::BIGINT AS unique_prefix_tokens,
        1 - sum(n_tokens - lcp_prev) / nullif(sum(n_tokens), 0) AS sharing_ratio
    FROM lcp
)

SELECT * FROM final
