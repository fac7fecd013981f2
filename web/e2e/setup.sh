#!/usr/bin/env bash
# Setup for the dashboard's browser test: Debian's Chromium (installed once,
# when missing; needs root, as `make` has on Debian) and the front end's npm
# packages from package-lock.json (npm ci, skipped when node_modules already
# matches the lock).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "the dashboard test needs Debian's chromium: apt-get install -y chromium (as root)" >&2
		exit 1
	fi
	echo "installing chromium (apt-get)…" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends chromium fonts-wqy-microhei >/dev/null
fi

command -v npm >/dev/null || { echo "the dashboard test needs Node.js 20.19+ and npm" >&2; exit 1; }
# npm ci again only when the lock changed since the last install.
stamp=node_modules/.gpuflow-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
	npm ci --no-audit --no-fund --loglevel=error
	echo "$want" >"$stamp"
fi
