#!/usr/bin/env bash
# pg_restore into a populated production database (pg_dump -Fc of the same database, with
# foreign keys, a table without a key, a sequence, indexes): with --clean, --clean
# --if-exists, and without --clean, every row, constraint and index stays exactly as it
# was, and the first error says what to do instead. Into an empty database or a
# development database, and under an approved change, pg_restore --clean runs. Run by
# bin/test; on its own: pgrx-tests/pg_restore.sh (the extension must be installed).
source "$(dirname "$0")/../bin/common.sh"

port=$(free_port 54410)
start_cluster restore "$port" "shared_preload_libraries = 'pg_prodguard'"
trap 'stop_cluster restore' EXIT
work="$(cluster_base)/restore/work"
as_root mkdir -p "$work" && as_root chmod 777 "$work"
psql -X -q -d postgres -c "CREATE DATABASE shop"
psql -X -q -d shop <<'SQL'
CREATE EXTENSION pg_prodguard;
CREATE TABLE customers (id serial PRIMARY KEY, email text UNIQUE NOT NULL);
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers,
    total numeric NOT NULL CHECK (total >= 0));
CREATE INDEX orders_customer ON orders (customer_id);
CREATE TABLE notes (body text);   -- no key: duplicates would go unnoticed
INSERT INTO customers (email) SELECT 'c' || g || '@shop.example' FROM generate_series(1, 50) g;
INSERT INTO orders (customer_id, total) SELECT 1 + g % 50, g FROM generate_series(1, 200) g;
INSERT INTO notes SELECT 'note ' || g FROM generate_series(1, 30) g;
-- an inheritance child whose rows the dump loads before its parent's (its name sorts
-- first): they show through the parent, which is still being restored, not data of its own
CREATE TABLE timeline (id int, what text);
CREATE TABLE events_2026 (source text) INHERITS (timeline);
INSERT INTO timeline VALUES (1, 'opened');
INSERT INTO events_2026 VALUES (2, 'shipped', 'carrier');
SQL
"$PG_BIN/pg_dump" -Fc -d shop -f "$work/shop.dump"

# state DB: rows, constraints and indexes of the application's tables
state() {
    psql -X -q -t -A -d "$1" -c "SELECT (SELECT count(*) FROM customers) || '/' || (SELECT count(*) FROM orders)
        || '/' || (SELECT count(*) FROM notes) || '/' || (SELECT count(*) FROM timeline)
        || ' constraints=' || (SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'public')
        || ' indexes=' || (SELECT count(*) FROM pg_indexes WHERE schemaname = 'public')"
}
before=$(state shop)
echo "  shop before: $before"
for opts in "--clean" "--clean --if-exists" ""; do
    out=$("$PG_BIN/pg_restore" $opts -d shop "$work/shop.dump" 2>&1) && status=0 || status=$?
    check "pg_restore $opts into the populated production database fails" "$((status != 0))" 1
    check "pg_restore $opts: every row, constraint and index as it was" "$(state shop)" "$before"
    first=$(echo "$out" | grep -m1 '^pg_restore: error:' || true)
    check "pg_restore $opts: pg_prodguard's refusal says what to do" \
        "$(echo "$out" | grep -c 'pg_restore into production database "shop", which holds data, is blocked')/$(echo "$out" | grep -m1 -c 'HINT:  Restore into a new database and switch over')" "1/1"
    if [ -n "$opts" ]; then
        check "pg_restore $opts: it is the first error" \
            "$(echo "$first" | grep -c 'pg_restore into production database "shop", which holds data, is blocked')" 1
    fi
    echo "  first error: ${first:0:160}"
done

# into an empty database: runs
psql -X -q -d postgres -c "CREATE DATABASE shop_empty"
out=$("$PG_BIN/pg_restore" --clean --if-exists -d shop_empty "$work/shop.dump" 2>&1) && status=0 || status=$?
check "pg_restore --clean --if-exists into an empty database runs" "$status" 0
[ "$status" -eq 0 ] || echo "$out" | tail -5
check "...with every row" "$(state shop_empty)" "$before"

# into a development database that holds data: runs (and replaces its rows)
psql -X -q -d postgres -c "CREATE DATABASE shop_dev" \
    -c "BEGIN; SET LOCAL prodguard.override = 'test: a development copy'; ALTER DATABASE shop_dev SET prodguard.environment = 'development'; COMMIT;"
"$PG_BIN/pg_restore" -d shop_dev "$work/shop.dump" >/dev/null 2>&1 || true
out=$("$PG_BIN/pg_restore" --clean -n public -d shop_dev "$work/shop.dump" 2>&1) && status=0 || status=$?
check "pg_restore --clean into a populated development database runs" "$status" 0
[ "$status" -eq 0 ] || echo "$out" | tail -5
check "...and leaves the dump's rows" "$(state shop_dev)" "$before"

# the operator path: an approved change for the role that runs pg_restore
psql -X -q -d shop -c "CREATE ROLE ops1 LOGIN IN ROLE prodguard_operator" -c "CREATE ROLE ops2 LOGIN IN ROLE prodguard_operator"
psql -X -q -d shop -c "INSERT INTO notes VALUES ('written after the dump')"
id=$(psql -X -q -t -A -U ops1 -d shop -c "SELECT prodguard.request_change('CHG-300: refresh shop from last night''s dump', 'postgres', '30 minutes')")
psql -X -q -U ops2 -d shop -c "SELECT prodguard.approve_change($id)" >/dev/null
out=$(PGOPTIONS="-c prodguard.override=change:$id" "$PG_BIN/pg_restore" --clean --if-exists -n public -d shop "$work/shop.dump" 2>&1) && status=0 || status=$?
check "under an approved change, pg_restore --clean -n public runs" "$status" 0
[ "$status" -eq 0 ] || echo "$out" | tail -5
check "...and the database is the dump" "$(state shop)" "$before"
check "...and each guarded statement of it is audited under the change" \
    "$(psql -X -q -t -A -d shop -c "SELECT statements > 0 FROM prodguard.changes WHERE id = $id")" t
[ "$failures" -eq 0 ] || { echo "$failures check(s) failed" >&2; exit 1; }
say "pg_restore: all checks passed"
