-- delete_duplicates: remove from snapshot $snapshot of $dataset (not yet committed) the rows whose id came earlier.
DELETE FROM prompts
WHERE
    dataset = $dataset
    AND snapshot = $snapshot
    AND line_no IN (SELECT line_no FROM ingest_ids WHERE first_line_no IS NOT NULL);
