-- count_prompts: number of prompts of ($dataset, $snapshot).
WITH snapshot_prompts AS (
    SELECT request_id
    FROM prompts
    WHERE dataset = $dataset
      AND snapshot = $snapshot
),

final AS (
    SELECT count(*) AS n_prompts
    FROM snapshot_prompts
)

SELECT * FROM final
