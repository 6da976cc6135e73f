-- stage_rejects: append the Arrow batch `ingest_batch` (a Python variable) to the staged rejects.
INSERT INTO ingest_staged_rejects
SELECT line_no, reason, raw
FROM ingest_batch;
