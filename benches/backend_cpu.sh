#!/usr/bin/env bash
# Backend CPU time per statement, with and without pg_prodguard preloaded: steadier than
# TPS on a shared machine, because it counts only the CPU the one backend spent, read from
# /proc/self/stat before and after (clock ticks of 10 ms; each run is a few seconds).
# One psql session sends N statements of each kind (simple protocol, so each is parsed,
# planned, started and finished: every hook of ours runs):
#   update  UPDATE kv SET v = v + 1 WHERE id = <n>
#   delete  DELETE FROM kv WHERE id = <n>; INSERT INTO kv VALUES (<n>, 0)
#   utility BEGIN; SET LOCAL application_name = 'x'; COMMIT
# Runs alternate between the two configurations; the result is the ratio of median CPU
# per statement, not preloaded / preloaded (so 1.00 = no cost, 0.98 = 2 % more CPU).
#
#   benches/backend_cpu.sh [rounds] [statements]     (defaults: 5 rounds, 40000)
source "$(dirname "$0")/lib.sh"

rounds=${1:-5}
n=${2:-40000}
start_bench_cluster
psql -X -q -d postgres -c "CREATE TABLE kv (id int PRIMARY KEY, v int NOT NULL)" \
    -c "INSERT INTO kv SELECT g, 0 FROM generate_series(1, 100000) g" -c "VACUUM ANALYZE kv" >/dev/null
with_preload pg_prodguard
psql -X -q -d postgres -c "CREATE EXTENSION pg_prodguard" >/dev/null

work="$PROJECT_DIR/target/bench"
mkdir -p "$work"
stat_sql="SELECT split_part(pg_read_file('/proc/self/stat'), ' ', 14)::bigint + split_part(pg_read_file('/proc/self/stat'), ' ', 15)::bigint AS ticks \\gset"
for kind in update delete utility; do
    {
        echo "$stat_sql"
        echo "\\set t0 :ticks"
        awk -v n="$n" -v kind="$kind" 'BEGIN { srand(1); for (i = 0; i < n; i++) { id = int(rand() * 100000) + 1
            if (kind == "update") print "UPDATE kv SET v = v + 1 WHERE id = " id ";"
            else if (kind == "delete") print "DELETE FROM kv WHERE id = " id "; INSERT INTO kv VALUES (" id ", 0) ON CONFLICT DO NOTHING;"
            else print "BEGIN; SET LOCAL application_name = '\''x'\''; COMMIT;" } }'
        echo "$stat_sql"
        echo "SELECT :ticks - :t0 AS ticks \\gset"
        echo "\\echo :ticks"
    } >"$work/$kind.sql"
done

ticks() { psql -X -q -d postgres -f "$work/$1.sql" 2>/dev/null | tail -1; }
declare -A on off
for ((i = 1; i <= rounds; i++)); do
    for kind in update delete utility; do
        if ((i % 2)); then
            with_preload pg_prodguard; a=$(ticks "$kind"); with_preload ""; b=$(ticks "$kind")
        else
            with_preload ""; b=$(ticks "$kind"); with_preload pg_prodguard; a=$(ticks "$kind")
        fi
        on[$kind]+="$a " off[$kind]+="$b "
        printf 'round %d %-8s preloaded %5d ticks   not preloaded %5d ticks\n' "$i" "$kind" "$a" "$b"
    done
done
for kind in update delete utility; do
    # shellcheck disable=SC2086
    a=$(median ${on[$kind]}) b=$(median ${off[$kind]})
    awk -v k="$kind" -v a="$a" -v b="$b" -v n="$n" 'BEGIN {
        printf "%-8s %d statements: %.1f us CPU each preloaded, %.1f us not preloaded, ratio %.3f\n", k, n, a * 10000 / n, b * 10000 / n, b / a
    }'
done
