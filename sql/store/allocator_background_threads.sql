-- allocator_background_threads: the current setting (to restore it after a block that set it).
SELECT current_setting('allocator_background_threads') AS allocator_background_threads;
