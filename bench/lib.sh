# Shared by the bench scripts (sourced, not run): builds the release binaries, then starts and
# stops release nodes on loopback ports BASE_PORT+1.., each with its own data dir under a
# temporary work dir that is removed on exit, together with every node still running.
#
# After sourcing: $NODE (or $NODE_BIN when set), $LOADGEN, $work, and `results_file NAME` for the raw JSON output.

cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -q -p node -p loadgen
TARGET=${CARGO_TARGET_DIR:-target}
# NODE_BIN: another node binary to run instead (a before/after comparison of two builds).
NODE=${NODE_BIN:-$TARGET/release/node}
LOADGEN=$TARGET/release/loadgen
work=$(mktemp -d)
mkdir -p bench/results
pids=()

cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# results_file NAME: a new timestamped JSON-lines file under bench/results/.
results_file() { echo "bench/results/$1-$(date -u +%Y%m%dT%H%M%SZ).jsonl"; }

# start_nodes N TAG: N fresh nodes forming one cluster (rate limit off: all load comes from one
# IP), each logging to $work/TAG-i.log; returns once every node answers /ready (or 10 s passed).
start_nodes() {
  local n=$1 tag=$2 peers="" i
  pids=()
  for i in $(seq 1 "$n"); do peers+="${peers:+,}$i=127.0.0.1:$((BASE_PORT + i))"; done
  for i in $(seq 1 "$n"); do
    "$NODE" --id "$i" --listen "127.0.0.1:$((BASE_PORT + i))" --data-dir "$work/$tag-$i" \
      --peers "$peers" --cluster-secret bench-cluster-secret-0123 --jwt-secret bench-jwt-secret-0123456 \
      ${NODE_FLAGS:---rate-limit-per-sec 0 --ws-sockets-per-client 0 --reservations-per-client-per-hour 0} >"$work/$tag-$i.log" 2>&1 &
    pids+=($!)
  done
  for i in $(seq 1 "$n"); do
    for _ in $(seq 1 100); do
      curl -sf "http://127.0.0.1:$((BASE_PORT + i))/ready" >/dev/null && break
      sleep 0.1
    done
  done
}

# stop_nodes: SIGKILL every node started by start_nodes.
stop_nodes() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}

# node_urls N: http://127.0.0.1:PORT for nodes 1..N, comma-separated.
node_urls() { for i in $(seq 1 "$1"); do printf 'http://127.0.0.1:%d,' $((BASE_PORT + i)); done | sed 's/,$//'; }
