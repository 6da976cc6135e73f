-- row_lineage: each result row traced to its prompt (source line), plan (planner), run (engine, model) and Parquet file.
CREATE OR REPLACE VIEW row_lineage AS
WITH final AS (
    SELECT
        r.request_id,
        r.dataset,
        r.snapshot,
        d.source_uri,
        p.line_no,
        r.prompt_sha256,
        r.plan_id,
        pl.planner,
        r.seq,
        r.run_id,
        u.status   AS run_status,
        r.engine,
        r.engine_version,
        r.model,
        r.model_sha256,
        u.model_revision,  -- from runs: parts written before the column have none
        r.tokenizer_sha256,
        r.sampling_json,
        u.flow_run_id,
        u.deployment_name,
        u.git_revision,
        f.file,
        r.error
    FROM results AS r
    LEFT JOIN prompts AS p
        ON p.dataset = r.dataset AND p.snapshot = r.snapshot AND p.request_id = r.request_id
    LEFT JOIN datasets AS d ON d.dataset = r.dataset AND d.snapshot = r.snapshot
    LEFT JOIN plans AS pl ON pl.plan_id = r.plan_id
    LEFT JOIN runs AS u ON u.run_id = r.run_id
    LEFT JOIN result_files AS f ON f.run_id = r.run_id AND f.request_id = r.request_id
)
SELECT * FROM final;
