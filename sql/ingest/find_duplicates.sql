-- find_duplicates: the rows of snapshot $snapshot of $dataset (written, not yet committed) whose request_id appeared
-- on an earlier line, with that line; stored in line order so that paging by line_no (duplicates_page) skips by zone maps.
CREATE OR REPLACE TEMP TABLE ingest_ids AS
WITH snapshot_ids AS (
    SELECT line_no, request_id
    FROM prompts
    WHERE dataset = $dataset AND snapshot = $snapshot
),

repeated AS (
    SELECT request_id, min(line_no) AS first_line_no
    FROM snapshot_ids
    GROUP BY request_id
    HAVING count(*) > 1
),

final AS (
    SELECT ids.line_no, ids.request_id, repeated.first_line_no
    FROM snapshot_ids AS ids
    INNER JOIN repeated ON repeated.request_id = ids.request_id
    WHERE ids.line_no > repeated.first_line_no
)

SELECT * FROM final
ORDER BY line_no;
