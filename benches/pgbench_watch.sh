#!/usr/bin/env bash
# Write-path cost of the row-drop watch (SPEC §11): transactions that delete one row of a
# protected, audited 100,000-row table and insert it back (benches/watch.pgbench), 2
# clients, one production database, runs interleaved:
#   off    the table audited, the watch off (the role's prodguard.row_drop_alert_percent = 0);
#   on     the same table, the watch on (the default, 50);
#   bare   a plain table of the same shape, for scale.
# Prints the median TPS of each and the median of the per-round ratios on/off (1.0 = free).
#
#   benches/pgbench_watch.sh [rounds] [seconds per run]     (defaults: 5 rounds, 20 s)
source "$(dirname "$0")/lib.sh"

rounds=${1:-5}
seconds=${2:-20}
start_bench_cluster
with_preload pg_prodguard
psql -X -q -d postgres >/dev/null <<'SQL'
CREATE EXTENSION pg_prodguard;
CREATE TABLE t_bare (id int PRIMARY KEY, product text);
INSERT INTO t_bare SELECT g, 'Organic still water 2L' FROM generate_series(1, 100000) g;
CREATE TABLE t_guarded (LIKE t_bare INCLUDING ALL);
INSERT INTO t_guarded SELECT * FROM t_bare;
SELECT prodguard.protect('t_guarded', audit => true, test_data => false);
CREATE ROLE watch_off SUPERUSER LOGIN;
BEGIN;
SET LOCAL prodguard.override = 'benchmark: the watch off for this role';
ALTER ROLE watch_off SET prodguard.row_drop_alert_percent = 0;
COMMIT;
VACUUM ANALYZE;
SQL
script="$(dirname "$0")/watch.pgbench"
run() { # config
    case $1 in
    off) tps -U watch_off -c 2 -j 2 -T "$seconds" -f "$script" -D tbl=t_guarded ;;
    on) tps -c 2 -j 2 -T "$seconds" -f "$script" -D tbl=t_guarded ;;
    bare) tps -c 2 -j 2 -T "$seconds" -f "$script" -D tbl=t_bare ;;
    esac
}
declare -A results=([off]="" [on]="" [bare]="")
ratios=""
order=(off on bare)
for ((i = 1; i <= rounds; i++)); do
    line="round $i:"
    declare -A now=()
    for config in "${order[@]}"; do
        now[$config]=$(run "$config")
        results[$config]+="${now[$config]} "
        line+=$(printf '  %s %8.1f' "$config" "${now[$config]}")
    done
    ratios+="$(awk -v a="${now[on]}" -v b="${now[off]}" 'BEGIN { print a / b }') "
    echo "$line"
    order=("${order[2]}" "${order[0]}" "${order[1]}")
done
# shellcheck disable=SC2086
awk -v off="$(median ${results[off]})" -v on="$(median ${results[on]})" -v bare="$(median ${results[bare]})" \
    -v r="$(median $ratios)" -v n="$rounds" -v s="$seconds" 'BEGIN {
    printf "DELETE + INSERT of one protected row per transaction, 2 clients, %d x %d s each, median tps: watch off %.1f, watch on %.1f, bare table %.1f; median per-round ratio on/off %.3f\n", n, s, off, on, bare, r
}'
