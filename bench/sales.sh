#!/usr/bin/env bash
# Sales benchmark: a purchase burst on a 10,000-unit sale that opens while N buyers wait, at 64
# and 256 concurrent buyers, against one node and three nodes on loopback. Bounded: each burst
# stops when the stock is gone or after DURATION seconds. The loadgen checks that the units
# acknowledged equal the sale's `sold` and that stock + sold = 10,000 (exit 1 otherwise).
#
#   bench/sales.sh [DURATION=20]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-20}
BASE_PORT=${BASE_PORT:-18180}

cargo build --release -q -p node -p client
TARGET=${CARGO_TARGET_DIR:-target}
NODE=$TARGET/release/node
LOADGEN=$TARGET/release/loadgen
work=$(mktemp -d)
mkdir -p bench/results
out="bench/results/sales-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

start_nodes() { # n tag
  local n=$1 tag=$2 peers="" i
  pids=()
  for i in $(seq 1 "$n"); do peers+="${peers:+,}$i=127.0.0.1:$((BASE_PORT + i))"; done
  for i in $(seq 1 "$n"); do
    "$NODE" --id "$i" --listen "127.0.0.1:$((BASE_PORT + i))" --data-dir "$work/$tag-$i" \
      --peers "$peers" --cluster-secret bench-cluster-secret-0123 --jwt-secret bench-jwt-secret-0123456 \
      --rate-limit-per-sec 0 >"$work/$tag-$i.log" 2>&1 &
    pids+=($!)
  done
  for i in $(seq 1 "$n"); do
    for _ in $(seq 1 100); do
      curl -sf "http://127.0.0.1:$((BASE_PORT + i))/ready" >/dev/null && break
      sleep 0.1
    done
  done
}

stop_nodes() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }

for n in 1 3; do
  for c in 64 256; do
    # A fresh cluster per run, so the first account (the admin) is the loadgen's.
    start_nodes "$n" "n$n-c$c"
    nodes=$(for i in $(seq 1 "$n"); do printf 'http://127.0.0.1:%d,' $((BASE_PORT + i)); done | sed 's/,$//')
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
