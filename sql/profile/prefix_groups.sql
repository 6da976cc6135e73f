-- prefix_groups: top $top_n groups of sorted prompts sharing >= $min_shared_tokens prefix tokens.
-- The reference: the profile stage computes the same numbers in bounded memory (blend/profile/
-- prefix.py; tests/profile/test_prefix_bounded.py holds them equal), as this window over every
-- token list cannot spill (it needs memory per prompt).
-- Invariant: a group is a maximal run of sorted prompts whose LCP with the predecessor is
-- >= $min_shared_tokens (a new group starts where it drops below); in sorted order the LCP of the
-- whole run is the minimum adjacent LCP inside it, so each of its n prompts after the first saves
-- at least shared_prefix_tokens of prefill. n_groups counts every group of >= 2 prompts.
WITH tokens AS (
    SELECT request_id, token_ids
    FROM prompt_tokens
    WHERE dataset = $dataset
      AND snapshot = $snapshot
      AND tokenizer_sha256 = $tokenizer_sha256
),

sorted AS (
    SELECT
        request_id,
        row_number() OVER w AS sort_pos,
        list_transform(
            list_zip(token_ids, coalesce(lag(token_ids) OVER w, []), true),
            lambda pair: pair[1] = pair[2]
        ) AS matches
    FROM tokens
    WINDOW w AS (ORDER BY token_ids, request_id)
),

lcp AS (
    SELECT
        request_id,
        sort_pos,
        sort_pos > 1
            AND coalesce(list_position(matches, false) - 1, len(matches))
                >= $min_shared_tokens AS continues_group,
        coalesce(list_position(matches, false) - 1, len(matches)) AS lcp_prev
    FROM sorted
),

grouped AS (
    SELECT
        request_id,
        sort_pos,
        continues_group,
        lcp_prev,
        sum(CASE WHEN continues_group THEN 0 ELSE 1 END)
            OVER (ORDER BY sort_pos ROWS UNBOUNDED PRECEDING) AS group_no
    FROM lcp
),

groups AS (
    SELECT
        group_no,
        count(*) AS n_prompts,
        min(lcp_prev) FILTER (WHERE continues_group) AS shared_prefix_tokens,
        arg_min(request_id, sort_pos) AS first_request_id,
        min(sort_pos) AS first_sort_pos
    FROM grouped
    GROUP BY group_no
    HAVING count(*) >= 2
),

ranked AS (
    SELECT
        row_number() OVER (
            ORDER BY (n_prompts - 1) * shared_prefix_tokens DESC, first_sort_pos
        ) AS group_rank,
        n_prompts,
        shared_prefix_tokens,
        (n_prompts - 1) * shared_prefix_tokens AS saved_tokens,
        first_request_id,
        count(*) OVER () AS n_groups
    FROM groups
),

final AS (
    SELECT group_rank, n_prompts, shared_prefix_tokens, saved_tokens, first_request_id, n_groups
    FROM ranked
    WHERE group_rank <= $top_n
    ORDER BY group_rank
)

SELECT * FROM final
