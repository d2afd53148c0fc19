-- pg_prodguard: the last step of CREATE EXTENSION. It fails unless the library was
-- preloaded: a guard that is only half loaded must not look installed.
SELECT prodguard._require_preload();
COMMENT ON FUNCTION prodguard._require_preload() IS 'Internal: makes CREATE EXTENSION fail unless pg_prodguard is in shared_preload_libraries.';
COMMENT ON FUNCTION prodguard.status() IS 'What this session''s guards would do: environment, preload, each guard on or off, the override in force.';
