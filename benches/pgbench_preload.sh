#!/usr/bin/env bash
# Cost of the command guard on ordinary statements: pgbench's built-in tpcb-like workload
# (BEGIN, 3 UPDATEs, SELECT, INSERT, END per transaction), 2 clients, against one cluster
# restarted alternately with and without pg_prodguard in shared_preload_libraries.
# Runs are interleaved (and the order flips each round) so that drift on a shared machine
# hits both sides alike; the result is the ratio of median TPS, preloaded / not preloaded.
#
#   benches/pgbench_preload.sh [rounds] [seconds per run]     (defaults: 5 rounds, 20 s)
source "$(dirname "$0")/lib.sh"

rounds=${1:-5}
seconds=${2:-20}
start_bench_cluster
say "initialising pgbench (scale 10) without pg_prodguard"
"$PG_BIN/pgbench" -i -q -s 10 -d postgres >/dev/null 2>&1
# The database gets the extension too, as a real installation would.
with_preload pg_prodguard
psql -X -q -d postgres -c "CREATE EXTENSION IF NOT EXISTS pg_prodguard" >/dev/null

run() { with_preload "$1"; tps -c 2 -j 2 -T "$seconds"; }
with=() without=()
for ((i = 1; i <= rounds; i++)); do
    if ((i % 2)); then a=$(run pg_prodguard); b=$(run ""); else b=$(run ""); a=$(run pg_prodguard); fi
    with+=("$a") without+=("$b")
    printf 'round %d: preloaded %8.1f tps   not preloaded %8.1f tps\n' "$i" "$a" "$b"
done
awk -v a="$(median "${with[@]}")" -v b="$(median "${without[@]}")" -v r="$rounds" -v s="$seconds" 'BEGIN {
    printf "tpcb-like, 2 clients, %d x %d s each: median %.1f tps preloaded, %.1f tps not preloaded, ratio %.3f\n", r, s, a, b, a / b
}'
