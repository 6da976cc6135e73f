-- name: prompt_page: next $limit prompts of ($dataset, $snapshot) after request_id $after, by request_id.
WITH page AS (
    SELECT request_id, prompt, messages_json
    FROM prompts
    WHERE dataset = $dataset
      AND snapshot = $snapshot
      AND request_id > $after
),

final AS (
    SELECT request_id, prompt, messages_json
    FROM page
    ORDER BY request_id
    LIMIT $limit
)

SELECT * FROM final
