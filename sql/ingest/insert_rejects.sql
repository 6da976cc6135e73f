-- insert_rejects: copy the staged rejects (duplicate ids included) into `rejects` as snapshot $snapshot of $dataset.
INSERT INTO rejects (dataset, snapshot, line_no, reason, raw)
WITH final AS (
    SELECT $dataset AS dataset, $snapshot AS snapshot, line_no, reason, raw
    FROM ingest_staged_rejects
)

SELECT * FROM final
ORDER BY line_no;
