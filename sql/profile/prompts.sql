-- prompts: the prompts of ($dataset, $snapshot) to tokenize, by request_id.
WITH snapshot_prompts AS (
    SELECT request_id, prompt, messages_json
    FROM prompts
    WHERE dataset = $dataset
      AND snapshot = $snapshot
),

final AS (
    SELECT request_id, prompt, messages_json
    FROM snapshot_prompts
    ORDER BY request_id
)

SELECT * FROM final
