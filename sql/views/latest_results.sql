-- latest_results: one result per (dataset, request_id): a completion over an error row, then the most recently finished run.
CREATE OR REPLACE VIEW latest_results AS
WITH ranked AS (
    SELECT
        r.*,
        row_number() OVER (
            PARTITION BY r.dataset, r.request_id
            ORDER BY
                (r.error IS NULL) DESC,
                (u.finished_at IS NOT NULL) DESC,   -- runs still running (or killed) last
                u.finished_at DESC NULLS LAST,
                r.finished_at DESC,
                r.run_id DESC
        ) AS pick
    FROM results AS r
    LEFT JOIN runs AS u ON u.run_id = r.run_id
),
final AS (
    SELECT * EXCLUDE (pick)
    FROM ranked
    WHERE pick = 1
)
SELECT * FROM final;
