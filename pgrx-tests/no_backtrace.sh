#!/usr/bin/env bash
# No Rust backtrace reaches a client or the server log, whatever RUST_BACKTRACE says: a
# server started with RUST_BACKTRACE=1 and RUST_LIB_BACKTRACE=1 in its environment (a
# DBA's shell, a container image) answers errors raised by PostgreSQL under our hooks, our
# own refusals, and PostgreSQL errors inside our functions, each with the usual fields and
# no backtrace. Run by bin/test; on its own: pgrx-tests/no_backtrace.sh (the extension
# must be installed).
source "$(dirname "$0")/../bin/common.sh"

start_cluster backtrace "$(free_port 54370)" "shared_preload_libraries = 'pg_prodguard'"
# restart with the variables set (start_cluster removes them on purpose)
dir="$(cluster_base)/backtrace"
as_postgres env RUST_BACKTRACE=1 RUST_LIB_BACKTRACE=1 \
    "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/startup.log" -w -t 60 restart >/dev/null
check "the server runs with RUST_BACKTRACE=1" \
    "$(as_postgres cat "/proc/$(as_postgres head -1 "$dir/data/postmaster.pid")/environ" | tr '\0' '\n' | grep -c '^RUST_BACKTRACE=1$')" 1

psql -X -q -d postgres -c "CREATE DATABASE app"
out=$(psql -X -d app -v VERBOSITY=verbose 2>&1 <<'SQL'
CREATE EXTENSION pg_prodguard;
CREATE TABLE parent (id int PRIMARY KEY);
CREATE TABLE child (id int PRIMARY KEY, parent_id int CONSTRAINT child_parent_fk REFERENCES parent);
-- PostgreSQL's error under our executor hooks
INSERT INTO child VALUES (1, 42);
-- PostgreSQL's error under our utility hook, with a position
CREATE TABLE bad (a int DEFAULT 'x');
-- our refusals, at top level and inside PL/pgSQL
INSERT INTO parent VALUES (100);
TRUNCATE parent;
DO $$ BEGIN DELETE FROM parent; END $$;
-- PostgreSQL's error inside one of our functions (a restore hitting a unique key)
SELECT prodguard.protect('parent');
INSERT INTO parent VALUES (1);
DELETE FROM parent WHERE id = 1;
INSERT INTO parent VALUES (1);
SELECT prodguard.restore_row(max(id), force => true) FROM prodguard.audit_log WHERE action = 'DELETE';
SQL
)
echo "$out" | grep -E '^(ERROR|DETAIL|HINT|CONTEXT|LINE|SCHEMA|TABLE|CONSTRAINT)' | sed 's/^/  /'
check "the foreign-key violation keeps its constraint name" \
    "$(echo "$out" | grep -c '^CONSTRAINT NAME:  child_parent_fk')" 1
check "the utility statement's error keeps its position" \
    "$(echo "$out" | grep -c '^LINE 1: CREATE TABLE bad')" 1
check "refusals are refused" "$(echo "$out" | grep -cE '^ERROR:  (42501|21000):')" 2
check "the restore's unique violation is reported" "$(echo "$out" | grep -c '^ERROR:  23505:')" 1
backtrace='stack backtrace|backtrace_rs|rust_begin_unwind|core::panicking|std::panic|pgrx_pg_sys::|/rustc/|^ +[0-9]+: '
check "no backtrace in what the client saw" "$(echo "$out" | grep -cE "$backtrace")" 0
check "no backtrace in the server log" \
    "$(as_postgres cat "$dir/data/log/postgresql.log" | grep -cE "$backtrace")" 0
stop_cluster backtrace
[ "$failures" -eq 0 ] || { echo "$failures check(s) failed" >&2; exit 1; }
