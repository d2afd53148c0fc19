#!/usr/bin/env bash
# The monitoring stack of README "Monitoring", real and tested, with Debian's packages:
# - prometheus (promtool): monitoring/prodguard.rules.yml passes `promtool check rules`,
#   and `promtool test rules` runs its unit tests (monitoring/prodguard.rules.test.yml);
# - prometheus-postgres-exporter with monitoring/postgres_exporter.yml scrapes a live
#   production database as a role that is only in pg_monitor: the metric names and the
#   values after one refusal, one override and one row drop are checked.
# Run by bin/test; on its own: pgrx-tests/monitoring.sh (the extension must be installed).
source "$(dirname "$0")/../bin/common.sh"

apt_install prometheus prometheus-postgres-exporter curl
mon="$PROJECT_DIR/monitoring"

say "promtool: the alerting rules and their unit tests"
check "promtool check rules" \
    "$(promtool check rules "$mon/prodguard.rules.yml" 2>&1 | grep -c 'SUCCESS: 8 rules found')" 1
check "promtool test rules" "$( (cd "$mon" && promtool test rules prodguard.rules.test.yml 2>&1) | grep -c SUCCESS)" 1

port=$(free_port 54395)
cluster=monitoring
start_cluster "$cluster" "$port" "shared_preload_libraries = 'pg_prodguard'"
exporter_pid=
trap '[ -n "$exporter_pid" ] && kill "$exporter_pid" 2>/dev/null; stop_cluster "$cluster" >/dev/null 2>&1 || true' EXIT
q() { psql -X -q -t -A -d app -c "$1"; }
psql -X -q -d postgres -c "CREATE DATABASE app" -c "CREATE ROLE exporter LOGIN IN ROLE pg_monitor"
q "CREATE EXTENSION pg_prodguard;
   CREATE TABLE orders (id int PRIMARY KEY, product text);
   INSERT INTO orders SELECT g, 'Rye bread' FROM generate_series(1, 100) g;
   SELECT prodguard.protect('orders')" >/dev/null

say "prometheus-postgres-exporter scrapes prodguard.metrics"
eport=$(free_port 19187)
DATA_SOURCE_NAME="postgresql://exporter@127.0.0.1:$port/app?sslmode=disable" \
    prometheus-postgres-exporter --web.listen-address="127.0.0.1:$eport" \
    --extend.query-path="$mon/postgres_exporter.yml" --disable-default-metrics \
    --disable-settings-metrics >"$(cluster_base)/$cluster/exporter.log" 2>&1 &
exporter_pid=$!
scrape() { curl -s "http://127.0.0.1:$eport/metrics"; }
for _ in $(seq 1 100); do scrape | grep -q '^prodguard_' && break; sleep 0.2; done
value() { # metric line prefix: its value
    scrape | grep -F "$1" | grep -v '^#' | head -1 | awk '{ print $NF }'
}
check "every pg_prodguard alert kind is a series" \
    "$(scrape | grep -c '^prodguard_alerts_total{kind="\(row_drop\|override_used\|change_used\|migration_history_changed\|test_data_logged\|denial_burst\)"')" 6
check "every guard is a series" "$(scrape | grep -c '^prodguard_denials_total{guard=')" 5
check "no refusals yet" "$(value 'prodguard_denials_total{guard="command"')" 0
check "no scrape errors" "$(value 'pg_exporter_last_scrape_error')" 0

q "TRUNCATE orders" >/dev/null 2>&1 || true
q "BEGIN; SET LOCAL prodguard.override = 'INC-11'; UPDATE orders SET product = 'Spelt bread'; COMMIT" >/dev/null
q "DELETE FROM orders WHERE id <= 70" >/dev/null
sleep 1
check "prodguard_denials_total{guard=\"command\"}" "$(value 'prodguard_denials_total{guard="command"')" 1
check "prodguard_overrides_total" "$(value 'prodguard_overrides_total')" 1
check "prodguard_alerts_total{kind=\"override_used\"}" "$(value 'prodguard_alerts_total{kind="override_used"')" 1
check "prodguard_alerts_total{kind=\"row_drop\"}" "$(value 'prodguard_alerts_total{kind="row_drop"')" 1
check "prodguard_audit_rows_total: one per changed row, at least" \
    "$([ "$(value 'prodguard_audit_rows_total')" -ge 170 ] && echo yes)" yes
check "prodguard_metric_value{metric=\"denial_queue_size\"}" "$(value 'prodguard_metric_value{metric="denial_queue_size"')" 1024
check "HELP text from the query file" \
    "$(scrape | grep -c '^# HELP prodguard_alerts_total pg_prodguard alerts raised since the server started')" 1
check "still no scrape errors" "$(value 'pg_exporter_last_scrape_error')" 0

[ "$failures" -eq 0 ] || { echo "$failures monitoring check(s) failed" >&2; exit 1; }
say "monitoring: all checks passed"
