-- runnable_requests: the tokenized prompts of snapshot `of_snapshot` of dataset `of_dataset`
-- that a plan runs: under tokenizer `tokenizer`, leaving room for an output within the context
-- (`context` tokens: n_prompt_tokens < context; plan/over_length_requests.sql has the rest,
-- which the plan keeps unpriced) and, with `done_model` set (incremental), not already
-- completed by that model (a result for the same prompt_sha256 and sampling_json without an
-- error, in any run; an error row does not count as done). tie: the prompt's rowid in
-- `prompts` (stable while a plan reads). One definition for plan/request_columns.sql,
-- plan/sort_rows.sql and the requests of plan/history_hints.sql, so they read the same rows;
-- a TEMP macro every connection with the `results` view creates (store/database.py). DuckDB
-- reads only the columns a caller selects (token_ids only where asked for).
CREATE OR REPLACE TEMP MACRO runnable_requests(
    of_dataset, of_snapshot, tokenizer, done_model, context
)
AS TABLE
WITH tokens AS (
    SELECT request_id, n_prompt_tokens, token_ids
    FROM prompt_tokens
    WHERE dataset = of_dataset AND snapshot = of_snapshot AND tokenizer_sha256 = tokenizer
),
answered AS (
    SELECT prompt_sha256, sampling_json, bool_or(error IS NULL) AS completed
    FROM results
    WHERE model_sha256 = done_model
    GROUP BY prompt_sha256, sampling_json
)
SELECT p.rowid AS tie, p.request_id, p.line_no, p.max_tokens, p.prompt_sha256,
    p.sampling_json, t.n_prompt_tokens, t.token_ids
FROM prompts AS p
JOIN tokens AS t USING (request_id)
LEFT JOIN answered AS a
    ON a.prompt_sha256 = p.prompt_sha256 AND a.sampling_json = p.sampling_json
WHERE p.dataset = of_dataset AND p.snapshot = of_snapshot
    AND t.n_prompt_tokens < context
    AND NOT coalesce(a.completed, false);
