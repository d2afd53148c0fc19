#!/usr/bin/env bash
# How fast the way back is (issue 18, item 4), on one production database, timed by
# PostgreSQL itself (clock_timestamp() around each call), release build:
#   restore_table()    100,000 audited changes (10 UPDATEs of 10,000 rows each, whose
#                      time is printed too) of a 100,000-row table, put back in one
#                      call: rows per second;
#   undo_transaction() one transaction that deleted 10,000 rows, undone: rows per second;
#   scan_table()       a table of 100,000 rows with 5 text columns, scanned with the
#                      built-in dictionaries: MB of text per second (compare with the
#                      matcher alone: cargo bench --bench matcher).
# Times move with the load of a shared machine: run it when the machine is quiet, and
# compare the rates with the incident they would have to undo, not with other machines.
#
#   benches/restore.sh [rounds]     (default 3; prints each round and the median)
source "$(dirname "$0")/lib.sh"

rounds=${1:-3}
start_bench_cluster
with_preload pg_prodguard
q() { psql -X -q -t -A -d postgres -c "$1"; }
q "CREATE EXTENSION pg_prodguard" >/dev/null
declare -a restore_rates undo_rates scan_rates
for ((r = 1; r <= rounds; r++)); do
    q "DROP TABLE IF EXISTS orders, notes" >/dev/null 2>&1 || true
    psql -X -q -d postgres >/dev/null <<'SQL'
SET prodguard.override = 'benchmark set-up';
DROP TABLE IF EXISTS orders, notes;
CREATE TABLE orders (id int PRIMARY KEY, customer text, product text, qty int, status text);
INSERT INTO orders SELECT g, 'customer ' || g, 'Organic still water 2L', g % 7, 'open'
  FROM generate_series(1, 100000) g;
SELECT prodguard.protect('orders', test_data => false);
CREATE TABLE notes (id int PRIMARY KEY, a text, b text, c text, d text, e text);
INSERT INTO notes SELECT g, 'Delivered to the side door ' || g, 'Ada Lovelace', 'ada' || g || '@mail-co.com',
       g % 200 || ' Analytical Engine Road, Manchester', 'customer asked for a call on arrival'
  FROM generate_series(1, 100000) g;
VACUUM ANALYZE orders, notes;
SQL
    as_of=$(q "SELECT clock_timestamp()")
    # the incident: 10 UPDATEs of 10,000 rows (timed in the server, as the restore is)
    incident=$(q "SELECT clock_timestamp()")
    for i in $(seq 0 9); do
        q "UPDATE orders SET status = 'shipped', qty = qty + 1 WHERE id > $((i * 10000)) AND id <= $(((i + 1) * 10000))" >/dev/null
    done
    incident=$(q "SELECT clock_timestamp() - '$incident'::timestamptz")
    restore=$(q "BEGIN; SET LOCAL prodguard.override = 'benchmark: restore';
        SELECT (clock_timestamp() - now()) FROM (SELECT prodguard.restore_table('orders', '$as_of'::timestamptz, force => true)) x; COMMIT;" | head -1)
    q "BEGIN; SET LOCAL prodguard.override = 'benchmark: purge'; DELETE FROM orders WHERE id <= 10000; COMMIT;" >/dev/null
    txid=$(q "SELECT txid FROM prodguard.audit_log WHERE action = 'DELETE' ORDER BY id DESC LIMIT 1")
    undo=$(q "BEGIN; SET LOCAL prodguard.override = 'benchmark: undo';
        SELECT (clock_timestamp() - now()) FROM (SELECT prodguard.undo_transaction('$txid'::xid8, force => true)) x; COMMIT;" | head -1)
    mb=$(q "SELECT sum(octet_length(a) + octet_length(b) + octet_length(c) + octet_length(d) + octet_length(e)) / 1e6 FROM notes")
    scan=$(q "SELECT (clock_timestamp() - now()) FROM (SELECT count(*) FROM prodguard.scan_table('notes')) x")
    secs() { q "SELECT extract(epoch FROM interval '$1')"; }
    restore_rates+=("$(awk -v s="$(secs "$restore")" 'BEGIN { printf "%.0f", 100000 / s }')")
    undo_rates+=("$(awk -v s="$(secs "$undo")" 'BEGIN { printf "%.0f", 10000 / s }')")
    scan_rates+=("$(awk -v s="$(secs "$scan")" -v mb="$mb" 'BEGIN { printf "%.1f", mb / s }')")
    echo "round $r: the 10 UPDATEs took $incident (psql start-ups included); restore_table ${restore_rates[-1]} rows/s ($restore), undo_transaction ${undo_rates[-1]} rows/s ($undo), scan_table ${scan_rates[-1]} MB/s (${mb} MB in $scan)"
done
echo "median: restore_table $(median "${restore_rates[@]}") rows/s, undo_transaction $(median "${undo_rates[@]}") rows/s, scan_table $(median "${scan_rates[@]}") MB/s of text"
