#!/usr/bin/env bash
# The audit and denial history (and the approved changes) outlive DROP EXTENSION (issue 15,
# item 6): every route that drops pg_prodguard's tables keeps their rows in schema
# prodguard_history, and the next CREATE EXTENSION puts them back with their ids; the
# override that dropped the extension is among them. A refresh in place with pg_restore
# --clean (directly, or piped through psql) under an approved change keeps the database's
# own history and never moves its sequences back; a restore into a fresh database loads
# the dump's history. setval() on the extension's sequences is judged (self_defense.sql
# has the statement-level cases).
# Run by bin/test; on its own: pgrx-tests/history.sh (the extension must be installed).
source "$(dirname "$0")/../bin/common.sh"

port=$(free_port 54440)
start_cluster history "$port" "shared_preload_libraries = 'pg_prodguard'" "prodguard.environment = 'production'"
trap "${KEEP:+:} stop_cluster history" EXIT
q() { psql -X -q -t -A -d "$1" -c "$2" 2>&1 || true; }
work=$(mktemp -d)
chmod 755 "$work"

psql -X -q -d postgres -c "CREATE DATABASE app" -c "CREATE DATABASE fresh"
psql -X -q -d app <<'SQL' >/dev/null
CREATE EXTENSION pg_prodguard;
CREATE ROLE op1 LOGIN SUPERUSER IN ROLE prodguard_operator;
CREATE ROLE op2 LOGIN SUPERUSER IN ROLE prodguard_operator;
CREATE TABLE orders (id int PRIMARY KEY, item text);
SELECT prodguard.protect('orders');
INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(1, 10) g;
UPDATE orders SET item = 'changed' WHERE id <= 3;
SQL
q app "TRUNCATE orders" >/dev/null   # refused: a denial record
sleep 1

ids() { q app "SELECT string_agg(id::text, ',' ORDER BY id) FROM prodguard.audit_log"; }
before=$(ids)

# 1. DROP EXTENSION in production: refused without an override ...
check "DROP EXTENSION refused without an override" \
    "$(q app "DROP EXTENSION pg_prodguard CASCADE" | grep -c 'is blocked in production')" 1
# ... and with one, the history waits in prodguard_history, the override among it
q app "BEGIN; SET LOCAL prodguard.override = 'INC-7: reinstall'; DROP EXTENSION pg_prodguard CASCADE; COMMIT" >/dev/null
check "the history is kept in prodguard_history" \
    "$(q app "SELECT count(*) FROM prodguard_history.audit_log")" "$(( $(tr ',' '\n' <<<"$before" | wc -l) + 1 ))"
check "...with the override that dropped the extension" \
    "$(q app "SELECT action || ': ' || override_reason FROM prodguard_history.audit_log ORDER BY id DESC LIMIT 1")" \
    "DROP EXTENSION: INC-7: reinstall"
check "...and the denial records" "$(q app "SELECT count(*) > 0 FROM prodguard_history.denial_log")" t
check "nobody but its owner reads the kept history" \
    "$(q app "SELECT has_schema_privilege('public', 'prodguard_history', 'USAGE')")" f
q app "CREATE EXTENSION pg_prodguard" >/dev/null
check "CREATE EXTENSION puts every audit row back, ids unchanged" \
    "$(q app "SELECT string_agg(id::text, ',' ORDER BY id) FROM prodguard.audit_log WHERE id <= ${before##*,}")" "$before"
check "...records the re-attachment" \
    "$(q app "SELECT action FROM prodguard.audit_log ORDER BY id DESC LIMIT 1")" "CREATE EXTENSION"
check "...and drops the copies" "$(q app "SELECT count(*) FROM pg_namespace WHERE nspname = 'prodguard_history'")" 0
check "the sequence goes on after the kept ids" \
    "$(q app "SELECT last_value >= (SELECT max(id) FROM prodguard.audit_log) FROM prodguard.audit_log_id_seq")" t

# 2. DROP SCHEMA prodguard CASCADE (drops the extension too) keeps it the same way
before=$(ids)
q app "BEGIN; SET LOCAL prodguard.override = 'INC-8'; DROP SCHEMA prodguard CASCADE; COMMIT" >/dev/null
q app "CREATE EXTENSION pg_prodguard" >/dev/null
check "DROP SCHEMA prodguard CASCADE: every audit row back" \
    "$(q app "SELECT string_agg(id::text, ',' ORDER BY id) FROM prodguard.audit_log WHERE id <= ${before##*,}")" "$before"
check "...with the DROP SCHEMA override" \
    "$(q app "SELECT count(*) FROM prodguard.audit_log WHERE action = 'DROP SCHEMA' AND override_reason = 'INC-8'")" 1

# 2b. A schema prodguard_history made beforehand by another role (a rule there would eat
#     the copied rows) is not trusted: the drop is refused, the history stays
q app "CREATE ROLE dev LOGIN; GRANT CREATE ON DATABASE app TO dev" >/dev/null
q app "SET ROLE dev; CREATE SCHEMA prodguard_history" >/dev/null
check "a prodguard_history made by another role makes DROP EXTENSION fail" \
    "$(q app "BEGIN; SET LOCAL prodguard.override = 'INC-9'; DROP EXTENSION pg_prodguard CASCADE; COMMIT" | grep -c 'could not keep the history')" 1
check "...and the extension and its history are still there" \
    "$(q app "SELECT count(*) > 0 FROM prodguard.audit_log")" t
q app "BEGIN; SET LOCAL prodguard.override = 'test: clean up'; DROP SCHEMA prodguard_history; DROP OWNED BY dev; COMMIT; DROP ROLE dev" >/dev/null
check "...which goes once its maker's schema is gone" "$(q app "SELECT count(*) FROM pg_namespace WHERE nspname = 'prodguard_history'")" 0

# 3. setval() on the audit sequence: refused, never backwards
check "setval() of the audit sequence refused" \
    "$(q app "SELECT setval('prodguard.audit_log_id_seq', 1)" | grep -c 'setval() of sequence "prodguard.audit_log_id_seq" is blocked')" 1
check "setval() through pg_get_serial_sequence: put back and refused" \
    "$(q app "SELECT setval(pg_get_serial_sequence('prodguard.audit_log', 'id'), 1)" | grep -c 'put it back')" 1
check "the sequence did not move back" \
    "$(q app "SELECT last_value >= (SELECT max(id) FROM prodguard.audit_log) FROM prodguard.audit_log_id_seq")" t
check "setval() of an application sequence is untouched" \
    "$(q app "CREATE TABLE seqs (id serial); SELECT setval(pg_get_serial_sequence('seqs', 'id'), 42)")" 42

# 4. A refresh in place from a dump, under an approved change, keeps this database's own
#    history; the dump's copy of it is set aside
q app "SELECT prodguard.protect('orders')" >/dev/null
q app "INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(11, 20) g" >/dev/null
pg_dump -Fc -f "$work/app.dump" app
q app "UPDATE orders SET item = 'after the dump' WHERE id = 1" >/dev/null
change=$(psql -X -q -t -A -U op1 -d app -c "SELECT prodguard.request_change('refresh app from the nightly dump', 'postgres', '1 hour')")
q app "SET ROLE op2; SELECT prodguard.approve_change($change)" >/dev/null
before=$(ids)
PGOPTIONS="-c prodguard.override=change:$change" pg_restore --clean --if-exists -d app "$work/app.dump" >"$work/restore.log" 2>&1 || true
check "pg_restore --clean under a change ran without error" "$(grep -c 'error' "$work/restore.log")" 0
grep error "$work/restore.log" | head -5 || true
check "...every audit row of the database is still there" \
    "$(q app "SELECT string_agg(id::text, ',' ORDER BY id) FROM prodguard.audit_log WHERE id <= ${before##*,}")" "$before"
check "...no id twice" "$(q app "SELECT count(*) = count(DISTINCT id) FROM prodguard.audit_log")" t
check "...the sequence did not go back to the dump's" \
    "$(q app "SELECT last_value >= (SELECT max(id) FROM prodguard.audit_log) FROM prodguard.audit_log_id_seq")" t
check "...the approved change survived its own DROP EXTENSION" \
    "$(q app "SELECT count(*) FROM prodguard.changes WHERE id = $change")" 1
check "...the tables are the dump's" "$(q app "SELECT count(*) FILTER (WHERE item = 'after the dump') FROM orders")" 0
check "...the DROP EXTENSION is recorded under the change" \
    "$(q app "SELECT count(*) FROM prodguard.audit_log WHERE action = 'DROP EXTENSION' AND override_reason LIKE 'change:$change%'")" 1

#    the same through psql
before=$(ids)
pg_restore --clean --if-exists -f - "$work/app.dump" |
    PGOPTIONS="-c prodguard.override=change:$change" psql -X -q -d app >"$work/psql.log" 2>&1 || true
check "pg_restore | psql under a change ran without error" "$(grep -c 'ERROR' "$work/psql.log")" 0
grep ERROR "$work/psql.log" | head -5 || true
check "...every audit row still there" \
    "$(q app "SELECT string_agg(id::text, ',' ORDER BY id) FROM prodguard.audit_log WHERE id <= ${before##*,}")" "$before"
check "...no id twice" "$(q app "SELECT count(*) = count(DISTINCT id) FROM prodguard.audit_log")" t
check "...sequence not behind" \
    "$(q app "SELECT last_value >= (SELECT max(id) FROM prodguard.audit_log) FROM prodguard.audit_log_id_seq")" t

# 5. A restore into a fresh database loads the dump's history and sequence
pg_restore -d fresh "$work/app.dump" >"$work/fresh.log" 2>&1 || true
check "pg_restore into a fresh database ran without error" "$(grep -c 'error' "$work/fresh.log")" 0
grep error "$work/fresh.log" | head -5 || true
check "...with the dump's history" \
    "$(q fresh "SELECT count(*) > 0 AND max(id) <= (SELECT last_value FROM prodguard.audit_log_id_seq) FROM prodguard.audit_log")" t

[ "$failures" -eq 0 ] && rm -rf "$work"
[ "$failures" -eq 0 ] || { echo "$failures check(s) failed" >&2; exit 1; }
say "history across DROP EXTENSION: all checks passed"
