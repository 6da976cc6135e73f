"""The store: one DuckDB file, a results folder of Parquet parts and the locks guarding them.

`database` opens it (schema, connections, verification), `sql` loads the named statements
of sql/, `names` validates what becomes a path or a key, `process_lock`/`store_lock` guard
writers, `runs`/`run_records` keep run rows, `results` writes Parquet parts, `lineage` the
provenance each row carries, and `query` answers read-only questions over all of it."""
