-- set_temp_directory: where DuckDB spills what does not fit its memory limit ($dir: a folder of its own).
SET temp_directory = $dir;
