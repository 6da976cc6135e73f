-- reject_counts: rejects of snapshot $snapshot of $dataset per reason category (the text before the first colon).
WITH final AS (
    SELECT split_part(reason, ':', 1) AS category, count(*) AS n
    FROM rejects
    WHERE dataset = $dataset AND snapshot = $snapshot
    GROUP BY category
)

SELECT category, n FROM final
ORDER BY category;
