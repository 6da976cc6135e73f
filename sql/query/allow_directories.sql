-- allow_directories: the only folders a `blend query` may read ($folders: paths ending in a
-- separator); set before enable_external_access is turned off (see lock_session).
SET allowed_directories = $folders;
