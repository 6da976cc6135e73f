-- engine_starts: seconds per engine start of the model's recent finished runs ($model_sha256,
-- $limit: runs at most, newest first). runs.engine_start_s sums every start of a run: one per
-- execution (n_attempts), one per restart after a failure (n_engine_restarts) and the re-plan's
-- restart when it chose other settings (replan_json's restart_settings).
WITH finished AS (
    SELECT
        engine,
        engine_start_s,
        coalesce(n_attempts, 1)
            + coalesce(n_engine_restarts, 0)
            + CASE
                WHEN json_extract_string(replan_json, '$.restart_settings') IS NULL THEN 0
                ELSE 1
            END AS n_starts,
        finished_at
    FROM runs
    WHERE model_sha256 = $model_sha256
      AND status IN ('completed', 'failed')
      AND engine_start_s > 0
),

final AS (
    SELECT engine, engine_start_s / n_starts AS start_s
    FROM finished
    ORDER BY finished_at DESC
    LIMIT $limit
)

SELECT * FROM final;
