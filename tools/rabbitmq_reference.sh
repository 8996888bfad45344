#!/usr/bin/env bash
# A private RabbitMQ 3.10 node to check the test suite's expectations against RabbitMQ.
#
#   tools/rabbitmq_reference.sh COMMAND [ARGS...]   start a node, run COMMAND with
#                                                   TRIMQ_TEST_URL pointing at it (and
#                                                   TRIMQ_TEST_MANAGEMENT_URL and
#                                                   TRIMQ_TEST_PROMETHEUS_URL at its HTTP
#                                                   listeners), stop the node;
#                                                   exits with COMMAND's status
#   tools/rabbitmq_reference.sh                     start a node and keep it until Ctrl-C
#
# Installs Debian's rabbitmq-server (apt-get, as root) when /usr/lib/rabbitmq/bin/rabbitmq-server
# is missing. The node is private: its own directory under a temporary folder (data, logs, and
# HOME with its Erlang cookie), its own node name, AMQP port, distribution port and epmd, all
# stopped and removed at the end. AMQP port: $RABBITMQ_REFERENCE_PORT, else a free one.
# guest/guest on vhost /; plugins rabbitmq_management and rabbitmq_prometheus, each on a free
# port of 127.0.0.1; a TLS listener on another (certificates made here with openssl: a CA, a
# server certificate for localhost and 127.0.0.1, client certificates CN=guest and CN=nobody,
# and CN=guest from another CA, as tests/tls_helpers.make_certs names them), verify_peer
# without fail_if_no_peer_cert, EXTERNAL (rabbitmq_auth_mechanism_ssl) by common name.
set -euo pipefail

SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server
if [ ! -x "$SERVER" ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "rabbitmq_reference: $SERVER is missing; install Debian's rabbitmq-server" >&2
    exit 2
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    rabbitmq-server >/dev/null
  # the package starts a system-wide node; it is not ours, and not needed
  if command -v systemctl >/dev/null && systemctl is-active -q rabbitmq-server 2>/dev/null; then
    systemctl stop rabbitmq-server || true
  fi
fi

# six free ports: AMQP (unless given), Erlang distribution, epmd, management, prometheus, TLS
read -r FREE_AMQP DIST_PORT EPMD_PORT MANAGEMENT_PORT PROMETHEUS_PORT TLS_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
PORT=${RABBITMQ_REFERENCE_PORT:-$FREE_AMQP}

BASE=$(mktemp -d "${TMPDIR:-/tmp}/trimq-rabbitmq.XXXXXX")
mkdir -p "$BASE/mnesia" "$BASE/log" "$BASE/home"
echo '[rabbitmq_management,rabbitmq_prometheus,rabbitmq_auth_mechanism_ssl].' \
  > "$BASE/enabled_plugins"
CERTS="$BASE/certs"
mkdir -p "$CERTS"
new_ca() {  # NAME
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/O=trimq tests/CN=$1" -keyout "$CERTS/$1_key.pem" -out "$CERTS/$1.pem" 2>/dev/null
}
issue() {  # NAME COMMON_NAME CA EXTENSIONS
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=trimq tests/CN=$2" \
    -keyout "$CERTS/$1_key.pem" -out "$CERTS/$1.csr" 2>/dev/null
  printf '%s\n' "$4" > "$CERTS/$1.ext"
  openssl x509 -req -in "$CERTS/$1.csr" -CA "$CERTS/$3.pem" -CAkey "$CERTS/$3_key.pem" \
    -CAcreateserial -days 3650 -extfile "$CERTS/$1.ext" -out "$CERTS/$1_cert.pem" 2>/dev/null
}
new_ca ca
new_ca other_ca
issue server localhost ca "subjectAltName=DNS:localhost,IP:127.0.0.1"
issue guest guest ca "basicConstraints=CA:FALSE"
issue nobody nobody ca "basicConstraints=CA:FALSE"
issue other guest other_ca "basicConstraints=CA:FALSE"
# consumer_timeout checked twice a second, so tests/test_consumer_timeout.py can see it fire
CONSUMER_TIMEOUT_MS=8000
cat > "$BASE/rabbitmq.conf" <<EOF
consumer_timeout = $CONSUMER_TIMEOUT_MS
management.tcp.ip = 127.0.0.1
management.tcp.port = $MANAGEMENT_PORT
prometheus.tcp.ip = 127.0.0.1
prometheus.tcp.port = $PROMETHEUS_PORT
listeners.ssl.1 = 127.0.0.1:$TLS_PORT
ssl_options.cacertfile = $CERTS/ca.pem
ssl_options.certfile = $CERTS/server_cert.pem
ssl_options.keyfile = $CERTS/server_key.pem
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
auth_mechanisms.1 = PLAIN
auth_mechanisms.2 = AMQPLAIN
auth_mechanisms.3 = EXTERNAL
ssl_cert_login_from = common_name
EOF
echo '[{rabbit, [{channel_tick_interval, 500}]}].' > "$BASE/advanced.config"
NODE_PID=

stop_node() {
  if [ -n "$NODE_PID" ] && kill -0 "$NODE_PID" 2>/dev/null; then
    kill -TERM "$(cat "$BASE/pid" 2>/dev/null || echo "$NODE_PID")" 2>/dev/null || true
    for _ in $(seq 1 300); do
      kill -0 "$NODE_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$NODE_PID" 2>/dev/null || true
    wait "$NODE_PID" 2>/dev/null || true
  fi
  ERL_EPMD_PORT=$EPMD_PORT epmd -kill >/dev/null 2>&1 || true
  rm -rf "$BASE"
}
trap stop_node EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

NODENAME="trimq-reference-$PORT@localhost"
# the node's own rabbitmqctl, for tests that administer the broker (tests/test_vhost_limits.py)
printf '#!/bin/sh\nHOME="%s" ERL_EPMD_PORT=%s exec /usr/lib/rabbitmq/bin/rabbitmqctl -n %s "$@"\n' \
  "$BASE/home" "$EPMD_PORT" "$NODENAME" > "$BASE/rabbitmqctl"
chmod +x "$BASE/rabbitmqctl"

(
  export HOME="$BASE/home"
  export RABBITMQ_NODENAME="$NODENAME"
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT="$PORT"
  export RABBITMQ_DIST_PORT="$DIST_PORT"
  export ERL_EPMD_PORT="$EPMD_PORT"
  export RABBITMQ_MNESIA_BASE="$BASE/mnesia"
  export RABBITMQ_LOG_BASE="$BASE/log"
  export RABBITMQ_LOGS=-
  export RABBITMQ_PID_FILE="$BASE/pid"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$BASE/enabled_plugins"
  export RABBITMQ_CONF_ENV_FILE="$BASE/rabbitmq-env.conf"
  export RABBITMQ_CONFIG_FILE="$BASE/rabbitmq"
  export RABBITMQ_ADVANCED_CONFIG_FILE="$BASE/advanced.config"
  exec "$SERVER"
) > "$BASE/rabbitmq.out" 2>&1 < /dev/null &
NODE_PID=$!

# ready once the AMQP and HTTP listeners accept connections
ready=
for _ in $(seq 1 600); do
  if ! kill -0 "$NODE_PID" 2>/dev/null; then
    break
  fi
  if python3 -c 'import socket, sys
for port in sys.argv[1:]:
    socket.create_connection(("127.0.0.1", int(port)), 1).close()' \
      "$PORT" "$MANAGEMENT_PORT" "$PROMETHEUS_PORT" "$TLS_PORT" 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "rabbitmq_reference: RabbitMQ did not start on port $PORT; its output:" >&2
  tail -n 40 "$BASE/rabbitmq.out" >&2
  exit 1
fi

export TRIMQ_TEST_URL="amqp://guest:guest@127.0.0.1:$PORT/%2F"
export TRIMQ_TEST_MANAGEMENT_URL="http://127.0.0.1:$MANAGEMENT_PORT"
export TRIMQ_TEST_PROMETHEUS_URL="http://127.0.0.1:$PROMETHEUS_PORT"
export TRIMQ_TEST_RABBITMQCTL="$BASE/rabbitmqctl"
export TRIMQ_TEST_CONSUMER_TIMEOUT=$CONSUMER_TIMEOUT_MS
export TRIMQ_TEST_TLS_PORT=$TLS_PORT
export TRIMQ_TEST_TLS_CERTS=$CERTS
echo "rabbitmq_reference: RabbitMQ $(ls /usr/lib/rabbitmq/lib | sed -n 's/^rabbitmq_server-//p')" \
  "ready at $TRIMQ_TEST_URL, management $TRIMQ_TEST_MANAGEMENT_URL," \
  "prometheus $TRIMQ_TEST_PROMETHEUS_URL" >&2
if [ $# -eq 0 ]; then
  echo "rabbitmq_reference: Ctrl-C stops it" >&2
  wait "$NODE_PID"
  exit 0
fi
status=0
"$@" || status=$?
exit "$status"
