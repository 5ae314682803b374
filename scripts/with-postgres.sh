#!/usr/bin/env bash
# Run a command with a throwaway PostgreSQL cluster on a free loopback port.
# Exports ANNING_TEST_PG_URL for the command; the cluster is stopped and deleted afterwards.
# Without PostgreSQL binaries, runs the command alone (the PostgreSQL tests then skip; CI installs them).
set -euo pipefail
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
  echo "with-postgres: no PostgreSQL server binaries found; PostgreSQL tests will be skipped" >&2
  exec "$@"
fi
dir=$(mktemp -d /tmp/anning-pg.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg=()
if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; as_pg=(runuser -u postgres --); fi
cleanup() { "${as_pg[@]}" "$pgbin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
"${as_pg[@]}" "$pgbin/initdb" -D "$dir/data" -U anning --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log" >&2; exit 1; }
"${as_pg[@]}" "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off" start >/dev/null
"${as_pg[@]}" "$pgbin/createdb" -h 127.0.0.1 -p "$port" -U anning anning_test
export ANNING_TEST_PG_URL="postgresql+psycopg://anning@127.0.0.1:$port/anning_test"
echo "with-postgres: PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port" >&2
set +e
"$@"
rc=$?
exit $rc
