#!/bin/sh
# Entry point of the container image: the first argument chooses the role, the rest go to node.
#   leader | replica   start that role (settings from the environment, see common/config.ts)
#   anything else      run as given, e.g. `sh` for a shell in the image
# exec makes node PID 1, so that it receives SIGTERM itself and shuts down gracefully.
set -eu
cd "$(dirname "$0")/.."
case "${1:-}" in
  leader)
    shift
    exec node dist/leader/main.js "$@"
    ;;
  replica)
    shift
    exec node dist/replica/main.js "$@"
    ;;
  "")
    echo "usage: docker run IMAGE leader|replica" >&2
    exit 2
    ;;
  *)
    exec "$@"
    ;;
esac
