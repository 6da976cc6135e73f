-- set_allocator_background_threads: whether DuckDB's allocator returns freed memory to the
-- system from background threads ($on); off (the default), freed pages stay with the process.
SET allocator_background_threads = $on;
