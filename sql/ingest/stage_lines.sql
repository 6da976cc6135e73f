-- stage_lines: append where the rows of the Arrow batch `ingest_batch` (a Python variable) came from to the staged lines.
INSERT INTO ingest_staged_lines
SELECT line_no, request_id IS NULL AS derived, raw_offset, raw_length
FROM ingest_batch;
