#!/usr/bin/env bash
# Fan-out benchmark: N `chatMessages` subscriptions (graphql-transport-ws) open on one node,
# messages sent through that node at a fixed rate R; reports deliveries per second and the delay
# from send to delivery (p50, p99). One fresh release node on loopback per run, killed on exit.
# Bounded: each run sends for DURATION seconds, then waits at most 30 s for deliveries.
#
#   bench/fanout.sh [DURATION=10] [N:R[:IDLE] ...=100:10 1000:10 5000:10 100:50 1000:50 5000:50]
# IDLE: that many more sockets subscribed to ten quiet chats nothing is sent to (a busy topic
# must cost them nothing; the run fails if any of them receives a frame).
set -euo pipefail
DURATION=${1:-10}
[ $# -gt 0 ] && shift
RUNS=("$@")
[ ${#RUNS[@]} -gt 0 ] || RUNS=(100:10 1000:10 5000:10 100:50 1000:50 5000:50)
BASE_PORT=${BASE_PORT:-18280}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
out=$(results_file fanout)
# Each subscription is a socket on both ends; 5000 need more than the common 1024 descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

for run in "${RUNS[@]}"; do
  IFS=: read -r n RATE IDLE <<<"$run"
  IDLE=${IDLE:-0}
  start_nodes 1 "n$n-r$RATE-i$IDLE"
  # --topic chat and --warmup 0: the scenario the table in docs/BENCHMARKS.md was measured with
  # (the loadgen's default topic is now saleUpdates; `--topic sale` measures that one).
  "$LOADGEN" subscribers --topic chat --warmup 0 --nodes "$(node_urls 1)" --subscribers "$n" --rate "$RATE" --idle-subscribers "$IDLE" \
    --duration "$DURATION" --json 2>/dev/null >>"$out" || echo "N=$n R=$RATE: incomplete run (see $out)"
  stop_nodes
done

echo
echo "| subscriptions (+ idle) | messages/s asked | acked / committed | deliveries/s | delivered / expected | p50 ms | p99 ms | max ms | node CPU µs/delivery | send errors |"
echo "|---|---|---|---|---|---|---|---|---|---|"
python3 - "$out" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    d = r["delay_ms"]
    errs = ", ".join(f"{k}={v}" for k, v in r["send_errors"].items()) or "0"
    cpu = r.get("node_cpu", {}).get("cpu_us_per_ok")
    cpu = f"{cpu:.1f}" if cpu is not None else "-"
    idle = f" (+ {r['idle_subscribers']}, {r['idle_deliveries']} frames)" if r.get('idle_subscribers') else ""
    print(f"| {r['subscribers']}{idle} | {r['rate_per_sec']} | {r['sent']} / {r['committed']} | {r['delivered_per_sec']:.0f} | {r['delivered']} / {r['deliveries_expected']} | {d['p50']:.2f} | {d['p99']:.2f} | {d['max']:.2f} | {cpu} | {errs} |")
PY
echo
echo "raw results: $out"
