#!/usr/bin/env bash
# Install or upgrade the Anning workbench on a Debian 12 server (docs/deploy.md). Run as root from the release
# (a checkout or unpacked tarball):   sudo deploy/install.sh --server-name anning.park.local [--with-postgres]
#
# What it does (every step idempotent: a second run changes no file and keeps every secret):
#   1. Debian packages: python3, python3-venv, nginx, openssl, postgresql-client, the Chinese font and Pango
#      (WeasyPrint); postgresql with --with-postgres, mosquitto with --demo
#   2. the system user `anning` (no login shell, home /var/lib/anning)
#   3. the code in /opt/anning (mirrored from this release) and its virtualenv /opt/anning/.venv from
#      requirements.lock (rebuilt only when the lock or pyproject.toml changed)
#   4. /etc/anning/anning.env (mode 0600, generated cookie secret), /etc/anning/db-{owner,ingest,portal}.env (0600,
#      each service's database URL), /etc/anning/ingest/*.yaml (gateway point maps), /etc/anning/tls/ (a
#      self-signed placeholder certificate when none is there); never overwritten once written
#   5. /var/lib/anning (database, reports, buffer, forecasts; data/ = reference data and tariffs the portal
#      edits, seeded from the release, never overwritten), /var/backups/anning
#   6. the systemd units (/etc/systemd/system/anning-*), the nginx site, /usr/local/sbin/anning-admin
#   7. with --with-postgres: the roles and database on the local PostgreSQL (deploy/postgres/roles.sql)
#   8. migrations as the database owner (`anning db init`), then the grants (deploy/postgres/grants.sql),
#      the backup key (`anning backup keygen`) when missing
#   9. systemctl daemon-reload, enable and (re)start the portal, the backup timer and, with --gateway, the
#      ingestion gateway or, with --demo, the simulator; nginx -t and reload
#
# --root DIR stages everything under DIR instead of / and skips what touches the running system (apt-get,
# useradd, chown, systemctl, nginx, psql, the virtualenv with --no-venv): how tests/test_deploy.py runs it.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: deploy/install.sh [options]
  --server-name NAME   public host name of the portal (default: the one already installed, else hostname -f)
  --with-postgres      create the roles and database on this server's PostgreSQL and use them (default: SQLite)
  --pg-host HOST       PostgreSQL host written into the database URLs (default 127.0.0.1)
  --pg-port PORT       its port (default 5432)
  --pg-db NAME         database name (default anning)
  --gateway            enable and start the ingestion gateway (anning-ingest.service); edit the point maps first
  --demo               enable and start the simulated park instead (anning-sim.service; demo only)
  --root DIR           stage under DIR: no apt-get, useradd, chown, systemctl, nginx or psql (for tests)
  --no-venv            do not build the virtualenv (staging, or when it is managed otherwise)
  --no-apt             do not install Debian packages
  --python PATH        Python 3.11 for the virtualenv (default /usr/bin/python3, Debian's: the venv links to it,
                       so it must be one the user anning may run, not one under /root)
EOF
}

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT="" SERVER_NAME="" WITH_PG=0 PG_HOST=127.0.0.1 PG_PORT=5432 PG_DB=anning GATEWAY=0 DEMO=0 NO_VENV=0 NO_APT=0
PY=/usr/bin/python3
while [ $# -gt 0 ]; do
  case "$1" in
    --server-name) SERVER_NAME=${2:?--server-name needs a value}; shift 2 ;;
    --with-postgres) WITH_PG=1; shift ;;
    --pg-host) PG_HOST=${2:?--pg-host needs a value}; shift 2 ;;
    --pg-port) PG_PORT=${2:?--pg-port needs a value}; shift 2 ;;
    --pg-db) PG_DB=${2:?--pg-db needs a value}; shift 2 ;;
    --gateway) GATEWAY=1; shift ;;
    --demo) DEMO=1; shift ;;
    --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
    --no-venv) NO_VENV=1; shift ;;
    --no-apt) NO_APT=1; shift ;;
    --python) PY=${2:?--python needs a path}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done
if [ "$GATEWAY" = 1 ] && [ "$DEMO" = 1 ]; then
  echo "install.sh: --gateway and --demo exclude each other (the demo runs its own gateway)" >&2; exit 2
fi
if [ -n "$ROOT" ]; then
  mkdir -p "$ROOT"; ROOT=$(cd "$ROOT" && pwd); STAGING=1
else
  STAGING=0
  [ "$(id -u)" = 0 ] || { echo "install.sh: run as root (or stage with --root DIR)" >&2; exit 2; }
fi
case "$SERVER_NAME" in *[!A-Za-z0-9.:-]*) echo "install.sh: --server-name: not a host name: $SERVER_NAME" >&2; exit 2 ;; esac

OPT=$ROOT/opt/anning ETC=$ROOT/etc/anning VAR=$ROOT/var/lib/anning BAK=$ROOT/var/backups/anning
UNITS=$ROOT/etc/systemd/system NGINX=$ROOT/etc/nginx SBIN=$ROOT/usr/local/sbin
CHANGED=0
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT

say() { echo "install: $*"; }
live() { [ "$STAGING" = 0 ]; }

# put SRC DEST MODE: install a file only when its content or mode differs (a second run rewrites nothing)
put() {
  local src=$1 dest=$2 mode=$3
  if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
    if [ "$(stat -c %a "$dest")" != "${mode#0}" ]; then chmod "$mode" "$dest"; CHANGED=1; say "mode $mode $dest"; fi
    return 0
  fi
  mkdir -p "$(dirname "$dest")"
  install -m "$mode" "$src" "$dest"
  CHANGED=1
  say "wrote $dest"
}

# dir PATH MODE [OWNER]: a directory with this mode (and owner, on the live system)
dir() {
  local path=$1 mode=$2 owner=${3:-}
  if [ ! -d "$path" ]; then mkdir -p "$path"; CHANGED=1; say "made $path"; fi
  if [ "$(stat -c %a "$path")" != "${mode#0}" ]; then chmod "$mode" "$path"; CHANGED=1; fi
  if [ -n "$owner" ] && live && [ "$(stat -c %U:%G "$path")" != "$owner" ]; then chown "$owner" "$path"; CHANGED=1; fi
}

# link TARGET NAME: a symbolic link, replaced only when it points elsewhere
link() {
  if [ "$(readlink "$2" 2>/dev/null || true)" != "$1" ]; then
    mkdir -p "$(dirname "$2")"; ln -sfn "$1" "$2"; CHANGED=1; say "linked $2 -> $1"
  fi
}

secret() { "$PY" -c 'import secrets; print(secrets.token_urlsafe(32))'; }

# ------------------------------------------------------------------------------------------ 1. packages
if live && [ "$NO_APT" = 0 ]; then
  pkgs="python3 python3-venv nginx openssl postgresql-client fonts-wqy-zenhei libpango-1.0-0 libpangoft2-1.0-0"
  [ "$WITH_PG" = 1 ] && pkgs="$pkgs postgresql"
  [ "$DEMO" = 1 ] && pkgs="$pkgs mosquitto"
  missing=""
  for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    say "apt-get install$missing"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
  fi
fi

# ------------------------------------------------------------------------------------------ 2. user
if live && ! getent passwd anning >/dev/null; then
  useradd --system --user-group --home-dir /var/lib/anning --no-create-home --shell /usr/sbin/nologin \
    --comment "Anning workbench services" anning
  CHANGED=1; say "made system user anning"
fi

# ------------------------------------------------------------------------------------------ 3. code and venv
dir "$OPT" 0755 root:root
# mirror: copy what differs, delete what the release no longer has; never the venv, caches or runtime files
n=$("$PY" - "$SRC" "$OPT" <<'PY'
import filecmp, os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
SKIP_ANY = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".ipynb_checkpoints"}
SKIP_TOP = {"var", "build", "dist", "test-artifacts", "node_modules"}
def keep(rel):
    parts = rel.split(os.sep)
    return not (parts[0] in SKIP_TOP or SKIP_ANY & set(parts) or parts[-1].endswith(".pyc")
                or any(p.endswith(".egg-info") for p in parts))
def walk(top):
    """(relative dirs, relative files) under top that the mirror manages."""
    out_dirs, out_files = [], []
    for base, dirs, files in os.walk(top):
        rel_base = os.path.relpath(base, top)
        dirs[:] = sorted(d for d in dirs if keep(os.path.normpath(os.path.join(rel_base, d))))
        out_dirs += [os.path.normpath(os.path.join(rel_base, d)) for d in dirs]
        out_files += [r for f in sorted(files) if keep(r := os.path.normpath(os.path.join(rel_base, f)))]
    return out_dirs, out_files
changed = 0
_, want = walk(src)
for rel in want:
    s, d = os.path.join(src, rel), os.path.join(dst, rel)
    if os.path.islink(s) or not os.path.isfile(s):
        continue
    mode = os.stat(s).st_mode & 0o755              # root-owned code: nobody but root writes it
    if os.path.isfile(d) and not os.path.islink(d) and filecmp.cmp(s, d, shallow=False):
        if os.stat(d).st_mode & 0o7777 != mode:
            os.chmod(d, mode); changed += 1
        continue
    os.makedirs(os.path.dirname(d), exist_ok=True)
    if os.path.lexists(d):
        os.remove(d)
    shutil.copy2(s, d)
    os.chmod(d, mode)
    changed += 1
have_dirs, have = walk(dst)
for rel in set(have) - set(want):                  # files the release no longer has
    os.remove(os.path.join(dst, rel)); changed += 1
for rel in sorted(have_dirs, key=len, reverse=True):
    if not os.listdir(os.path.join(dst, rel)):
        os.rmdir(os.path.join(dst, rel)); changed += 1
print(changed)
PY
)
if [ "$n" != 0 ]; then CHANGED=1; say "code: $n files updated in $OPT"; fi

if [ "$NO_VENV" = 0 ]; then
  "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || { echo "install.sh: --python: $PY is not Python 3.11 (requirements.lock is pinned for 3.11)" >&2; exit 2; }
  stamp=$(cat "$OPT/requirements.lock" "$OPT/pyproject.toml" | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$OPT/.venv/.anning-lock" 2>/dev/null || true)" != "$stamp" ]; then
    say "virtualenv $OPT/.venv from requirements.lock (a few minutes the first time)"
    [ -x "$OPT/.venv/bin/python" ] || "$PY" -m venv "$OPT/.venv"
    "$OPT/.venv/bin/pip" install --quiet --upgrade pip
    "$OPT/.venv/bin/pip" install --quiet -r "$OPT/requirements.lock"
    "$OPT/.venv/bin/pip" install --quiet --no-deps -e "$OPT"
    "$OPT/.venv/bin/python" -m compileall -q "$OPT/anning_lib" >/dev/null
    echo "$stamp" > "$OPT/.venv/.anning-lock"
    CHANGED=1
  fi
  if live && ! runuser -u anning -- "$OPT/.venv/bin/python" -c '' 2>/dev/null; then
    echo "install.sh: user anning cannot run $OPT/.venv/bin/python (it links to $(readlink -f "$OPT/.venv/bin/python"));" \
         "remove $OPT/.venv and run again with --python /usr/bin/python3" >&2
    exit 1
  fi
fi

# ------------------------------------------------------------------------------------------ 4. /etc/anning
dir "$ETC" 0750 root:anning
dir "$ETC/ingest" 0750 root:anning
dir "$ETC/tls" 0750 root:root
env_file=$ETC/anning.env
if [ -z "$SERVER_NAME" ] && [ -f "$env_file" ]; then
  SERVER_NAME=$(sed -n 's/^ANNING_PORTAL_ORIGINS=\([^, ]*\).*/\1/p' "$env_file" | head -n 1)
fi
[ -n "$SERVER_NAME" ] || SERVER_NAME=$(hostname -f 2>/dev/null || hostname)
if [ ! -f "$env_file" ]; then
  sed -e "s/@SERVER_NAME@/$SERVER_NAME/" -e "s/@COOKIE_SECRET@/$(secret)/" "$SRC/deploy/env/anning.env.in" > "$TMP/env"
  put "$TMP/env" "$env_file" 0600
elif ! grep -qx "ANNING_PORTAL_ORIGINS=$SERVER_NAME\(,.*\)\?" "$env_file"; then
  sed "s/^ANNING_PORTAL_ORIGINS=.*/ANNING_PORTAL_ORIGINS=$SERVER_NAME/" "$env_file" > "$TMP/env"
  put "$TMP/env" "$env_file" 0600
else
  put "$env_file" "$env_file" 0600          # only the mode, if someone loosened it
fi

# db-<role>.env: the database URL of the services using that role (none: SQLite in ANNING_VAR_DIR)
declare -A PW
for role in owner ingest portal; do
  f=$ETC/db-$role.env
  url=$(sed -n 's/^ANNING_DB_URL=//p' "$f" 2>/dev/null | head -n 1 || true)
  if [ "$WITH_PG" = 1 ] && [ -z "$url" ]; then
    pw=$(secret)
    {
      echo "# database URL of the services using the PostgreSQL role anning_$role (deploy/postgres/); mode 0600"
      echo "ANNING_DB_URL=postgresql+psycopg://anning_$role:$pw@$PG_HOST:$PG_PORT/$PG_DB"
    } > "$TMP/db"
    put "$TMP/db" "$f" 0600
    url=$(sed -n 's/^ANNING_DB_URL=//p' "$f")
  elif [ ! -f "$f" ]; then
    {
      echo "# database URL of the services using the PostgreSQL role anning_$role (deploy/postgres/); mode 0600."
      echo "# None: SQLite in ANNING_VAR_DIR (one file shared by every service). For PostgreSQL:"
      echo "# ANNING_DB_URL=postgresql+psycopg://anning_$role:PASSWORD@HOST:5432/anning"
    } > "$TMP/db"
    put "$TMP/db" "$f" 0600
  else
    put "$f" "$f" 0600
  fi
  PW[$role]=$(printf '%s' "$url" | sed -n 's#^postgresql[^:]*://[^:@/]*:\([^@]*\)@.*#\1#p')
done
# PostgreSQL is in use when the owner's URL says so (also on a later run without --with-postgres: an upgrade);
# its host, port and database are then the URL's
owner_url=$(sed -n 's/^ANNING_DB_URL=//p' "$ETC/db-owner.env" | head -n 1)
USE_PG=0 PG_LOCAL=0
case "$owner_url" in
  postgresql*)
    USE_PG=1
    read -r PG_HOST PG_PORT PG_DB < <("$PY" -c 'import sys; from urllib.parse import urlsplit
u = urlsplit(sys.argv[1]); print(u.hostname or "localhost", u.port or 5432, u.path.lstrip("/") or "anning")' "$owner_url")
    case "$PG_HOST" in 127.0.0.1|localhost|::1) PG_LOCAL=1 ;; esac ;;
esac

for m in "$OPT"/ingest/*.yaml; do                        # the park's point maps: the release's, then IT's
  [ -e "$ETC/ingest/$(basename "$m")" ] || put "$m" "$ETC/ingest/$(basename "$m")" 0640
done
# the services (user anning) read the maps through their group; only root writes them
if live; then
  find "$ETC/ingest" -type f ! -group anning -exec chgrp anning {} + -exec echo "install: group anning: {}" \;
fi
if [ ! -f "$ETC/tls/anning.crt" ] && [ ! -f "$ETC/tls/anning.key" ]; then
  openssl req -x509 -newkey rsa:3072 -sha256 -days 825 -nodes -subj "/CN=$SERVER_NAME" \
    -addext "subjectAltName=DNS:$SERVER_NAME" -keyout "$TMP/key" -out "$TMP/crt" 2>/dev/null
  put "$TMP/key" "$ETC/tls/anning.key" 0600
  put "$TMP/crt" "$ETC/tls/anning.crt" 0644
  say "self-signed PLACEHOLDER certificate for $SERVER_NAME in $ETC/tls: replace it (docs/deploy.md)"
fi
[ -f "$ETC/tls/anning.key" ] && put "$ETC/tls/anning.key" "$ETC/tls/anning.key" 0600

# ------------------------------------------------------------------------------------------ 5. /var
dir "$VAR" 0750 anning:anning
dir "$BAK" 0700 anning:anning
# reference data and the tariffs the admin page edits: seeded from the release, a file the site has is kept
n=$("$PY" - "$OPT/data" "$VAR/data" <<'PY'
import filecmp, os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
added = 0
for base, _dirs, files in os.walk(src):
    for f in sorted(files):
        s = os.path.join(base, f)
        d = os.path.join(dst, os.path.relpath(s, src))
        if not os.path.exists(d):
            os.makedirs(os.path.dirname(d), exist_ok=True)
            shutil.copy2(s, d)
            os.chmod(d, 0o640)
            added += 1
        elif not filecmp.cmp(s, d, shallow=False):
            print(f"install: kept the site's {d} (the release's differs: diff {s} {d})", file=sys.stderr)
print(added)
PY
)
if [ "$n" != 0 ]; then CHANGED=1; say "data: $n reference files added to $VAR/data"; fi
if live; then chown -R anning:anning "$VAR/data"; fi

# ------------------------------------------------------------------------------------------ 6. units, nginx
for u in "$SRC"/deploy/systemd/anning-*; do put "$u" "$UNITS/$(basename "$u")" 0644; done
sed "s/anning\.park\.local/$SERVER_NAME/g" "$SRC/deploy/nginx/anning.conf" > "$TMP/nginx"
put "$TMP/nginx" "$NGINX/sites-available/anning.conf" 0644
link ../sites-available/anning.conf "$NGINX/sites-enabled/anning.conf"
put "$SRC/deploy/bin/anning-admin" "$SBIN/anning-admin" 0755

if [ "$STAGING" = 1 ]; then
  say "staged under $ROOT (no packages, user, database, services or nginx touched)"
  exit 0
fi

# ------------------------------------------------------------------------------------------ 7. PostgreSQL roles
if [ "$USE_PG" = 1 ] && [ "$PG_LOCAL" = 1 ]; then
  say "PostgreSQL: roles and database $PG_DB (deploy/postgres/roles.sql)"
  args=(-v db="$PG_DB")
  for role in owner ingest portal; do
    [ -n "${PW[$role]}" ] && args+=(-v "${role}_password=${PW[$role]}")
  done
  runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 "${args[@]}" -f "$OPT/deploy/postgres/roles.sql"
elif [ "$USE_PG" = 1 ]; then
  say "PostgreSQL on $PG_HOST: its administrator runs deploy/postgres/roles.sql there, before this (docs/deploy.md)"
fi

# ------------------------------------------------------------------------------------------ 8. schema, grants, key
if [ "$NO_VENV" = 0 ]; then
  say "migrations as the database owner: anning db init"
  "$SBIN/anning-admin" db init
  if [ "$USE_PG" = 1 ] && [ "$PG_LOCAL" = 1 ]; then                # after every migration (docs/deploy.md)
    say "PostgreSQL: grants (deploy/postgres/grants.sql)"
    runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d "$PG_DB" -f "$OPT/deploy/postgres/grants.sql"
  elif [ "$USE_PG" = 1 ]; then
    say "PostgreSQL on $PG_HOST: its administrator runs deploy/postgres/grants.sql there now (docs/deploy.md)"
  fi
  if [ ! -f "$VAR/backup.key" ]; then
    "$SBIN/anning-admin" backup keygen
    say "backup key $VAR/backup.key: keep a copy OFFLINE (without it no backup can be restored; docs/backup.md)"
  fi
fi

# ------------------------------------------------------------------------------------------ 9. services, nginx
systemctl daemon-reload
services="anning-portal.service"
[ "$GATEWAY" = 1 ] && services="$services anning-ingest.service"
[ "$DEMO" = 1 ] && services="$services anning-sim.service"
systemctl enable --quiet $services anning-backup.timer
if [ "$CHANGED" = 1 ]; then systemctl restart $services; else systemctl start $services; fi
systemctl start anning-backup.timer
nginx -t -q && systemctl reload-or-restart nginx
say "done: https://$SERVER_NAME/ (first admin: anning-admin users add NAME --role admin; docs/deploy.md)"
