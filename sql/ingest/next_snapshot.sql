-- next_snapshot: the snapshot number a new ingest of $dataset gets (1 for a new dataset).
WITH final AS (
    SELECT coalesce(max(snapshot), 0) + 1 AS snapshot
    FROM datasets
    WHERE dataset = $dataset
)

SELECT snapshot FROM final;
