-- create_empty_view: `results` before any run has written a part (same columns as blend.store.results).
CREATE OR REPLACE VIEW results AS
SELECT
    CAST(NULL AS VARCHAR)     AS dataset,
    CAST(NULL AS INTEGER)     AS snapshot,
    CAST(NULL AS VARCHAR)     AS request_id,
    CAST(NULL AS BIGINT)      AS seq,
    CAST(NULL AS VARCHAR)     AS prompt_sha256,
    CAST(NULL AS VARCHAR)     AS output_text,
    CAST(NULL AS INTEGER[])   AS output_token_ids,
    CAST(NULL AS VARCHAR)     AS finish_reason,
    CAST(NULL AS INTEGER)     AS n_prompt_tokens,
    CAST(NULL AS INTEGER)     AS n_output_tokens,
    CAST(NULL AS INTEGER)     AS n_cached_tokens,
    CAST(NULL AS VARCHAR)     AS error,
    CAST(NULL AS VARCHAR)     AS run_id,
    CAST(NULL AS VARCHAR)     AS plan_id,
    CAST(NULL AS VARCHAR)     AS model,
    CAST(NULL AS VARCHAR)     AS model_sha256,
    CAST(NULL AS VARCHAR)     AS model_revision,
    CAST(NULL AS VARCHAR)     AS tokenizer_sha256,
    CAST(NULL AS VARCHAR)     AS sampling_json,
    CAST(NULL AS VARCHAR)     AS engine,
    CAST(NULL AS VARCHAR)     AS engine_version,
    CAST(NULL AS TIMESTAMPTZ) AS started_at,
    CAST(NULL AS TIMESTAMPTZ) AS finished_at
WHERE false;
