-- recent_answers: the newest `at_most` earlier completions (no error) of dataset `of_dataset`
-- (any snapshot) by model `by_model`, one a prompt and sampling (its newest), that have their
-- prompt's token ids under `tokenizer`; with those ids. Ties of finished_at (a step's answers
-- share it) broken on the key, so the same store gives the same rows. Unordered: callers sort
-- by finished_at DESC, prompt_sha256, sampling_json.
-- One definition for every reader of earlier lengths (plan/history_lengths.sql, the hints of
-- plan/history_hints.sql and execute/replan_hints.sql, the own lengths of
-- plan/request_columns.sql and execute/replan_columns.sql), so they agree on the rows; a TEMP
-- macro every connection with the `results` view creates (store/database.py).
-- The newest rows are chosen on narrow columns and only they joined to their token lists: at
-- 10M answers, picking on rows that carry the lists took 3-4x longer.
CREATE OR REPLACE TEMP MACRO recent_answers(of_dataset, by_model, tokenizer, at_most) AS TABLE
WITH done AS (
    SELECT dataset, snapshot, request_id, prompt_sha256, sampling_json, n_output_tokens,
        finished_at
    FROM results
    WHERE dataset = of_dataset AND model_sha256 = by_model AND error IS NULL
    QUALIFY row_number() OVER (
        PARTITION BY prompt_sha256, sampling_json
        ORDER BY finished_at DESC, snapshot DESC, request_id
    ) = 1
),
newest AS (
    SELECT d.*
    FROM done AS d
    SEMI JOIN prompt_tokens AS t
        ON t.dataset = d.dataset AND t.snapshot = d.snapshot AND t.request_id = d.request_id
        AND t.tokenizer_sha256 = tokenizer
    ORDER BY d.finished_at DESC, d.prompt_sha256, d.sampling_json
    LIMIT at_most
)
SELECT n.prompt_sha256, n.sampling_json, n.n_output_tokens, t.token_ids, n.finished_at
FROM newest AS n
JOIN prompt_tokens AS t
    ON t.dataset = n.dataset AND t.snapshot = n.snapshot AND t.request_id = n.request_id
    AND t.tokenizer_sha256 = tokenizer;
