#!/usr/bin/env bash
# Timeline reads over HTTP: `loadgen timeline` (first-page `timeline` reads, LOCAL, for random
# viewers who each follow F of 200 authors, 5 tweets each), 64 concurrent readers, against one
# node and three nodes on loopback. A fresh cluster per run; the setup (registering, posting,
# following) is not measured. Bounded: each run reads for DURATION seconds after a 1 s warmup.
#
#   bench/timeline.sh [DURATION=10] [FOLLOWEES ...=20 200]
set -euo pipefail
DURATION=${1:-10}
[ $# -gt 0 ] && shift
FOLLOWEES=("$@")
[ ${#FOLLOWEES[@]} -gt 0 ] || FOLLOWEES=(20 200)
BASE_PORT=${BASE_PORT:-18480}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
out=$(results_file timeline)

for n in 1 3; do
  for f in "${FOLLOWEES[@]}"; do
    start_nodes "$n" "n$n-f$f"
    timeout -k 5 $((DURATION + 300)) "$LOADGEN" timeline --nodes "$(node_urls "$n")" --concurrency 64 \
      --duration "$DURATION" --authors 200 --tweets-per-author 5 --viewers 50 --followees "$f" \
      --page-size 20 --json 2>/dev/null \
      | python3 -c 'import json,sys; r=json.load(sys.stdin); r["label"]=sys.argv[1]; r["followees"]=int(sys.argv[2]); print(json.dumps(r))' \
        "$n node(s)" "$f" >>"$out"
    stop_nodes
  done
done

echo
echo "| cluster | followees per viewer | timeline reads ok/s | p50 ms | p99 ms | errors |"
echo "|---|---|---|---|---|---|"
python3 - "$out" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    errs = ", ".join(f"{k}={v}" for k, v in r["errors"].items()) or "0"
    l = r["latency_ms"]
    print(f"| {r['label']} | {r['followees']} | {r['throughput_per_sec']:.0f} | {l['p50']:.2f} | {l['p99']:.2f} | {errs} |")
PY
echo
echo "raw results: $out"
