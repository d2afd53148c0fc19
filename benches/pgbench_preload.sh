#!/usr/bin/env bash
# Cost of the command guard on ordinary statements: pgbench's built-in tpcb-like workload
# (BEGIN, 3 UPDATEs, SELECT, INSERT, END per transaction), 2 clients, against one cluster
# restarted alternately with and without pg_prodguard in shared_preload_libraries.
# Runs are interleaved (and the order flips each round) so that drift on a shared machine
# hits both sides alike; the result is the ratio of median TPS, preloaded / not preloaded.
#
#   benches/pgbench_preload.sh [rounds] [seconds per run]     (defaults: 5 rounds, 20 s)
#
# Needs the release build installed (bin/demo does that, or: cargo pgrx install --release).
source "$(dirname "$0")/../bin/common.sh"

rounds=${1:-5}
seconds=${2:-20}
install_prerequisites
install_extension --release >/dev/null

port=$(free_port 54400)
start_cluster bench "$port" "max_connections = 20" \
    "shared_buffers = 256MB" "synchronous_commit = off"
trap 'stop_cluster bench' EXIT
say "initialising pgbench (scale 10) without pg_prodguard"
"$PG_BIN/pgbench" -i -q -s 10 -d postgres >/dev/null 2>&1

# The production database gets the extension too, as a real installation would.
restart_cluster bench "-c shared_preload_libraries=pg_prodguard"
psql -X -q -d postgres -c "CREATE EXTENSION IF NOT EXISTS pg_prodguard" >/dev/null

run() { # $1: preload value; prints TPS
    restart_cluster bench "-c shared_preload_libraries=$1"
    "$PG_BIN/pgbench" -n -c 2 -j 2 -T "$seconds" -d postgres 2>/dev/null |
        awk '/^tps/ { print $3; exit }'
}

with=() without=()
for ((i = 1; i <= rounds; i++)); do
    if ((i % 2)); then
        a=$(run pg_prodguard); b=$(run "")
    else
        b=$(run ""); a=$(run pg_prodguard)
    fi
    with+=("$a"); without+=("$b")
    printf 'round %d: preloaded %8.1f tps   not preloaded %8.1f tps\n' "$i" "$a" "$b"
done

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
m_with=$(median "${with[@]}")
m_without=$(median "${without[@]}")
awk -v a="$m_with" -v b="$m_without" -v r="$rounds" -v s="$seconds" 'BEGIN {
    printf "tpcb-like, 2 clients, %d x %d s each: median %.1f tps preloaded, %.1f tps not preloaded, ratio %.3f\n", r, s, a, b, a / b
}'
