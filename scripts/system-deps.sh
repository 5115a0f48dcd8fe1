#!/usr/bin/env bash
# Make sure the binaries the stack (`run`), the tests (`test`) or the bench (`bench`:
# the stack's, plus the wrk load generator) need are here: PostgreSQL's server,
# redis-server, Python's venv module, wrk. A server reached
# through DATABASE_URL / REDIS_URL (TEST_DATABASE_URL / TEST_REDIS_URL for the
# tests) is not needed locally. As root on Debian/Ubuntu, install what is
# missing; otherwise print the exact command.
set -euo pipefail
mode=${1:-run}  # run, test, bench (run's and wrk), or venv (only Python's venv module)
db_url=${DATABASE_URL:-}
redis_url=${REDIS_URL:-}
if [ "$mode" = test ]; then
  db_url=${TEST_DATABASE_URL:-}
  redis_url=${TEST_REDIS_URL:-}
fi

missing=()
if [ "$mode" = venv ]; then
  db_url=skip
  redis_url=skip
fi
if [ -z "$db_url" ]; then
  command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing+=(postgresql)
fi
[ -n "$redis_url" ] || command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
if [ "$mode" = bench ]; then
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
fi

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "Missing: ${missing[*]}. Install them with:" >&2
  echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

echo "Installing ${missing[*]} ..."
# The packages would start their own servers on the standard ports (5432,
# 6379), and postgresql would create a cluster there; Stepwise starts its own
# on other ports. Hold both off for this install only, and put the host's
# settings back however the install ends.
conf=/etc/postgresql-common/createcluster.conf
policy_created=0
conf_saved=""
restore() {
  [ "$policy_created" -eq 1 ] && rm -f /usr/sbin/policy-rc.d
  if [ -n "$conf_saved" ]; then
    if [ "$conf_saved" = none ]; then rm -f "$conf"; else mv -f "$conf_saved" "$conf"; fi
  fi
  return 0
}
trap restore EXIT
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  policy_created=1
fi
mkdir -p "$(dirname "$conf")"
if [ -e "$conf" ]; then conf_saved=$(mktemp); cp -p "$conf" "$conf_saved"; else conf_saved=none; fi
echo 'create_main_cluster = false' >> "$conf"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
