# Shared by the pgbench scripts in benches/: one throwaway cluster ("bench"), restarted
# with or without pg_prodguard preloaded between runs, and the median of a list.
# shellcheck shell=bash
source "$(dirname "${BASH_SOURCE[0]}")/../bin/common.sh"

# start_bench_cluster: a cluster tuned so that the CPU, not the disk, is the limit. With
# the default max_wal_size (1GB) the write workloads, at 60 MB of WAL a second, made a
# checkpoint every 8 seconds: every run of every config overlapped one, and paid the full
# page images after it in turn. 8GB spaces them as a write-heavy production server would.
start_bench_cluster() {
    install_prerequisites
    install_extension --release >/dev/null
    start_cluster bench "$(free_port 54400)" "max_connections = 20" \
        "shared_buffers = 256MB" "synchronous_commit = off" "max_wal_size = 8GB"
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

# interleaved ROUNDS SECONDS SCRIPT CONFIG...: runs the pgbench SCRIPT with -D tbl=t_<config>
# (2 clients; the table prefix is $table_prefix, default t_) for each config, ROUNDS times,
# the order rotating each round so that drift on a shared machine hits all alike; prints
# each round and leaves each config's TPS list in the associative array `results`
# (declared by the caller).
interleaved() {
    local rounds=$1 seconds=$2 script=$3 i config t line
    shift 3
    local order=("$@")
    for ((i = 1; i <= rounds; i++)); do
        line="round $i:"
        for config in "${order[@]}"; do
            t=$(tps -c 2 -j 2 -T "$seconds" -f "$script" -D tbl="${table_prefix:-t_}$config")
            results[$config]+="$t "
            line+=$(printf '  %s %8.1f' "$config" "$t")
        done
        echo "$line"
        order=("${order[@]:1}" "${order[0]}")
    done
}

# make_audit_tables: the audit benchmarks' tables in database postgres (the extension
# created), 10 columns each: a_<config> empty (INSERT workloads), u_<config> with 100,000
# rows (UPDATE and DELETE workloads), for the configs
#   bare      not audited;
#   audit     prodguard.protect(audit => true, test_data => false);
#   plpgsql   a supa_audit-style PL/pgSQL row trigger (plpgsql_audit.sql);
#   minimal   a minimal PL/pgSQL row trigger, to_jsonb into a table with a primary key only;
#   stmt      PL/pgSQL statement triggers over the transition tables;
#   both      the same, keeping an UPDATE's old and new rows (the three in
#             plpgsql_audit_minimal.sql).
make_audit_tables() {
    local here
    here="$(dirname "${BASH_SOURCE[0]}")"
    psql -X -q -d postgres >/dev/null <<'SQL'
CREATE TABLE a_bare (id bigint PRIMARY KEY, name text, email text, phone text, address text,
    product text, sku text, notes text, store text, status text);
CREATE TABLE a_audit (LIKE a_bare INCLUDING ALL);
CREATE TABLE a_plpgsql (LIKE a_bare INCLUDING ALL);
CREATE TABLE a_minimal (LIKE a_bare INCLUDING ALL);
CREATE TABLE a_stmt (LIKE a_bare INCLUDING ALL);
CREATE TABLE a_both (LIKE a_bare INCLUDING ALL);
CREATE TABLE u_bare (LIKE a_bare INCLUDING ALL);
CREATE TABLE u_audit (LIKE a_bare INCLUDING ALL);
CREATE TABLE u_plpgsql (LIKE a_bare INCLUDING ALL);
CREATE TABLE u_minimal (LIKE a_bare INCLUDING ALL);
CREATE TABLE u_stmt (LIKE a_bare INCLUDING ALL);
CREATE TABLE u_both (LIKE a_bare INCLUDING ALL);
SELECT prodguard.protect('a_audit', audit => true, test_data => false);
SQL
    psql -X -q -d postgres -v tbl=a_plpgsql >/dev/null <"$here/plpgsql_audit.sql"
    psql -X -q -d postgres >/dev/null <"$here/plpgsql_audit_minimal.sql"
    # the u_ tables get their rows before their triggers, so that the set-up is not audited
    psql -X -q -d postgres >/dev/null <<'SQL'
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['u_bare', 'u_audit', 'u_plpgsql', 'u_minimal', 'u_stmt', 'u_both'] LOOP
        EXECUTE format($f$INSERT INTO %I SELECT g, 'Ada Lovelace', 'ada' || g || '@mail-co.com', '+44 20 ' || g,
            g %% 200 || ' Analytical Engine Road', 'Organic still water 2L', 'SKU-' || g,
            'Delivered to the side door', 'Co-op Food Manchester', 'open'
            FROM generate_series(1, 100000) g$f$, t);
    END LOOP;
END $$;
SELECT prodguard.protect('u_audit', audit => true, test_data => false);
SQL
    sed -e 's/a_minimal/u_minimal/g; s/a_stmt/u_stmt/g; s/minimal_log/u_minimal_log/g; s/stmt_log/u_stmt_log/g;
            s/minimal_audit/u_minimal_audit/g; s/stmt_audit/u_stmt_audit/g;
            s/a_both/u_both/g; s/both_log/u_both_log/g; s/both_audit/u_both_audit/g' \
        "$here/plpgsql_audit_minimal.sql" | psql -X -q -d postgres >/dev/null
    psql -X -q -d postgres -v tbl=u_plpgsql >/dev/null <"$here/plpgsql_audit.sql"
}
