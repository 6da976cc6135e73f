-- lock_session: the last settings of a `blend query` connection, then no setting can change:
-- SET, RESET, PRAGMA and the table functions that set options (enable_logging(), ...) fail.
SET enable_progress_bar = false;
SET lock_configuration = true;
