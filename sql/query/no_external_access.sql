-- no_external_access: files outside allowed_directories, extensions and URLs are out of reach.
SET enable_external_access = false;
