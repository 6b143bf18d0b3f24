#!/usr/bin/env bash
# Fan-out benchmark: N `chatMessages` subscriptions (graphql-transport-ws) open on one node,
# messages sent through that node at a fixed rate R; reports deliveries per second and the delay
# from send to delivery (p50, p99). One fresh release node on loopback per run, killed on exit.
# Bounded: each run sends for DURATION seconds, then waits at most 30 s for deliveries.
#
#   bench/fanout.sh [DURATION=10] [N:R ...=100:10 1000:10 5000:10 100:50 1000:50 5000:50]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
[ $# -gt 0 ] && shift
RUNS=("$@")
[ ${#RUNS[@]} -gt 0 ] || RUNS=(100:10 1000:10 5000:10 100:50 1000:50 5000:50)
PORT=${PORT:-18280}

cargo build --release -q -p node -p client
TARGET=${CARGO_TARGET_DIR:-target}
NODE=$TARGET/release/node
LOADGEN=$TARGET/release/loadgen
work=$(mktemp -d)
mkdir -p bench/results
out="bench/results/fanout-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
pid=""
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
# Each subscription is a socket on both ends; 5000 need more than the common 1024 descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

for run in "${RUNS[@]}"; do
  n=${run%%:*}; RATE=${run##*:}
  "$NODE" --id 1 --listen "127.0.0.1:$PORT" --data-dir "$work/n$n-r$RATE" --rate-limit-per-sec 0 >"$work/n$n-r$RATE.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null && break; sleep 0.1; done
  "$LOADGEN" subscribers --nodes "http://127.0.0.1:$PORT" --subscribers "$n" --rate "$RATE" \
    --duration "$DURATION" --json 2>/dev/null >>"$out" || echo "N=$n R=$RATE: incomplete run (see $out)"
  kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""
done

echo
echo "| subscriptions | messages/s asked | acked / committed | deliveries/s | delivered / expected | p50 ms | p99 ms | max ms | send errors |"
echo "|---|---|---|---|---|---|---|---|---|"
python3 - "$out" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    d = r["delay_ms"]
    errs = ", ".join(f"{k}={v}" for k, v in r["send_errors"].items()) or "0"
    print(f"| {r['subscribers']} | {r['rate_per_sec']} | {r['sent']} / {r['committed']} | {r['delivered_per_sec']:.0f} | {r['delivered']} / {r['deliveries_expected']} | {d['p50']:.2f} | {d['p99']:.2f} | {d['max']:.2f} | {errs} |")
PY
echo
echo "raw results: $out"
