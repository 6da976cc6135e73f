-- count_prompts: prompts of snapshot $snapshot of $dataset (checked before the ingest commits).
WITH final AS (
    SELECT count(*) AS n_prompts
    FROM prompts
    WHERE dataset = $dataset AND snapshot = $snapshot
)

SELECT n_prompts FROM final;
