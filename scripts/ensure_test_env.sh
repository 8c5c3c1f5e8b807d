#!/usr/bin/env bash
# Make sure everything the test suite needs is installed and running:
#   chromium + chromedriver, PostgreSQL (+ PostGIS), Redis, Mosquitto.
#
# Idempotent and quiet when everything is already in place; prints what it
# does otherwise.  Debian/Ubuntu only (apt).  Uses sudo when not root.
# Exits non-zero with a message when something cannot be fixed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/ensure_apt.sh
source "$HERE/ensure_apt.sh"

PG_HOST=127.0.0.1
PG_PORT=${ENSURE_TEST_ENV_PG_PORT:-5432}   # override only to test this script
PG_TEST_DB=panorama_test
REDIS_PORT=6379
MQTT_PORT=1883
WAIT_SECONDS=${WAIT_SECONDS:-20}

say() { echo "ensure_test_env: $*"; }
warn() { echo "ensure_test_env: WARNING: $*" >&2; }
die() { echo "ensure_test_env: ERROR: $*" >&2; exit 1; }

# ---------------------------------------------------------------- checks
pg_up() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" >/dev/null 2>&1; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; }
mqtt_up() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$MQTT_PORT" >/dev/null 2>&1; }
# psql as role postgres over TCP, never prompting for a password.
pg_sql() {
    PGCONNECT_TIMEOUT=5 PGOPTIONS='-c client_min_messages=warning' \
        psql -w -X -q -At -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U postgres "$@"
}

# wait_for NAME CHECK: poll CHECK for up to WAIT_SECONDS.
wait_for() {
    local name=$1 check=$2 i
    for ((i = 0; i < WAIT_SECONDS * 2; i++)); do
        "$check" && return 0
        sleep 0.5
    done
    die "$name does not answer after ${WAIT_SECONDS}s"
}

# ---------------------------------------------------------------- packages
pg_server_installed() { compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; }

pkgs=()
apt_installed chromium || pkgs+=(chromium)
apt_installed chromium-driver || pkgs+=(chromium-driver)
pg_server_installed && command -v pg_ctlcluster >/dev/null 2>&1 && command -v psql >/dev/null 2>&1 \
    || pkgs+=(postgresql)
command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || pkgs+=(redis-server)
command -v mosquitto >/dev/null 2>&1 || pkgs+=(mosquitto)
if [ "${#pkgs[@]}" -gt 0 ]; then
    ensure_apt "${pkgs[@]}" || die "could not install: ${pkgs[*]}"
fi
for tool in chromium chromedriver pg_isready psql pg_ctlcluster redis-server redis-cli mosquitto timeout; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' is still missing after installation"
done

# The PostgreSQL cluster serving port 5432 (else the newest installed version).
read -r PG_VER PG_CLUSTER < <(pg_lsclusters -h 2>/dev/null | awk -v p="$PG_PORT" '$3 == p {print $1, $2; exit}') || true
if [ -z "${PG_VER:-}" ]; then
    PG_VER=$(basename "$(dirname "$(dirname "$(compgen -G '/usr/lib/postgresql/*/bin/postgres' | sort -V | tail -n1)")")")
    PG_CLUSTER=main
    if [ ! -d "/etc/postgresql/$PG_VER/$PG_CLUSTER" ]; then
        say "creating PostgreSQL cluster $PG_VER/$PG_CLUSTER"
        as_root pg_createcluster --port "$PG_PORT" "$PG_VER" "$PG_CLUSTER" >/dev/null \
            || die "pg_createcluster $PG_VER $PG_CLUSTER failed"
    fi
fi

POSTGIS_PKG="postgresql-$PG_VER-postgis-3"
if ! apt_installed "$POSTGIS_PKG"; then
    ensure_apt "$POSTGIS_PKG" || warn "could not install $POSTGIS_PKG; PostGIS tests will fail or skip"
fi

# ---------------------------------------------------------------- services
if ! pg_up; then
    say "starting PostgreSQL $PG_VER/$PG_CLUSTER"
    as_root pg_ctlcluster --skip-systemctl-redirect "$PG_VER" "$PG_CLUSTER" start \
        || warn "pg_ctlcluster start returned non-zero"
    wait_for PostgreSQL pg_up
fi

if ! redis_up; then
    say "starting Redis"
    as_root mkdir -p /var/lib/redis /var/log/redis
    as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
        --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log \
        || warn "redis-server returned non-zero"
    wait_for Redis redis_up
fi

if ! mqtt_up; then
    say "starting Mosquitto"
    # Without systemd nobody creates the pid-file directory.
    if id mosquitto >/dev/null 2>&1; then
        as_root install -d -o mosquitto -g mosquitto /run/mosquitto /var/log/mosquitto
    fi
    as_root mosquitto -d -c /etc/mosquitto/mosquitto.conf || warn "mosquitto returned non-zero"
    wait_for Mosquitto mqtt_up
fi

# ---------------------------------------------------------------- PostgreSQL access
if ! pg_sql -d postgres -c 'select 1' >/dev/null 2>&1; then
    # pg_hba.conf of the cluster on $PG_PORT (asked over the local socket, as postgres).
    hba=$(as_root su postgres -s /bin/sh -c "cd / && psql -X -At -p $PG_PORT -c 'show hba_file'" 2>/dev/null || true)
    [ -n "$hba" ] || hba="/etc/postgresql/$PG_VER/$PG_CLUSTER/pg_hba.conf"
    as_root test -f "$hba" || die "cannot find pg_hba.conf ($hba)"
    if as_root grep -q 'added by scripts/ensure_test_env.sh' "$hba"; then
        die "psql -h $PG_HOST -p $PG_PORT -U postgres fails although $hba already has the trust lines"
    fi
    say "allowing passwordless TCP connections from localhost in $hba"
    tmp=$(mktemp)
    as_root cat "$hba" | awk '
        !done && $0 !~ /^[[:space:]]*(#|$)/ {
            print "# added by scripts/ensure_test_env.sh (tests connect as postgres without a password)"
            print "host    all             all             127.0.0.1/32            trust"
            print "host    all             all             ::1/128                 trust"
            done = 1
        }
        { print }
        END {
            if (!done) {
                print "host    all             all             127.0.0.1/32            trust"
                print "host    all             all             ::1/128                 trust"
            }
        }' >"$tmp"
    as_root test -e "$hba.bak-ensure-test-env" || as_root cp -p "$hba" "$hba.bak-ensure-test-env"
    as_root sh -c "cat '$tmp' > '$hba'"
    rm -f "$tmp"
    as_root pg_ctlcluster --skip-systemctl-redirect "$PG_VER" "$PG_CLUSTER" reload \
        || die "could not reload PostgreSQL"
    sleep 1
    pg_sql -d postgres -c 'select 1' >/dev/null \
        || die "psql -h $PG_HOST -p $PG_PORT -U postgres still cannot connect (check $hba)"
fi

if [ "$(pg_sql -d postgres -c "select 1 from pg_database where datname = '$PG_TEST_DB'")" != 1 ]; then
    say "creating database $PG_TEST_DB"
    pg_sql -d postgres -c "CREATE DATABASE $PG_TEST_DB" || die "could not create database $PG_TEST_DB"
fi

if [ "$(pg_sql -d "$PG_TEST_DB" -c "select 1 from pg_extension where extname = 'postgis'")" != 1 ]; then
    say "enabling PostGIS in $PG_TEST_DB"
    pg_sql -d "$PG_TEST_DB" -c 'CREATE EXTENSION IF NOT EXISTS postgis' \
        || warn "PostGIS is not available in PostgreSQL $PG_VER; PostGIS tests will fail or skip"
fi
