#!/usr/bin/env bash
# Crash consistency of the row audit: 8 pgbench clients insert, update and delete rows of a
# protected table; the postmaster is killed with SIGKILL mid-run; after crash recovery,
# every committed change must have exactly one audit row and no audit row may lack its
# change. Repeated RUNS times on one cluster (the check covers everything written so far).
#
#   pgrx-tests/crash_consistency.sh [runs] [seconds before the kill]   (default 5 runs, 10 s)
#
# How changes are checked: every row carries a version, 0 when inserted and +1 on each
# UPDATE; ids come from a sequence and are never reused. So the audit entries of one id
# must be exactly INSERT v0, UPDATE v1, UPDATE v2, ... (each once, in order), optionally
# ending with one DELETE of the last version; and the last entry must match the table:
# the row as it is now (to_jsonb equal), or, after a DELETE, no row. Anything else is a
# lost change (committed, not audited) or an extra audit row (audited, not committed).
source "$(dirname "$0")/../bin/common.sh"

runs=${1:-5}
seconds=${2:-10}
cluster=crash
port=$(free_port 54370)
start_cluster "$cluster" "$port" "shared_preload_libraries = 'pg_prodguard'" \
    "max_connections = 30" "restart_after_crash = on"
dir="$(cluster_base)/$cluster"
trap 'stop_cluster "$cluster" >/dev/null 2>&1 || true' EXIT
q() { psql -X -q -t -A -d app -c "$1"; }

psql -X -q -d postgres -c "CREATE DATABASE app"
psql -X -q -d app >/dev/null <<'SQL'
CREATE EXTENSION pg_prodguard;
CREATE SEQUENCE item_ids;
CREATE TABLE items (id bigint PRIMARY KEY, version int NOT NULL, payload text,
                    amount numeric, changed timestamptz, tags text[], doc jsonb);
SELECT prodguard.protect('items', audit => true, test_data => false);
INSERT INTO items SELECT nextval('item_ids'), 0, 'row ' || g, g * 1.25, now(), ARRAY['a', g::text],
                         jsonb_build_object('g', g) FROM generate_series(1, 500) g;
SQL
work=$(mktemp -d)
chmod 755 "$work"
cat >"$work/mixed.pgbench" <<'PGB'
\set id random(1, 2500)
\set other random(1, 2500)
\set op random(1, 10)
\if :op <= 5
UPDATE items SET version = version + 1, payload = md5(random()::text), amount = amount + 1,
       changed = now(), tags = tags || 'u'::text, doc = doc || '{"u": true}' WHERE id = :id;
\elif :op <= 7
INSERT INTO items SELECT nextval('item_ids'), 0, 'new', 1.5, now(), ARRAY['n'], '{"n": 1}';
\elif :op <= 8
DELETE FROM items WHERE id = :id;
\else
BEGIN;
UPDATE items SET version = version + 1, payload = 'pair' WHERE id = least(:id, :other);
UPDATE items SET version = version + 1, payload = 'pair' WHERE id = greatest(:id, :other) AND :id <> :other;
COMMIT;
\endif
PGB

check_sql=$(
    cat <<'SQL'
WITH a AS (
    SELECT (coalesce(new_row, old_row) ->> 'id')::bigint AS item, action,
           (new_row ->> 'version')::int AS nv, (old_row ->> 'version')::int AS ov, new_row,
           row_number() OVER w AS n, count(*) OVER w AS total
      FROM prodguard.audit_log
     WHERE table_name = 'items' AND action IN ('INSERT', 'UPDATE', 'DELETE')
    WINDOW w AS (PARTITION BY coalesce(new_row, old_row) ->> 'id' ORDER BY id
                 ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)),
out_of_sequence AS (
    SELECT item FROM a
     WHERE NOT ((n = 1 AND action = 'INSERT' AND nv = 0)
             OR (n > 1 AND action = 'UPDATE' AND nv = n - 1 AND ov = n - 2)
             OR (n > 1 AND n = total AND action = 'DELETE' AND ov = n - 2))),
last AS (SELECT * FROM a WHERE n = total),
lost AS (
    -- a row whose last change has no audit entry (or no entry at all)
    SELECT i.id FROM items i LEFT JOIN last l ON l.item = i.id
     WHERE l.item IS NULL OR l.action = 'DELETE' OR l.new_row <> to_jsonb(i)),
gone AS (
    -- audited as present, but the row is not there: a DELETE without its entry, or
    -- entries of a change that never committed
    SELECT l.item FROM last l
     WHERE l.action <> 'DELETE' AND NOT EXISTS (SELECT FROM items i WHERE i.id = l.item))
SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM a),
       (SELECT count(*) FROM lost), (SELECT count(*) FROM gone),
       (SELECT count(*) FROM out_of_sequence)
SQL
)

total_lost=0 total_bad=0
for ((run = 1; run <= runs; run++)); do
    "$PG_BIN/pgbench" -n -h 127.0.0.1 -p "$port" -d app -c 8 -j 2 -T $((seconds + 30)) \
        -f "$work/mixed.pgbench" >"$work/pgbench.out" 2>&1 &
    bench=$!
    # kill at a point that differs from run to run
    after=$(awk -v s="$seconds" -v r="$run" 'BEGIN { srand(r); printf "%.1f", s * (0.5 + rand() / 2) }')
    sleep "$after"
    postmaster=$(as_root head -1 "$dir/data/postmaster.pid")
    as_root kill -KILL "$postmaster"
    wait "$bench" || true
    for i in $(seq 1 30); do
        as_postgres env -u RUST_BACKTRACE "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/startup.log" -w -t 60 start \
            >/dev/null 2>&1 && break
        sleep 1
    done
    IFS='|' read -r rows entries lost gone bad < <(q "$check_sql")
    echo "run $run: postmaster killed after $after s; $rows rows, $entries audit entries; lost $lost, audited but absent $gone, out of sequence $bad"
    total_lost=$((total_lost + lost))
    total_bad=$((total_bad + gone + bad))
done
# The check must see a lost change: change one row with the audit switched off (an
# operator's override in production), and expect exactly one loss.
id=$(q "SELECT min(id) FROM items")
psql -X -q -d app -c "BEGIN" -c "SET LOCAL prodguard.override = 'crash test: checking the checker'" \
    -c "SET LOCAL prodguard.audit = off" -c "UPDATE items SET version = version + 1 WHERE id = $id" -c "COMMIT" >/dev/null
IFS='|' read -r rows entries lost gone bad < <(q "$check_sql")
if [ "$lost" != 1 ]; then
    echo "the check did not see a change made with the audit off (lost: $lost)" >&2
    total_bad=$((total_bad + 1))
else
    echo "   (self-check: an UPDATE made with the audit switched off is reported as 1 lost change)"
fi
rm -rf "$work"
stop_cluster "$cluster"
trap - EXIT
echo "$runs runs, $total_lost lost, $total_bad extra"
if [ "$total_lost" -ne 0 ] || [ "$total_bad" -ne 0 ]; then
    echo "crash consistency FAILED; server log: $dir/data/log/postgresql.log" >&2
    exit 1
fi
say "crash consistency: all checks passed"
