#!/usr/bin/env bash
# Cost of the test-data guard per row: INSERT of a 10-column row (benches/test_data.pgbench),
# 2 clients, into three tables of one production database, runs interleaved:
#   bare     no protection;
#   guard    prodguard.protect(test_data => true) with a 5,000-pattern dictionary plus the
#            built-in dictionaries (8,428 patterns);
#   plpgsql  what a DBA would write instead: a BEFORE INSERT trigger testing
#            concat_ws(...) ~* '\m(p1|p2|...)\M' with the same 5,000 patterns.
# Prints median TPS of each, guard/bare and guard/plpgsql.
#
#   benches/pgbench_test_data.sh [rounds] [seconds per run]     (defaults: 5 rounds, 20 s)
source "$(dirname "$0")/lib.sh"

rounds=${1:-5}
seconds=${2:-20}
start_bench_cluster
with_preload pg_prodguard
psql -X -q -d postgres >/dev/null <<'SQL'
CREATE EXTENSION pg_prodguard;
CREATE TABLE t_bare (id bigint, name text, email text, phone text, address text, product text,
    sku text, notes text, store text, status text);
CREATE TABLE t_guard (LIKE t_bare);
CREATE TABLE t_plpgsql (LIKE t_bare);
-- 5,000 product-like fixture names made of syllables
CREATE TABLE bench_patterns AS
SELECT DISTINCT initcap(s1 || s2 || s3) || ' ' || initcap(s4 || s5) AS p
  FROM (SELECT (ARRAY['ka','lo','mi','ne','su','ra','to','vi','ze','qu','ba','do'])[1 + (g * 7) % 12] s1,
               (ARRAY['ka','lo','mi','ne','su','ra','to','vi','ze','qu','ba','do'])[1 + (g * 11) % 12] s2,
               (ARRAY['ka','lo','mi','ne','su','ra','to','vi','ze','qu','ba','do'])[1 + (g / 12) % 12] s3,
               (ARRAY['ka','lo','mi','ne','su','ra','to','vi','ze','qu','ba','do'])[1 + (g / 144) % 12] s4,
               (ARRAY['ka','lo','mi','ne','su','ra','to','vi','ze','qu','ba','do'])[1 + (g / 1728) % 12] s5
          FROM generate_series(0, 20735) g) x
 LIMIT 5000;
SELECT prodguard.dictionary_add('bench', array_agg(p)) FROM bench_patterns;
SELECT prodguard.protect('t_guard', audit => false, test_data => true);
DO $do$
DECLARE re text;
BEGIN
    SELECT '\m(' || string_agg(regexp_replace(p, '([.^$*+?()\[\]{}|\\])', '\\\1', 'g'), '|') || ')\M'
      INTO re FROM bench_patterns;
    EXECUTE format($f$
        CREATE FUNCTION t_plpgsql_check() RETURNS trigger LANGUAGE plpgsql AS $b$
        BEGIN
            IF concat_ws(' ', NEW.name, NEW.email, NEW.phone, NEW.address, NEW.product, NEW.sku,
                         NEW.notes, NEW.store, NEW.status) ~* %L THEN
                RAISE EXCEPTION 'new row for relation "%%" contains test data', TG_TABLE_NAME
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END $b$$f$, re);
END
$do$;
CREATE TRIGGER t_plpgsql_check BEFORE INSERT ON t_plpgsql FOR EACH ROW EXECUTE FUNCTION t_plpgsql_check();
SQL
script="$(dirname "$0")/test_data.pgbench"
declare -A results=([bare]="" [guard]="" [plpgsql]="")
interleaved "$rounds" "$seconds" "$script" bare guard plpgsql
# shellcheck disable=SC2086
b=$(median ${results[bare]}) g=$(median ${results[guard]}) p=$(median ${results[plpgsql]})
awk -v b="$b" -v g="$g" -v p="$p" -v r="$rounds" -v s="$seconds" 'BEGIN {
    printf "INSERT of a 10-column row, 2 clients, %d x %d s each, median tps: bare %.1f, guard %.1f (%.3f x bare), PL/pgSQL regex trigger %.1f (guard = %.1f x PL/pgSQL)\n", r, s, b, g, g / b, p, g / p
}'
