#!/usr/bin/env bash
# Alerts (SPEC §11) against a live server with pg_prodguard preloaded: what pg_regress
# cannot show (the background writer, NOTIFY to another session, concurrent sessions, a
# restart). Run by bin/test; on its own: pgrx-tests/alerts.sh (the extension must be
# installed: bin/test sql does it).
#
# Checks, in a production database unless said otherwise:
# - a table emptied by 10 small DELETEs in 10 transactions raises exactly one row_drop
#   alert; so do 4 concurrent sessions deleting single rows, and an overridden TRUNCATE;
#   a table that grows and shrinks within the threshold raises none; a table that loses
#   40% raises none; rows deleted in a rolled-back savepoint or transaction do not count;
# - override_used, change_used, migration_history_changed, test_data_logged and
#   denial_burst, each exactly once for what raised it;
# - every alert is a row of prodguard.alerts, a NOTIFY prodguard_alert that the listener
#   example (monitoring/listen_alerts.py) prints, a "prodguard: alert" log line and a
#   counter in prodguard.metrics; alerts survive a restart;
# - a development database raises none; a staging database raises them.
source "$(dirname "$0")/../bin/common.sh"

python_tools
port=$(free_port 54390)
cluster=alerts
start_cluster "$cluster" "$port" "shared_preload_libraries = 'pg_prodguard'"
dir="$(cluster_base)/$cluster"
listener_pid=
trap '[ -n "$listener_pid" ] && kill "$listener_pid" 2>/dev/null; stop_cluster "$cluster" >/dev/null 2>&1 || true' EXIT

q() { psql -X -q -t -A -d "${DB:-app}" -c "$1"; }
alerts() { # kind [object]: how many alerts of that kind (about that object) are stored
    q "SELECT count(*) FROM prodguard.alerts WHERE kind = '$1' AND ('$2' = '' OR object = '$2')"
}
# alerts are written by the background writer: wait until it has nothing left to write
settle() {
    local i
    for i in $(seq 1 100); do
        [ "$(q "SELECT value FROM prodguard.metrics WHERE metric = 'denial_queue_depth'")" = 0 ] && break
        sleep 0.1
    done
    sleep 0.3
}
metric() { q "SELECT value FROM prodguard.metrics WHERE metric = '$1'"; }
table_of() { # name rows: a protected table with that many rows
    q "CREATE TABLE $1 (id int PRIMARY KEY, v text);
       INSERT INTO $1 SELECT g, 'row ' || g FROM generate_series(1, $2) g;
       SELECT prodguard.protect('$1')" >/dev/null
}

psql -X -q -d postgres -c "CREATE DATABASE app" -c "CREATE DATABASE dev" -c "CREATE DATABASE stage"
for db in app dev stage; do DB=$db q "CREATE EXTENSION pg_prodguard"; done
q "SET prodguard.override = 'tag the test databases';
   ALTER DATABASE dev SET prodguard.environment = 'development';
   ALTER DATABASE stage SET prodguard.environment = 'staging'" >/dev/null

say "the listener example prints what NOTIFY prodguard_alert carries"
settle
before_listener=$(q "SELECT count(*) FROM prodguard.alerts")
listen_out=$(mktemp)
"$PROJECT_DIR/target/tools/venv/bin/python" "$PROJECT_DIR/monitoring/listen_alerts.py" \
    "host=127.0.0.1 port=$port dbname=app user=postgres" >"$listen_out" 2>&1 &
listener_pid=$!
for _ in $(seq 1 100); do grep -q listening "$listen_out" && break; sleep 0.1; done
check "listener started" "$(head -1 "$listen_out")" "listening for prodguard_alert"

say "row_drop: 10 small DELETEs in 10 transactions empty a table"
table_of emptied 1000
for i in $(seq 0 9); do
    PGAPPNAME=cleanup q "DELETE FROM emptied WHERE id > $((i * 100)) AND id <= $(((i + 1) * 100))" >/dev/null
done
settle
check "exactly one row_drop alert" "$(alerts row_drop 'table "public.emptied"')" 1
check "its detail counts rows exactly" \
    "$(q "SELECT detail ~ '^table \"public.emptied\" lost 600 of its 1000 rows \\(60%\\)' FROM prodguard.alerts WHERE kind = 'row_drop'")" t
check "who and from where" \
    "$(q "SELECT database || ' ' || db_user || ' ' || application_name FROM prodguard.alerts WHERE kind = 'row_drop'")" \
    "app postgres cleanup"
check "the listener printed it" \
    "$(grep -c '\[row_drop\] app: table "public.emptied": table "public.emptied" lost' "$listen_out")" 1
check "with who and the application" "$(grep -c 'user postgres, application cleanup' "$listen_out")" 1
check "one 'prodguard: alert' log line" \
    "$(as_root grep -c 'prodguard: alert kind="row_drop" object="table \\"public.emptied\\""' "$dir/data/log/postgresql.log")" 1
check "counted in prodguard.metrics" "$(metric alerts_row_drop)" 1

say "no row_drop for a table that grows and shrinks, or loses 40%, or rolls back"
table_of churn 1000
for i in $(seq 1 10); do
    q "INSERT INTO churn SELECT g, 'new' FROM generate_series(100000 * $i, 100000 * $i + 299) g" >/dev/null
    q "DELETE FROM churn WHERE id BETWEEN 100000 * $i AND 100000 * $i + 299" >/dev/null
done
table_of shrunk 1000
for i in 0 1 2 3; do q "DELETE FROM shrunk WHERE id > $((i * 100)) AND id <= $(((i + 1) * 100))" >/dev/null; done
table_of undone 1000
q "BEGIN; DELETE FROM undone WHERE id <= 900; ROLLBACK;" >/dev/null
q "BEGIN; DELETE FROM undone WHERE id <= 100; SAVEPOINT s; DELETE FROM undone WHERE id <= 900;
   ROLLBACK TO s; COMMIT;" >/dev/null
q "DO \$\$ BEGIN DELETE FROM undone WHERE id <= 950; RAISE EXCEPTION 'undo'; EXCEPTION WHEN raise_exception THEN NULL; END \$\$" >/dev/null
q "DELETE FROM undone WHERE id <= 300" >/dev/null
settle
check "churn: none" "$(alerts row_drop 'table "public.churn"')" 0
check "40%: none" "$(alerts row_drop 'table "public.shrunk"')" 0
check "rolled back deletes (transaction, savepoint, PL/pgSQL block) do not count: none" \
    "$(alerts row_drop 'table "public.undone"')" 0
q "DELETE FROM undone WHERE id <= 501" >/dev/null
settle
check "undone: the 501st row counted crosses 50%" "$(alerts row_drop 'table "public.undone"')" 1

say "row_drop: a partitioned table is watched as one table"
q "CREATE TABLE parted (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
   CREATE TABLE parted_low PARTITION OF parted FOR VALUES FROM (1) TO (501);
   CREATE TABLE parted_high PARTITION OF parted FOR VALUES FROM (501) TO (1001);
   INSERT INTO parted SELECT g, 'row' FROM generate_series(1, 1000) g;
   SELECT prodguard.protect('parted')" >/dev/null
for i in 0 1 2 3 4 5; do q "DELETE FROM parted WHERE id % 10 = $i" >/dev/null; done
settle
check "one alert, for the partitioned table" \
    "$(q "SELECT string_agg(object, ', ') FROM prodguard.alerts WHERE kind = 'row_drop' AND object LIKE '%parted%'")" \
    'table "public.parted"'

say "row_drop: 4 concurrent sessions deleting single rows (600 of 1000)"
table_of nibbled 1000
sessions=()
for s in 0 1 2 3; do
    (for i in $(seq 1 150); do echo "DELETE FROM nibbled WHERE id = $((s * 150 + i));"; done |
        psql -X -q -h 127.0.0.1 -p "$port" -d app >/dev/null) &
    sessions+=($!)
done
wait "${sessions[@]}"
settle
check "one alert" "$(alerts row_drop 'table "public.nibbled"')" 1
check "client address recorded" \
    "$(q "SELECT host(client_addr) FROM prodguard.alerts WHERE object = 'table \"public.nibbled\"'")" 127.0.0.1

say "row_drop: 600 single-row DELETEs through postgres_fdw from another database"
table_of far 1000
psql -X -q -d postgres -c "CREATE DATABASE remote"
DB=remote q "CREATE EXTENSION postgres_fdw;
    CREATE SERVER shop FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1', port '$port', dbname 'app');
    CREATE USER MAPPING FOR postgres SERVER shop OPTIONS (user 'postgres');
    CREATE FOREIGN TABLE far (id int, v text) SERVER shop" >/dev/null
for i in $(seq 1 600); do echo "DELETE FROM far WHERE id = $i;"; done | psql -X -q -d remote >/dev/null
settle
check "one alert in the database that lost the rows" "$(alerts row_drop 'table "public.far"')" 1
check "from the postgres_fdw session" \
    "$(q "SELECT application_name FROM prodguard.alerts WHERE object = 'table \"public.far\"'")" postgres_fdw

say "row_drop and override_used: an overridden TRUNCATE"
table_of truncated 500
q "BEGIN; SET LOCAL prodguard.override = 'INC-7 reload'; TRUNCATE truncated; COMMIT;" >/dev/null
settle
check "row_drop" "$(alerts row_drop 'table "public.truncated"')" 1
check "override_used, with the reason" \
    "$(q "SELECT count(*) FROM prodguard.alerts WHERE kind = 'override_used' AND object = 'table \"public.truncated\"' AND detail LIKE '%INC-7 reload%'")" 1

say "override_used once per transaction and object"
table_of fixed 100
q "BEGIN; SET LOCAL prodguard.override = 'INC-8';
   UPDATE fixed SET v = 'a'; UPDATE fixed SET v = 'b'; COMMIT;" >/dev/null
settle
check "two overridden statements, one alert" "$(alerts override_used 'table "public.fixed"')" 1

say "change_used once per session and change"
psql -X -q -d postgres -c "CREATE ROLE ops1 LOGIN IN ROLE prodguard_operator" \
    -c "CREATE ROLE ops2 LOGIN IN ROLE prodguard_operator" -c "CREATE ROLE deployer LOGIN"
q "GRANT ALL ON fixed TO deployer" >/dev/null
id=$(psql -X -q -t -A -U ops1 -d app -c "SELECT prodguard.request_change('release 42', 'deployer')")
psql -X -q -U ops2 -d app -c "SELECT prodguard.approve_change($id)" >/dev/null
printf 'UPDATE fixed SET v = %s;\n' "'c'" "'d'" "'e'" |
    PGOPTIONS="-c prodguard.override=change:$id" psql -X -q -U deployer -d app >/dev/null
settle
check "three statements in three transactions, one alert" "$(alerts change_used "change $id")" 1

say "migration_history_changed"
q "CREATE TABLE django_migrations (id serial PRIMARY KEY, app varchar(255), name varchar(255), applied timestamptz);
   INSERT INTO django_migrations (app, name, applied) SELECT 'shop', 'm' || g, now() FROM generate_series(1, 5) g" >/dev/null
check "refused without an override: no alert" \
    "$(q "DELETE FROM django_migrations WHERE id = 5" 2>&1 | grep -c 'is blocked')" 1
q "BEGIN; SET LOCAL prodguard.override = 'INC-9 squash'; DELETE FROM django_migrations WHERE id > 3; COMMIT;" >/dev/null
settle
check "deleted on an override: one alert" "$(alerts migration_history_changed 'table "public.django_migrations"')" 1
DB=stage q "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); INSERT INTO alembic_version VALUES ('abc')" >/dev/null
DB=stage q "TRUNCATE alembic_version" >/dev/null 2>&1
settle
check "truncated in staging: one alert there" \
    "$(DB=stage alerts migration_history_changed 'table "public.alembic_version"')" 1

say "test_data_logged"
q "BEGIN; SET LOCAL prodguard.override = 'INC-10 import'; SET LOCAL prodguard.test_data_action = 'log';
   INSERT INTO fixed VALUES (1001, 'John Doe'), (1002, 'Jane Doe'); COMMIT;" >/dev/null
settle
check "two rows let in, one alert" "$(alerts test_data_logged 'table "public.fixed"')" 1
check "it names the match" \
    "$(q "SELECT detail LIKE '%test_data_action = log%John Doe%' FROM prodguard.alerts WHERE kind = 'test_data_logged'")" t

say "denial_burst: more than prodguard.denial_burst_threshold (100) refusals from one client in a minute"
PGAPPNAME=prober psql -X -q -h 127.0.0.1 -p "$port" -d app -c "DO \$\$
BEGIN
    FOR i IN 1..150 LOOP
        BEGIN
            TRUNCATE fixed;
        EXCEPTION WHEN insufficient_privilege THEN NULL;
        END;
    END LOOP;
END \$\$" >/dev/null
settle
check "one alert for 150 refusals" "$(alerts denial_burst 'client 127.0.0.1')" 1
check "naming the application" \
    "$(q "SELECT detail LIKE '101 statements of client 127.0.0.1 were refused within a minute%application \"prober\"%' FROM prodguard.alerts WHERE kind = 'denial_burst'")" t

say "development raises none; staging raises row_drop"
for db in dev stage; do
    DB=$db q "CREATE TABLE gone (id int PRIMARY KEY); INSERT INTO gone SELECT generate_series(1, 100);
              SELECT prodguard.protect('gone')" >/dev/null
    DB=$db q "DELETE FROM gone WHERE id <= 80" >/dev/null 2>&1
    DB=$db q "TRUNCATE gone" >/dev/null 2>&1
done
settle
check "development: no alert of any kind" "$(DB=dev q "SELECT count(*) FROM prodguard.alerts")" 0
check "staging: row_drop" "$(DB=stage alerts row_drop 'table "public.gone"')" 1

say "every alert was announced, and all survive a restart"
total=$(q "SELECT count(*) FROM prodguard.alerts")
check "the listener printed each alert of database app raised since it started, once" \
    "$(grep -c '^[0-9].* \[[a-z_]*\] app: ' "$listen_out")" "$((total - before_listener))"
q "NOTIFY prodguard_alert, '{\"id\": 1, \"kind\": \"row_drop\", \"database\": \"app\"}'" >/dev/null
for _ in $(seq 1 50); do grep -q "ignored a notification" "$listen_out" && break; sleep 0.1; done
check "a NOTIFY that any role can send is not taken for an alert" \
    "$(grep -c 'ignored a notification not in prodguard.alerts' "$listen_out")" 1
kill "$listener_pid" 2>/dev/null || true
listener_pid=
kinds=$(q "SELECT string_agg(DISTINCT kind, ',' ORDER BY kind) FROM prodguard.alerts")
check "every kind seen" "$kinds" "change_used,denial_burst,migration_history_changed,override_used,row_drop,test_data_logged"
restart_cluster "$cluster"
check "all $total alerts there after a restart" "$(q "SELECT count(*) FROM prodguard.alerts")" "$total"
check "append-only" "$(q "DELETE FROM prodguard.alerts WHERE true" 2>&1 | grep -c 'ERROR')" 1

[ "$failures" -eq 0 ] || { echo "$failures alert check(s) failed" >&2; exit 1; }
say "alerts: all checks passed"
