-- latest_result_picks: which result each (dataset, request_id) keeps, on the key columns only (narrow, so a large store ranks its rows in little memory): a completion over an error row, then the most recently finished run.
CREATE OR REPLACE VIEW latest_result_picks AS
SELECT r.dataset, r.request_id, r.run_id, r.seq
FROM results AS r
LEFT JOIN runs AS u ON u.run_id = r.run_id
QUALIFY row_number() OVER (
    PARTITION BY r.dataset, r.request_id
    ORDER BY
        (r.error IS NULL) DESC,
        (u.finished_at IS NOT NULL) DESC,   -- runs still running (or killed) last
        u.finished_at DESC NULLS LAST,
        r.finished_at DESC,
        r.run_id DESC
) = 1;
