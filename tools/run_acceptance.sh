#!/usr/bin/env bash
# Start a private trimq-server on a free port, run pika's acceptance suite against it
# (tools/pika_acceptance.sh), stop the server. Extra arguments go to pytest.
#   tools/run_acceptance.sh                                   the installed pika release's suite
#   PIKA_REF=master PIKA_SRC=/path/to/pika tools/run_acceptance.sh   pika's development head
#                                                             (the settings are pika_acceptance.sh's)
# The three TestGetaddrinfoWWWGoogleDotComPort80 tests resolve a public host name and need the
# internet, which CI and the development machines do not have; they are deselected here
# (pika's later revisions resolve localhost instead).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$REPO/.venv}
data=$(mktemp -d)
out="$data/server.out"
TRIMQ_MANAGEMENT_ENABLED=false \
  "$VENV/bin/trimq-server" --host 127.0.0.1 --port 0 --data-dir "$data/data" --log-level warning \
  >"$out" 2>"$data/server.log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$out" && break; sleep 0.1; done
port=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$out" | head -1)
[ -n "$port" ] || { echo "trimq-server did not start:"; cat "$data/server.log"; exit 1; }
PORT=$port VENV=$VENV bash "$REPO/tools/pika_acceptance.sh" \
  -k "not TestGetaddrinfoWWWGoogleDotComPort80" "$@"
