#!/usr/bin/env bash
# Legitimate writes while every attack of docs/SECURITY.md runs at once: three release nodes
# with their production limits on, a steady stream of claims (`loadgen claims --rate`) from
# 127.0.0.1, first alone, then beside bench/abuse_attack.py attacking from 127.0.0.2 (its own
# client to the nodes' per-client limits). Reports both runs' latency, the attacks' outcomes,
# and the Raft term before and after (an election would raise it).
# Bounded: two runs of DURATION seconds; the attacker stops by itself; every node is killed on exit.
#
#   bench/abuse.sh [DURATION=20] [CLAIM_RATE=500]
set -euo pipefail
DURATION=${1:-20}
CLAIM_RATE=${2:-500}
BASE_PORT=${BASE_PORT:-18200}
# Production limits, except reservations per client: the legitimate load reserves thousands of
# names from one address.
NODE_FLAGS="--reservations-per-client-per-hour 0"
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
out=$(results_file abuse)

claims() { # label
  "$LOADGEN" claims --nodes "$nodes" --concurrency 32 --rate "$CLAIM_RATE" --duration "$DURATION" --json 2>/dev/null \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); r["label"]=sys.argv[1]; print(json.dumps(r))' "$1" >>"$out"
}
terms() {
  for i in 1 2 3; do
    curl -s "http://127.0.0.1:$((BASE_PORT + i))/graphql" -H 'content-type: application/json' \
      -d '{"query":"{ cluster { term } }"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["cluster"]["term"], end=" ")'
  done
}

start_nodes 3 a
nodes=$(node_urls 3)
addrs=$(for i in 1 2 3; do printf '127.0.0.1:%d,' $((BASE_PORT + i)); done | sed 's/,$//')
before=$(terms)
claims "quiet"
python3 bench/abuse_attack.py --nodes "$addrs" --duration $((DURATION + 4)) >"$work/attack.json" &
attacker=$!
sleep 3 # the attacker's setup (an account, 300 tweets) before the measured run
claims "under attack"
wait "$attacker" || true
after=$(terms)
python3 -c 'import json,sys; print(json.dumps({"label": "attacks", "outcomes": json.load(open(sys.argv[1])), "terms_before": sys.argv[2], "terms_after": sys.argv[3]}))' \
  "$work/attack.json" "$before" "$after" >>"$out"
stop_nodes

echo
echo "| claims at $CLAIM_RATE/s, 3 nodes | ok/s | p50 ms | p99 ms | max ms | errors |"
echo "|---|---|---|---|---|---|"
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    if r["label"] == "attacks":
        continue
    l = r["latency_ms"]
    errs = ", ".join(f"{k}={v}" for k, v in r["errors"].items()) or "0"
    print(f"| {r['label']} | {r['throughput_per_sec']:.0f} | {l['p50']:.2f} | {l['p99']:.2f} | {l['max']:.2f} | {errs} |")
a = rows[-1]
print()
print(f"Raft terms of nodes 1-3 before: {a['terms_before']}; after: {a['terms_after']}")
print()
print("| attack | answers |")
print("|---|---|")
for name, outcomes in a["outcomes"].items():
    print(f"| {name} | " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items(), key=lambda kv: -kv[1])) + " |")
PY
echo
echo "raw results: $out"
