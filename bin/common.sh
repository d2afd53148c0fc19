# Shared by bin/demo, bin/test and benches/: set-up of a fresh Debian 12 machine and
# throwaway PostgreSQL 15 clusters run as the unprivileged `postgres` user.
#
# Works as root (CI) and as a user with sudo. Installs only what is missing:
#   apt: postgresql-15 postgresql-server-dev-15 libclang-dev clang sudo
#   cargo-pgrx 0.18.1 (about 15 minutes to build on 2 cores, skipped when present)
#   cargo pgrx init --pg15 /usr/bin/pg_config (never downloads PostgreSQL)
# shellcheck shell=bash

set -euo pipefail

PROJECT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_CONFIG=/usr/bin/pg_config
PG_BIN=/usr/lib/postgresql/15/bin
PG_REGRESS=/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress
PGRX_VERSION=0.18.1
APT_PACKAGES=(postgresql-15 postgresql-server-dev-15 libclang-dev clang sudo)

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Runs a command as the postgres OS user (PostgreSQL refuses to run as root).
as_postgres() {
    if [ "$(id -un)" = postgres ]; then
        "$@"
    elif [ "$(id -u)" -eq 0 ] && command -v runuser >/dev/null; then
        runuser -u postgres -- "$@"
    else
        sudo -u postgres "$@"
    fi
}

# apt_install PACKAGE...: installs the Debian packages that are missing (without the
# recommended ones).
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing Debian packages: ${missing[*]}"
        as_root apt-get update -q
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
}

install_prerequisites() {
    apt_install "${APT_PACKAGES[@]}"
    if ! command -v cargo >/dev/null; then
        # rustup installs into ~/.cargo/bin, which non-login shells may not have on PATH
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if [ "$(cargo pgrx --version 2>/dev/null || true)" != "cargo-pgrx $PGRX_VERSION" ]; then
        say "installing cargo-pgrx $PGRX_VERSION (about 15 minutes on 2 cores)"
        cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
    fi
    if ! grep -qs '^pg15 *= *"/usr/bin/pg_config"' "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
        say "pointing cargo-pgrx at the system PostgreSQL 15"
        cargo pgrx init --pg15 "$PG_CONFIG"
    fi
}

# Builds the extension and installs it into the system PostgreSQL 15.
# $1: cargo profile flag, e.g. --release (optional).
install_extension() {
    say "building and installing pg_prodguard ${1:-(debug build)}"
    local sudo_flag=()
    [ "$(id -u)" -eq 0 ] || sudo_flag=(--sudo)
    (cd "$PROJECT_DIR" && cargo pgrx install --pg-config "$PG_CONFIG" "${sudo_flag[@]}" "$@")
}

# A directory the postgres user can own and reach: under target/ when it can, else /tmp.
cluster_base() {
    local base="$PROJECT_DIR/target/pg"
    mkdir -p "$base"
    if ! as_postgres test -x "$base" 2>/dev/null; then
        base="/tmp/pg_prodguard-$(id -u)"
        mkdir -p "$base"
    fi
    chmod 755 "$base"
    echo "$base"
}

# A free TCP port on 127.0.0.1, starting at $1.
free_port() {
    local port=$1
    while (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null; do port=$((port + 1)); done
    echo "$port"
}

# start_cluster NAME PORT [postgresql.conf lines...]
# Makes a new cluster in $(cluster_base)/NAME owned by postgres and starts it, listening on
# 127.0.0.1:PORT and on a Unix socket in the cluster directory. Sets PGHOST/PGPORT/PGUSER.
start_cluster() {
    local name=$1 port=$2
    shift 2
    local base dir
    base=$(cluster_base)
    dir="$base/$name"
    stop_cluster "$name" 2>/dev/null || true
    as_root rm -rf "$dir"
    mkdir -p "$dir"
    as_root chown postgres: "$dir"
    # initdb's log is written by postgres: the directory is postgres's now
    # shellcheck disable=SC2016 # expanded by the inner sh
    as_postgres sh -c '"$1" -D "$2/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >"$2/initdb.log" 2>&1' \
        sh "$PG_BIN/initdb" "$dir" || { as_root cat "$dir/initdb.log"; return 1; }
    {
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $port"
        echo "unix_socket_directories = '$dir'"
        echo "logging_collector = on"
        echo "log_directory = 'log'"
        echo "log_filename = 'postgresql.log'"
        echo "lc_messages = 'C'"
        # test clusters store every refusal (the tests count them); the per-client rate
        # of the denial log is tested on its own (pgrx-tests/sql/privacy.sql)
        echo "prodguard.denial_log_rate = 0"
        for line in "$@"; do echo "$line"; done
    } | as_postgres tee -a "$dir/data/postgresql.conf" >/dev/null
    # RUST_BACKTRACE in the server's environment would append backtraces to error details
    as_postgres env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE \
        "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/startup.log" -w -t 60 start >/dev/null ||
        { as_root cat "$dir/startup.log" "$dir/data/log/postgresql.log" 2>/dev/null; return 1; }
    export PGHOST="$dir" PGPORT="$port" PGUSER=postgres
}

# restart_cluster NAME [pg_ctl -o options]
restart_cluster() {
    local dir
    dir="$(cluster_base)/$1"
    as_postgres env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE \
        "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/startup.log" -w -t 60 ${2:+-o "$2"} restart >/dev/null
}

stop_cluster() {
    local dir
    dir="$(cluster_base)/$1"
    # the data directory is postgres's, mode 0700
    as_postgres test -f "$dir/data/postmaster.pid" 2>/dev/null || return 0
    as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -w -t 60 -m fast stop >/dev/null
}

# python_tools: a virtualenv in target/tools/venv with Django, alembic, SQLAlchemy and
# psycopg from PyPI (for deploy_tools.sh and the alert listener); created once.
python_tools() {
    local tools="$PROJECT_DIR/target/tools"
    mkdir -p "$tools"
    python3 -c 'import venv, ensurepip' 2>/dev/null ||
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null
    if [ ! -x "$tools/venv/bin/python" ]; then
        say "installing Django, alembic and psycopg from PyPI into $tools/venv"
        rm -rf "$tools/venv"
        python3 -m venv "$tools/venv"
        "$tools/venv/bin/pip" install -q "django>=4.2,<5.1" "alembic>=1.13" "sqlalchemy>=2" "psycopg[binary]>=3.1"
    fi
}

# For the scripted tests in pgrx-tests/: check DESCRIPTION ACTUAL EXPECTED prints "ok" or
# "FAILED" and counts failures in $failures.
failures=0
check() {
    if [ "$2" = "$3" ]; then
        echo "ok: $1"
    else
        echo "FAILED: $1: got '$2', expected '$3'"
        failures=$((failures + 1))
    fi
}
