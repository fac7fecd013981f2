#!/usr/bin/env bash
# Makes sure PostgreSQL's server binaries (initdb, pg_ctl, postgres) are
# installed: the dev stack and the tests start their own private cluster
# from them. Installs Debian's package when missing and we are root;
# otherwise says what to install. Skipped when DATABASE_URL is set.
set -euo pipefail
[ -n "${DATABASE_URL:-}" ] && exit 0
if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "PostgreSQL server not found; installing Debian's postgresql package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq postgresql >/dev/null
  exit 0
fi
echo "PostgreSQL server not found: install it (Debian/Ubuntu: apt-get install postgresql) or set DATABASE_URL" >&2
exit 1
