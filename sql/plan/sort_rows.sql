-- sort_rows: the token ids of the requests plan/request_columns.sql reads (tie: their rowid in
-- prompts), and of the registered length hints `plan_hint_rows` (tie: past every rowid), in no
-- particular order: plan/sorted_requests.py sorts them in bounded memory.
WITH rows_to_sort AS (
    SELECT tie, token_ids
    FROM runnable_requests(
        $dataset, $snapshot, $tokenizer_sha256, $done_model_sha256, $max_model_len
    )
    UNION ALL
    SELECT tie, token_ids FROM plan_hint_rows
),
final AS (
    SELECT tie, token_ids FROM rows_to_sort
)
SELECT * FROM final;
