#!/usr/bin/env bash
# Parity with PostgreSQL's own regression suite: loading pg_prodguard must not change what
# PostgreSQL does. Runs PostgreSQL 15's src/test/regress (installcheck against a running
# server, parallel_schedule: about 217 tests) three times, each on a fresh throwaway
# cluster of the same locale and encoding (see start_cluster in bin/common.sh):
#   plain    no pg_prodguard
#   dev      shared_preload_libraries = 'pg_prodguard', prodguard.environment = 'development'
#   staging  shared_preload_libraries = 'pg_prodguard', prodguard.environment = 'staging'
# and compares the result files (results/*.out) of the runs file by file. It compares the
# runs with each other, never with PostgreSQL's expected/ files: a test that fails the same
# way in every run (the source may be an older 15.x than the server) is fine.
#   plain vs dev      must be byte-identical (development is silent).
#   plain vs staging  may differ only by lines that pg_prodguard added: its staging WARNINGs
#                     and their DETAIL/HINT lines. The staging file is filtered, then must
#                     be byte-identical to the plain one. Filtering rule: a line
#                     "WARNING:  <message>" (with "<SQLSTATE>: " after it under VERBOSITY
#                     verbose) is pg_prodguard's when the DETAIL line right after it ends
#                     with "In staging, prodguard warns and lets the statement run." (the
#                     sentence guards::policy appends) or, when no DETAIL follows (VERBOSITY
#                     terse), when the message is one of pg_prodguard's staging wordings
#                     ("... would be blocked in production", "... requires a WHERE clause",
#                     "dropping ... through a dependency is blocked in staging database ...",
#                     'new row for relation "..." contains test data'). Such a WARNING line is
#                     dropped together with the DETAIL, HINT and LOCATION lines right after
#                     it, nothing else. Only the staging file is filtered, so a dropped line
#                     that plain also printed still shows up as a difference.
# Only the tests' output files are compared, not the data files some tests write with
# COPY TO or lo_export. Prints "parity: N files identical, M differ" (identical: in every
# comparison), the first $PARITY_DIFF_LINES lines of the diffs (all of them in
# target/parity/parity.diffs), the wall time of each run (about 25 s each on 2 cores, about
# 1.5 minutes in all with the cache), and exits non-zero on any difference, and also when a
# server with pg_prodguard logged a crash (terminated by signal, PANIC) that plain did not.
#
# Non-deterministic tests: none to exclude so far. PARITY_SELFCHECK=1 runs the plain suite
# twice and compares plain with plain; that was identical for all 217 files in each of 7
# runs on 2 cores (PostgreSQL 15.18's suite, server 15.20). See PARITY_EXCLUDE below.
#
# The dev and staging runs load a copy of pg_prodguard.so taken when the script starts (through
# dynamic_library_path), so that a build installed meanwhile cannot change the library in
# between runs.
#
# The first run downloads the PostgreSQL 15 source package from Debian (adding a deb-src
# entry under /etc/apt/sources.list.d/ when there is none), preferring the installed minor
# version and falling back to the newest one the mirror serves. When that differs from the
# installed server, it also takes psql of the source's version (postgresql-client-15=<v>,
# unpacked, not installed): psql's handling of a failing COPY FROM STDIN changed in 15.19.
# It builds the suite's C modules (regress.so, and autoinc.so and refint.so of contrib/spi)
# against the installed server headers. All cached in $PARITY_CACHE for the next runs
# (PARITY_REFRESH=1 downloads again). pg_prodguard must be installed; when it is not, this
# builds and installs it (bin/common.sh install_extension).
#
#   pgrx-tests/parity.sh                          the whole parallel_schedule (three runs)
#   PARITY_SCHEDULE=path pgrx-tests/parity.sh     another schedule ("test: name ..." lines;
#                                                 names from src/test/regress/sql; a run
#                                                 needs test_setup first, and most tests
#                                                 need create_index etc. as in the schedule)
#   PARITY_TESTS="test_setup boolean" ...         or just these tests, one after the other
#   PARITY_SELFCHECK=1 ...                        also run plain twice and compare those
#   PARITY_DIFF_LINES=200                         how many lines of diff to print
#   PARITY_LIBDIR=dir ...                         test dir/pg_prodguard.so (e.g. an older or
#                                                 a not yet installed build) instead of the
#                                                 installed one
# Works as root (CI) and as a user with sudo, without standard input.
# shellcheck source=../bin/common.sh
source "$(dirname "$0")/../bin/common.sh"

PG_MAJOR=15
PARITY_DIFF_LINES=${PARITY_DIFF_LINES:-200}
target_dir=$(cd "$(cluster_base)/.." && pwd)
PARITY_CACHE=${PARITY_CACHE:-$target_dir/parity-src}
work="$target_dir/parity"
# the same output directory for every run: some outputs name files in it
out="$work/out"

# Tests left out of the comparison (they still run, so later tests see the same database).
# Each needs a reason; keep the list empty while plain vs plain is identical.
PARITY_EXCLUDE=()

# Marks of pg_prodguard's staging warnings (see guards/policy.rs, guards/row.rs,
# guards/command/mod.rs, guards/test_data/mod.rs).
STAGING_DETAIL_END='In staging, prodguard warns and lets the statement run.'
STAGING_MESSAGES='would be blocked in production$| requires a WHERE clause$|^dropping .* through a dependency is blocked in staging database ".*"$|^new row for relation ".*" contains test data$'

# --- prerequisites --------------------------------------------------------------------------

apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing Debian packages: ${missing[*]}"
        as_root apt-get update -q
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" </dev/null
    fi
}

# postgresql-15 and its headers, a C compiler, and the tools to fetch and unpack the source
apt_install postgresql-15 postgresql-server-dev-15 build-essential bzip2 xz-utils sudo
if [ ! -f "$("$PG_CONFIG" --pkglibdir)/pg_prodguard.so" ]; then
    install_prerequisites
    install_extension
fi

# --- the regression suite and its C modules, cached --------------------------------------

server_version=$(dpkg-query -W -f='${Version}' postgresql-$PG_MAJOR)  # e.g. 15.20-0+deb12u1

# Versions of the source package the mirror lists, the installed one first.
source_versions() {
    local listed
    listed=$(apt-cache showsrc postgresql-$PG_MAJOR 2>/dev/null || true)
    if ! grep -q "^Version: $PG_MAJOR\." <<<"$listed"; then
        say "adding deb-src entries for Debian bookworm" >&2
        as_root tee /etc/apt/sources.list.d/pg_prodguard-parity-src.sources >/dev/null <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        as_root apt-get update -q >&2
    fi
    {
        echo "$server_version"
        apt-cache showsrc postgresql-$PG_MAJOR 2>/dev/null | awk '/^Version:/ { print $2 }' | sort -V -r
    } | awk '!seen[$0]++'
}

# Downloads, unpacks and builds into $PARITY_CACHE/<upstream version>; sets $suite to it.
prepare_suite() {
    local v upstream dir tmp got=""
    tmp=$(mktemp -d)
    for v in $(source_versions); do
        say "downloading the source of postgresql-$PG_MAJOR $v"
        if (cd "$tmp" && apt-get source --download-only -q "postgresql-$PG_MAJOR=$v" </dev/null >download.log 2>&1); then
            got=$v
            break
        fi
        tail -n 3 "$tmp/download.log" >&2
        rm -f "$tmp"/*
    done
    if [ -z "$got" ]; then
        echo "parity: could not download any source of postgresql-$PG_MAJOR" >&2
        return 1
    fi
    upstream=${got%%-*}
    dir="$PARITY_CACHE/$upstream"
    rm -rf "$dir"
    mkdir -p "$dir/lib"
    tar -xf "$tmp"/postgresql-"$PG_MAJOR"_"$upstream".orig.tar.* -C "$tmp" \
        "postgresql-$upstream/src/test/regress" "postgresql-$upstream/contrib/spi"
    cp -r "$tmp/postgresql-$upstream/src/test/regress" "$dir/regress"
    # the suite's C modules, built with pgxs against the installed server
    cp "$dir/regress/regress.c" "$tmp/postgresql-$upstream/contrib/spi/"{autoinc.c,refint.c} "$dir/lib/"
    cat >"$dir/lib/Makefile" <<EOF
MODULES = regress autoinc refint
# as contrib/spi/Makefile: the suite expects refint's NOTICEs
PG_CPPFLAGS = -DREFINT_VERBOSE
PG_CONFIG = $PG_CONFIG
PGXS := \$(shell \$(PG_CONFIG) --pgxs)
include \$(PGXS)
EOF
    say "building regress.so, autoinc.so, refint.so"
    make -C "$dir/lib" with_llvm=no >"$dir/lib/build.log" 2>&1 || { cat "$dir/lib/build.log"; return 1; }
    # psql of the suite's version when the installed one is another
    if [ "$upstream" != "${server_version%%-*}" ]; then
        say "downloading psql $got (the suite's version; the server is $server_version)"
        if (cd "$tmp" && apt-get download -q "postgresql-client-$PG_MAJOR=$got" </dev/null >client.log 2>&1); then
            dpkg-deb -x "$tmp"/postgresql-client-"$PG_MAJOR"_*.deb "$dir/client"
        else
            tail -n 3 "$tmp/client.log" >&2
            echo "parity: no psql $got; using the installed psql (a failing COPY FROM STDIN may read on differently)" >&2
        fi
    fi
    echo "$server_version" >"$dir/lib/server-version"
    echo "$got" >"$dir/source-version"
    rm -rf "$tmp"
    suite=$dir
}

suite=""
if [ "${PARITY_REFRESH:-0}" != 1 ]; then
    # the newest complete cache
    for d in $(ls -d "$PARITY_CACHE"/"$PG_MAJOR".*/ 2>/dev/null | sort -V -r); do
        if [ -f "$d/source-version" ]; then
            suite=${d%/}
            break
        fi
    done
fi
[ -n "$suite" ] || prepare_suite
# the server (postgres user) reads data/ and the modules
chmod -R a+rX "$PARITY_CACHE"
# rebuild the modules when the server was upgraded since
if [ "$(cat "$suite/lib/server-version" 2>/dev/null)" != "$server_version" ]; then
    make -C "$suite/lib" clean >/dev/null 2>&1 || true
    make -C "$suite/lib" with_llvm=no >"$suite/lib/build.log" 2>&1 || { cat "$suite/lib/build.log"; exit 1; }
    echo "$server_version" >"$suite/lib/server-version"
    chmod -R a+rX "$suite/lib"
fi
bindir=$PG_BIN
[ -x "$suite/client/usr/lib/postgresql/$PG_MAJOR/bin/psql" ] && bindir="$suite/client/usr/lib/postgresql/$PG_MAJOR/bin"
say "suite: PostgreSQL $(cat "$suite/source-version") from $suite; server $server_version; psql $("$bindir/psql" --version | awk '{print $3}')"

# what to run
schedule_args=()
if [ -n "${PARITY_TESTS:-}" ]; then
    read -r -a schedule_args <<<"$PARITY_TESTS"
elif [ -n "${PARITY_SCHEDULE:-}" ]; then
    PARITY_SCHEDULE=$(cd "$(dirname "$PARITY_SCHEDULE")" && pwd)/$(basename "$PARITY_SCHEDULE")
    schedule_args=(--schedule="$PARITY_SCHEDULE")
else
    schedule_args=(--schedule="$suite/regress/parallel_schedule")
fi

# --- the runs ---------------------------------------------------------------------------------

as_root rm -rf "$work"
mkdir -p "$work/results"
chmod 755 "$work"
declare -A wall=() crashes=()

# run_suite NAME [postgresql.conf lines...]: one run on a fresh cluster parity_NAME; its
# result files end up in $work/results/NAME.
run_suite() {
    local name=$1 cluster="parity_${1%%[0-9]*}" port start status=0
    shift
    port=$(free_port 54400)
    start_cluster "$cluster" "$port" "$@"
    as_root rm -rf "$out"
    mkdir -p "$out"
    as_root chown postgres: "$out"
    say "run $name: pg_regress on cluster $cluster (port $port)"
    start=$(date +%s)
    # as postgres: the server writes files (COPY TO, lo_export) into $out/results
    (cd "$out" && as_postgres "$PG_REGRESS" --bindir="$bindir" --dlpath="$suite/lib" \
        --inputdir="$suite/regress" --outputdir="$out" --host="$PGHOST" --port="$port" \
        --user=postgres --max-concurrent-tests=20 "${schedule_args[@]}" \
        >"$work/$name.log" 2>&1) || status=$?
    wall[$name]=$(($(date +%s) - start))
    stop_cluster "$cluster"
    as_root cp "$(cluster_base)/$cluster/data/log/postgresql.log" "$work/$name.server.log" 2>/dev/null || true
    as_root mv "$out/results" "$work/results/$name"
    for f in regression.out regression.diffs; do
        [ -f "$out/$f" ] && as_root mv "$out/$f" "$work/$name.$f"
    done
    as_root chown -R "$(id -u):$(id -g)" "$work"
    if [ ! -d "$work/results/$name" ] || [ -z "$(ls "$work/results/$name"/*.out 2>/dev/null)" ]; then
        cat "$work/$name.log" >&2
        echo "parity: run $name produced no result files" >&2
        exit 1
    fi
    local summary
    summary=$(grep -E 'tests (passed|failed)|All [0-9]+ tests' "$work/$name.log" | sed -E 's/^[ =]*//; s/[ =]*$//' | head -1 || true)
    crashes[$name]=$(grep -c -E 'was terminated by signal|PANIC:' "$work/$name.server.log" 2>/dev/null || true)
    crashes[$name]=${crashes[$name]:-0}
    echo "run $name: ${wall[$name]} s wall, $(ls "$work/results/$name"/*.out | wc -l) result files, pg_regress: ${summary:-exit $status} (vs expected/), ${crashes[$name]} crash lines in the server log"
}

# The dev and staging runs load one snapshot of pg_prodguard.so, taken now, through
# dynamic_library_path: a build installed while the suite runs (cargo pgrx install) cannot
# give the two runs different builds. Otherwise the same as loading the installed library
# (nothing here runs CREATE EXTENSION, and the extension names its library only as
# "pg_prodguard", which dynamic_library_path resolves, also for its background workers).
lib_src="$("$PG_CONFIG" --pkglibdir)/pg_prodguard.so"
if [ -n "${PARITY_LIBDIR:-}" ]; then
    lib_src="$(cd "$PARITY_LIBDIR" && pwd)/pg_prodguard.so"
fi
[ -f "$lib_src" ] || { echo "parity: no $lib_src" >&2; exit 1; }
mkdir -p "$work/lib"
cp "$lib_src" "$work/lib/pg_prodguard.so"
chmod -R a+rX "$work/lib"
say "pg_prodguard: $lib_src ($(date -u -r "$lib_src" '+%F %T UTC'), sha256 $(sha256sum "$work/lib/pg_prodguard.so" | cut -c1-16))"
preload=("shared_preload_libraries = 'pg_prodguard'" "dynamic_library_path = '$work/lib:\$libdir'")
run_suite plain
[ "${PARITY_SELFCHECK:-0}" = 1 ] && run_suite plain2
run_suite dev "${preload[@]}" "prodguard.environment = 'development'"
run_suite staging "${preload[@]}" "prodguard.environment = 'staging'"

# --- comparison -------------------------------------------------------------------------------

# Drops pg_prodguard's staging WARNINGs and the DETAIL, HINT and LOCATION lines right after
# them (the rule in the header).
filter_staging() {
    awk -v detail_end="$STAGING_DETAIL_END" -v messages="$STAGING_MESSAGES" '
        function ours(i,   msg) {
            if (lines[i] !~ /^WARNING:  /) return 0
            if (index(lines[i + 1], "DETAIL:  ") == 1)
                return substr(lines[i + 1], length(lines[i + 1]) - length(detail_end) + 1) == detail_end
            msg = substr(lines[i], 11)
            sub(/^[0-9A-Z]{5}: /, "", msg)
            return msg ~ messages
        }
        { lines[NR] = $0 }
        END {
            for (i = 1; i <= NR; i++) {
                if (ours(i)) {
                    while (i + 1 <= NR && lines[i + 1] ~ /^(DETAIL|HINT|LOCATION):  /) i++
                    continue
                }
                print lines[i]
            }
        }' "$1"
}

excluded() {
    local t
    for t in "${PARITY_EXCLUDE[@]}"; do [ "$1" = "$t" ] && return 0; done
    return 1
}

diffs="$work/parity.diffs"
: >"$diffs"
declare -A bad=()

# compare A B [filter]: plain run A against run B, file by file
compare() {
    local a=$1 b=$2 filter=${3:-} same=0 differ=0 f name
    for f in $( (cd "$work/results/$a" && ls -- *.out; cd "$work/results/$b" && ls -- *.out) | sort -u); do
        name=${f%.out}
        if excluded "$name"; then continue; fi
        local fa="$work/results/$a/$f" fb="$work/results/$b/$f"
        if [ -n "$filter" ] && [ -f "$fb" ]; then
            $filter "$fb" >"$work/results/$b.filtered.$f"
            fb="$work/results/$b.filtered.$f"
        fi
        if [ -f "$fa" ] && [ -f "$fb" ] && cmp -s "$fa" "$fb"; then
            same=$((same + 1))
        else
            differ=$((differ + 1))
            bad[$name]=1
            {
                echo "### $name: $a vs $b${filter:+ (filtered)}"
                diff -u --label "$a/$f" --label "$b/$f" "$fa" "$fb" 2>&1 || true
            } >>"$diffs"
        fi
        [ -n "$filter" ] && rm -f "$work/results/$b.filtered.$f"
    done
    echo "parity ($a vs $b${filter:+, pg_prodguard staging warnings filtered}): $same files identical, $differ differ"
    return 0
}

say "comparing results"
[ ${#PARITY_EXCLUDE[@]} -eq 0 ] || echo "excluded from the comparison: ${PARITY_EXCLUDE[*]}"
[ "${PARITY_SELFCHECK:-0}" = 1 ] && compare plain plain2
compare plain dev
compare plain staging filter_staging
echo "wall time: $(for r in plain plain2 dev staging; do [ -n "${wall[$r]:-}" ] && printf '%s %ss, ' "$r" "${wall[$r]}"; done)total ${SECONDS}s"
n_bad=${#bad[@]}
n_all=0
for name in $(cd "$work/results" && ls -- */*.out | sed 's|^[^/]*/||; s|\.out$||' | sort -u); do
    excluded "$name" || n_all=$((n_all + 1))
done
echo "parity: $((n_all - n_bad)) files identical, $n_bad differ"
status=0
for r in dev staging; do
    if [ "${crashes[$r]}" -gt "${crashes[plain]}" ]; then
        echo "parity: the $r server logged ${crashes[$r]} crash lines (plain: ${crashes[plain]}): $work/$r.server.log"
        status=1
    fi
done
if [ "$n_bad" -ne 0 ]; then
    echo "differing: $(printf '%s\n' "${!bad[@]}" | sort | tr '\n' ' ')"
    echo "--- first $PARITY_DIFF_LINES lines of $diffs ($(wc -l <"$diffs") lines) ---"
    head -n "$PARITY_DIFF_LINES" "$diffs"
    status=1
fi
exit "$status"
