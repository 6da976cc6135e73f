-- request_columns: the requests a plan runs (macros/runnable_requests.sql: the snapshot's
-- tokenized prompts that fit the context, $max_model_len tokens, less what $done_model_sha256
-- already completed when incremental), in input order, as a planner sees them but without
-- their token ids (plan/sorted_requests.py sorts those in bounded memory).
-- own_output_tokens: the output length of $history_model_sha256's earlier result of the same
-- prompt and sampling among its newest $limit (macros/recent_answers.sql; NULL: none). tie:
-- the row's rowid in prompts, what sort_rows.sql names it by (stable while the plan reads).
WITH history AS (
    SELECT prompt_sha256, sampling_json, n_output_tokens
    FROM recent_answers($dataset, $history_model_sha256, $tokenizer_sha256, $limit)
),
final AS (
    SELECT r.request_id, r.tie, r.n_prompt_tokens, r.max_tokens,
        h.n_output_tokens AS own_output_tokens
    FROM runnable_requests(
        $dataset, $snapshot, $tokenizer_sha256, $done_model_sha256, $max_model_len
    ) AS r
    LEFT JOIN history AS h
        ON h.prompt_sha256 = r.prompt_sha256 AND h.sampling_json = r.sampling_json
    ORDER BY r.line_no, r.tie
)
SELECT * FROM final;
