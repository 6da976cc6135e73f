-- insert_run: record a run as started (its first execution).
INSERT INTO runs (
    run_id, plan_id, dataset, snapshot, flow_run_id, deployment_name, engine, engine_version,
    model, model_sha256, model_revision, params_json, started_at, status, results_uri,
    git_revision, n_attempts
)
VALUES (
    $run_id, $plan_id, $dataset, $snapshot, $flow_run_id, $deployment_name, $engine,
    $engine_version, $model, $model_sha256, $model_revision, $params_json, now(), 'running',
    $results_uri, $git_revision, 1
);
