#!/usr/bin/env bash
# Core benchmark: reserveUsername claims and usernameAvailability checks (LOCAL, LINEARIZABLE)
# at a fixed concurrency, against one node and against three nodes, all on loopback.
# Bounded: each scenario runs DURATION seconds after a 1 s warmup; every node it starts is
# killed on exit. Prints a markdown table and keeps the raw JSON in bench/results/.
#
#   bench/core.sh [CONCURRENCY=64] [DURATION=10]
set -euo pipefail
CONCURRENCY=${1:-64}
DURATION=${2:-10}
BASE_PORT=${BASE_PORT:-18080}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
out=$(results_file core)

run() { # label nodes scenario args...
  local label=$1 nodes=$2; shift 2
  "$LOADGEN" "$@" --nodes "$nodes" --concurrency "$CONCURRENCY" --duration "$DURATION" --json 2>/dev/null \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); r["label"]=sys.argv[1]; print(json.dumps(r))' "$label" >>"$out"
}

batch_stats() { # port -> "commands/batches"
  curl -s "http://127.0.0.1:$1/metrics" | awk '/^raft_proposed_commands_total/{c=$2} /^raft_proposal_batches_total/{b=$2} /^raft_read_index_rounds_total/{r=$2} END{printf "%s %s %s", c, b, r}'
}

for n in 1 3; do
  start_nodes "$n" "n$n"
  nodes=$(node_urls "$n")
  run "$n node(s)" "$nodes" claims
  run "$n node(s)" "$nodes" checks --consistency local --pool 1000
  run "$n node(s)" "$nodes" checks --consistency linearizable --pool 1000
  for i in $(seq 1 "$n"); do echo "node $i of $n: commands batches read_rounds = $(batch_stats $((BASE_PORT + i)))"; done
  stop_nodes
done

echo
echo "| cluster | operation | concurrency | ok/s | p50 ms | p99 ms | errors |"
echo "|---|---|---|---|---|---|---|"
python3 - "$out" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    op = r["scenario"]
    if op == "checks":
        op += " " + str(r["params"].get("consistency", "")).upper()
    errs = ", ".join(f"{k}={v}" for k, v in r["errors"].items()) or "0"
    l = r["latency_ms"]
    print(f"| {r['label']} | {op} | {r['concurrency']} | {r['throughput_per_sec']:.0f} | {l['p50']:.2f} | {l['p99']:.2f} | {errs} |")
PY
echo
echo "raw results: $out"
