#!/usr/bin/env bash
# Fails when web/dist (embedded in the Go binary) is not what its sources
# build to: builds them again from the lock (npm ci must have run) into a
# temporary folder and compares the two byte for byte.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
npx vue-tsc --noEmit
npx vite build --logLevel warn --outDir "$out/dist" --emptyOutDir
if ! diff -r "$out/dist" dist >"$out/diff.txt"; then
	echo "web/dist does not match web/src: run 'make web' (npm ci && npm run build in web/) and commit web/dist" >&2
	head -40 "$out/diff.txt" >&2
	exit 1
fi
echo "web/dist matches its sources"
