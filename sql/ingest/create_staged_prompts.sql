-- create_staged_prompts: TEMP table of the accepted rows of the file being ingested (request_id NULL = derive).
CREATE OR REPLACE TEMP TABLE ingest_staged_prompts (
    line_no        BIGINT  NOT NULL,
    request_id     VARCHAR,
    prompt_sha256  VARCHAR,           -- NULL: hashed when published (vectorised path)
    prompt         VARCHAR,
    messages_json  VARCHAR,
    sampling_json  VARCHAR NOT NULL,
    max_tokens     INTEGER NOT NULL,
    raw_offset     BIGINT  NOT NULL,  -- where the source text lies (byte offset; Parquet: row index)
    raw_length     BIGINT  NOT NULL   -- its length in bytes (Parquet: 0): read back for duplicates
);
