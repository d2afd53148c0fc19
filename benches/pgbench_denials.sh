#!/usr/bin/env bash
# Does a storm of refusals slow down the other sessions? One client runs pgbench's
# select-only workload (-S) while a second client, rate-limited to the same number of
# statements per second in both storms (-R; default 3,000: on 2 shared cores one refusing
# session peaks near 7,000/s alone, and an unthrottled storm would only measure CPU
# starvation), runs one of:
#   none     nothing (the second client is not started);
#   refused  DO blocks whose TRUNCATE of a protected table is refused and caught: every
#            refusal is logged, queued and written to prodguard.denial_log by the workers;
#   errors   DO blocks whose statement fails and is caught without pg_prodguard involved
#            (a division by zero): the same load of failing statements, as control.
# Runs are interleaved; prints the ordinary client's median TPS in each case, the ratios,
# the storms' achieved rates, and the denial counters (written, dropped).
#
#   benches/pgbench_denials.sh [rounds] [seconds per run] [storm rate]
#                                              (defaults: 5 rounds, 20 s, 3000 per second)
source "$(dirname "$0")/lib.sh"

rounds=${1:-5}
seconds=${2:-20}
rate=${3:-3000}
start_bench_cluster
"$PG_BIN/pgbench" -i -q -s 10 -d postgres >/dev/null 2>&1
with_preload pg_prodguard
psql -X -q -d postgres >/dev/null <<'SQL'
CREATE EXTENSION pg_prodguard;
CREATE TABLE orders (id int PRIMARY KEY, product text);
INSERT INTO orders VALUES (1, 'Rye bread');
SELECT prodguard.protect('orders');
SQL
work=$(mktemp -d)
cat >"$work/refused.sql" <<'SQL'
DO $$ BEGIN TRUNCATE orders; EXCEPTION WHEN insufficient_privilege THEN NULL; END $$;
SQL
cat >"$work/errors.sql" <<'SQL'
DO $$ BEGIN PERFORM 1 / 0; EXCEPTION WHEN division_by_zero THEN NULL; END $$;
SQL

metric() { psql -X -q -t -A -d postgres -c "SELECT value FROM prodguard.metrics WHERE metric = '$1'"; }
declare -A ordinary=([none]="" [refused]="" [errors]="") storm=([refused]="" [errors]="")
order=(none refused errors)
written0=$(metric denials_written) dropped0=$(metric denials_dropped)
# first, how fast one session can be refused with nothing else running
peak=$(tps -c 1 -T 10 -f "$work/refused.sql")
peak_errors=$(tps -c 1 -T 10 -f "$work/errors.sql")
printf 'one session alone: %.0f refusals per second, %.0f caught errors per second\n' "$peak" "$peak_errors"
for ((i = 1; i <= rounds; i++)); do
    line="round $i:"
    for kind in "${order[@]}"; do
        if [ "$kind" != none ]; then
            "$PG_BIN/pgbench" -n -d postgres -c 1 -R "$rate" -T "$seconds" -f "$work/$kind.sql" \
                >"$work/storm.out" 2>&1 &
            storm_pid=$!
        fi
        t=$(tps -c 1 -S -T "$seconds")
        ordinary[$kind]+="$t "
        line+=$(printf '  %s %8.1f' "$kind" "$t")
        if [ "$kind" != none ]; then
            wait "$storm_pid"
            rate=$(awk '/^tps/ { print $3; exit }' "$work/storm.out")
            storm[$kind]+="$rate "
            line+=$(printf ' (storm %.0f/s)' "$rate")
        fi
    done
    echo "$line"
    order=("${order[2]}" "${order[0]}" "${order[1]}")
done
# shellcheck disable=SC2086
n=$(median ${ordinary[none]}) r=$(median ${ordinary[refused]}) e=$(median ${ordinary[errors]})
# shellcheck disable=SC2086
sr=$(median ${storm[refused]}) se=$(median ${storm[errors]})
sleep 2
awk -v n="$n" -v r="$r" -v e="$e" -v sr="$sr" -v se="$se" -v w="$(($(metric denials_written) - written0))" \
    -v d="$(($(metric denials_dropped) - dropped0))" -v rounds="$rounds" -v s="$seconds" 'BEGIN {
    printf "select-only client, %d x %d s each, median tps: alone %.0f, beside %.0f refusals/s %.0f, beside %.0f caught errors/s %.0f\n", rounds, s, n, sr, r, se, e
    printf "ratios: with refusal storm / alone %.3f, with refusal storm / with error storm %.3f\n", r / n, r / e
    printf "denial records written %d, dropped (queue full) %d\n", w, d
}'
rm -rf "$work"
