#!/usr/bin/env bash
# The row audit against every PL/pgSQL audit trigger of issue 18, in TPS (the instruction
# counts of the same workloads are benches/instructions.sh's sections audit and
# audit_changes). Five tables per workload, one production database, 2 clients, runs
# interleaved (see make_audit_tables in lib.sh): bare, audit (pg_prodguard), plpgsql
# (supa_audit-shaped), minimal (row trigger, to_jsonb into a table with a primary key
# only), stmt (statement triggers over the transition tables), both (the same, keeping an
# UPDATE's old row too: the only one besides plpgsql that can undo an UPDATE). Workloads:
#   insert100  100-row INSERTs (audit.pgbench)       insert1  1-row INSERTs (audit_1row.pgbench)
#   update100  100-row UPDATEs (audit_update.pgbench) delete100 100-row DELETEs, rolled back
#                                                              (audit_delete.pgbench)
# Prints, per workload, each round and the median TPS of each table, and the median of the
# per-round ratios audit / each other (runs of one round share the machine's load).
#
#   benches/pgbench_audit_baselines.sh [rounds] [seconds per run] [workload...]
#                                      (defaults: 3 rounds, 10 s, all four workloads)
source "$(dirname "$0")/lib.sh"

rounds=${1:-3}
seconds=${2:-10}
shift 2 || true
workloads=${*:-insert100 insert1 update100 delete100}
start_bench_cluster
with_preload pg_prodguard
psql -X -q -d postgres -c "CREATE EXTENSION pg_prodguard" >/dev/null
make_audit_tables
psql -X -q -d postgres -c "VACUUM ANALYZE" >/dev/null
configs=(bare audit plpgsql minimal stmt both)
for workload in $workloads; do
    case $workload in
        insert100) script=audit.pgbench table_prefix=a_ ;;
        insert1) script=audit_1row.pgbench table_prefix=a_ ;;
        update100) script=audit_update.pgbench table_prefix=u_ ;;
        delete100) script=audit_delete.pgbench table_prefix=u_ ;;
        *) echo "unknown workload $workload" >&2; exit 2 ;;
    esac
    echo "== $workload"
    declare -A results=()
    interleaved "$rounds" "$seconds" "$(dirname "$0")/$script" "${configs[@]}"
    line="median TPS:"
    for c in "${configs[@]}"; do
        read -r -a v <<<"${results[$c]}"
        line+=$(printf '  %s %.1f' "$c" "$(median "${v[@]}")")
    done
    echo "$line"
    read -r -a ours <<<"${results[audit]}"
    line="audit / other (median of rounds):"
    for c in bare plpgsql minimal stmt both; do
        read -r -a other <<<"${results[$c]}"
        ratios=()
        for ((i = 0; i < ${#ours[@]}; i++)); do
            ratios+=("$(awk -v a="${ours[$i]}" -v b="${other[$i]}" 'BEGIN { printf "%.3f", a / b }')")
        done
        line+=$(printf '  %s %.2f' "$c" "$(median "${ratios[@]}")")
    done
    echo "$line"
    unset results
done
