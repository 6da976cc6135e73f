-- replan_sort_sample: $n_rows rows of execute/replan_sort_rows.sql picked by a hash of their
-- tie: a fixed pseudo-random sample (a top-n, so DuckDB holds only $n_rows rows).
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
    SELECT tie, token_ids
    FROM rows_to_sort
    ORDER BY hash(tie), tie
    LIMIT $n_rows
)
SELECT * FROM final;
