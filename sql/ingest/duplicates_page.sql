-- duplicates_page: up to $limit staged prompts after line $after_line whose request_id came earlier, with the reject reason.
WITH duplicates AS (
    SELECT line_no, request_id, first_line_no
    FROM ingest_ids
    WHERE first_line_no IS NOT NULL AND line_no > $after_line
),

final AS (
    SELECT
        duplicates.line_no,
        format(
            'duplicate id: {} (first seen on line {})',
            duplicates.request_id,
            duplicates.first_line_no
        ) AS reason,
        staged.raw_offset,
        staged.raw_length
    FROM duplicates
    INNER JOIN ingest_staged_lines AS staged ON staged.line_no = duplicates.line_no
)

SELECT line_no, reason, raw_offset, raw_length FROM final
ORDER BY line_no
LIMIT $limit;
