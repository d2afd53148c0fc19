#!/usr/bin/env bash
# What finding one row's history costs (issue 18: the index on audit_log.row_key measured
# against the lookups that need it). An audit log of N entries (default 1,000,000: N audited
# INSERTs of 10-column rows), then one client looking up random row keys for a few seconds:
#   row_history()   prodguard.row_history('orders', key), through the BRIN index's bloom
#                   filters (audit_log_order_idx);
#   bloom copy      the same query on a copy of the log with the same BRIN index;
#   hash copy       the same query on a copy of the log with 0.1.0's hash index on row_key;
#   later change    the restores' "changed again later" check (row_key and id > x), on the
#                   bloom copy.
# Prints lookups per second and the indexes' sizes.
#
#   benches/row_key_lookup.sh [entries] [seconds]
source "$(dirname "$0")/lib.sh"

entries=${1:-1000000}
secs=${2:-5}
start_bench_cluster >/dev/null
with_preload pg_prodguard
psql -X -q -d postgres -v n="$entries" >/dev/null <<'SQL'
CREATE EXTENSION pg_prodguard;
CREATE TABLE orders (id bigint PRIMARY KEY, name text, email text, phone text, address text,
    product text, sku text, notes text, store text, status text);
SELECT prodguard.protect('orders', audit => true, test_data => false);
INSERT INTO orders SELECT g, 'Ada Lovelace', 'ada' || g || '@mail-co.com', '+44 20 ' || g,
    g % 200 || ' Analytical Engine Road', 'Organic still water 2L', 'SKU-' || g,
    'Delivered to the side door', 'Co-op Food Manchester', 'open'
  FROM generate_series(1, :n) g;
VACUUM ANALYZE prodguard.audit_log;
CREATE TABLE log_bloom AS SELECT * FROM prodguard.audit_log;
CREATE INDEX log_bloom_idx ON log_bloom USING brin (id, logged_at, txid prodguard.xid8_minmax_ops,
    row_key prodguard.jsonb_bloom_ops (false_positive_rate = 0.001)) WITH (pages_per_range = 32);
CREATE TABLE log_hash AS SELECT * FROM prodguard.audit_log;
CREATE INDEX log_hash_idx ON log_hash USING hash (row_key);
VACUUM ANALYZE log_bloom, log_hash;
SQL
psql -X -q -t -A -d postgres -c "SELECT 'log ' || pg_size_pretty(pg_relation_size('prodguard.audit_log'))
    || ', BRIN with bloom ' || pg_size_pretty(pg_relation_size('prodguard.audit_log_order_idx'))
    || ', hash ' || pg_size_pretty(pg_relation_size('log_hash_idx'))"
script=$(mktemp)
chmod 644 "$script"
run() {
    printf '\\set k random(1, %s)\n%s\n' "$entries" "$2" >"$script"
    printf '%-14s %s lookups/s\n' "$1" "$(tps -c 1 -T "$secs" -f "$script")"
}
run "row_history()" "SELECT count(*) FROM prodguard.row_history('orders', jsonb_build_object('id', :k::bigint));"
run "bloom copy" "SET enable_seqscan = off; SELECT count(*) FROM log_bloom WHERE row_key = jsonb_build_object('id', :k::bigint);"
run "hash copy" "SELECT count(*) FROM log_hash WHERE row_key = jsonb_build_object('id', :k::bigint);"
run "later change" "SELECT min(id) FROM log_bloom WHERE row_key = jsonb_build_object('id', :k::bigint) AND id > :k;"
rm -f "$script"
