-- run_estimate_accuracy: a run's estimated against actual output tokens, its largest prefix groups first.
WITH final AS (
    SELECT prefix_group, est_source, n_requests, mean_estimate, mean_actual, mean_abs_error,
        estimate_over_actual
    FROM estimate_accuracy
    WHERE run_id = $run_id
    ORDER BY n_requests DESC, prefix_group
    LIMIT $limit
)
SELECT * FROM final;
