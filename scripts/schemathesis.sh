#!/usr/bin/env bash
# Runs schemathesis against a running merit node: every check, once as the operator (admin
# token) and once as a user (a user JWT), after seeding a proposal and a vote so the GET
# endpoints return real items. Bounded: each pass stops within ST_MAX_TIME seconds.
#
# Usage: scripts/schemathesis.sh BASE_URL ADMIN_TOKEN USER_TOKEN
#   e.g. scripts/schemathesis.sh http://127.0.0.1:8080 "$MERIT_ADMIN_TOKEN" "$(merit token 0x…)"
#
# It does not start the node. Schemathesis is installed from PyPI into
# target/schemathesis-venv when missing (pinned: ST_VERSION). Exits non-zero on any failure.
# Reports (JUnit) and schemathesis' cache go to target/schemathesis/.
#
# Tunables (environment): ST_VERSION, ST_MAX_EXAMPLES (per operation, default 30),
# ST_MAX_TIME (seconds per pass, default 60), ST_RATE (requests, default 150/s: under the
# node's per-client budget of 200/s, so 429s stay rare; they are documented anyway).
set -euo pipefail

if [[ $# -ne 3 ]]; then
    echo "usage: $0 BASE_URL ADMIN_TOKEN USER_TOKEN" >&2
    exit 2
fi
base=${1%/}
admin_token=$2
user_token=$3

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/target/schemathesis-venv"
reports="$root/target/schemathesis"
config="$root/scripts/schemathesis.toml"
version=${ST_VERSION:-4.32.5}
max_examples=${ST_MAX_EXAMPLES:-30}
max_time=${ST_MAX_TIME:-60}
rate=${ST_RATE:-150/s}

st="$venv/bin/schemathesis"
if ! "$st" --version 2>/dev/null | grep -q " $version\$"; then
    echo "== installing schemathesis $version into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi
"$st" --version
mkdir -p "$reports"

# The node must answer before anything else.
for _ in $(seq 1 30); do
    curl -fsS -o /dev/null "$base/health" && break
    sleep 1
done
curl -fsS -o /dev/null "$base/health" || {
    echo "no merit node answers at $base/health" >&2
    exit 1
}

# --- Seed: a proposal open now, and the user's vote on it. -------------------------------
# Both are published events that the ProposalActor applies; wait until the read side has
# them so the runs see real items.
proposal="st-seed-$(date +%s)-$$"
starts=$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)
ends=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)
post() { # path body -> prints the status, fails on curl errors
    curl -sS -o "$reports/seed.json" -w '%{http_code}' -X POST "$base$1" \
        -H "Authorization: Bearer $user_token" -H 'Content-Type: application/json' -d "$2"
}
wait_for() { # path jq-free grep pattern
    for _ in $(seq 1 30); do
        if curl -fsS "$base$1" -H "Authorization: Bearer $user_token" | grep -q "$2"; then
            return 0
        fi
        sleep 1
    done
    echo "seeding: $1 never showed $2" >&2
    return 1
}
status=$(post /api/v1/proposals "{\"proposal\":\"$proposal\",\"title\":\"Schemathesis seed\",\"description\":\"Seeded by scripts/schemathesis.sh\",\"starts_at\":\"$starts\",\"ends_at\":\"$ends\",\"quorum\":1}")
[[ $status == 202 ]] || { echo "seeding the proposal: $status $(cat "$reports/seed.json")" >&2; exit 1; }
wait_for "/api/v1/proposals/$proposal" '"status":"active"'
status=$(post "/api/v1/proposals/$proposal/votes" '{"choice":"for","reason":"seed"}')
[[ $status == 202 ]] || { echo "seeding the vote: $status $(cat "$reports/seed.json")" >&2; exit 1; }
wait_for "/api/v1/proposals/$proposal/votes" '"total":1'
echo "== seeded proposal $proposal with one vote"

# --- The two passes. ---------------------------------------------------------------------
run() { # name token
    echo "== schemathesis as $1"
    # --max-time bounds the pass (fuzzing repeats until it is spent); timeout is the
    # backstop should a request hang past it. Run from the reports directory: schemathesis
    # keeps a cache (.schemathesis/) in the working directory.
    (cd "$reports" && timeout "$((max_time + 30))" "$st" --config-file "$config" run "$base/openapi.json" \
        --checks all \
        --max-examples "$max_examples" \
        --max-time "$max_time" \
        --rate-limit "$rate" \
        --request-timeout 10 \
        --generation-database none \
        --header "Authorization: Bearer $2" \
        --report junit --report-junit-path "$reports/$1.xml" \
        --no-color)
}
failed=0
run admin "$admin_token" || failed=1
run user "$user_token" || failed=1
if [[ $failed -ne 0 ]]; then
    echo "schemathesis found failures (see above; JUnit in $reports)" >&2
    exit 1
fi
echo "schemathesis: both passes clean"
