#!/usr/bin/env bash
# The local stack behind `make run` / `make stop`: PostgreSQL and Redis (unless
# DATABASE_URL / REDIS_URL point elsewhere), migrations, then the API under gunicorn,
# the workers and the scheduler under one supervisord, which starts again any of them
# that dies. Everything lives in .data/: pid files, logs, supervisord's config and socket.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT=$PWD
DATA=$ROOT/.data
BIN=$ROOT/.venv/bin
PORT=${PORT:-8000}
HOST=${HOST:-127.0.0.1}
WORKERS=${WORKERS:-2}
PG_PORT=55432
REDIS_PORT=56379
mkdir -p "$DATA"
# Every process writes its metrics here, so the API's /metrics shows them all.
export PROMETHEUS_MULTIPROC_DIR=${PROMETHEUS_MULTIPROC_DIR:-$DATA/prometheus}

pg_bindir() {
  local ctl
  ctl=$(command -v pg_ctl 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n 1)
  dirname "$(readlink -f "$ctl")"
}

# PostgreSQL refuses to run as root: as root, run it as the `postgres` user.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The cluster's directory; outside the checkout when root's checkout is not
# readable by the postgres user (its path is remembered for `make stop`).
pg_data() {
  if [ -f "$DATA/pgdata-path" ]; then cat "$DATA/pgdata-path"; return; fi
  local dir=$DATA/postgres
  if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$DATA"; then
    dir=/var/tmp/stepwise-$(echo "$ROOT" | sha1sum | cut -c1-8)/postgres
  fi
  echo "$dir" > "$DATA/pgdata-path"
  echo "$dir"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

supervised() { alive "$DATA/supervisord.pid"; }
supervisorctl() { "$BIN/supervisorctl" -c "$DATA/supervisord.conf" "$@"; }

healthy() {
  local host=$HOST
  [ "$host" = 0.0.0.0 ] && host=127.0.0.1
  "$BIN/python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
    "http://$host:$PORT/health" >/dev/null 2>&1
}

start_postgres() {
  local bindir pgdata
  bindir=$(pg_bindir)
  pgdata=$(pg_data)
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    mkdir -p "$pgdata"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$pgdata"
    as_pg "$bindir/initdb" -D "$pgdata" -U stepwise --auth=trust -E UTF8 >/dev/null
  fi
  if ! as_pg "$bindir/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
    as_pg "$bindir/pg_ctl" -D "$pgdata" -l "$pgdata/postgresql.log" -w \
      -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $pgdata" start >/dev/null
  fi
  "$bindir/psql" -h 127.0.0.1 -p $PG_PORT -U stepwise -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'stepwise'" | grep -q 1 \
    || "$bindir/createdb" -h 127.0.0.1 -p $PG_PORT -U stepwise stepwise
  echo "PostgreSQL   127.0.0.1:$PG_PORT (data in $pgdata)"
}

start_redis() {
  if ! alive "$DATA/redis.pid"; then
    redis-server --port $REDIS_PORT --bind 127.0.0.1 --daemonize yes --pidfile "$DATA/redis.pid" \
      --logfile "$DATA/redis.log" --dir "$DATA" --save "" --appendonly no
    for _ in $(seq 50); do alive "$DATA/redis.pid" && break; sleep 0.1; done
  fi
  echo "Redis        127.0.0.1:$REDIS_PORT"
}

# A local admin key, kept in .data/admin.key and made again if it no longer works.
admin_key() {
  local key=""
  [ -f "$DATA/admin.key" ] && key=$(cat "$DATA/admin.key")
  if [ -z "$key" ] || ! "$BIN/python" - "$key" <<'PY' >/dev/null 2>&1
import sys
from app.config import Settings
from app.runtime import Runtime
from app.services import api_keys
rt = Runtime.from_settings(Settings.from_env())
with rt.sessions() as session:
    sys.exit(0 if api_keys.authenticate(session, sys.argv[1]) else 1)
PY
  then
    # --quiet prints the key alone; log lines, if any, also go to stdout, so keep only the key.
    "$BIN/flask" --app app keys create --name "local-admin-$(date +%s)" --role admin --quiet \
      | grep -E '^sw_' > "$DATA/admin.key"
    chmod 600 "$DATA/admin.key"
  fi
}

start() {
  # The metrics of processes that are gone are stale: wiped unless they still run.
  supervised || rm -rf "$PROMETHEUS_MULTIPROC_DIR"
  mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
  [ -n "${DATABASE_URL:-}" ] && echo "PostgreSQL   $DATABASE_URL" || start_postgres
  [ -n "${REDIS_URL:-}" ] && echo "Redis        $REDIS_URL" || start_redis
  "$BIN/flask" --app app db upgrade >/dev/null
  admin_key
  stop_unsupervised
  # The config carries the settings in this environment (and WORKERS): written each time,
  # so that `update` restarts just the programs whose config changed.
  "$BIN/python" -m scripts.supervisor_conf --data "$DATA" --bind "$HOST:$PORT" --workers "$WORKERS"
  if supervised; then
    supervisorctl update >/dev/null
    supervisorctl start all >/dev/null  # any left stopped or FATAL
  else
    "$BIN/supervisord" -c "$DATA/supervisord.conf"
  fi
  for _ in $(seq 100); do healthy && break; sleep 0.1; done
  healthy || { echo "the API did not come up; see $DATA/api.log" >&2; exit 1; }
  cat <<EOF
API          http://$HOST:$PORT/api/v1
Swagger UI   http://$HOST:$PORT/docs
OpenAPI      http://$HOST:$PORT/api/v1/openapi.json
Health       http://$HOST:$PORT/health
Workers      $WORKERS (logs in .data/worker-*.log)
Scheduler    1 (log in .data/scheduler.log)
Processes    supervised, restarted when they die: .venv/bin/supervisorctl -c .data/supervisord.conf status
Metrics      http://$HOST:$PORT/metrics
Admin key    $(cat "$DATA/admin.key")   (also in .data/admin.key; send it as Authorization: Bearer <key>)
Stop it all with: make stop
EOF
}

stop_pidfile() {
  local file=$1
  if alive "$file"; then
    local pid
    pid=$(cat "$file")
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$file"
}

# Processes a stack.sh from before supervisord started, each with its pid file.
stop_unsupervised() {
  for file in "$DATA"/worker-*.pid "$DATA/scheduler.pid" "$DATA/api.pid"; do [ -e "$file" ] && stop_pidfile "$file"; done
  return 0
}

stop_supervised() {
  if supervised; then
    local pid
    pid=$(cat "$DATA/supervisord.pid")
    supervisorctl shutdown >/dev/null || kill -TERM "$pid"  # SIGTERM: the same shutdown
    # It stops its programs first, each within its stopwaitsecs (a worker's warm shutdown).
    for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && echo "supervisord ($pid) is still stopping its processes" >&2
  fi
  rm -f "$DATA/supervisord.pid"
}

stop() {
  stop_supervised
  stop_unsupervised
  [ -e "$DATA/redis.pid" ] && stop_pidfile "$DATA/redis.pid"
  if [ -f "$DATA/pgdata-path" ] && [ -f "$(cat "$DATA/pgdata-path")/PG_VERSION" ]; then
    as_pg "$(pg_bindir)/pg_ctl" -D "$(cat "$DATA/pgdata-path")" -m fast stop >/dev/null 2>&1 || true
  fi
  echo "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
