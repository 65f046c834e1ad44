#!/usr/bin/env bash
# PostgreSQL for the tracking-server test, from Debian's packages, listening on 127.0.0.1 only.
#
#   uri=$(.ci/postgres.sh)      # prints the SQLAlchemy URI on stdout, progress on stderr
#
# Idempotent: installs `postgresql` only when Debian's cluster tools are missing, creates a
# dedicated cluster (not Debian's `main`, so a local server on 5432 is left alone), starts it when
# it is down, and creates the role and database only when absent. Safe to run any number of times.
# Settings (environment): LOOP_PG_PORT (5433), LOOP_PG_CLUSTER (loop_ci), LOOP_PG_DB (loop_ci).
set -euo pipefail

port="${LOOP_PG_PORT:-5433}"
cluster="${LOOP_PG_CLUSTER:-loop_ci}"
db="${LOOP_PG_DB:-loop_ci}"
role=loop
password=loop

log() { echo "postgres.sh: $*" >&2; }

# postgres refuses to run as root: the server and the admin commands run as the `postgres` OS
# user, the way Debian's own scripts do. Root uses runuser; anyone else needs sudo.
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
    as_pg=(runuser -u postgres --)
else
    as_root=(sudo)
    as_pg=(sudo -u postgres)
fi

# Only Debian's postgresql-common tools are used (pg_lsclusters, pg_createcluster, pg_ctlcluster);
# a `postgres` or `initdb` elsewhere on PATH (e.g. links in /usr/local/bin) is not relied on.
if ! command -v pg_createcluster >/dev/null || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    log "installing Debian's postgresql package"
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi

# The newest installed server version (bookworm: 15).
version="$(ls /usr/lib/postgresql | sort -n | tail -1)"

# pg_lsclusters -h: "<version> <cluster> <port> <status> <owner> <datadir> <logfile>"
cluster_line() { pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c'; }

if [ -z "$(cluster_line)" ]; then
    log "creating cluster $version/$cluster on 127.0.0.1:$port"
    "${as_root[@]}" pg_createcluster "$version" "$cluster" --port "$port" >&2
fi
# Written on every run, so an existing cluster is held to 127.0.0.1 too; Debian's clusters read
# conf.d/ after postgresql.conf (createcluster.conf: add_include_dir = 'conf.d').
echo "listen_addresses = '127.0.0.1'" |
    "${as_pg[@]}" tee "/etc/postgresql/$version/$cluster/conf.d/loop.conf" >/dev/null
# An existing cluster keeps the port it was created with.
port="$(cluster_line | awk '{print $3}')"

# The socket folder lives on a tmpfs in containers and may be gone after a restart.
"${as_root[@]}" install -d -o postgres -g postgres -m 2775 /var/run/postgresql

if [ "$(cluster_line | awk '{print $4}')" != "online" ]; then
    log "starting cluster $version/$cluster"
    "${as_root[@]}" pg_ctlcluster "$version" "$cluster" start >&2
fi

# pg_ctlcluster waits for startup; this covers a server that is still recovering.
for _ in $(seq 1 30); do
    if pg_isready -q -h 127.0.0.1 -p "$port"; then
        break
    fi
    sleep 1
done
pg_isready -h 127.0.0.1 -p "$port" >&2

psql_admin() { "${as_pg[@]}" psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d postgres "$@"; }

# A cluster started before conf.d/loop.conf existed would still listen elsewhere.
listen="$(psql_admin -tAc "SHOW listen_addresses")"
if [ "$listen" != "127.0.0.1" ]; then
    log "cluster $version/$cluster listens on '$listen', not 127.0.0.1: restarting it"
    "${as_root[@]}" pg_ctlcluster "$version" "$cluster" restart >&2
    listen="$(psql_admin -tAc "SHOW listen_addresses")"
    [ "$listen" = "127.0.0.1" ] || { log "listen_addresses is still '$listen'"; exit 1; }
fi

# CREATEDB: the test makes a fresh database per run, so reruns start clean. CREATEROLE: the
# server test logs in as a throwaway role with a password of its own, to find it in `ps`.
if [ "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$role'")" != "1" ]; then
    log "creating role $role"
    psql_admin -c "CREATE ROLE $role LOGIN CREATEDB CREATEROLE PASSWORD '$password'"
fi
if [ "$(psql_admin -tAc "SELECT rolcreaterole FROM pg_roles WHERE rolname = '$role'")" != "t" ]; then
    log "letting role $role create roles"
    psql_admin -c "ALTER ROLE $role CREATEROLE"
fi
if [ "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" != "1" ]; then
    log "creating database $db"
    psql_admin -c "CREATE DATABASE $db OWNER $role"
fi

uri="postgresql+psycopg2://$role:$password@127.0.0.1:$port/$db"
export LOOP_TEST_POSTGRES_URI="$uri"
log "ready: $uri"
echo "$uri"
