#!/usr/bin/env bash
# Node CPU per operation of two node builds, in the same run: one fresh one-node cluster per
# measurement, the builds alternating (A, B, A, B, ...) so drift on this shared machine hits both,
# 64 closed-loop workers, 1 s warmup, DURATION s measured. The CPU figure is the load generator's
# own (`node_cpu`: the node's utime + stime over the measured window, from /proc).
#
#   bench/cpu-ab.sh OLD_NODE_BIN [ROUNDS=3] [DURATION=10]
# OLD_NODE_BIN: e.g. a release node built from another commit in a worktree with its own
# CARGO_TARGET_DIR (a shared target dir can mix the two trees' workspace crates). B is this tree's.
set -euo pipefail
OLD=$(realpath "$1")
ROUNDS=${2:-3}
DURATION=${3:-10}
BASE_PORT=${BASE_PORT:-18300}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
NEW=$NODE
out=$(results_file cpu-ab)

measure() { # label bin scenario args...
  local label=$1 bin=$2
  shift 2
  NODE=$bin start_nodes 1 "$label"
  "$LOADGEN" "$@" --nodes "$(node_urls 1)" --concurrency 64 --duration "$DURATION" --json 2>/dev/null \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); r["label"]=sys.argv[1]; print(json.dumps(r))' "$label" >>"$out"
  stop_nodes
}

for _ in $(seq 1 "$ROUNDS"); do
  for scenario in "checks --consistency local" "claims"; do
    # shellcheck disable=SC2086
    measure A "$OLD" $scenario
    # shellcheck disable=SC2086
    measure B "$NEW" $scenario
  done
done

python3 - "$out" "$OLD" "$NEW" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"A = {sys.argv[2]}\nB = {sys.argv[3]}\n")
print(f"{'scenario':<14}{'build':<6}{'ok/s (median)':>15}{'p99 ms':>9}{'node CPU us/op (each run)':>30}{'median':>9}")
for scen in dict.fromkeys(f"{r['scenario']} {r['params'].get('consistency', '')}".strip() for r in rows):
    med = {}
    for label in ("A", "B"):
        rs = [r for r in rows if r["label"] == label and f"{r['scenario']} {r['params'].get('consistency', '')}".strip() == scen]
        cpu = [r["node_cpu"]["cpu_us_per_ok"] for r in rs]
        med[label] = statistics.median(cpu)
        print(f"{scen:<14}{label:<6}{statistics.median(r['throughput_per_sec'] for r in rs):>15.0f}"
              f"{statistics.median(r['latency_ms']['p99'] for r in rs):>9.2f}{' '.join(f'{c:.0f}' for c in cpu):>30}{med[label]:>9.1f}")
    print(f"{scen:<14}B/A CPU per op {med['B'] / med['A']:.2f}")
PY
echo "raw: $out"
