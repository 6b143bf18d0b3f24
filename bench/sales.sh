#!/usr/bin/env bash
# Sales benchmark: a purchase burst on a 10,000-unit sale that opens while N buyers wait, at 64
# and 256 concurrent buyers, against one node and three nodes on loopback. Bounded: each burst
# stops when the stock is gone or after DURATION seconds. The loadgen checks that the units
# acknowledged equal the sale's `sold` and that stock + sold = 10,000 (exit 1 otherwise).
#
#   bench/sales.sh [DURATION=20]
set -euo pipefail
DURATION=${1:-20}
BASE_PORT=${BASE_PORT:-18180}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
out=$(results_file sales)

for n in 1 3; do
  for c in 64 256; do
    # A fresh cluster per run, so the first account (the admin) is the loadgen's.
    start_nodes "$n" "n$n-c$c"
    nodes=$(node_urls "$n")
    LOADGEN_ADMIN_USER=benchadmin LOADGEN_ADMIN_PASSWORD=bench-admin-password \
      "$LOADGEN" purchase-burst --nodes "$nodes" --concurrency "$c" --duration "$DURATION" \
      --stock 10000 --per-user-limit 10000 --quantity 1 --open-delay-ms 3000 --json 2>/dev/null \
      | python3 -c 'import json,sys; r=json.load(sys.stdin); r["label"]=sys.argv[1]; print(json.dumps(r))' "$n node(s)" >>"$out"
    echo "node 1 of $n after c=$c: $(curl -s "http://127.0.0.1:$((BASE_PORT + 1))/metrics" | grep -E '^raft_(proposed_commands|proposal_batches)_total' | tr '\n' ' ')"
    stop_nodes
  done
done

echo
echo "| cluster | buyers | purchases ok/s | p50 ms | p99 ms | sold (acked / sale) | errors |"
echo "|---|---|---|---|---|---|---|"
python3 - "$out" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    errs = ", ".join(f"{k}={v}" for k, v in r["errors"].items()) or "0"
    l = r["latency_ms"]
    print(f"| {r['label']} | {r['concurrency']} | {r['throughput_per_sec']:.0f} | {l['p50']:.2f} | {l['p99']:.2f} | {r.get('sold_by_responses')} / {r.get('sale_sold')} | {errs} |")
PY
echo
echo "raw results: $out"
