-- create_staged_lines: TEMP table of where each accepted row of the file being ingested came from (to read duplicates back).
CREATE OR REPLACE TEMP TABLE ingest_staged_lines (
    line_no     BIGINT  NOT NULL,
    derived     BOOLEAN NOT NULL,  -- no custom_id/id: request_id derived from prompt_sha256
    raw_offset  BIGINT  NOT NULL,  -- where the source text lies (byte offset; Parquet: row index)
    raw_length  BIGINT  NOT NULL   -- its length in bytes (Parquet: 0)
);
