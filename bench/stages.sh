#!/usr/bin/env bash
# Where the time goes in a three-node purchase: a sustained purchase load on a three-node
# cluster (loopback), with every node's per-stage histograms (stage_duration_seconds on
# /metrics) read before and after, so the table shows each stage's count, mean and p50/p99
# during the run alone, per role (leader, followers). Optionally a CPU profile of the leader.
#
#   bench/stages.sh [CONCURRENCY=64] [DURATION=10]
#
# Environment: BASE_PORT (default 18280), STAGES_PERF=1 to also sample the leader's CPU with
# `perf record` (flat, by symbol; needs perf and permission to attach) and print the top
# symbols. The load goes round-robin to all three nodes, as a client with the node list would:
# two thirds of the purchases reach a follower and are forwarded.
set -euo pipefail
CONCURRENCY=${1:-${CONCURRENCY:-64}}
DURATION=${2:-${DURATION:-10}}
BASE_PORT=${BASE_PORT:-18280}
STOCK=1000000000   # more than any run sells, so purchases last the whole duration
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
out=$(results_file stages)

scrape() { # scrape TAG: every node's stage histograms into $work/TAG-i.prom, its CPU ticks into TAG-i.cpu
  local i
  for i in 1 2 3; do
    curl -sf "http://127.0.0.1:$((BASE_PORT + i))/metrics" >"$work/$1-$i.prom"
    # utime + stime of the node process, in clock ticks (fields 14 and 15 of /proc/PID/stat)
    awk '{print $14 + $15}' "/proc/${pids[$((i - 1))]}/stat" >"$work/$1-$i.cpu"
  done
}

start_nodes 3 stages
nodes=$(node_urls 3)
leader=""
for _ in $(seq 1 100); do
  leader=$(curl -sf "http://127.0.0.1:$((BASE_PORT + 1))/graphql" -H 'content-type: application/json' \
    -d '{"query":"{ cluster { leaderId } }"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["cluster"]["leaderId"] or "")' 2>/dev/null || true)
  [ -n "$leader" ] && break
  sleep 0.1
done
[ -n "$leader" ] || { echo "no leader elected" >&2; exit 1; }

# The loadgen sets up the admin, the product and the sale, waits for the opening (the baseline
# is scraped during that wait, after the setup's own writes), then buys for DURATION seconds.
LOADGEN_ADMIN_USER=benchadmin LOADGEN_ADMIN_PASSWORD=bench-admin-password \
  timeout -k 5 $((DURATION + 240)) "$LOADGEN" purchase-burst --nodes "$nodes" --concurrency "$CONCURRENCY" \
  --duration "$DURATION" --stock "$STOCK" --per-user-limit "$STOCK" --quantity 1 --open-delay-ms 8000 \
  --json >"$work/run.json" 2>"$work/run.log" &
run=$!
# Wait until the buyers are registered (the loadgen logs when it starts waiting for the opening).
for _ in $(seq 1 2400); do
  grep -q "waiting for the sale to open\|opens in" "$work/run.log" 2>/dev/null && break
  kill -0 "$run" 2>/dev/null || break
  sleep 0.1
done
scrape before
perf_pid=""
if [ "${STAGES_PERF:-0}" = 1 ]; then
  sleep 3   # into the measured run
  perf record -F 999 -p "${pids[$((leader - 1))]}" -o "$work/perf.data" -- sleep "$((DURATION - 4))" \
    >"$work/perf.log" 2>&1 &
  perf_pid=$!
fi
wait "$run" || { echo "loadgen failed:" >&2; tail -20 "$work/run.log" >&2; exit 1; }
scrape after
[ -n "$perf_pid" ] && wait "$perf_pid" || true

python3 - "$work" "$leader" "$work/run.json" "$CONCURRENCY" "$DURATION" "$(getconf CLK_TCK)" "$NODE" >>"$out" <<'PY'
import json, re, sys
work, leader, run, concurrency, duration = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
tck, node_bin = int(sys.argv[6]), sys.argv[7]
line = re.compile(r'^stage_duration_seconds_(bucket|sum|count)\{stage="([a-z_]+)"(?:,le="([^"]+)")?\} (\S+)$')
def parse(path):
    stages = {}
    for l in open(path):
        m = line.match(l.strip())
        if not m:
            continue
        kind, stage, le, v = m.groups()
        s = stages.setdefault(stage, {"buckets": [], "sum": 0.0, "count": 0})
        if kind == "bucket":
            s["buckets"].append((float("inf") if le == "+Inf" else float(le), float(v)))
        elif kind == "sum":
            s["sum"] = float(v)
        else:
            s["count"] = int(float(v))
    return stages
def quantile(buckets, q):
    total = buckets[-1][1] if buckets else 0
    if total == 0:
        return None
    prev_le, prev_n = 0.0, 0.0
    for le, n in buckets:
        if n >= q * total:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * ((q * total - prev_n) / max(n - prev_n, 1e-9))
        prev_le, prev_n = le, n
    return prev_le
nodes = {}
for i in (1, 2, 3):
    b, a = parse(f"{work}/before-{i}.prom"), parse(f"{work}/after-{i}.prom")
    d = {}
    for stage, s in a.items():
        p = b.get(stage, {"buckets": [(le, 0) for le, _ in s["buckets"]], "sum": 0.0, "count": 0})
        buckets = [(le, n - pn) for (le, n), (_, pn) in zip(s["buckets"], p["buckets"])]
        count = s["count"] - p["count"]
        d[stage] = {"count": count, "mean_ms": (s["sum"] - p["sum"]) * 1e3 / count if count else None,
                    "p50_ms": (quantile(buckets, 0.5) or 0) * 1e3 if count else None,
                    "p99_ms": (quantile(buckets, 0.99) or 0) * 1e3 if count else None}
    nodes[i] = d
cpu = {i: (int(open(f"{work}/after-{i}.cpu").read()) - int(open(f"{work}/before-{i}.cpu").read())) * 1000 / tck
       for i in (1, 2, 3)}
print(json.dumps({"leader": leader, "concurrency": concurrency, "duration_secs": duration, "node_bin": node_bin,
                  "cpu_ms": cpu, "loadgen": json.load(open(run)), "stages": nodes}))
PY

python3 - "$out" <<'PY'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])][-1]
g, leader = r["loadgen"], r["leader"]
lat = g["latency_ms"]
print(f"purchases: {g['throughput_per_sec']:.0f}/s at {r['concurrency']} buyers, p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms (client side)")
ok = g.get("ok", 0)
if ok:
    cpu = r["cpu_ms"]
    roles = ", ".join(f"node {i}{' (leader)' if int(i) == leader else ''} {cpu[i] * 1000 / ok:.0f} us" for i in sorted(cpu))
    print(f"node CPU per purchase: {sum(cpu.values()) * 1000 / ok:.0f} us ({roles}) over the same window as the stages")
print()
print("| stage | role | count | per purchase | mean ms | p50 ms | p99 ms |")
print("|---|---|---|---|---|---|---|")
bought = g.get("ok", 0) or sum(r["stages"][str(i)].get("propose", {}).get("count", 0) for i in (1, 2, 3))
order = ["http_decode", "graphql_parse", "graphql_validate", "graphql_execute", "read_local", "read_index",
         "propose", "propose_queue", "forward", "raft_write", "log_append", "log_fsync", "replicate_rpc",
         "apply", "apply_commit", "http_encode"]
for stage in order:
    for role, ids in (("leader", [leader]), ("followers", [i for i in (1, 2, 3) if i != leader])):
        rows = [r["stages"][str(i)].get(stage) for i in ids]
        rows = [x for x in rows if x and x["count"]]
        if not rows:
            continue
        count = sum(x["count"] for x in rows)
        mean = sum(x["mean_ms"] * x["count"] for x in rows) / count
        p50 = max(x["p50_ms"] for x in rows)
        p99 = max(x["p99_ms"] for x in rows)
        per = f"{count / bought:.3f}" if bought else "-"
        print(f"| {stage} | {role} | {count} | {per} | {mean:.3f} | {p50:.3f} | {p99:.3f} |")
PY
if [ -n "$perf_pid" ] && [ -s "$work/perf.data" ]; then
  echo
  echo "leader CPU, top symbols (perf, flat):"
  perf report -i "$work/perf.data" --stdio --no-children --sort symbol 2>/dev/null | grep -E '^ +[0-9]' | head -40
fi
echo
echo "raw results: $out"
