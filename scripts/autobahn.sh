#!/usr/bin/env bash
# Runs the Autobahn|Testsuite against examples/echo-server.js on a free port and stops the
# server afterwards. Arguments go to the runner (e.g. --cases '1.*,5.*', --out DIR); its
# exit status is this script's (0: no case failed, 1: some failed, 2: could not run).
#   scripts/autobahn.sh [runner options]
# AUTOBAHN_RUN overrides the runner (default ../shared/tools/autobahn/run, beside the repo).
set -euo pipefail
cd "$(dirname "$0")/.."
run=${AUTOBAHN_RUN:-../shared/tools/autobahn/run}

coproc SERVER { exec node examples/echo-server.js 0; }
server_pid=$SERVER_PID
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true' EXIT

# The server prints "echo server listening on ws://HOST:PORT/echo" once it is bound.
if ! read -r -t 30 line <&"${SERVER[0]}"; then
  echo "autobahn.sh: the echo server did not start" >&2
  exit 2
fi
url=${line##* }
echo "autobahn.sh: $line" >&2
status=0
"$run" "$url" "$@" || status=$?
exit "$status"
