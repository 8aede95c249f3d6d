#!/usr/bin/env bash
# A 3-node RabbitMQ cluster on this machine, for the broker-cluster tests; separate from
# the machine's broker on 5672. Node i (1..3) is merit-m<i>@localhost, with AMQP on
# 127.0.0.1:568<i>, Erlang distribution on 2568<i> and its data under $BASE/m<i>.
#
#   scripts/rabbit-cluster.sh start          start and join the three nodes (idempotent)
#   scripts/rabbit-cluster.sh stop           stop all three
#   scripts/rabbit-cluster.sh urls VHOST     the MERIT_AMQP_URL list for VHOST
#   scripts/rabbit-cluster.sh ctl I ARGS...  rabbitmqctl against node I
#
# Runs the nodes as the `rabbitmq` user (sharing the machine broker's Erlang cookie) when
# started as root, as the calling user otherwise.
set -euo pipefail

BASE="${MERIT_RABBIT_CLUSTER_DIR:-/var/lib/rabbitmq/merit-cluster}"
BIN=/usr/lib/rabbitmq/bin
[ -x "$BIN/rabbitmq-server" ] || BIN="$(dirname "$(command -v rabbitmq-server)")"

as_broker() {
  if [ "$(id -u)" = 0 ]; then
    su rabbitmq -s /bin/sh -c "cd /var/lib/rabbitmq && HOME=/var/lib/rabbitmq $*"
  else
    sh -c "$*"
  fi
}

node() { echo "merit-m$1@localhost"; }

ctl() { # node args...
  local i=$1
  shift
  # Quoted, so patterns such as '.*' reach rabbitmqctl unexpanded.
  as_broker "timeout 120 $BIN/rabbitmqctl -n $(node "$i") $(printf '%q ' "$@")"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_node() {
  local i=$1 dir="$BASE/m$1"
  if port_open "568$i"; then return; fi
  mkdir -p "$dir"
  cat >"$dir/rabbitmq.conf" <<EOF
listeners.tcp.local = 127.0.0.1:568$i
loopback_users = none
EOF
  echo '[rabbitmq_consistent_hash_exchange].' >"$dir/enabled_plugins"
  [ "$(id -u)" = 0 ] && chown -R rabbitmq:rabbitmq "$BASE"
  as_broker "RABBITMQ_NODENAME=$(node "$i") RABBITMQ_NODE_PORT=568$i \
    RABBITMQ_DIST_PORT=2568$i RABBITMQ_CONFIG_FILE=$dir/rabbitmq \
    RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins RABBITMQ_MNESIA_BASE=$dir/mnesia \
    RABBITMQ_LOG_BASE=$dir/log RABBITMQ_PID_FILE=$dir/pid \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS='+sbwt none +sbwtdcpu none +sbwtdio none' \
    $BIN/rabbitmq-server -detached"
}

joined() { # whether node 1 sees three running nodes
  ctl 1 cluster_status --formatter json 2>/dev/null |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)["running_nodes"]))' 2>/dev/null |
    grep -qx 3
}

case "${1:-}" in
  start)
    for i in 1 2 3; do start_node "$i"; done
    for i in 1 2 3; do
      # The CLI cannot reach a node in the first seconds after -detached; retry.
      for try in $(seq 1 30); do
        ctl "$i" await_startup --timeout 120 >/dev/null 2>&1 && break
        [ "$try" = 30 ] && { echo "node $(node "$i") did not start; see $BASE/m$i/log" >&2; exit 1; }
        sleep 2
      done
    done
    if ! joined; then
      for i in 2 3; do
        if ! ctl "$i" cluster_status 2>/dev/null | grep -q "$(node 1)"; then
          ctl "$i" stop_app >/dev/null
          ctl "$i" join_cluster "$(node 1)" >/dev/null
          ctl "$i" start_app >/dev/null
        fi
      done
      for _ in $(seq 1 60); do joined && break; sleep 1; done
      joined || { echo "the three nodes did not form a cluster" >&2; exit 1; }
    fi
    echo "3-node RabbitMQ cluster up on 127.0.0.1:5681-5683"
    ;;
  stop)
    for i in 1 2 3; do
      if port_open "568$i"; then ctl "$i" stop >/dev/null || true; fi
    done
    ;;
  urls)
    vhost="${2:?usage: urls VHOST}"
    echo "amqp://guest:guest@127.0.0.1:5681/$vhost,amqp://guest:guest@127.0.0.1:5682/$vhost,amqp://guest:guest@127.0.0.1:5683/$vhost"
    ;;
  ctl)
    i="${2:?usage: ctl I ARGS...}"
    shift 2
    ctl "$i" "$@"
    ;;
  *)
    sed -n '2,12p' "$0" >&2
    exit 2
    ;;
esac
