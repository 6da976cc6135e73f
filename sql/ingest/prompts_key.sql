-- prompts_key: 1 when `prompts` has the primary key of stores created before it was dropped, else 0.
WITH final AS (
    SELECT count(*) AS n_keys
    FROM duckdb_constraints()
    WHERE
        database_name = current_database()
        AND table_name = 'prompts'
        AND constraint_type = 'PRIMARY KEY'
)

SELECT least(n_keys, 1) AS keyed FROM final;
