#!/usr/bin/env bash
# Cost of the row audit: transactions inserting 100 rows of 10 columns (benches/audit.pgbench),
# 2 clients, into three tables of one production database, runs interleaved:
#   bare     not audited;
#   audit    prodguard.protect(audit => true, test_data => false): one audit_log row per row;
#   plpgsql  a supa_audit-style PL/pgSQL AFTER row trigger inserting to_jsonb(NEW)/to_jsonb(OLD)
#            into an audit table with an id, a timestamp and indexes on time and table
#            (benches/plpgsql_audit.sql).
# Prints median TPS of each, and the medians of the per-round ratios audit/bare and
# audit/plpgsql (runs of one round share the machine's load of that moment).
#
#   benches/pgbench_audit.sh [rounds] [seconds per run]     (defaults: 5 rounds, 20 s)
source "$(dirname "$0")/lib.sh"

rounds=${1:-5}
seconds=${2:-20}
start_bench_cluster
with_preload pg_prodguard
psql -X -q -d postgres >/dev/null <<'SQL'
CREATE EXTENSION pg_prodguard;
CREATE TABLE t_bare (id bigint PRIMARY KEY, name text, email text, phone text, address text,
    product text, sku text, notes text, store text, status text);
CREATE TABLE t_audit (LIKE t_bare INCLUDING ALL);
CREATE TABLE t_plpgsql (LIKE t_bare INCLUDING ALL);
SELECT prodguard.protect('t_audit', audit => true, test_data => false);
SQL
psql -X -q -d postgres -v tbl=t_plpgsql >/dev/null <"$(dirname "$0")/plpgsql_audit.sql"
script="$(dirname "$0")/audit.pgbench"
declare -A results=([bare]="" [audit]="" [plpgsql]="")
interleaved "$rounds" "$seconds" "$script" bare audit plpgsql
# shellcheck disable=SC2086
b=$(median ${results[bare]}) a=$(median ${results[audit]}) p=$(median ${results[plpgsql]})
# the three runs of a round share the machine's load of that moment: compare within rounds
# shellcheck disable=SC2206
ab=(${results[audit]}) bb=(${results[bare]}) pb=(${results[plpgsql]})
per_round_ap="" per_round_ab=""
for ((i = 0; i < rounds; i++)); do
    per_round_ap+="$(awk -v a="${ab[$i]}" -v p="${pb[$i]}" 'BEGIN { print a / p }') "
    per_round_ab+="$(awk -v a="${ab[$i]}" -v b="${bb[$i]}" 'BEGIN { print a / b }') "
done
# shellcheck disable=SC2086
rap=$(median $per_round_ap) rab=$(median $per_round_ab)
awk -v b="$b" -v a="$a" -v p="$p" -v r="$rounds" -v s="$seconds" -v rap="$rap" -v rab="$rab" 'BEGIN {
    printf "100-row INSERTs of 10 columns, 2 clients, %d x %d s each, median rows/s: bare %.0f, audit %.0f, PL/pgSQL audit trigger %.0f\n", r, s, b * 100, a * 100, p * 100
    printf "median of per-round ratios: audit/bare %.3f, audit = %.2f x PL/pgSQL\n", rab, rap
}'
