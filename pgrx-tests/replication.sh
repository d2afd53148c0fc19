#!/usr/bin/env bash
# Logical replication between two guarded production clusters. A production subscriber
# never loses data silently: a replicated DELETE of protected rows is audited row by row
# (old rows kept, the audit entries saying they were applied by replication, with the
# origin); a replicated TRUNCATE of a protected table is audited and its rows backed up
# before it runs, and logged (a "prodguard: replicated" line); both raise a row_drop alert
# on the subscriber; the apply worker is not
# refused (that would stall the subscription; see README, Replication). A FOR ALL TABLES
# publication, which would ship pg_prodguard's own tables, is refused in production.
# Run by bin/test; on its own: pgrx-tests/replication.sh (the extension must be installed).
source "$(dirname "$0")/../bin/common.sh"

conf=("shared_preload_libraries = 'pg_prodguard'" "wal_level = logical")
pubport=$(free_port 54400)
start_cluster publisher "$pubport" "${conf[@]}"
pubhost=$PGHOST
subport=$(free_port $((pubport + 1)))
start_cluster subscriber "$subport" "${conf[@]}"
subhost=$PGHOST
trap 'stop_cluster subscriber; stop_cluster publisher' EXIT
pub() { psql -X -q -t -A -h "$pubhost" -p "$pubport" -d app "$@"; }
sub() { psql -X -q -t -A -h "$subhost" -p "$subport" -d app "$@"; }
schema="CREATE EXTENSION pg_prodguard;
CREATE TABLE orders (id int PRIMARY KEY, item text);
CREATE TABLE ledger (id int PRIMARY KEY, amount int);
CREATE TABLE notes (id int PRIMARY KEY, body text);"
psql -X -q -h "$pubhost" -p "$pubport" -d postgres -c "CREATE DATABASE app"
psql -X -q -h "$subhost" -p "$subport" -d postgres -c "CREATE DATABASE app"
pub -c "$schema" >/dev/null
sub -c "$schema" >/dev/null
sub -c "SELECT prodguard.protect('orders')" -c "SELECT prodguard.protect('ledger', forbid_delete => true)" \
    -c "SELECT prodguard.protect('notes')" >/dev/null
pub -c "INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(1, 3000) g" \
    -c "INSERT INTO ledger SELECT g, g FROM generate_series(1, 500) g"

# pg_prodguard's own tables never travel: FOR ALL TABLES is refused where it is installed
check "CREATE PUBLICATION ... FOR ALL TABLES is refused" \
    "$(pub -v VERBOSITY=verbose -c "CREATE PUBLICATION everything FOR ALL TABLES" 2>&1 | grep -o '^ERROR:  [0-9A-Z]*' | awk '{print $2}')" 42501
check "...and so is one naming the prodguard schema" \
    "$(pub -v VERBOSITY=verbose -c "CREATE PUBLICATION ours FOR TABLES IN SCHEMA prodguard" 2>&1 | grep -o '^ERROR:  [0-9A-Z]*' | awk '{print $2}')" 42501
pub -c "CREATE PUBLICATION shop FOR TABLE orders, ledger, notes"
sub -c "CREATE SUBSCRIPTION shop CONNECTION 'host=$pubhost port=$pubport dbname=app user=postgres' PUBLICATION shop" 2>&1 | grep -v NOTICE || true
# wait for the initial copy
for _ in $(seq 1 100); do
    [ "$(sub -c "SELECT count(*) FROM orders")" = 3000 ] && [ "$(sub -c "SELECT count(*) FROM ledger")" = 500 ] && break
    sleep 0.2
done
check "the subscriber has the rows" "$(sub -c "SELECT (SELECT count(*) FROM orders) || '/' || (SELECT count(*) FROM ledger)")" 3000/500
synced=$(sub -c "SELECT now()")

# test data written on the publisher (where the table is not protected) is applied on the
# subscriber, whose test-data trigger fires ALWAYS: recorded in the row's audit entry, not
# refused (a refusal would stall the subscription)
pub -c "INSERT INTO notes VALUES (1, 'call John Doe')" >/dev/null
for _ in $(seq 1 100); do
    [ "$(sub -c "SELECT count(*) FROM notes")" = 1 ] && break
    sleep 0.2
done
check "replicated test data is applied, not refused" "$(sub -c "SELECT body FROM notes")" "call John Doe"
check "...and its matches are recorded in the row's audit entry" \
    "$(sub -c "SELECT test_data -> 0 ->> 'pattern' FROM prodguard.audit_log WHERE table_name = 'notes' AND action = 'INSERT'")" "John Doe"
check "...while a session of the subscriber in replica mode is refused" \
    "$(sub -c "SET session_replication_role = replica; INSERT INTO notes VALUES (2, 'Jane Doe')" 2>&1 | grep -c 'contains test data')" 1

# the publisher's operator deletes every order and truncates the ledger (with an override)
pub -c "BEGIN; SET LOCAL prodguard.override = 'CHG-200: empty the shop'; DELETE FROM orders WHERE true; TRUNCATE ledger; COMMIT;" >/dev/null
for _ in $(seq 1 100); do
    [ "$(sub -c "SELECT count(*) FROM orders")" = 0 ] && [ "$(sub -c "SELECT count(*) FROM ledger")" = 0 ] && break
    sleep 0.2
done
check "the subscriber applied the DELETE and the TRUNCATE" \
    "$(sub -c "SELECT (SELECT count(*) FROM orders) || '/' || (SELECT count(*) FROM ledger)")" 0/0
check "every replicated DELETE is audited with its old row and origin" \
    "$(sub -c "SELECT count(*) FROM prodguard.audit_log WHERE action = 'DELETE' AND table_name = 'orders' AND old_row IS NOT NULL AND statement LIKE 'applied by logical replication (origin pg_%)'")" 3000
check "the replicated TRUNCATE is audited" \
    "$(sub -c "SELECT count(*) FROM prodguard.audit_log WHERE action = 'TRUNCATE' AND table_name = 'ledger' AND statement LIKE 'applied by logical replication%'")" 1
check "...and its rows were backed up first" \
    "$(sub -c "SELECT count(*) FROM prodguard.backup_row b JOIN prodguard.audit_log a ON a.id = b.audit_id WHERE a.action = 'TRUNCATE' AND a.table_name = 'ledger'")" 500
check "...and logged" \
    "$(as_postgres cat "$(cluster_base)/subscriber/data/log/postgresql.log" | grep -c 'prodguard: replicated guard="command" command="TRUNCATE" object="table \\"public.ledger\\""')" 1
for _ in $(seq 1 50); do
    [ "$(sub -c "SELECT count(*) FROM prodguard.alerts WHERE kind = 'row_drop'")" -ge 2 ] && break
    sleep 0.2
done
check "the replicated DELETE and TRUNCATE raise one row_drop alert each on the subscriber" \
    "$(sub -c "SELECT string_agg(object, ', ' ORDER BY object) FROM prodguard.alerts WHERE kind = 'row_drop'")" \
    'table "public.ledger", table "public.orders"'
# the subscriber's operator puts the ledger back from the backup
sub -c "ALTER SUBSCRIPTION shop DISABLE" >/dev/null
check "restore_backup() brings the ledger back on the subscriber" \
    "$(sub -c "SELECT prodguard.restore_backup(id) FROM prodguard.audit_log WHERE action = 'TRUNCATE' AND table_name = 'ledger'")" 500
check "restore_table() brings the orders back on the subscriber" \
    "$(sub -c "BEGIN; SET LOCAL prodguard.override = 'INC-201: undo the replicated purge'; SELECT prodguard.restore_table('orders', '$synced'); COMMIT;" | head -1)" 3000
check "the subscriber's rows are back" \
    "$(sub -c "SELECT (SELECT count(*) FROM orders) || '/' || (SELECT count(*) FROM ledger)")" 3000/500
sub -c "DROP SUBSCRIPTION shop" >/dev/null 2>&1 || true
[ "$failures" -eq 0 ] || { echo "$failures check(s) failed" >&2; exit 1; }
say "replication: all checks passed"
