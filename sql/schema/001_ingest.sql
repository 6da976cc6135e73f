-- schema: tables of the ingest stage(s) (table and column names are relied on: extend, do not rename).
CREATE TABLE IF NOT EXISTS datasets (
    dataset        VARCHAR   NOT NULL,
    snapshot       INTEGER   NOT NULL,   -- 1, 2, ... per dataset; a changed input makes a new one
    source_uri     VARCHAR   NOT NULL,
    source_sha256  VARCHAR   NOT NULL,   -- hash of the input file's bytes
    source_format  VARCHAR   NOT NULL,   -- jsonl | openai-batch | csv | parquet
    ingested_at    TIMESTAMPTZ NOT NULL,
    n_rows         BIGINT    NOT NULL,   -- accepted prompts
    n_rejected     BIGINT    NOT NULL,
    PRIMARY KEY (dataset, snapshot)
);

-- No primary key: request_id is unique within a (dataset, snapshot) because the ingest publishes only the first
-- occurrence of each id (sql/ingest/assign_ids.sql), and nothing relies on a key (joins are hash joins, no
-- ON CONFLICT). Its index made the publish of a large snapshot slower and unable to spill (memory grew with the
-- rows). Stores created earlier keep the key (CREATE TABLE IF NOT EXISTS) and still work; their ingest memory cap
-- leaves room for the index (blend/ingest/load.py).
CREATE TABLE IF NOT EXISTS prompts (
    dataset        VARCHAR   NOT NULL,
    snapshot       INTEGER   NOT NULL,
    request_id     VARCHAR   NOT NULL,   -- custom_id / id of the input, else derived from prompt_sha256
    line_no        BIGINT    NOT NULL,   -- 1-based line (JSONL/CSV) or row (Parquet) in the source
    prompt_sha256  VARCHAR   NOT NULL,   -- hash of the prompt text or canonical messages JSON
    prompt         VARCHAR,              -- raw completion prompt, or NULL for chat requests
    messages_json  VARCHAR,              -- chat messages as JSON, or NULL for raw prompts
    sampling_json  VARCHAR   NOT NULL,   -- validated sampling parameters, canonical JSON
    max_tokens     INTEGER   NOT NULL    -- output token limit of this request
);

CREATE TABLE IF NOT EXISTS rejects (
    dataset   VARCHAR NOT NULL,
    snapshot  INTEGER NOT NULL,
    line_no   BIGINT  NOT NULL,
    reason    VARCHAR NOT NULL,
    raw       VARCHAR               -- the offending line, truncated to 4 KiB, invalid bytes escaped
);
