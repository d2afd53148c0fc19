#!/usr/bin/env bash
# A hot standby (pg_basebackup -R) of a guarded primary: every function and guard answers
# read-only there. status(), scan() and the views answer; guarded statements are refused
# with the usual message, or with PostgreSQL's own read-only error (25006), never XX000;
# refusals made on the standby are queued in its shared memory and reach its denial log
# once it is promoted (pg_ctl promote). Run by bin/test; on its own: pgrx-tests/standby.sh
# (the extension must be installed).
source "$(dirname "$0")/../bin/common.sh"

pport=$(free_port 54390)
start_cluster primary "$pport" "shared_preload_libraries = 'pg_prodguard'"
base=$(cluster_base)
standby="$base/standby"
trap 'stop_cluster standby; stop_cluster primary' EXIT
psql -X -q -d postgres -c "CREATE DATABASE app"
psql -X -q -d app <<'SQL'
CREATE EXTENSION pg_prodguard;
CREATE TABLE orders (id int PRIMARY KEY, item text);
INSERT INTO orders VALUES (1, 'Rye bread'), (2, 'Still water 2L');
SELECT prodguard.protect('orders');
SQL
# the standby: a base backup of the primary, streaming from it
stop_cluster standby 2>/dev/null || true
as_root rm -rf "$standby"
mkdir -p "$standby"
as_root chown postgres: "$standby"
as_postgres "$PG_BIN/pg_basebackup" -h "$base/primary" -p "$pport" -U postgres -D "$standby/data" -R -X stream >/dev/null
sport=$(free_port $((pport + 1)))
as_postgres sed -i -e "s/^port = .*/port = $sport/" -e "s|^unix_socket_directories = .*|unix_socket_directories = '$standby'|" \
    "$standby/data/postgresql.conf"
as_postgres env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE \
    "$PG_BIN/pg_ctl" -D "$standby/data" -l "$standby/startup.log" -w -t 60 start >/dev/null
export PGHOST="$standby" PGPORT="$sport"
check "the standby is in recovery" "$(psql -X -q -t -A -d app -c 'SELECT pg_is_in_recovery()')" t

# sqlstate SQL: runs one statement on the standby, prints its SQLSTATE (00000 when it ran)
sqlstate() {
    psql -X -q -t -A -d "${2:-app}" -v VERBOSITY=verbose -c "$1" 2>&1 |
        awk '/^ERROR:/ { print $2; found = 1; exit } END { if (!found) print "00000:" }' | tr -d ':'
}
check "status() answers" "$(psql -X -q -t -A -d app -c "SELECT value FROM prodguard.status() WHERE setting = 'environment'")" production
check "scan() answers" "$(psql -X -q -t -A -d app -c "SELECT count(*) > 0 FROM prodguard.scan('Contact John Doe at test@example.com')")" t
check "the views answer" "$(psql -X -q -t -A -d app -c "SELECT count(*) FROM prodguard.protected_tables")" 1
check "metrics answer" "$(sqlstate 'SELECT * FROM prodguard.metrics')" 00000
check "TRUNCATE: refused by the guard" "$(sqlstate 'TRUNCATE orders')" 42501
check "DROP TABLE: refused by the guard" "$(sqlstate 'DROP TABLE orders')" 42501
check "ALTER TABLE DROP COLUMN: refused by the guard" "$(sqlstate 'ALTER TABLE orders DROP COLUMN item')" 42501
check "DELETE without WHERE: read-only" "$(sqlstate 'DELETE FROM orders')" 25006
check "protect(): read-only, not XX000" "$(sqlstate "SELECT prodguard.protect('orders', forbid_delete => true)")" 25006
check "unprotect(): refused or read-only, not XX000" \
    "$(sqlstate "SELECT prodguard.unprotect('orders')" | grep -cE '^(42501|25006)$')" 1
check "DROP DATABASE from postgres: refused by the guard" "$(sqlstate 'DROP DATABASE app' postgres)" 42501
check "dictionary_add(): read-only, not XX000" "$(sqlstate "SELECT prodguard.dictionary_add('x', ARRAY['Fixture Co'])")" 25006
check "restore_row(): answers, not XX000" \
    "$(sqlstate 'SELECT prodguard.restore_row(1)' | grep -cE '^(02000|25006)$')" 1
check "request_change(): read-only, not XX000" "$(sqlstate "SELECT prodguard.request_change('x', 'postgres')")" 25006
check "no XX000 in the standby's log" "$(as_postgres cat "$standby/data/log/postgresql.log" | grep -c 'XX000\|cannot assign TransactionIds')" 0

# promote: the refusals queued on the standby reach its denial log
as_postgres "$PG_BIN/pg_ctl" -D "$standby/data" -w -t 60 promote >/dev/null
for _ in $(seq 1 50); do
    n=$(psql -X -q -t -A -d app -c "SELECT count(*) FROM prodguard.denied_attempts" 2>/dev/null || echo 0)
    [ "$n" -ge 3 ] && break
    sleep 0.2
done
check "after promotion, the standby's refusals are in its denial log" \
    "$(psql -X -q -t -A -d app -c "SELECT count(*) = 3 FROM prodguard.denied_attempts WHERE command IN ('TRUNCATE', 'DROP TABLE', 'ALTER TABLE DROP COLUMN')")" t
[ "$failures" -eq 0 ] || { echo "$failures check(s) failed" >&2; exit 1; }
say "standby: all checks passed"
