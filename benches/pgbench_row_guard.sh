#!/usr/bin/env bash
# Cost of the row guard on ordinary DML: UPDATE and DELETE by key (benches/row_guard.pgbench),
# 2 clients, three configurations run interleaved on one cluster:
#   bare      pg_prodguard not preloaded;
#   prodguard preloaded, extension created, production (require_where, max_rows_changed
#             and the forbid_delete lookup all active);
#   plpgsql   not preloaded, with what a DBA would write instead for max_rows_changed:
#             AFTER UPDATE/DELETE statement triggers with transition tables that count the
#             rows and raise above 10000.
# Prints the median TPS of each and the ratios to bare.
#
#   benches/pgbench_row_guard.sh [rounds] [seconds per run]     (defaults: 5 rounds, 20 s)
source "$(dirname "$0")/lib.sh"

rounds=${1:-5}
seconds=${2:-20}
start_bench_cluster
psql -X -q -d postgres <<'SQL' >/dev/null
CREATE TABLE kv (id int PRIMARY KEY, v int NOT NULL);
INSERT INTO kv SELECT g, 0 FROM generate_series(1, 100000) g;
VACUUM ANALYZE kv;
CREATE FUNCTION kv_row_limit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT count(*) FROM changed) > 10000 THEN
        RAISE EXCEPTION '% of more than 10000 rows refused', TG_OP;
    END IF;
    RETURN NULL;
END $$;
SQL
with_preload pg_prodguard
psql -X -q -d postgres -c "CREATE EXTENSION pg_prodguard" >/dev/null

triggers() { # on | off
    if [ "$1" = on ]; then
        psql -X -q -d postgres >/dev/null <<'SQL'
CREATE TRIGGER kv_row_limit_u AFTER UPDATE ON kv REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION kv_row_limit();
CREATE TRIGGER kv_row_limit_d AFTER DELETE ON kv REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION kv_row_limit();
SQL
    else
        psql -X -q -d postgres -c "DROP TRIGGER IF EXISTS kv_row_limit_u ON kv" \
            -c "DROP TRIGGER IF EXISTS kv_row_limit_d ON kv" >/dev/null
    fi
}
run() { # bare | prodguard | plpgsql
    case $1 in
        bare) with_preload "" && triggers off ;;
        prodguard) with_preload "" && triggers off && with_preload pg_prodguard ;;
        plpgsql) with_preload "" && triggers on ;;
    esac
    tps -c 2 -j 2 -T "$seconds" -f "$(dirname "$0")/row_guard.pgbench"
}

declare -A results=([bare]="" [prodguard]="" [plpgsql]="")
order=(bare prodguard plpgsql)
for ((i = 1; i <= rounds; i++)); do
    line="round $i:"
    for config in "${order[@]}"; do
        t=$(run "$config")
        results[$config]+="$t "
        line+=$(printf '  %s %8.1f' "$config" "$t")
    done
    echo "$line"
    order=("${order[2]}" "${order[0]}" "${order[1]}")   # rotate the order each round
done
# shellcheck disable=SC2086
bare=$(median ${results[bare]}) ours=$(median ${results[prodguard]}) dba=$(median ${results[plpgsql]})
awk -v b="$bare" -v o="$ours" -v d="$dba" -v r="$rounds" -v s="$seconds" 'BEGIN {
    printf "UPDATE/DELETE by key, 2 clients, %d x %d s each, median tps: bare %.1f, pg_prodguard %.1f (ratio %.3f), PL/pgSQL row-limit triggers %.1f (ratio %.3f)\n", r, s, b, o, o / b, d, d / b
}'
