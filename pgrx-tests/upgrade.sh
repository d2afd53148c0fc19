#!/usr/bin/env bash
# ALTER EXTENSION pg_prodguard UPDATE from 0.1.0 (its install script as released, kept in
# sql/archive/) to this version: every audit row, backup, user dictionary and protection
# rule is kept, and the updated extension has exactly the objects a fresh install has.
# Run by bin/test; on its own: pgrx-tests/upgrade.sh (the extension must be installed).
source "$(dirname "$0")/../bin/common.sh"

extdir="$("$PG_CONFIG" --sharedir)/extension"
as_root cp "$PROJECT_DIR/sql/archive/pg_prodguard--0.1.0.sql" "$extdir/"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$PROJECT_DIR/Cargo.toml" | head -1)
port=$(free_port 54420)
start_cluster upgrade "$port" "shared_preload_libraries = 'pg_prodguard'" "prodguard.environment = 'development'"
trap 'stop_cluster upgrade' EXIT
q() { psql -X -q -t -A -d "$1" -c "$2"; }
psql -X -q -d postgres -c "CREATE DATABASE old" -c "CREATE DATABASE fresh"
psql -X -q -d old <<'SQL'
CREATE EXTENSION pg_prodguard VERSION '0.1.0';
CREATE TABLE orders (id int PRIMARY KEY, item text);
SELECT prodguard.protect('orders');
INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(1, 20) g;
UPDATE orders SET item = 'changed' WHERE id <= 5;
DELETE FROM orders WHERE id > 15;
SELECT prodguard.dictionary_add('fixtures', ARRAY['Coca Cola Classic']);
TRUNCATE orders;
SQL
check "0.1.0 is installed" "$(q old "SELECT extversion FROM pg_extension WHERE extname = 'pg_prodguard'")" 0.1.0
audit_before=$(q old "SELECT count(*) || '/' || max(id) FROM prodguard.audit_log")
q old "ALTER EXTENSION pg_prodguard UPDATE" >/dev/null
check "updated to $version" "$(q old "SELECT extversion FROM pg_extension WHERE extname = 'pg_prodguard'")" "$version"
check "every audit row kept" "$(q old "SELECT count(*) || '/' || max(id) FROM prodguard.audit_log")" "$audit_before"
check "the user dictionary kept" "$(q old "SELECT count(*) FROM prodguard.dictionary_entry WHERE dictionary = 'fixtures'")" 1
check "the protection kept, and the new TRUNCATE trigger installed" \
    "$(q old "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND tgname LIKE 'zz_prodguard%'")" 3
check "the test-data trigger is 0.2.0's: AFTER, fires ALWAYS" \
    "$(q old "SELECT tgname || ' ' || (tgtype & 2 = 0) || ' ' || tgenabled::text FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND tgname LIKE '%test_data'")" \
    "zz_prodguard_a_test_data true A"
check "the audit goes on, ids after the old ones" \
    "$(q old "INSERT INTO orders VALUES (100, 'after the update'); SELECT max(id) > ${audit_before#*/} FROM prodguard.audit_log")" t
check "approved changes exist" "$(q old "SELECT count(*) FROM prodguard.changes")" 0
q fresh "CREATE EXTENSION pg_prodguard" >/dev/null
members() {
    q "$1" "SELECT pg_describe_object(classid, objid, 0) FROM pg_depend
             WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
               AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_prodguard')
             ORDER BY 1"
}
check "the updated extension has exactly the objects of a fresh install" \
    "$(diff <(members old) <(members fresh) | grep -c '^[<>]')" 0
diff <(members old) <(members fresh) | head -20
comments() {
    q "$1" "SELECT pg_describe_object(classid, objid, objsubid) || ': ' || coalesce(obj_description(objid, classid::regclass::name), '')
              FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
               AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_prodguard') ORDER BY 1"
}
check "...with the same comments" "$(diff <(comments old) <(comments fresh) | grep -c '^[<>]')" 0
diff <(comments old) <(comments fresh) | head -10
[ "$failures" -eq 0 ] || { echo "$failures check(s) failed" >&2; exit 1; }
say "upgrade from 0.1.0: all checks passed"
