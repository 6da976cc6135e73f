-- replan_hints: the rows of recent_answers (macros/recent_answers.sql: $history_model_sha256's
-- newest $limit earlier results of the dataset) that are length hints of the re-planned items
-- (the registered `replan_seqs`, seq): not the same prompt and sampling as one of them, and a
-- sampling one of them has. Newest first, with their token ids.
-- The samplings are read as a DISTINCT list: otherwise the IN builds a hash table of every
-- row of `mine` beside the NOT EXISTS's own, and at 10M re-planned prompts the two together
-- ran out of the stages' 1 GiB DuckDB cap (each alone fits).
WITH mine AS (
    SELECT p.prompt_sha256, p.sampling_json
    FROM replan_seqs AS r
    JOIN plan_items AS i ON i.plan_id = $plan_id AND i.seq = r.seq
    JOIN prompts AS p
        ON p.dataset = $dataset AND p.snapshot = $snapshot AND p.request_id = i.request_id
),
history AS (
    SELECT * FROM recent_answers($dataset, $history_model_sha256, $tokenizer_sha256, $limit)
),
final AS (
    SELECT h.n_output_tokens, h.token_ids
    FROM history AS h
    WHERE h.sampling_json IN (SELECT DISTINCT sampling_json FROM mine)
        AND NOT EXISTS (
            SELECT 1 FROM mine AS m
            WHERE m.prompt_sha256 = h.prompt_sha256 AND m.sampling_json = h.sampling_json
        )
    ORDER BY h.finished_at DESC, h.prompt_sha256, h.sampling_json
)
SELECT * FROM final;
