#!/usr/bin/env bash
# Instructions per statement, with and without pg_prodguard preloaded, counted by
# valgrind's callgrind in a single-user backend (`postgres --single`): unlike time, an
# instruction count does not move with the load of a shared machine. Each kind of
# statement is run N and 2N times; the difference divided by N removes start-up costs.
#
#   benches/instructions.sh [N] [section...]   (default 2000; sections: guards test_data
#                                               audit watch, default all four; about a
#                                               minute per kind and config)
#
# Kinds: update (UPDATE kv ... WHERE id = n), delete (DELETE ... WHERE id = n then INSERT
# it back: 2 statements), select (SELECT ... WHERE id = n), utility (BEGIN; SET LOCAL ...;
# COMMIT: 3 statements). Database production, extension created. Section audit: a 100-row
# INSERT (as benches/audit.pgbench), and 1-row INSERTs, into a plain table, one protected
# with audit => true, one with a supa_audit-style PL/pgSQL trigger (as
# benches/pgbench_audit.sh), one with a minimal PL/pgSQL row trigger and one with PL/pgSQL
# statement triggers over the transition tables (benches/plpgsql_audit_minimal.sql).
# Section audit_changes: the same five, as tables of 100,000 rows: 100-row UPDATEs and
# 100-row DELETEs; for UPDATEs also statement triggers that keep the old and the new row. Section watch: the row-drop watch on (default) and off
# (prodguard.row_drop_alert_percent = 0) for a protected, audited table: one row deleted
# and put back per transaction, and 100 rows deleted and put back per transaction.
source "$(dirname "$0")/lib.sh"

n=${1:-2000}
shift || true
sections=${*:-guards test_data audit audit_changes watch}
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
CREATE TABLE w (id int PRIMARY KEY, v text);
INSERT INTO w SELECT g, 'Organic still water 2L' FROM generate_series(1, 100000) g;
SELECT prodguard.protect('w', audit => true, test_data => false);
SQL
make_audit_tables
psql -X -q -d postgres -c "VACUUM ANALYZE" >/dev/null
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
        else if (kind == "watch_1") { print "DELETE FROM w WHERE id = " id; print "INSERT INTO w VALUES (" id ", '\''x'\'')" }
        else if (kind == "watch_100") { lo = int(id / 100) * 100; print "WITH d AS (DELETE FROM w WHERE id > " lo " AND id <= " lo + 100 " RETURNING id) INSERT INTO w SELECT id, '\''x'\'' FROM d" }
        else if (kind == "select") print "SELECT v FROM kv WHERE id = " id
        else if (kind ~ /^update_/) { t = substr(kind, 8); lo = (i % 999) * 100; print "UPDATE u_" t " SET status = '\''shipped'\'' WHERE id > " lo " AND id <= " lo + 100 }
        else if (kind ~ /^delete_/) { t = substr(kind, 8); lo = (i % 999) * 100; print "DELETE FROM u_" t " WHERE id > " lo " AND id <= " lo + 100 }
        else if (kind ~ /^audit1_/) { t = substr(kind, 8); print "INSERT INTO a_" t " VALUES (" (i + 1) ", '\''Ada Lovelace'\'', '\''ada" id "@mail-co.com'\'', '\''+44 20 " id "'\'', '\''12 Analytical Engine Road'\'', '\''Organic still water 2L'\'', '\''SKU-" id "'\'', '\''Delivered to the side door, customer asked for a call'\'', '\''Co-op Food Manchester'\'', '\''delivered'\'')" }
        else if (kind ~ /^audit_/) { t = substr(kind, 7); print "INSERT INTO a_" t " SELECT " id " * 1000 + g, '\''Ada Lovelace'\'', '\''ada.lovelace'\'' || g || '\''@mail-co.com'\'', '\''+44 20 '\'' || g, g % 200 || '\'' Analytical Engine Road'\'', '\''Organic still water 2L'\'', '\''SKU-'\'' || g, '\''Delivered to the side door, customer asked for a call on arrival'\'', '\''Co-op Food Manchester'\'', '\''delivered'\'' FROM generate_series(1, 100) g" }
        else if (kind ~ /^insert_/) { t = substr(kind, 8); print "INSERT INTO t_" t " VALUES (" id ", '\''Ada Lovelace'\'', '\''ada" id "@mail-co.com'\'', '\''+44 20 " id "'\'', '\''12 Analytical Engine Road'\'', '\''Organic still water 2L'\'', '\''SKU-" id "'\'', '\''Delivered to the side door, customer asked for a call'\'', '\''Co-op Food Manchester'\'', '\''delivered'\'')" }
        else { print "BEGIN"; print "SET LOCAL application_name = '\''x'\''"; print "COMMIT" } } }'
}
instructions() { # kind count preload [setting]
    statements "$1" "$2" >"$work/in.sql"
    # every run starts from the same data directory, so that no run inherits another's
    # dead rows
    as_root rm -rf "$data"
    as_root cp -a "$pristine" "$data"
    as_postgres valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        "$PG_BIN/postgres" --single -D "$data" -c "shared_preload_libraries=$3" ${4:+-c "$4"} postgres \
        <"$work/in.sql" 2>&1 >/dev/null | awk '/Collected/ { print $NF }'
}
per_line() { # kind preload [setting]
    echo $(( ($(instructions "$1" $((2 * n)) "$2" "${3:-}") - $(instructions "$1" "$n" "$2" "${3:-}")) / n ))
}
for section in $sections; do
    case $section in
    guards)
        printf '%-8s %14s %14s %8s\n' kind "not preloaded" "pg_prodguard" ratio
        for kind in update delete select utility; do
            off=$(per_line "$kind" "")
            on=$(per_line "$kind" pg_prodguard)
            awk -v k="$kind" -v a="$off" -v b="$on" 'BEGIN { printf "%-8s %14d %14d %8.4f\n", k, a, b, a / b }'
        done
        echo "(instructions per line of input; ratio = not preloaded / pg_prodguard, 1.0 = no cost)"
        echo
        ;;
    test_data)
        echo "test-data guard, both preloaded: INSERT of a 10-column row into a plain table and into"
        echo "one protected with test_data => true (built-ins + 5,000 patterns)"
        bare=$(per_line insert_bare pg_prodguard)
        guard=$(per_line insert_guard pg_prodguard)
        awk -v a="$bare" -v b="$guard" 'BEGIN { printf "insert   %14d %14d %8.4f\n", a, b, a / b }'
        echo
        ;;
    audit)
        echo "row audit, preloaded: 100-row INSERT, instructions per row"
        bare=$(per_line audit_bare pg_prodguard)
        ours=$(per_line audit_audit pg_prodguard)
        plpgsql=$(per_line audit_plpgsql pg_prodguard)
        minimal=$(per_line audit_minimal pg_prodguard)
        stmt=$(per_line audit_stmt pg_prodguard)
        awk -v b="$bare" -v a="$ours" -v p="$plpgsql" -v m="$minimal" -v s="$stmt" 'BEGIN {
            printf "bare %d, pg_prodguard audit %d (+%d per row), supa_audit-shaped trigger %d (+%d), minimal row trigger %d (+%d), statement trigger %d (+%d)\n", b / 100, a / 100, (a - b) / 100, p / 100, (p - b) / 100, m / 100, (m - b) / 100, s / 100, (s - b) / 100
            printf "speed ratios: audit/bare %.3f; audit = %.2f x supa_audit-shaped, %.2f x minimal, %.2f x statement trigger\n", b / a, p / a, m / a, s / a }'
        echo "row audit, preloaded: 1-row INSERT (one transaction each), instructions per row"
        bare=$(per_line audit1_bare pg_prodguard)
        ours=$(per_line audit1_audit pg_prodguard)
        plpgsql=$(per_line audit1_plpgsql pg_prodguard)
        minimal=$(per_line audit1_minimal pg_prodguard)
        stmt=$(per_line audit1_stmt pg_prodguard)
        awk -v b="$bare" -v a="$ours" -v p="$plpgsql" -v m="$minimal" -v s="$stmt" 'BEGIN {
            printf "bare %d, pg_prodguard audit %d (+%d per row), supa_audit-shaped trigger %d (+%d), minimal row trigger %d (+%d), statement trigger %d (+%d)\n", b, a, a - b, p, p - b, m, m - b, s, s - b
            printf "speed ratios: audit/bare %.3f; audit = %.2f x supa_audit-shaped, %.2f x minimal, %.2f x statement trigger\n", b / a, p / a, m / a, s / a }'
        echo
        ;;
    audit_changes)
        for op in update delete; do
            echo "row audit, preloaded: 100-row $op (tables of 100,000 rows), instructions per row"
            bare=$(per_line "${op}_bare" pg_prodguard)
            ours=$(per_line "${op}_audit" pg_prodguard)
            plpgsql=$(per_line "${op}_plpgsql" pg_prodguard)
            minimal=$(per_line "${op}_minimal" pg_prodguard)
            stmt=$(per_line "${op}_stmt" pg_prodguard)
            awk -v b="$bare" -v a="$ours" -v p="$plpgsql" -v m="$minimal" -v s="$stmt" 'BEGIN {
                printf "bare %d, pg_prodguard audit %d (+%d per row), supa_audit-shaped trigger %d (+%d), minimal row trigger %d (+%d), statement trigger %d (+%d)\n", b / 100, a / 100, (a - b) / 100, p / 100, (p - b) / 100, m / 100, (m - b) / 100, s / 100, (s - b) / 100
                printf "speed ratios: audit/bare %.3f; audit = %.2f x supa_audit-shaped, %.2f x minimal, %.2f x statement trigger\n", b / a, p / a, m / a, s / a }'
            if [ "$op" = update ]; then
                both=$(per_line update_both pg_prodguard)
                awk -v b="$bare" -v a="$ours" -v s="$both" 'BEGIN {
                    printf "statement trigger keeping the old and the new row %d (+%d); audit = %.2f x it\n", s / 100, (s - b) / 100, s / a }'
            fi
        done
        echo
        ;;
    watch)
        echo "row-drop watch, preloaded, protected audited table: instructions per line of input"
        printf '%-10s %14s %14s %10s\n' kind "watch off" "watch on" "per row"
        for kind in watch_1 watch_100; do
            rows=$([ "$kind" = watch_1 ] && echo 2 || echo 200)
            off=$(per_line "$kind" pg_prodguard prodguard.row_drop_alert_percent=0)
            on=$(per_line "$kind" pg_prodguard)
            awk -v k="$kind" -v a="$off" -v b="$on" -v r="$rows" 'BEGIN { printf "%-10s %14d %14d %10.1f   (ratio off/on %.4f)\n", k, a, b, (b - a) / r, a / b }'
        done
        echo "(watch_1: DELETE of one row, then INSERT of it, 2 transactions; watch_100: 100 rows deleted and inserted back in one statement; per row = extra instructions per changed row)"
        echo
        ;;
    *) echo "unknown section $section" >&2; exit 2 ;;
    esac
done
as_root rm -rf "$work"
