-- replan_sort_counts: rows and tokens that execute/replan_sort_rows.sql streams.
WITH items AS (
    SELECT i.seq AS tie, t.token_ids
    FROM plan_items AS i
    JOIN prompt_tokens AS t
        ON t.dataset = $dataset AND t.snapshot = $snapshot AND t.request_id = i.request_id
        AND t.tokenizer_sha256 = $tokenizer_sha256
    WHERE i.plan_id = $plan_id
),
rows_to_sort AS (
    SELECT tie, token_ids FROM items
    UNION ALL
    SELECT tie, token_ids FROM plan_hint_rows
),
final AS (
    SELECT count(*) AS n_rows, coalesce(sum(len(token_ids)), 0)::BIGINT AS n_tokens
    FROM rows_to_sort
)
SELECT * FROM final;
