#!/usr/bin/env bash
# What a large dictionary costs a new connection (issue 19): 200,000 patterns, a table
# protected with test_data => true, and new connections whose first statement is one
# INSERT into it. Reports, against connections whose first INSERT goes to an unprotected
# table (same cluster, same run):
#   - the first connection after the dictionary change (it builds the matcher and writes
#     the shared file), once;
#   - every later connection (it maps the file): the first INSERT's extra time, and its
#     private memory (RssAnon) and file-backed memory (RssFile, the mapped image: page
#     cache shared by all backends) from /proc, medians over N connections.
#
#   benches/dictionary_connect.sh [connections] [patterns]     (defaults: 15, 200000)
source "$(dirname "$0")/lib.sh"

connections=${1:-15}
patterns=${2:-200000}
start_bench_cluster
with_preload pg_prodguard
psql -X -q -d postgres >/dev/null <<SQL
CREATE EXTENSION pg_prodguard;
CREATE TABLE t_plain (v text);
CREATE TABLE t_guarded (v text);
SELECT prodguard.protect('t_guarded', audit => false, test_data => true);
-- distinct two-word patterns made of syllables (base-12 digits of g)
SELECT prodguard.dictionary_add('bench', array_agg(p))
  FROM (SELECT s[1 + g % 12] || s[1 + g / 12 % 12] || s[1 + g / 144 % 12] || ' '
               || s[1 + g / 1728 % 12] || s[1 + g / 20736 % 12] || s[1 + g / 248832 % 12] AS p
          FROM generate_series(0, $patterns - 1) g,
               (SELECT ARRAY['ka','lo','mi','ne','su','ra','to','vi','ze','qu','ba','do'] AS s) x) y;
SQL

# one_connection TABLE: a new connection's first INSERT; prints "ms rss_anon_kB rss_file_kB"
one_connection() {
    psql -X -q -d postgres -v table="$1" <<'SQL' | awk '
        /^Time:/ { if (!t) t = $2 }
        /^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 }
        END { print t, a, f }'
\timing on
INSERT INTO :table VALUES ('Ordinary customer note, nothing to see here');
\timing off
SELECT pg_read_file('/proc/' || pg_backend_pid() || '/status') AS s \gset
\echo :s
SQL
}

read -r cold _ _ < <(one_connection t_guarded)
declare -A ms anon file
for ((i = 0; i < connections; i++)); do
    for table in t_plain t_guarded; do
        read -r t a f < <(one_connection "$table")
        ms[$table]+="$t "
        anon[$table]+="$a "
        file[$table]+="$f "
    done
done
median_of() { read -r -a v <<<"$1"; median "${v[@]}"; }
image=$(psql -X -A -t -d postgres -c \
    "SELECT sum((pg_stat_file('pg_prodguard/' || f)).size) FROM pg_ls_dir('pg_prodguard') f WHERE f LIKE 'matcher.%'")
echo "dictionary: $patterns patterns; shared image $((image / 1048576)) MiB"
echo "first connection after the change (builds and writes the image): ${cold} ms"
printf '%-10s %12s %16s %16s\n' "table" "first ms" "RssAnon KiB" "RssFile KiB"
for table in t_plain t_guarded; do
    printf '%-10s %12.2f %16.0f %16.0f\n' "$table" "$(median_of "${ms[$table]}")" \
        "$(median_of "${anon[$table]}")" "$(median_of "${file[$table]}")"
done
awk -v a="$(median_of "${ms[t_guarded]}")" -v b="$(median_of "${ms[t_plain]}")" \
    -v c="$(median_of "${anon[t_guarded]}")" -v d="$(median_of "${anon[t_plain]}")" \
    'BEGIN { printf "a new connection'"'"'s first guarded INSERT: +%.2f ms, +%.1f MiB private memory\n", a - b, (c - d) / 1024 }'
