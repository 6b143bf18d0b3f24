#!/usr/bin/env python3
"""The scale curve on this machine (docs/SCALING.md): a three-node release cluster on loopback
filled with N accounts through `importAccounts` (`loadgen seed`), and what the fill costs.

  bench/scale.py [N=1000000]        # builds nothing: run `cargo build --release -p node -p loadgen` first

Measured, in one run:
- the empty cluster's LOCAL and LINEARIZABLE check rate and p99, and its claim rate (baseline);
- the fill: accounts/s and the nodes' CPU per account (the load generator's own figure);
- bytes on disk per account (each data dir) and each node's RSS after the fill;
- the same checks and claims at N accounts, as ratios to the baseline of this run;
- a snapshot built on the leader: its time, its file's size, and the leader's RSS growth
  while it was built (sampled every 20 ms);
- a fourth node joining with --join: the time until its /ready answers 200, and its peak RSS
  (the log is kept short, --logs-kept-after-snapshot 10, so it must install the snapshot);
- `cli backup` from a follower: its time, size and that node's RSS growth; then `node --restore`
  of it into a new one-node cluster: the time until its /ready answers 200, and its peak RSS.
One JSON object goes to bench/results/scale-<time>.json, a summary to stdout. Every node is
killed at the end. Figures are for this shared 2-core machine: ratios within the run are what
carry over.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
NODE = os.environ.get("NODE_BIN", os.path.join(ROOT, "target", "release", "node"))
LOADGEN = os.path.join(ROOT, "target", "release", "loadgen")
CLI = os.path.join(ROOT, "target", "release", "cli")
BASE_PORT = int(os.environ.get("BASE_PORT", "18500"))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
MEASURE_S = 5
ADMIN = ("lgadmin", "lgadmin-password")
FLAGS = ["--cluster-secret", "bench-cluster-secret-0123", "--jwt-secret", "bench-jwt-secret-0123456",
         "--rate-limit-per-sec", "0", "--ws-sockets-per-client", "0", "--reservations-per-client-per-hour", "0",
         "--logs-kept-after-snapshot", "10"]

work = tempfile.mkdtemp(prefix="raftgraph-scale-")
procs = {}


def url(i):
    return f"http://127.0.0.1:{BASE_PORT + i}"


def start(i, extra):
    log = open(os.path.join(work, f"n{i}.log"), "w")
    procs[i] = subprocess.Popen([NODE, "--id", str(i), "--listen", f"127.0.0.1:{BASE_PORT + i}",
                                 "--data-dir", os.path.join(work, f"d{i}"), *FLAGS, *extra],
                                stdout=log, stderr=subprocess.STDOUT)


def ready(i):
    try:
        with urllib.request.urlopen(url(i) + "/ready", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def gql(i, query, variables=None, token=None):
    req = urllib.request.Request(url(i) + "/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
                                 headers={"content-type": "application/json"})
    if token:
        req.add_header("authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def status(i):
    return gql(i, "{ cluster { nodeId leaderId lastApplied snapshotIndex snapshotsInstalled phase "
                  "snapshotBytesReceived snapshotBytesTotal } }")["data"]["cluster"]


def rss_kib(i, field="VmRSS"):
    with open(f"/proc/{procs[i].pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def du(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(dirpath, f))
    return total


def snapshot_files(i):
    d = os.path.join(work, f"d{i}", "state")
    try:
        return {f: os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.startswith("snapshot-") and f.endswith(".data")}
    except OSError:
        return {}


def wait_quiet(nodes):
    """Waits until no node is writing a snapshot file (sizes unchanged for 1.5 s): an automatic
    snapshot may be running after the fill, and the measurements after it should not share the
    disk and cores with it. Returns the seconds waited."""
    t0, last, still = time.time(), None, 0
    while still < 3 and time.time() - t0 < 600:
        now = {i: snapshot_files(i) for i in nodes}
        still = still + 1 if now == last else 0
        last = now
        time.sleep(0.5)
    return time.time() - t0


def loadgen(*args):
    out = subprocess.run([LOADGEN, *args, "--nodes", ",".join(url(i) for i in (1, 2, 3)), "--json"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def rates(tag):
    got = {}
    for name, args in [("local", ["checks", "--consistency", "local"]), ("linearizable", ["checks", "--consistency", "linearizable"]),
                       ("claims", ["claims"])]:
        r = loadgen(*args, "--concurrency", "64", "--duration", str(MEASURE_S), "--run-id", tag + name[:2])
        got[name] = {"per_sec": r["throughput_per_sec"], "p99_ms": r["latency_ms"]["p99"],
                     "cpu_us_per_op": r["node_cpu"]["cpu_us_per_ok"]}
    return got


def main():
    result = {"accounts": N, "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                                       text=True, cwd=ROOT).stdout.strip()}
    peers = ",".join(f"{i}=127.0.0.1:{BASE_PORT + i}" for i in (1, 2, 3))
    for i in (1, 2, 3):
        start(i, ["--peers", peers])
    deadline = time.time() + 30
    while not all(ready(i) for i in (1, 2, 3)):
        assert time.time() < deadline, f"cluster not ready; logs in {work}"
        time.sleep(0.1)

    result["empty"] = rates("e")
    seed = loadgen("seed", "--accounts", str(N), "--concurrency", "4", "--run-id", "scale")
    result["seed"] = {"accounts_per_sec": seed["accounts_per_sec"], "elapsed_s": seed["elapsed_s"],
                      "cpu_us_per_account": seed["node_cpu"]["cpu_us_per_ok"]}
    time.sleep(2)
    result["quiet_wait_after_fill_s"] = wait_quiet((1, 2, 3))
    result["disk_bytes"] = {i: du(os.path.join(work, f"d{i}")) for i in (1, 2, 3)}
    result["bytes_per_account"] = {i: b / N for i, b in result["disk_bytes"].items()}
    result["rss_mib_after_fill"] = {i: rss_kib(i) / 1024 for i in (1, 2, 3)}
    result["full"] = rates("f")
    result["ratios"] = {k: {"rate": result["full"][k]["per_sec"] / result["empty"][k]["per_sec"],
                            "p99": result["full"][k]["p99_ms"] / result["empty"][k]["p99_ms"]} for k in result["empty"]}

    # The snapshot, on the leader.
    leader = status(1)["leaderId"]
    token = gql(leader, "mutation($u:String!,$p:String!){ login(username:$u,password:$p){ token } }",
                {"u": ADMIN[0], "p": ADMIN[1]})["data"]["login"]["token"]
    applied = status(leader)["lastApplied"]
    before = rss_kib(leader)
    peak = before
    t0 = time.time()
    # A trigger that arrives while a snapshot is being built is dropped by openraft, so it is
    # sent again every 2 s until one takes; the build is timed from its new file's appearance.
    old_files, started, sent = set(snapshot_files(leader)), None, 0.0
    while (status(leader)["snapshotIndex"] or 0) < applied:
        if started is None and time.time() - sent > 2:
            gql(leader, "mutation { triggerSnapshot }", token=token)
            sent = time.time()
        if started is None and set(snapshot_files(leader)) - old_files:
            started = time.time()
        peak = max(peak, rss_kib(leader))
        time.sleep(0.02)
        assert time.time() - t0 < 600, "snapshot not built within 10 minutes"
    t0 = started or t0
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(work, f"d{leader}"))
               for f in fs if f.startswith("snapshot-") and f.endswith(".data"))
    result["snapshot"] = {"build_s": time.time() - t0, "bytes": size, "leader_rss_growth_mib": (peak - before) / 1024}
    # A few writes after the snapshot, so the log the joiner could replay is gone.
    loadgen("claims", "--concurrency", "8", "--duration", "1", "--warmup", "0", "--run-id", "post")

    # A fourth node joins.
    t0 = time.time()
    start(4, ["--join", f"127.0.0.1:{BASE_PORT + 1}", "--advertise", f"127.0.0.1:{BASE_PORT + 4}"])
    progress = []  # (seconds, phase, bytes received, total) as node 4 reports them while joining
    while not ready(4):
        assert time.time() - t0 < 900, f"node 4 not ready within 15 minutes; logs in {work}"
        try:
            st = status(4)
            if st["snapshotBytesReceived"] is not None:
                progress.append((round(time.time() - t0, 1), st["phase"], st["snapshotBytesReceived"],
                                 st["snapshotBytesTotal"]))
        except (OSError, KeyError, TypeError):
            pass
        time.sleep(0.2)
    s4 = status(4)
    result["join"] = {"ready_s": time.time() - t0, "peak_rss_mib": rss_kib(4, "VmHWM") / 1024,
                      "snapshots_installed": s4["snapshotsInstalled"], "disk_bytes": du(os.path.join(work, "d4")),
                      "progress_seen": progress[:: max(1, len(progress) // 10)] + progress[-1:]}

    # A backup from a follower, then a restore of it into a new one-node cluster (node 5).
    follower = next(i for i in (1, 2, 3) if i != leader)
    backup = os.path.join(work, "cluster.backup")
    before = rss_kib(follower)
    t0 = time.time()
    cli = subprocess.Popen([CLI, "--nodes", url(follower), "--token", token, "--json", "backup", "--out", backup],
                           stdout=subprocess.PIPE, text=True)
    peak = before
    while cli.poll() is None:
        peak = max(peak, rss_kib(follower))
        time.sleep(0.02)
    took = time.time() - t0
    summary = json.loads(cli.stdout.read())
    assert cli.returncode == 0, summary
    result["backup"] = {"s": took, "bytes": summary["bytes"], "rows": summary["rows"],
                        "node_rss_growth_mib": (peak - before) / 1024}
    procs[4].send_signal(signal.SIGKILL)  # room on the two cores, and on the disk, for the restore
    procs[4].wait()
    shutil.rmtree(os.path.join(work, "d4"), ignore_errors=True)
    t0 = time.time()
    start(5, ["--restore", backup])
    while not ready(5):
        assert time.time() - t0 < 900, f"node 5 not ready within 15 minutes; logs in {work}"
        time.sleep(0.1)
    result["restore"] = {"ready_s": time.time() - t0, "peak_rss_mib": rss_kib(5, "VmHWM") / 1024,
                         "disk_bytes": du(os.path.join(work, "d5"))}

    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    out = os.path.join(ROOT, "bench", "results", time.strftime("scale-%Y%m%dT%H%M%SZ.json", time.gmtime()))
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    e, fu = result["empty"], result["full"]
    print(f"accounts          {N:,} (commit {result['commit']})")
    print(f"fill              {result['seed']['accounts_per_sec']:,.0f} accounts/s, "
          f"{result['seed']['cpu_us_per_account']:.1f} us node CPU per account (summed over 3)")
    print(f"disk              {', '.join(f'{b / N:.0f}' for b in result['disk_bytes'].values())} bytes per account")
    print(f"RSS after fill    {', '.join(f'{m:.0f}' for m in result['rss_mib_after_fill'].values())} MiB")
    for k in e:
        print(f"{k:<17} {e[k]['per_sec']:,.0f}/s p99 {e[k]['p99_ms']:.1f} ms empty; {fu[k]['per_sec']:,.0f}/s p99 "
              f"{fu[k]['p99_ms']:.1f} ms full: x{result['ratios'][k]['rate']:.2f} rate, x{result['ratios'][k]['p99']:.2f} p99")
    sn = result["snapshot"]
    print(f"snapshot          {sn['build_s']:.1f} s, {sn['bytes'] / 2**20:.0f} MiB, leader RSS +{sn['leader_rss_growth_mib']:.0f} MiB while building")
    j = result["join"]
    print(f"join              ready in {j['ready_s']:.1f} s, peak RSS {j['peak_rss_mib']:.0f} MiB, "
          f"{j['snapshots_installed']} snapshot(s) installed")
    for sec, phase, got, total in j["progress_seen"]:
        print(f"  joining at {sec:>5.1f} s  {phase:<11} snapshot {got / 2**20:.0f} of "
              f"{(total or 0) / 2**20:.0f} MiB received")
    b, r = result["backup"], result["restore"]
    print(f"backup            {b['s']:.1f} s, {b['bytes'] / 2**20:.0f} MiB, {b['rows']:,} rows, "
          f"node RSS +{b['node_rss_growth_mib']:.0f} MiB while streaming")
    print(f"restore           one node ready in {r['ready_s']:.1f} s, peak RSS {r['peak_rss_mib']:.0f} MiB, "
          f"{r['disk_bytes'] / 2**20:.0f} MiB on disk")
    print(f"raw               {out}")


try:
    main()
finally:
    for p in procs.values():
        p.send_signal(signal.SIGKILL)
        p.wait()
    shutil.rmtree(work, ignore_errors=True)
