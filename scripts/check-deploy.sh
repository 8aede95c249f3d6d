#!/usr/bin/env bash
# Checks the operators' kit under deploy/:
#   1. deploy/prometheus/alerts.yml is valid (promtool check rules) and its key alerts
#      fire on synthetic series as intended (promtool test rules, tests below);
#   2. deploy/grafana/merit.json is valid JSON, a Grafana dashboard over the
#      ${DS_PROMETHEUS} input, and every panel query parses as PromQL;
#   3. every merit_* metric named in either file exists in the Rust sources.
# Installs promtool (Debian's `prometheus` package) when it is missing.
#
# Usage: bash scripts/check-deploy.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
alerts=deploy/prometheus/alerts.yml
dashboard=deploy/grafana/merit.json

fail() {
  echo "check-deploy: FAIL: $*" >&2
  exit 1
}

for f in "$alerts" "$dashboard"; do
  [[ -f $f ]] || fail "$f is missing"
done
command -v python3 >/dev/null || fail "python3 is needed to read the dashboard JSON"

if ! command -v promtool >/dev/null; then
  echo "check-deploy: promtool not found; installing Debian's prometheus package"
  if [[ $(id -u) -eq 0 ]]; then sudo=(); else sudo=(sudo); fi
  install() { DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends prometheus >/dev/null; }
  # A fresh machine may have no package lists yet.
  install || { "${sudo[@]}" apt-get update -qq && install; } \
    || fail "could not install promtool (apt-get install prometheus)"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# --- 1. alert rules --------------------------------------------------------------------
echo "== promtool check rules $alerts"
promtool check rules "$alerts"

echo "== promtool test rules (synthetic series)"
cp "$alerts" "$work/alerts.yml"
cat >"$work/alerts_test.yml" <<'EOF'
rule_files: [alerts.yml]
evaluation_interval: 1m
tests:
  # Two nodes own 2 + 1 of the 4 user shards: one user shard has no owner.
  - interval: 1m
    input_series:
      - series: 'merit_shards_owned{job="merit", instance="a:8080", kind="user"}'
        values: '2x10'
      - series: 'merit_shards_owned{job="merit", instance="b:8080", kind="user"}'
        values: '1x10'
      - series: 'merit_shards_owned{job="merit", instance="a:8080", kind="nft"}'
        values: '2x10'
      - series: 'merit_shards_owned{job="merit", instance="b:8080", kind="nft"}'
        values: '2x10'
      - series: 'merit_mailbox_depth{job="merit", instance="a:8080", queue="merit.user.0"}'
        values: '0x10'
      - series: 'merit_mailbox_depth{job="merit", instance="b:8080", queue="merit.user.0"}'
        values: '0x10'
      - series: 'merit_mailbox_depth{job="merit", instance="a:8080", queue="merit.user.1"}'
        values: '0x10'
      - series: 'merit_mailbox_depth{job="merit", instance="a:8080", queue="merit.user.2"}'
        values: '0x10'
      - series: 'merit_mailbox_depth{job="merit", instance="a:8080", queue="merit.user.3"}'
        values: '0x10'
      - series: 'merit_mailbox_depth{job="merit", instance="a:8080", queue="merit.nft.0"}'
        values: '0x10'
      - series: 'merit_mailbox_depth{job="merit", instance="a:8080", queue="merit.nft.1"}'
        values: '0x10'
      - series: 'merit_mailbox_depth{job="merit", instance="a:8080", queue="merit.nft.2"}'
        values: '0x10'
      - series: 'merit_mailbox_depth{job="merit", instance="a:8080", queue="merit.nft.3"}'
        values: '0x10'
      - series: 'merit_dead_letters_stored{job="merit", instance="a:8080", state="waiting"}'
        values: '0x10'
    alert_rule_test:
      - eval_time: 5m
        alertname: MeritShardsUnowned
        exp_alerts:
          - exp_labels: {job: merit, kind: user, severity: critical}
            exp_annotations:
              summary: "user shards without an owner"
              description: "The nodes together own 3 user shards, fewer than the shard queues that exist. Messages in the unowned shards wait."
              runbook: "docs/operations.md#meritshardsunowned"
      - eval_time: 5m
        alertname: MeritDeadLettersGrowing
        exp_alerts: []
  # Dead letters arrive, a node stops answering, a saga gets stuck.
  - interval: 1m
    input_series:
      - series: 'merit_dead_letters_stored{job="merit", instance="a:8080", state="waiting"}'
        values: '0 0 0 3 3 3 3 3'
      - series: 'merit_dead_letters_stored{job="merit", instance="b:8080", state="waiting"}'
        values: '0 0 0 3 3 3 3 3'
      - series: 'up{job="merit", instance="a:8080"}'
        values: '1 1 0 0 0 0 0 0'
      - series: 'merit_sagas{job="merit", instance="a:8080", state="stuck"}'
        values: '0 0 0 0 1 1 1 1'
    alert_rule_test:
      - eval_time: 6m
        alertname: MeritDeadLettersGrowing
        exp_alerts:
          - exp_labels: {job: merit, severity: warning}
            exp_annotations:
              summary: "new dead letters"
              description: "Messages were dead-lettered in the last 15 minutes. Triage them by reason class (GET /api/v1/dlq or the dashboard)."
              runbook: "docs/operations.md#meritdeadlettersgrowing"
      - eval_time: 6m
        alertname: MeritNodeDown
        exp_alerts:
          - exp_labels: {job: merit, instance: "a:8080", severity: critical}
            exp_annotations:
              summary: "merit node a:8080 does not answer /metrics"
              description: "Prometheus could not scrape a:8080 for 2 minutes. The process is down, hung or unreachable. Its shards move to the other nodes about 17 s after its registration expires."
              runbook: "docs/operations.md#meritnodedown"
      - eval_time: 6m
        alertname: MeritSagaStuck
        exp_alerts:
          - exp_labels: {job: merit, severity: critical}
            exp_annotations:
              summary: "1 merit saga(s) stuck"
              description: "A compensation gave up: the world may be half-changed (for example a token minted but the achievement not settled). An operator must look and retry."
              runbook: "docs/operations.md#meritsagastuck"
  # A shard queue grows by 100 a minute; 2% of proposal turns take more than 2.5 s.
  - interval: 1m
    input_series:
      - series: 'merit_mailbox_depth{job="merit", instance="a:8080", queue="merit.proposal.2"}'
        values: '500+100x40'
      - series: 'merit_handler_seconds_bucket{job="merit", instance="a:8080", kind="proposal", le="1"}'
        values: '0+98x40'
      - series: 'merit_handler_seconds_bucket{job="merit", instance="a:8080", kind="proposal", le="2.5"}'
        values: '0+98x40'
      - series: 'merit_handler_seconds_bucket{job="merit", instance="a:8080", kind="proposal", le="5"}'
        values: '0+100x40'
      - series: 'merit_handler_seconds_bucket{job="merit", instance="a:8080", kind="proposal", le="+Inf"}'
        values: '0+100x40'
    alert_rule_test:
      - eval_time: 30m
        alertname: MeritMailboxDepthGrowing
        exp_alerts:
          - exp_labels: {job: merit, queue: merit.proposal.2, severity: warning}
            exp_annotations:
              summary: "shard queue merit.proposal.2 holds 3500 messages and keeps growing"
              description: "Messages arrive in merit.proposal.2 faster than its owner applies them, for 15 minutes."
              runbook: "docs/operations.md#meritmailboxdepthgrowing"
      - eval_time: 30m
        alertname: MeritTurnLatencyHigh
        exp_alerts:
          - exp_labels: {job: merit, instance: "a:8080", kind: proposal, severity: warning}
            exp_annotations:
              summary: "p99 turn latency of proposal on a:8080 is 3.75s"
              description: "Dispatch to turn outcome takes more than 1 s for 1% of messages, for 15 minutes."
              runbook: "docs/operations.md#meritturnlatencyhigh"
EOF
(cd "$work" && promtool test rules alerts_test.yml)

# --- 2. dashboard ----------------------------------------------------------------------
echo "== dashboard $dashboard"
# Writes every panel query, Grafana variables replaced, as a recording rule so that
# promtool parses it as PromQL.
python3 - "$dashboard" "$work/dashboard_rules.yml" <<'EOF'
import json, sys

path, out = sys.argv[1], sys.argv[2]
try:
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
except ValueError as e:
    sys.exit(f"check-deploy: FAIL: {path} is not valid JSON: {e}")

def need(cond, what):
    if not cond:
        sys.exit(f"check-deploy: FAIL: {path}: {what}")

need(isinstance(d.get("schemaVersion"), int), "no integer schemaVersion")
need(any(i.get("name") == "DS_PROMETHEUS" for i in d.get("__inputs", [])),
     "no DS_PROMETHEUS input in __inputs")
exprs = []
for p in d.get("panels", []):
    for sub in [p] + p.get("panels", []):
        if sub.get("type") == "row":
            continue
        ds = sub.get("datasource", {})
        need(ds.get("uid") == "${DS_PROMETHEUS}",
             f"panel {sub.get('title')!r} does not use the ${{DS_PROMETHEUS}} data source")
        targets = sub.get("targets", [])
        need(targets, f"panel {sub.get('title')!r} has no query")
        for t in targets:
            need(t.get("expr"), f"panel {sub.get('title')!r} has an empty query")
            exprs.append((sub["title"], t["expr"]))

subst = {"$__rate_interval": "5m", "$__range": "1h", "$__interval": "1m",
         "$job": "merit", "$instance": ".*"}
with open(out, "w", encoding="utf-8") as f:
    f.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, (title, expr) in enumerate(exprs):
        for k, v in subst.items():
            expr = expr.replace(k, v)
        f.write(f"      - record: dashboard:query_{i}\n        expr: {json.dumps(expr)}\n")
print(f"{path}: valid JSON, schemaVersion {d['schemaVersion']}, {len(exprs)} queries")
EOF
if ! parsed="$(promtool check rules "$work/dashboard_rules.yml" 2>&1)"; then
  echo "$parsed" | grep -v '^Checking' >&2
  fail "a dashboard query is not valid PromQL (dashboard:query_N is the Nth query, from 0, in panel order)"
fi
echo "every dashboard query parses as PromQL"

# --- 3. metric names -------------------------------------------------------------------
echo "== merit_* metric names against the Rust sources"
mapfile -t rust_files < <(find . -path ./target -prune -o -path ./fuzz/target -prune -o -name '*.rs' -print)
[[ ${#rust_files[@]} -gt 0 ]] || fail "no Rust sources found under $root"
unknown=0
checked=0
for file in "$alerts" "$dashboard"; do
  while read -r name; do
    base="$name"
    # Histograms are exposed as NAME_bucket, NAME_sum and NAME_count.
    for suffix in _bucket _sum _count; do
      if [[ $name == *"$suffix" ]] && grep -qF "histogram!(\"${name%"$suffix"}\"" "${rust_files[@]}"; then
        base="${name%"$suffix"}"
      fi
    done
    checked=$((checked + 1))
    if ! grep -qF "\"$base\"" "${rust_files[@]}"; then
      echo "check-deploy: unknown metric $name in $file (no \"$base\" in any .rs file)" >&2
      unknown=$((unknown + 1))
    fi
  done < <(grep -oE 'merit_[a-z0-9_]+' "$file" | sort -u)
done
[[ $unknown -eq 0 ]] || fail "$unknown metric name(s) not found in the Rust sources"
echo "all $checked merit_* metric names exist in the Rust sources"

echo "check-deploy: OK"
