-- run_estimate_accuracy: a run's estimated against actual output tokens, its largest prefix groups
-- first, read from the run's own Parquet parts ($glob: the run folder's parts), as the
-- estimate_accuracy view (sql/views/estimate_accuracy.sql) has them for every run: without
-- reading the footers of every other run's parts.
WITH used AS (
    SELECT
        coalesce(o.prefix_group, i.prefix_group) AS prefix_group,
        coalesce(o.est_source, i.est_source) AS est_source,
        coalesce(o.est_output_tokens, i.est_output_tokens) AS estimate,
        r.n_output_tokens AS actual
    FROM read_parquet($glob, union_by_name = true) AS r
    JOIN plan_items AS i ON i.plan_id = r.plan_id AND i.request_id = r.request_id
    LEFT JOIN run_orders AS o ON o.run_id = r.run_id AND o.request_id = r.request_id
    WHERE r.run_id = $run_id AND r.error IS NULL AND coalesce(i.side, '') <> 'W'
        AND i.est_output_tokens IS NOT NULL
),
final AS (
    SELECT
        prefix_group,
        mode(est_source) AS est_source,
        count(*) AS n_requests,
        avg(estimate) AS mean_estimate,
        avg(actual) AS mean_actual,
        avg(abs(estimate - actual)) AS mean_abs_error,
        avg(estimate) / nullif(avg(actual), 0) AS estimate_over_actual
    FROM used
    GROUP BY prefix_group
    ORDER BY n_requests DESC, prefix_group
    LIMIT $limit
)
SELECT * FROM final;
