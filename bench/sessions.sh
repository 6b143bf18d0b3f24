#!/usr/bin/env bash
# What each read level costs on three nodes: usernameAvailability LOCAL, LOCAL in a session
# (every request carries the worker's highest seen index as atLeastIndex), and LINEARIZABLE,
# first on a quiet cluster, then while a steady stream of claims moves the log (so followers are
# often a few entries behind and a session read sometimes has to wait for one).
# Bounded: each run is DURATION seconds after a 1 s warmup; every node is killed on exit.
#
#   bench/sessions.sh [CONCURRENCY=64] [DURATION=10] [CLAIM_RATE=1000]
set -euo pipefail
CONCURRENCY=${1:-64}
DURATION=${2:-10}
CLAIM_RATE=${3:-1000}
BASE_PORT=${BASE_PORT:-18180}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
out=$(results_file sessions)

run() { # label scenario args...
  local label=$1; shift
  "$LOADGEN" "$@" --nodes "$nodes" --concurrency "$CONCURRENCY" --duration "$DURATION" --json 2>/dev/null \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); r["label"]=sys.argv[1]; print(json.dumps(r))' "$label" >>"$out"
}

start_nodes 3 s
nodes=$(node_urls 3)
for level in local session linearizable; do
  run "quiet" checks --consistency "$level" --pool 1000
done
# Claims in the background at a fixed rate, long enough to cover the three runs below.
"$LOADGEN" claims --nodes "$nodes" --concurrency 16 --rate "$CLAIM_RATE" \
  --duration $((3 * (DURATION + 3))) >/dev/null 2>&1 &
writer=$!
sleep 1
for level in local session linearizable; do
  run "under $CLAIM_RATE claims/s" checks --consistency "$level" --pool 1000
done
wait "$writer" || true
stop_nodes

echo
echo "| cluster, load | read | ok/s | p50 ms | p99 ms | errors |"
echo "|---|---|---|---|---|---|"
python3 - "$out" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    p = r["params"]
    level = "LOCAL + atLeastIndex (session)" if p.get("session") else str(p.get("consistency", "")).upper()
    errs = ", ".join(f"{k}={v}" for k, v in r["errors"].items()) or "0"
    l = r["latency_ms"]
    print(f"| 3 nodes, {r['label']} | {level} | {r['throughput_per_sec']:.0f} | {l['p50']:.2f} | {l['p99']:.2f} | {errs} |")
PY
echo
echo "raw results: $out"
