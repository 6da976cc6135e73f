-- find_snapshot: the latest snapshot of $dataset ingested from a file with content hash $source_sha256, if any.
WITH final AS (
    SELECT snapshot, source_uri, source_format, n_rows, n_rejected
    FROM datasets
    WHERE dataset = $dataset AND source_sha256 = $source_sha256
)

SELECT * FROM final
ORDER BY snapshot DESC
LIMIT 1;
