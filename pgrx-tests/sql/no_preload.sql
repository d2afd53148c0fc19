-- This server does NOT have pg_prodguard in shared_preload_libraries. A guard that is only
-- half loaded must not look installed, so CREATE EXTENSION refuses, with the line to add.
CREATE EXTENSION pg_prodguard;
\echo :LAST_ERROR_SQLSTATE
-- Loading the library by hand would guard one session only: still refused.
LOAD 'pg_prodguard';
CREATE EXTENSION pg_prodguard;
SELECT count(*) AS installed FROM pg_extension WHERE extname = 'pg_prodguard';
-- session_preload_libraries loads it at the start of every session of a database, which
-- SPEC allows.
CREATE DATABASE preloaded_per_session;
ALTER DATABASE preloaded_per_session SET session_preload_libraries = 'pg_prodguard';
\c preloaded_per_session
CREATE EXTENSION pg_prodguard;
SELECT value FROM prodguard.status() WHERE setting = 'preloaded';
CREATE TABLE t (a int);
INSERT INTO t VALUES (1);
TRUNCATE t;
-- Without shared_preload_libraries there is no shared memory: the refusal above is in the
-- server log only, and the counters are NULL.
SELECT value FROM prodguard.status() WHERE setting = 'denial_log';
SELECT count(*) AS metrics, count(value) AS with_values FROM prodguard.metrics;
SELECT count(*) AS recorded FROM prodguard.denied_attempts;
