-- part_lengths: output lengths of a run's finished rows (parts matched by $glob): completions only.
WITH final AS (
    SELECT request_id, n_output_tokens
    FROM read_parquet($glob)
    WHERE error IS NULL
)
SELECT * FROM final;
