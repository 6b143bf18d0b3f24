#!/usr/bin/env bash
# Fan-out benchmark: N `chatMessages` subscriptions (graphql-transport-ws) open on one node,
# messages sent through that node at a fixed rate; reports deliveries per second and the delay
# from send to delivery (p50, p99). One fresh release node on loopback per N, killed on exit.
# Bounded: each run sends for DURATION seconds, then waits at most 30 s for deliveries.
#
#   bench/fanout.sh [DURATION=10] [RATE=50] [N...=100 1000 5000]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
RATE=${2:-50}
shift $(( $# > 2 ? 2 : $# ))
COUNTS=("${@:-100 1000 5000}")
# shellcheck disable=SC2206
COUNTS=(${COUNTS[*]})
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

for n in "${COUNTS[@]}"; do
  "$NODE" --id 1 --listen "127.0.0.1:$PORT" --data-dir "$work/n$n" --rate-limit-per-sec 0 >"$work/n$n.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null && break; sleep 0.1; done
  "$LOADGEN" subscribers --nodes "http://127.0.0.1:$PORT" --subscribers "$n" --rate "$RATE" \
    --duration "$DURATION" --json 2>/dev/null >>"$out" || echo "N=$n: incomplete run (see $out)"
  kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""
done

echo
echo "| subscriptions | messages/s sent | deliveries/s | delivered / expected | p50 ms | p99 ms | max ms |"
echo "|---|---|---|---|---|---|---|"
python3 - "$out" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    d = r["delay_ms"]
    print(f"| {r['subscribers']} | {r['rate_per_sec']} | {r['delivered_per_sec']:.0f} | {r['delivered']} / {r['deliveries_expected']} | {d['p50']:.2f} | {d['p99']:.2f} | {d['max']:.2f} |")
PY
echo
echo "raw results: $out"
