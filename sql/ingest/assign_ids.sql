-- assign_ids: final request_id of every staged prompt, and for a repeated id the line where it first appeared.
-- Derived ids (no custom_id/id) are the first 16 hex chars of prompt_sha256 (computed here if not staged); the k-th
-- occurrence (in line order) of the same derived id gets the suffix "-k" (k >= 2).
-- An id seen before (first_line_no NOT NULL) is a duplicate: only the first occurrence is kept.
CREATE OR REPLACE TEMP TABLE ingest_ids AS
WITH staged AS (
    SELECT
        line_no,
        request_id AS given_id,
        -- sha256 of a VARCHAR hashes its UTF-8 bytes: the digest hashlib gives the exact path.
        CASE
            WHEN request_id IS NULL
                THEN left(coalesce(prompt_sha256, sha256(coalesce(prompt, messages_json))), 16)
        END AS derived_base
    FROM ingest_staged_prompts
),

numbered AS (
    SELECT
        line_no,
        given_id,
        derived_base,
        row_number() OVER (PARTITION BY given_id IS NULL, derived_base ORDER BY line_no) AS k
    FROM staged
),

with_ids AS (
    SELECT
        line_no,
        CASE
            WHEN given_id IS NOT NULL THEN given_id
            WHEN k = 1 THEN derived_base
            ELSE derived_base || '-' || CAST(k AS VARCHAR)
        END AS request_id
    FROM numbered
),

final AS (
    SELECT
        line_no,
        request_id,
        CASE WHEN row_number() OVER by_id > 1 THEN first_value(line_no) OVER by_id END
            AS first_line_no
    FROM with_ids
    WINDOW by_id AS (PARTITION BY request_id ORDER BY line_no)
)

-- Stored in line order so that paging by line_no (duplicates_page) skips by zone maps.
SELECT * FROM final
ORDER BY line_no;
