#!/bin/sh
# Installs the project's packages when node_modules is missing or older than package-lock.json,
# so that the README's two commands work on a fresh clone.
set -e
cd "$(dirname "$0")/.."
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "installing packages (npm ci)..." >&2
  npm ci --no-audit --no-fund >&2
fi
