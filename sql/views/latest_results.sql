-- latest_results: one result per (dataset, request_id), the one latest_result_picks keeps: a completion over an error row, then the most recently finished run.
CREATE OR REPLACE VIEW latest_results AS
SELECT r.*
FROM results AS r
JOIN latest_result_picks AS k
    ON k.dataset = r.dataset AND k.request_id = r.request_id AND k.run_id = r.run_id
    AND k.seq = r.seq;
