# Shared by the pgbench scripts in benches/: one throwaway cluster ("bench"), restarted
# with or without pg_prodguard preloaded between runs, and the median of a list.
# shellcheck shell=bash
source "$(dirname "${BASH_SOURCE[0]}")/../bin/common.sh"

# start_bench_cluster: a cluster tuned so that the CPU, not the disk, is the limit.
start_bench_cluster() {
    install_prerequisites
    install_extension --release >/dev/null
    start_cluster bench "$(free_port 54400)" "max_connections = 20" \
        "shared_buffers = 256MB" "synchronous_commit = off"
    trap 'stop_cluster bench' EXIT
}

# with_preload VALUE: restart the bench cluster with shared_preload_libraries = VALUE.
with_preload() {
    restart_cluster bench "-c shared_preload_libraries=$1"
}

# tps ARGS...: run pgbench against database postgres, print transactions per second.
tps() {
    local out
    if ! out=$("$PG_BIN/pgbench" -n -d postgres "$@" 2>&1); then
        echo "pgbench failed:" >&2
        echo "$out" | tail -5 >&2
        return 1
    fi
    echo "$out" | awk '/^tps/ { print $3; exit }'
}

median() {
    printf '%s\n' "$@" | sort -g |
        awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# interleaved ROUNDS SECONDS SCRIPT A B C: runs the pgbench SCRIPT with -D tbl=t_<config>
# (2 clients) for the three configs, ROUNDS times, the order rotating each round so that
# drift on a shared machine hits all alike; prints each round and leaves each config's TPS
# list in the associative array `results` (declared by the caller).
interleaved() {
    local rounds=$1 seconds=$2 script=$3 i config t line
    local order=("$4" "$5" "$6")
    for ((i = 1; i <= rounds; i++)); do
        line="round $i:"
        for config in "${order[@]}"; do
            t=$(tps -c 2 -j 2 -T "$seconds" -f "$script" -D tbl="t_$config")
            results[$config]+="$t "
            line+=$(printf '  %s %8.1f' "$config" "$t")
        done
        echo "$line"
        order=("${order[2]}" "${order[0]}" "${order[1]}")
    done
}
