-- snapshots: snapshot numbers known for $dataset (from datasets and prompts), ascending.
WITH known AS (
    SELECT snapshot FROM datasets WHERE dataset = $dataset
    UNION
    SELECT snapshot FROM prompts WHERE dataset = $dataset
),

final AS (
    SELECT snapshot
    FROM known
    ORDER BY snapshot
)

SELECT * FROM final
