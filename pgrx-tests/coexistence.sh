#!/usr/bin/env bash
# pg_prodguard loaded together with pg_stat_statements and pgaudit (Debian's
# postgresql-15-pgaudit), in both orders in shared_preload_libraries: each of our hooks
# still fires (utility, planner, executor start/finish, shared memory, background
# workers, triggers), and both other extensions still do their work. Run by bin/test;
# on its own: pgrx-tests/coexistence.sh (the extension must be installed).
source "$(dirname "$0")/../bin/common.sh"

if [ ! -f "$("$PG_CONFIG" --pkglibdir)/pgaudit.so" ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql-15-pgaudit >/dev/null
fi

q() { psql -X -q -t -A -d app -c "$1"; }

for order in "pg_stat_statements,pgaudit,pg_prodguard" "pg_prodguard,pgaudit,pg_stat_statements"; do
    say "shared_preload_libraries = '$order'"
    start_cluster coexist "$(free_port 54360)" "shared_preload_libraries = '$order'" \
        "pgaudit.log = 'ddl, write'" "pg_stat_statements.track = all" \
        "prodguard.max_rows_changed = 1"
    dir="$(cluster_base)/coexist"
    psql -X -q -d postgres -c "CREATE DATABASE app"
    psql -X -q -d app >/dev/null <<'SQL'
CREATE EXTENSION pg_prodguard;
CREATE EXTENSION pg_stat_statements;
CREATE EXTENSION pgaudit;
CREATE TABLE orders (id int PRIMARY KEY, product text);
SELECT prodguard.protect('orders');
INSERT INTO orders VALUES (1, 'Rye bread'), (2, 'Organic still water 2L');
CREATE FUNCTION try(statement text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement;
    RETURN 'ran';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
SQL
    check "command guard (ProcessUtility hook)" "$(q "SELECT try('TRUNCATE orders')")" 42501
    check "row guard (planner and executor hooks)" "$(q "SELECT try('DELETE FROM orders')")" 21000
    check "row guard counts rows (ExecutorFinish hook; max_rows_changed = 1)" \
        "$(q "SELECT try('UPDATE orders SET product = product WHERE id > 0')")" 42501
    check "test-data guard (trigger; a built-in reserved domain)" \
        "$(q "SELECT try('INSERT INTO orders VALUES (3, ''Deliver to qa@example.com'')')")" 23514
    check "settings guard (GUC check hook)" "$(q "SELECT try('SET prodguard.environment = ''development''')")" 42501
    check "row audit (trigger): both inserts recorded" \
        "$(q "SELECT count(*) FROM prodguard.audit_log WHERE action = 'INSERT'")" 2
    out=$(psql -X -q -t -A -d app -c "BEGIN" -c "SET LOCAL prodguard.override = 'CHG-1: coexistence test'" \
        -c "UPDATE orders SET product = 'Rye bread, sliced' WHERE id = 1" -c "COMMIT" 2>&1)
    check "an override lets a statement through" "$out" ""
    for i in $(seq 1 100); do
        [ "$(q "SELECT count(*) FROM prodguard.denied_attempts")" -ge 5 ] && break
        sleep 0.1
    done
    check "denial log (shared memory, background workers): 5 refusals recorded" \
        "$(q "SELECT count(*) FROM prodguard.denied_attempts")" 5
    check "pg_stat_statements still counts statements" \
        "$(q "SELECT count(*) > 0 FROM pg_stat_statements WHERE query LIKE 'INSERT INTO orders%'")" t
    # (refused statements never complete, so pg_stat_statements, which records completed
    # statements, does not list them; the denial log does)
    check "pg_stat_statements counts the overridden UPDATE" \
        "$(q "SELECT sum(calls) FROM pg_stat_statements WHERE query LIKE 'UPDATE orders SET product%'")" 1
    log=$(as_root cat "$dir/data/log/postgresql.log")
    check "pgaudit logs DDL" "$(grep -c 'AUDIT: SESSION,[0-9]*,[0-9]*,DDL,CREATE TABLE' <<<"$log" | tr -d ' ' | sed 's/^[1-9][0-9]*$/yes/')" yes
    check "pgaudit logs writes" "$(grep -c 'AUDIT: SESSION,[0-9]*,[0-9]*,WRITE,UPDATE' <<<"$log" | sed 's/^[1-9][0-9]*$/yes/')" yes
    check "prodguard: log lines still written" "$(grep -c 'LOG:  prodguard: refused' <<<"$log" | sed 's/^[1-9][0-9]*$/yes/')" yes
    stop_cluster coexist
done
if [ "$failures" -ne 0 ]; then
    echo "$failures coexistence check(s) failed" >&2
    exit 1
fi
say "coexistence: all checks passed"
