-- run_summary: one row per run: status, rows, errors, tokens, prefix-cache hit rate, times and throughput.
CREATE OR REPLACE VIEW run_summary AS
WITH rows_per_run AS (
    SELECT
        run_id,
        count(*)                                  AS n_rows,
        count(*) FILTER (WHERE error IS NOT NULL) AS n_errors,
        sum(n_prompt_tokens)                      AS input_tokens,
        sum(n_output_tokens)                      AS output_tokens,
        sum(n_cached_tokens)                      AS cached_tokens
    FROM results
    GROUP BY run_id
),
final AS (
    SELECT
        u.run_id,
        u.plan_id,
        u.dataset,
        u.snapshot,
        u.model,
        u.engine,
        u.engine_version,
        u.status,
        u.started_at,
        u.finished_at,
        u.n_attempts,
        p.n_requests                                           AS n_planned,
        coalesce(r.n_rows, 0)                                  AS n_rows,
        coalesce(r.n_errors, 0)                                AS n_errors,
        coalesce(r.input_tokens, 0)                            AS input_tokens,
        coalesce(r.output_tokens, 0)                           AS output_tokens,
        coalesce(r.cached_tokens, 0)                           AS cached_tokens,
        -- the one definition (sql/schema/008_prefix_cache_hit_rate.sql), as the CLI shows it
        prefix_cache_hit_rate(r.cached_tokens, r.input_tokens) AS prefix_cache_hit_rate,
        u.wall_s,
        u.engine_start_s,
        u.engine_busy_s,
        (r.input_tokens + r.output_tokens) / nullif(u.wall_s, 0) AS throughput_tok_s,
        r.output_tokens / nullif(u.wall_s, 0)                  AS output_tok_s,
        greatest(u.wall_s - u.engine_start_s - u.engine_busy_s, 0)
            / nullif(u.wall_s - u.engine_start_s, 0)           AS overhead_fraction,
        u.n_engine_restarts
    FROM runs AS u
    LEFT JOIN rows_per_run AS r ON r.run_id = u.run_id
    LEFT JOIN plans AS p ON p.plan_id = u.plan_id
)
SELECT * FROM final;
