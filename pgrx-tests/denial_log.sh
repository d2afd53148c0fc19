#!/usr/bin/env bash
# The denial log under load and across restarts, against a live server with pg_prodguard
# preloaded (what pg_regress cannot do: concurrent sessions, paused and killed workers,
# restarts). Run by bin/test; on its own:
#
#   pgrx-tests/denial_log.sh        (the extension must be installed: bin/test sql does it)
#
# Checks: 200 refusals from 4 concurrent TCP sessions all recorded once, with who, which
# application and which client; records still queued at a clean shutdown are there after
# the restart; a full queue drops (and counts) records without blocking the refusing
# session; the launcher and the writers come back after being terminated, without losing
# or duplicating records; and measures what an immediate shutdown loses.
source "$(dirname "$0")/../bin/common.sh"

port=$(free_port 54350)
cluster=denial
# (no denial_burst alerts here: they share the queue, and the full-queue checks count its
# slots exactly; alerts.sh tests them)
start_cluster "$cluster" "$port" "shared_preload_libraries = 'pg_prodguard'" \
    "prodguard.denial_burst_threshold = 0"
dir="$(cluster_base)/$cluster"
trap 'stop_cluster "$cluster" >/dev/null 2>&1 || true' EXIT

q() { psql -X -q -t -A -d app -c "$1"; }
recorded() { q "SELECT count(*) FROM prodguard.denied_attempts WHERE application_name = '$1'"; }
wait_recorded() { # application count
    local i
    for i in $(seq 1 300); do
        [ "$(recorded "$1")" -ge "$2" ] && return 0
        sleep 0.1
    done
}
# the launcher has no database connection, so it is not in pg_stat_activity: find both
# kinds among the postmaster's children by process title
worker_pids() {
    local postmaster
    postmaster=$(as_root head -1 "$dir/data/postmaster.pid")
    { pgrep -P "$postmaster" -f "prodguard denial $1" || true; } | tr "\n" " " | sed "s/ $//"
}
wait_no_writer() {
    local i
    for i in $(seq 1 100); do
        [ -z "$(worker_pids writer)" ] && return 0
        sleep 0.1
    done
}
metric() { q "SELECT value FROM prodguard.metrics WHERE metric = '$1'"; }
refuse() { # application count: refusals in one session, each in its own statement
    local i
    for i in $(seq 1 "$2"); do echo "TRUNCATE orders;"; done |
        PGAPPNAME="$1" psql -X -q -h 127.0.0.1 -p "$port" -d app >/dev/null 2>&1
}
start_again() {
    as_postgres env -u RUST_BACKTRACE "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/startup.log" -w -t 60 start >/dev/null
}
wait_stopped() {
    local i
    for i in $(seq 1 600); do
        [ -f "$dir/data/postmaster.pid" ] || return 0
        sleep 0.1
    done
}

psql -X -q -d postgres -c "CREATE DATABASE app"
q "CREATE EXTENSION pg_prodguard"
q "CREATE TABLE orders (id int PRIMARY KEY, product text)"
q "INSERT INTO orders VALUES (1, 'Rye bread')"

say "200 refusals from 4 concurrent sessions"
start=$(date +%s%N)
for s in 1 2 3 4; do refuse "storm-$s" 50 & done
wait
for s in 1 2 3 4; do wait_recorded "storm-$s" 50; done
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
check "all 200 recorded (in ${elapsed_ms} ms from the first refusal)" \
    "$(q "SELECT count(*) FROM prodguard.denied_attempts WHERE application_name LIKE 'storm-%'")" 200
check "50 per session, one backend_pid each" \
    "$(q "SELECT string_agg(n::text, ',') FROM (SELECT count(*) AS n FROM prodguard.denied_attempts
          WHERE application_name LIKE 'storm-%' GROUP BY application_name, backend_pid) x")" "50,50,50,50"
check "who, from where, what" \
    "$(q "SELECT DISTINCT db_user || ' ' || \"session_user\" || ' ' || host(client_addr) || ' ' || guard || ' ' || command || ' ' || object
          FROM prodguard.denied_attempts WHERE application_name LIKE 'storm-%'")" \
    'postgres postgres 127.0.0.1 command TRUNCATE table "public.orders"'
one_start=$(date +%s%N)
refuse latency 1
wait_recorded latency 1
echo "   one refusal visible in denied_attempts after $((($(date +%s%N) - one_start) / 1000000)) ms (psql start included)"

say "records still queued at a clean shutdown survive the restart"
wait_no_writer
launcher=$(worker_pids launcher)
kill -STOP "$launcher"
refuse at-shutdown 5
check "queued, not yet written (launcher paused)" "$(recorded at-shutdown)" 0
as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -W stop >/dev/null
sleep 0.5
kill -CONT "$launcher"
wait_stopped
check "saved to the queue file at shutdown" "$(as_root test -f "$dir/data/pg_prodguard_denials.queue" && echo yes)" yes
# a real queue file, for the damaged-file tests at the end
saved_queue=$(mktemp)
as_root cat "$dir/data/pg_prodguard_denials.queue" >"$saved_queue"
start_again
wait_recorded at-shutdown 5
check "all 5 written after the restart" "$(recorded at-shutdown)" 5
check "everything from before the restart still there" \
    "$(q "SELECT count(*) FROM prodguard.denied_attempts WHERE application_name LIKE 'storm-%'")" 200

say "a full queue drops records, counted, without blocking the session"
wait_no_writer
size=$(metric denial_queue_size)
dropped_before=$(metric denials_dropped)
launcher=$(worker_pids launcher)
kill -STOP "$launcher"
n=$((size + 76))
start=$(date +%s%N)
PGAPPNAME=queue-full psql -X -q -h 127.0.0.1 -p "$port" -d app -c "DO \$\$
BEGIN
    FOR i IN 1..$n LOOP
        BEGIN
            TRUNCATE orders;
        EXCEPTION WHEN insufficient_privilege THEN NULL;
        END;
    END LOOP;
END \$\$"
ms=$((($(date +%s%N) - start) / 1000000))
check "$n refusals with a full queue finished (in $ms ms), 76 dropped" \
    "$(($(metric denials_dropped) - dropped_before))" 76
kill -CONT "$launcher"
wait_recorded queue-full "$size"
check "the $size queued ones written" "$(recorded queue-full)" "$size"

say "the launcher and the writers come back after being terminated"
launcher=$(worker_pids launcher)
# the launcher has no database connection: pg_terminate_backend() does not reach it
as_root kill -TERM "$launcher"
for i in $(seq 1 50); do
    new=$(worker_pids launcher)
    [ -n "$new" ] && [ "$new" != "$launcher" ] && break
    sleep 0.1
done
check "a new launcher runs" "$([ -n "$new" ] && [ "$new" != "$launcher" ] && echo yes)" yes
refuse after-kill 1
wait_recorded after-kill 1
check "a refusal after the restart recorded" "$(recorded after-kill)" 1
# writers terminated again and again while 4 sessions refuse: nothing lost, nothing twice
for s in 1 2 3 4; do refuse "writer-kill" 50 & done
terminated=0
for i in $(seq 1 20); do
    for pid in $(worker_pids writer); do
        [ "$(q "SELECT pg_terminate_backend($pid)")" = t ] && terminated=$((terminated + 1))
    done
    sleep 0.05
done
echo "   writers terminated meanwhile: $terminated"
wait
wait_recorded writer-kill 200
sleep 1
check "200 refusals recorded exactly once while writers were terminated" "$(recorded writer-kill)" 200

say "what an immediate shutdown and a crash can lose"
# An immediate shutdown leaves shared memory intact: the postmaster still saves the queue.
wait_no_writer
launcher=$(worker_pids launcher)
kill -STOP "$launcher"
refuse immediate-paused 10
as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -W stop >/dev/null
sleep 0.5
kill -CONT "$launcher" 2>/dev/null || true
wait_stopped
start_again
wait_recorded immediate-paused 10
check "queued at an immediate shutdown: all 10 kept" "$(recorded immediate-paused)" 10
for s in 1 2 3 4; do refuse "immediate-live" 50 & done
wait
as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null
start_again
wait_recorded immediate-live 200
check "200 refusals, immediate shutdown right after the last: all kept" "$(recorded immediate-live)" 200
# A crash (here the postmaster killed with SIGKILL) loses what was queued and not written.
wait_no_writer
launcher=$(worker_pids launcher)
kill -STOP "$launcher"
refuse crash-paused 10
postmaster=$(as_root head -1 "$dir/data/postmaster.pid")
as_root kill -KILL "$postmaster"
kill -CONT "$launcher" 2>/dev/null || true
# the children leave when they notice the postmaster is gone
for i in $(seq 1 30); do start_again 2>/dev/null && break; sleep 1; done
sleep 2
lost=$((10 - $(recorded crash-paused)))
echo "   queued but unwritten when the postmaster was killed: $lost of 10 lost"
check "a crash loses at most the unwritten queue, never the table" \
    "$(q "SELECT count(*) FROM prodguard.denied_attempts WHERE application_name IN ('writer-kill', 'immediate-live')")" 400
for s in 1 2 3 4; do refuse "crash-live" 50 & done
wait
postmaster=$(as_root head -1 "$dir/data/postmaster.pid")
as_root kill -KILL "$postmaster"
for i in $(seq 1 30); do start_again 2>/dev/null && break; sleep 1; done
sleep 2
echo "   200 refusals, postmaster killed right after the last: $((200 - $(recorded crash-live))) lost"

say "a damaged or truncated queue file never stops the server from starting"
queue_file="$dir/data/pg_prodguard_denials.queue"
full=$(stat -c %s "$saved_queue")
variants=0
for cut in 0 8 16 17 20 23 24 100 $((full - 1)); do
    stop_cluster "$cluster"
    head -c "$cut" "$saved_queue" | as_postgres tee "$queue_file" >/dev/null
    start_again
    variants=$((variants + 1))
    [ "$(q "SELECT 1")" = 1 ] || echo "FAILED: server down after a queue file cut at $cut bytes"
done
# the whole file with its records overwritten by random bytes (the header kept)
for seed in 1 2 3; do
    stop_cluster "$cluster"
    { head -c 24 "$saved_queue"; head -c $((full - 24)) /dev/urandom; } | as_postgres tee "$queue_file" >/dev/null
    start_again
    variants=$((variants + 1))
    [ "$(q "SELECT 1")" = 1 ] || echo "FAILED: server down after random records ($seed)"
done
check "the server started with each of $variants damaged queue files, and never panicked" \
    "$(as_postgres cat "$dir/data/log/postgresql.log" | grep -c 'PANIC\|was terminated by signal')" 0
rm -f "$saved_queue"

stop_cluster "$cluster"
trap - EXIT
if [ "$failures" -ne 0 ]; then
    echo "$failures denial-log check(s) failed; server log: $dir/data/log/postgresql.log" >&2
    exit 1
fi
say "denial log: all checks passed"
