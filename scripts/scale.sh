#!/bin/bash
# Throughput of N `merit serve` nodes (release build) sharing one RabbitMQ vhost and one
# PostgreSQL database, fed by `merit simulate`. Needs rabbitmqctl and psql on this machine
# (the services of the README), and `cargo build --release` first.
# usage: scripts/scale.sh NODES EVENTS RATE   e.g. scripts/scale.sh 2 20000 3000
set -u
N=$1; EVENTS=$2; RATE=$3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/merit
VH=merit-scale-$N-$$
DB=scale_${N}_$$
rabbitmqctl add_vhost $VH >/dev/null; rabbitmqctl set_permissions -p $VH guest '.*' '.*' '.*' >/dev/null
psql -q -U postgres -h 127.0.0.1 -c "CREATE DATABASE $DB" postgres
AMQP="amqp://guest:guest@127.0.0.1:5672/$VH"
PG="postgres://postgres@127.0.0.1:5432/$DB"
pids=()
for i in $(seq 1 $N); do
  MERIT_ENV=test MERIT_CONFIG_DIR=$ROOT/config MERIT_LOG_FILTER=warn MERIT_NODE_ID=n$i \
  MERIT_DATABASE_URL=$PG MERIT_AMQP_URL=$AMQP MERIT_MAILBOX_SHARDS=12 MERIT_ADMIN_TOKEN=scale-admin-token-0123456789 \
  MERIT_JWT_SECRET=scale-jwt-secret-0123456789abcdef0123456789 \
  $BIN serve > ${TMPDIR:-/tmp}/scale-$N-n$i.log 2>&1 &
  pids+=($!)
  sleep 3
done
sleep 8
start=$(date +%s.%N)
MERIT_ENV=test MERIT_CONFIG_DIR=$ROOT/config MERIT_LOG_FILTER=warn MERIT_DATABASE_URL=$PG \
  $BIN simulate --amqp-url $AMQP --users 20000 --proposals 50 --rate $RATE --events $EVENTS --seed 1 > ${TMPDIR:-/tmp}/scale-$N-sim.log 2>&1
pub=$(date +%s.%N)
want=$((EVENTS-50))
while true; do
  n=$(psql -tA -U postgres -h 127.0.0.1 -c "select count(*) from votes" $DB)
  [ "$n" -ge "$want" ] && break
  sleep 0.2
done
end=$(date +%s.%N)
echo "nodes=$N votes=$n publish_s=$(echo "$pub-$start"|bc) drain_s=$(echo "$end-$start"|bc) votes_per_s=$(echo "$n/($end-$start)"|bc)"
for p in "${pids[@]}"; do kill -TERM $p; done; wait
rabbitmqctl delete_vhost $VH >/dev/null
psql -q -U postgres -h 127.0.0.1 -c "DROP DATABASE $DB WITH (FORCE)" postgres
