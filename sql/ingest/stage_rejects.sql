-- stage_rejects: append the registered Arrow batch `ingest_reject_batch` to the staged rejects.
INSERT INTO ingest_staged_rejects
SELECT line_no, reason, raw
FROM ingest_reject_batch;
