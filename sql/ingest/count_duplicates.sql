-- count_duplicates: how many staged prompts repeat an earlier request_id (after assign_ids).
WITH final AS (
    SELECT count(*) AS n_duplicates
    FROM ingest_ids
    WHERE first_line_no IS NOT NULL
)

SELECT n_duplicates FROM final;
