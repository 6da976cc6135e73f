-- renumber_derived: the k-th occurrence (in line order, k >= 2) of the same derived id in snapshot $snapshot of
-- $dataset gets the suffix "-k" (inside the ingest's open transaction, before duplicates are looked for).
UPDATE prompts
SET request_id = renamed.request_id
FROM (
    WITH derived AS (
        SELECT p.line_no, p.request_id
        FROM prompts AS p
        INNER JOIN ingest_staged_lines AS staged ON staged.line_no = p.line_no
        WHERE p.dataset = $dataset AND p.snapshot = $snapshot AND staged.derived
    ),

    numbered AS (
        SELECT
            line_no,
            request_id,
            row_number() OVER (PARTITION BY request_id ORDER BY line_no) AS k
        FROM derived
    )

    SELECT line_no, request_id || '-' || CAST(k AS VARCHAR) AS request_id
    FROM numbered
    WHERE k > 1
) AS renamed
WHERE
    prompts.dataset = $dataset
    AND prompts.snapshot = $snapshot
    AND prompts.line_no = renamed.line_no;
