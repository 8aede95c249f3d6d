#!/usr/bin/env bash
# Runs the examples under examples/ against a real node, as .ci/run does: a `merit serve`
# on embedded SQLite and the machine's RabbitMQ (a vhost of its own), then
#   - examples/python/producer.py publishes a proposal and three votes over AMQP, with
#     confirms and a re-send under the same id; the node's API must then count exactly
#     three voters;
#   - examples/typescript (types generated from docs/openapi.json and docs/schemas) signs
#     in with a fresh wallet (Sign-In with Ethereum), creates a proposal and votes through
#     the REST API, and must hear its vote recorded over /ws (`node --test`).
# Needs: target/debug/merit (or MERIT_BIN), rabbitmqctl, node/npm, python3 with pika
# (installed from Debian's python3-pika when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

merit="${MERIT_BIN:-target/debug/merit}"
# The producer runs on a Python that has pika: the one on PATH, or Debian's with its
# python3-pika package (a pyenv or venv python on PATH does not see Debian's packages).
py=python3
if ! "$py" -c 'import pika' 2>/dev/null; then
  py=/usr/bin/python3
  "$py" -c 'import pika' 2>/dev/null || {
    echo "examples: installing python3-pika"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pika >/dev/null ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pika >/dev/null; }
  }
fi

dir=$(mktemp -d)
vhost="merit-examples-$RANDOM$RANDOM"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
admin="examples-admin-$RANDOM$RANDOM"
jwt="examples-jwt-secret-$RANDOM$RANDOM-0123456789abcdef0123456789"
rabbitmqctl add_vhost "$vhost" >/dev/null
rabbitmqctl set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null
amqp="amqp://guest:guest@127.0.0.1:5672/$vhost"

MERIT_ENV=test MERIT_HTTP_ADDR="127.0.0.1:$port" MERIT_DATABASE_URL="sqlite://$dir/merit.db?mode=rwc" \
  MERIT_AMQP_URL="$amqp" MERIT_ADMIN_TOKEN="$admin" MERIT_JWT_SECRET="$jwt" MERIT_LOG_FILTER=warn \
  "$merit" serve >"$dir/node.log" 2>&1 &
node=$!
cleanup() {
  kill "$node" 2>/dev/null || true
  wait "$node" 2>/dev/null || true
  rabbitmqctl delete_vhost "$vhost" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "examples: FAIL: $*" >&2
  tail -n 30 "$dir/node.log" >&2
  exit 1
}

base="http://127.0.0.1:$port"
for _ in $(seq 1 120); do
  curl -fsS "$base/ready" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fsS "$base/ready" >/dev/null || fail "the node did not become ready"

echo "== examples/python/producer.py"
proposal="py-$RANDOM"
"$py" examples/python/producer.py --amqp-url "$amqp" --proposal "$proposal" \
  --creator 0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed \
  --voter 0xfb6916095ca1df60bb79ce92ce3ea74c37c5d359 \
  --voter 0xdbf03b407c01e7cd3cbea99509d93f8dddc8c6fb \
  --voter 0xd1220a0cf47c7b9be7a2e6ba89f429762e7b9adb
voters=""
for _ in $(seq 1 120); do
  voters=$(curl -fsS -H "Authorization: Bearer $admin" "$base/api/v1/proposals/$proposal" 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["tally"]["voters"])' 2>/dev/null || true)
  [ "$voters" = 3 ] && break
  sleep 0.5
done
[ "$voters" = 3 ] || fail "the API counts ${voters:-no} voters on $proposal, expected 3 (each once)"
echo "examples: the node counted the producer's 3 votes once each"

echo "== examples/typescript (typed from docs/openapi.json and docs/schemas; node --test)"
(
  cd examples/typescript
  npm ci --no-audit --no-fund >/dev/null
  MERIT_URL="$base" MERIT_CHAIN_ID=31337 npm test
) || fail "the TypeScript example failed"
echo "examples: the TypeScript client signed in with a wallet, created a proposal, voted and heard the vote recorded"
