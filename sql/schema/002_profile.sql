-- schema: tables of the profile stage(s) (table and column names are relied on: extend, do not rename).
-- No primary key: one row per (dataset, snapshot, tokenizer_sha256, request_id) because the profile
-- deletes the key's rows and inserts one row per prompt in one transaction (blend/profile/stage.py),
-- and nothing relies on a key (hash joins, no ON CONFLICT). Its index could not spill: the commit of
-- 10M prompts' rows failed under the profile's 1 GiB DuckDB cap. Stores created earlier keep the key
-- (CREATE TABLE IF NOT EXISTS) and still work, with memory for the index growing with the prompts.
CREATE TABLE IF NOT EXISTS prompt_tokens (
    dataset          VARCHAR   NOT NULL,
    snapshot         INTEGER   NOT NULL,
    request_id       VARCHAR   NOT NULL,
    tokenizer_sha256 VARCHAR   NOT NULL,
    n_prompt_tokens  INTEGER   NOT NULL,  -- = len(token_ids)
    token_ids        INTEGER[] NOT NULL   -- after the chat template, exactly what the engine is fed
);

CREATE TABLE IF NOT EXISTS profiles (
    dataset            VARCHAR   NOT NULL,
    snapshot           INTEGER   NOT NULL,
    tokenizer_sha256   VARCHAR   NOT NULL,
    model              VARCHAR   NOT NULL,  -- model folder name
    max_model_len      INTEGER   NOT NULL,  -- context length (tokens), prompt + output
    profiled_at        TIMESTAMPTZ NOT NULL,
    n_prompts          BIGINT    NOT NULL,
    input_tokens       BIGINT    NOT NULL,  -- sum of prompt tokens
    mean_tokens        DOUBLE,              -- prompt length stats (tokens); NULL without prompts
    p50_tokens         DOUBLE,
    p90_tokens         DOUBLE,
    p99_tokens         DOUBLE,
    max_tokens         BIGINT,              -- longest prompt (tokens), not an output limit
    n_over_length      BIGINT    NOT NULL,  -- prompts with n + 1 > max_model_len: cannot run
    n_will_truncate    BIGINT,              -- runnable prompts with n + max_tokens > max_model_len
    unique_prefix_tokens BIGINT  NOT NULL,  -- nodes of the prompt token trie
    sharing_ratio      DOUBLE,              -- 1 - unique / total: DFS prefix-sharing ratio
    min_shared_tokens  INTEGER,             -- LCP threshold (tokens) of the prefix groups
    n_prefix_groups    BIGINT,              -- groups of >= 2 prompts sharing >= min_shared_tokens
    tokenize_s         DOUBLE,              -- wall seconds: read prompts, tokenize, store tokens
    sql_s              DOUBLE,              -- wall seconds: the profile SQL queries
    PRIMARY KEY (dataset, snapshot, tokenizer_sha256)
);
