-- replan_sort_rows: the token ids of every item of plan $plan_id (tie: its seq) and of the
-- registered length hints `plan_hint_rows` (tie: past every seq), in no particular order:
-- plan/sorted_requests.py sorts them in bounded memory for the re-plan after the warm-up.
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
    SELECT tie, token_ids FROM rows_to_sort
)
SELECT * FROM final;
