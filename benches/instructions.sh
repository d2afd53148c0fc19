#!/usr/bin/env bash
# Instructions per statement, with and without pg_prodguard preloaded, counted by
# valgrind's callgrind in a single-user backend (`postgres --single`): unlike time, an
# instruction count does not move with the load of a shared machine. Each kind of
# statement is run N and 2N times; the difference divided by N removes start-up costs.
#
#   benches/instructions.sh [N]      (default 2000; about a minute per kind and config)
#
# Kinds: update (UPDATE kv ... WHERE id = n), delete (DELETE ... WHERE id = n then INSERT
# it back: 2 statements), select (SELECT ... WHERE id = n), utility (BEGIN; SET LOCAL ...;
# COMMIT: 3 statements). Database production, extension created.
source "$(dirname "$0")/lib.sh"

n=${1:-2000}
command -v valgrind >/dev/null || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind
start_bench_cluster
psql -X -q -d postgres -c "CREATE TABLE kv (id int PRIMARY KEY, v int NOT NULL)" \
    -c "INSERT INTO kv SELECT g, 0 FROM generate_series(1, 100000) g" -c "VACUUM ANALYZE kv" >/dev/null
with_preload pg_prodguard
psql -X -q -d postgres -c "CREATE EXTENSION pg_prodguard" >/dev/null
# Two tables for the test-data guard: one plain, one protected, with 5,000 extra patterns.
psql -X -q -d postgres >/dev/null <<'SQL'
CREATE TABLE t_bare (id bigint, name text, email text, phone text, address text, product text,
    sku text, notes text, store text, status text);
CREATE TABLE t_guard (LIKE t_bare);
SELECT prodguard.dictionary_add('bench', array_agg('Fixture Product ' || g)) FROM generate_series(1, 5000) g;
SELECT prodguard.protect('t_guard', audit => false, test_data => true);
SQL
stop_cluster bench
trap - EXIT
pristine="$(cluster_base)/bench/data"
work=$(mktemp -d)
chmod 755 "$work"
data="$work/data"

statements() { # kind count
    awk -v n="$2" -v kind="$1" 'BEGIN { srand(1); for (i = 0; i < n; i++) { id = int(rand() * 100000) + 1
        if (kind == "update") print "UPDATE kv SET v = v + 1 WHERE id = " id
        else if (kind == "delete") { print "DELETE FROM kv WHERE id = " id; print "INSERT INTO kv VALUES (" id ", 0)" }
        else if (kind == "select") print "SELECT v FROM kv WHERE id = " id
        else if (kind ~ /^insert_/) { t = substr(kind, 8); print "INSERT INTO t_" t " VALUES (" id ", '\''Ada Lovelace'\'', '\''ada" id "@mail-co.com'\'', '\''+44 20 " id "'\'', '\''12 Analytical Engine Road'\'', '\''Organic still water 2L'\'', '\''SKU-" id "'\'', '\''Delivered to the side door, customer asked for a call'\'', '\''Co-op Food Manchester'\'', '\''delivered'\'')" }
        else { print "BEGIN"; print "SET LOCAL application_name = '\''x'\''"; print "COMMIT" } } }'
}
instructions() { # kind count preload
    statements "$1" "$2" >"$work/in.sql"
    # every run starts from the same data directory, so that no run inherits another's
    # dead rows
    as_root rm -rf "$data"
    as_root cp -a "$pristine" "$data"
    as_postgres valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        "$PG_BIN/postgres" --single -D "$data" -c "shared_preload_libraries=$3" postgres \
        <"$work/in.sql" 2>&1 >/dev/null | awk '/Collected/ { print $NF }'
}
printf '%-8s %14s %14s %8s\n' kind "not preloaded" "pg_prodguard" ratio
for kind in update delete select utility; do
    off=$(( ($(instructions "$kind" $((2 * n)) "") - $(instructions "$kind" "$n" "")) / n ))
    on=$(( ($(instructions "$kind" $((2 * n)) pg_prodguard) - $(instructions "$kind" "$n" pg_prodguard)) / n ))
    awk -v k="$kind" -v a="$off" -v b="$on" 'BEGIN { printf "%-8s %14d %14d %8.4f\n", k, a, b, a / b }'
done
echo "(instructions per line of input; ratio = not preloaded / pg_prodguard, 1.0 = no cost)"
echo
echo "test-data guard, both preloaded: INSERT of a 10-column row into a plain table and into"
echo "one protected with test_data => true (built-ins + 5,000 patterns)"
bare=$(( ($(instructions insert_bare $((2 * n)) pg_prodguard) - $(instructions insert_bare "$n" pg_prodguard)) / n ))
guard=$(( ($(instructions insert_guard $((2 * n)) pg_prodguard) - $(instructions insert_guard "$n" pg_prodguard)) / n ))
awk -v a="$bare" -v b="$guard" 'BEGIN { printf "insert   %14d %14d %8.4f\n", a, b, a / b }'
as_root rm -rf "$work"
