//! One simulated run: a cluster of real nodes, clients issuing a random mix, the fault schedule,
//! then healing, convergence and the checks.
//!
//! Hosts: `n1..nN` run `node::serve` (the binary's code) on turmoil's network, each with its redb
//! files in its own directory, so a crash and restart reopens real data. `c0..cK` are workload
//! clients; `ctl` sets the run up (accounts, sales), follows the leader, performs membership
//! changes, and after healing resolves unknown purchases, waits for convergence and reads the
//! final state from every node. The main loop steps the simulation and fires faults.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raft::Inject;
use raft::Transport;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::check::{self, NameModel, SaleModel, Verdict};
use crate::faults::{self, Fault, Planned};
use crate::gql::{lit, node_addr, request, request_at, Answer, Indexes};
use crate::history::{sim_ms, History, Input, Key, Op, Output};
use crate::net::{SimListener, SimTransport};

/// Names clients fight over: few, so claims collide. Claims use case variants, checks also a
/// Cyrillic look-alike; the checker keys each by its canonical form.
pub const NAMES: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];
/// Sales per run, with small stocks so they sell out while faults run.
pub const SALES: usize = 2;
/// How long a client waits for one GraphQL answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(2_500);
/// Attempts per client operation (another node each time) before it counts as failed/unknown.
pub const ATTEMPTS_MAX: usize = 3;
/// After healing, how long the cluster has to converge before that is a violation.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Operations shown before the first failing one in a report.
pub const FAILURE_CONTEXT_OPS_MAX: usize = 12;
/// Simulated time a run may take in all before it is reported stuck.
pub const RUN_LIMIT: Duration = Duration::from_secs(300);

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The seed: fault schedule, workload choices and turmoil's network randomness.
    pub seed: u64,
    /// Cluster size (3 or 5).
    pub nodes: u64,
    /// Workload clients.
    pub clients: usize,
    /// Length of the fault phase, simulated milliseconds.
    pub fault_ms: u64,
    /// Operations per client at most.
    pub ops_per_client: usize,
    /// Deliberate bugs in every node.
    pub inject: Inject,
    /// Where each run's data directories go (a fresh subdirectory per run, removed after).
    pub data_root: PathBuf,
}

impl SimConfig {
    /// The defaults for `seed`: one seed in three runs five nodes, the others three.
    pub fn for_seed(seed: u64) -> Self {
        SimConfig {
            seed,
            nodes: if seed.is_multiple_of(3) { 5 } else { 3 },
            clients: 4,
            fault_ms: 12_000,
            ops_per_client: 120,
            inject: Inject::default(),
            data_root: default_data_root(),
        }
    }

    /// The one command that replays this run.
    pub fn replay_command(&self) -> String {
        let mut cmd = format!("cargo run --release -p simulation -- --seed {}", self.seed);
        let d = SimConfig::for_seed(self.seed);
        if self.nodes != d.nodes {
            cmd += &format!(" --nodes {}", self.nodes);
        }
        if self.clients != d.clients {
            cmd += &format!(" --clients {}", self.clients);
        }
        if self.fault_ms != d.fault_ms {
            cmd += &format!(" --fault-ms {}", self.fault_ms);
        }
        if self.ops_per_client != d.ops_per_client {
            cmd += &format!(" --ops {}", self.ops_per_client);
        }
        if self.inject.any() {
            cmd += &format!(" --inject {}", self.inject);
        }
        cmd
    }
}

/// tmpfs when there is one: redb fsyncs every commit, and the simulation is about ordering and
/// faults, not disk speed. A crash here is a process crash (files survive), not a power cut.
pub fn default_data_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.join("raftgraph-sim")
    } else {
        std::env::temp_dir().join("raftgraph-sim")
    }
}

/// Something the checks found wrong.
#[derive(Debug, Clone)]
pub struct Violation {
    /// Which check.
    pub what: String,
    /// The evidence.
    pub detail: String,
}

/// What a run did and found.
#[derive(Debug)]
pub struct Outcome {
    /// The configuration that ran.
    pub config: SimConfig,
    /// The planned schedule.
    pub schedule: Vec<Planned>,
    /// What actually fired, with resolved targets, in simulated milliseconds.
    pub events: Vec<String>,
    /// Every recorded operation.
    pub ops: Vec<Op>,
    /// Operations whose outcome stayed unknown.
    pub unknown: usize,
    /// LOCAL reads served: not checked for linearizability (they may lag the leader), but each
    /// is checked against its client's session (read-your-writes, monotonic reads).
    pub local_reads: usize,
    /// Simulated time the run took.
    pub sim: Duration,
    /// Wall-clock time the run took.
    pub wall: Duration,
    /// What the checks found; empty when the run passed.
    pub violations: Vec<Violation>,
}

impl Outcome {
    /// True when every check passed.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// A fingerprint of the history (who did what to which key and got what, in order), to
    /// measure how often a replay reproduces a run exactly.
    pub fn fingerprint(&self) -> u64 {
        let text: String =
            self.ops.iter().map(|o| format!("{}|{:?}|{:?}|{:?};", o.client, o.key, o.input, o.output)).collect();
        text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
    }

    /// The failure report: the replay command, the schedule, and each violation's evidence.
    pub fn report(&self) -> String {
        let mut s = format!("FAILED seed {}: replay with\n    {}\n", self.config.seed, self.config.replay_command());
        s += &format!("\nfault schedule ({} nodes):\n", self.config.nodes);
        for p in &self.schedule {
            s += &format!("  {p}\n");
        }
        s += "\nwhat fired:\n";
        for e in &self.events {
            s += &format!("  {e}\n");
        }
        for v in &self.violations {
            s += &format!("\nVIOLATION: {}\n{}\n", v.what, v.detail);
        }
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Setup,
    Faults,
    Healing,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wipe {
    Idle,
    /// The main loop asks ctl to remove this node from the membership.
    Requested(u64),
    /// Removed: the main loop may crash, wipe and restart it with --join.
    Removed(u64),
}

#[derive(Debug, Clone)]
struct Setup {
    admin: String,
    buyers: Vec<String>,
    /// (sale id, initial stock).
    sales: Vec<(u64, u64)>,
}

#[derive(Debug, Clone)]
struct PendingPurchase {
    op: usize,
    client: usize,
    sale: u64,
    quantity: u64,
    key: String,
}

/// Everything hosts and the main loop share. turmoil runs all hosts on this one thread.
struct Shared {
    cfg: SimConfig,
    history: History,
    phase: Phase,
    setup: Option<Setup>,
    leader: Option<u64>,
    clients_done: usize,
    wipe: Wipe,
    /// Nodes that start with --join (a wiped node) rather than --peers.
    joiners: BTreeSet<u64>,
    events: Vec<String>,
    unknown_purchases: Vec<PendingPurchase>,
    local_reads: usize,
    /// One per workload client: what its session has seen (see [`Session`]).
    sessions: Vec<Session>,
    /// What the session checks found, as they ran.
    session_violations: Vec<Violation>,
    /// Acknowledged orders: (sale, order id) -> op id.
    acked_orders: BTreeMap<(u64, String), usize>,
    final_state: Option<FinalState>,
    /// Simulated milliseconds, as the main loop last saw them.
    now_ms: u64,
}

type SharedRef = Rc<RefCell<Shared>>;

/// A workload client's session, as the typed client keeps one: the highest log index any answer
/// carried, sent as `atLeastIndex` on every request, and the names it has seen held, with the
/// evidence. Names are never released in a run (reservations outlive it), so once a session has
/// seen a name held, by its own claim or by any read, every later answer it gets must say so,
/// from whichever node, LOCAL or not: read-your-writes and monotonic reads.
#[derive(Debug, Default, Clone)]
struct Session {
    mark: u64,
    held: BTreeMap<String, String>,
}

/// Whether a request carries the session's index as `atLeastIndex`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Floor {
    /// It does, as the typed client sends it: LOCAL reads and writes.
    Session,
    /// It does not: LINEARIZABLE reads need no floor, and one would hide a stale linearizable
    /// read (`--inject stale-read`) behind the session's own history, where the history checker
    /// must see it.
    None,
}

/// How a client operation's last attempt went, with the session's view of it.
struct Attempted {
    answer: Answer,
    /// Whether any attempt may have taken effect.
    uncertain: bool,
    /// The nodes tried, for reports.
    tried: String,
    /// The `atLeastIndex` the last attempt sent.
    floor: u64,
    /// The indexes the last answer carried.
    indexes: Indexes,
}

impl Shared {
    fn event(&mut self, text: String) {
        // Inside a host turmoil knows the time; the main loop keeps `now_ms` for itself.
        let at = turmoil::sim_elapsed().map_or(self.now_ms, |d| d.as_millis() as u64);
        self.events.push(format!("{at:>7} ms  {text}"));
    }
}

/// One node's view of a sale after healing: (node, stock, sold, orders as (id, quantity)).
type SaleView = (u64, u64, u64, Vec<(String, u64)>);

#[derive(Debug, Default)]
struct FinalState {
    converged: Option<String>,
    /// canonical name -> (node, status) per node.
    names: BTreeMap<String, Vec<(u64, String)>>,
    /// sale -> what each node shows of it.
    sales: BTreeMap<u64, Vec<SaleView>>,
}

fn node_config(cfg: &SimConfig, id: u64, dir: &Path, join: bool) -> node::Config {
    let mut c = node::Config::defaults();
    c.id = id;
    c.listen = format!("0.0.0.0:{}", crate::net::PORT);
    c.advertise = Some(node_addr(id));
    c.data_dir = dir.to_path_buf();
    c.peers = if join {
        String::new()
    } else {
        (1..=cfg.nodes).map(|i| format!("{i}={}", node_addr(i))).collect::<Vec<_>>().join(",")
    };
    c.join = join.then(|| node_addr(if id == 1 { 2 } else { 1 }));
    c.cluster_secret = Some("simulation-cluster-secret-0123456789".into());
    c.jwt_secret = Some("simulation-jwt-secret-0123456789abcdef".into());
    c.rate_limit_per_sec = 0;
    c.reservations_per_client_per_hour = 0;
    // Small snapshot spacing, so snapshots are built, sent and installed during a run.
    c.snapshot_logs = 150;
    c.logs_kept_after_snapshot = 20;
    c.inject = cfg.inject;
    c
}

/// Runs one seed to the end and checks it.
pub fn run(cfg: SimConfig) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    // Unique per run: tests run seeds in parallel threads of one process, some the same seed.
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run_no = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = cfg.data_root.join(format!("{}-{run_no}-seed-{}", std::process::id(), cfg.seed));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let result = run_in(&cfg, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let (mut outcome, sim) = result?;
    outcome.sim = sim;
    outcome.wall = started.elapsed();
    Ok(outcome)
}

fn run_in(cfg: &SimConfig, dir: &Path) -> anyhow::Result<(Outcome, Duration)> {
    let schedule = faults::plan(cfg.seed, cfg.nodes, cfg.fault_ms);
    let shared: SharedRef = Rc::new(RefCell::new(Shared {
        cfg: cfg.clone(),
        history: History::default(),
        phase: Phase::Setup,
        setup: None,
        leader: None,
        clients_done: 0,
        wipe: Wipe::Idle,
        joiners: BTreeSet::new(),
        events: Vec::new(),
        unknown_purchases: Vec::new(),
        local_reads: 0,
        sessions: vec![Session::default(); cfg.clients],
        session_violations: Vec::new(),
        acked_orders: BTreeMap::new(),
        final_state: None,
        now_ms: 0,
    }));

    let mut sim = turmoil::Builder::new()
        .simulation_duration(RUN_LIMIT)
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(15))
        .tcp_capacity(4096)
        .enable_random_order()
        .rng_seed(cfg.seed)
        .build();

    let node_dir = |id: u64| dir.join(format!("n{id}"));
    for id in 1..=cfg.nodes {
        let shared = shared.clone();
        let data = node_dir(id);
        let cfg = cfg.clone();
        sim.host(format!("n{id}"), move || {
            let join = shared.borrow().joiners.contains(&id);
            let config = node_config(&cfg, id, &data, join);
            async move {
                let listener = SimListener::bind().await?;
                let transport = |secret: String| Ok(Arc::new(SimTransport::new(secret)) as Arc<dyn Transport>);
                node::serve(config, listener, transport, std::future::pending()).await?;
                Ok(())
            }
        });
    }
    for c in 0..cfg.clients {
        let shared = shared.clone();
        sim.client(format!("c{c}"), async move {
            workload(c, shared).await;
            Ok(())
        });
    }
    {
        let shared = shared.clone();
        sim.client("ctl", async move {
            ctl(shared).await;
            Ok(())
        });
    }

    // The main loop: step, fire due faults, wipe when ctl has removed the node, heal at the end.
    let mut next = 0;
    let mut crashed: BTreeSet<u64> = BTreeSet::new();
    let mut faults_from: Option<u64> = None;
    let all_nodes: Vec<String> = (1..=cfg.nodes).map(|i| format!("n{i}")).collect();
    loop {
        shared.borrow_mut().now_ms = sim_elapsed_ms(&sim);
        let phase = shared.borrow().phase;
        if phase == Phase::Faults {
            let start = *faults_from.get_or_insert(sim_elapsed_ms(&sim));
            let elapsed = sim_elapsed_ms(&sim) - start;
            while next < schedule.len() && schedule[next].at_ms <= elapsed {
                apply(&mut sim, &shared, &schedule[next].fault, &mut crashed, &all_nodes);
                next += 1;
            }
            let wipe = shared.borrow().wipe;
            if let Wipe::Removed(x) = wipe {
                let host = format!("n{x}");
                sim.crash(host.as_str());
                crashed.remove(&x);
                std::fs::remove_dir_all(node_dir(x))?;
                let mut s = shared.borrow_mut();
                s.joiners.insert(x);
                s.wipe = Wipe::Idle;
                s.event(format!("wiped n{x}; restarting it with --join"));
                drop(s);
                sim.bounce(host.as_str());
            }
            if elapsed >= cfg.fault_ms && shared.borrow().wipe == Wipe::Idle {
                heal_network(&mut sim, &all_nodes);
                for id in std::mem::take(&mut crashed) {
                    sim.bounce(format!("n{id}").as_str());
                }
                let mut s = shared.borrow_mut();
                s.event("fault phase over: network healed, crashed nodes restarted".into());
                s.phase = Phase::Healing;
            }
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                let elapsed = sim_elapsed_ms(&sim);
                let s = shared.borrow();
                let violations = vec![Violation {
                    what: "the simulation did not finish".into(),
                    detail: format!("{e} at {elapsed} ms (phase {:?})", s.phase),
                }];
                return Ok((outcome_of(cfg, schedule, &s, violations), sim.elapsed()));
            }
        }
    }
    let sim_time = sim.elapsed();
    drop(sim);

    let s = shared.borrow();
    let mut violations = check_history(&s);
    violations.extend(s.session_violations.iter().cloned());
    violations.extend(check_final(&s));
    violations.extend(check_digests(cfg, &node_dir));
    Ok((outcome_of(cfg, schedule, &s, violations), sim_time))
}

fn sim_elapsed_ms(sim: &turmoil::Sim<'_>) -> u64 {
    sim.elapsed().as_millis() as u64
}

fn outcome_of(cfg: &SimConfig, schedule: Vec<Planned>, s: &Shared, violations: Vec<Violation>) -> Outcome {
    Outcome {
        config: cfg.clone(),
        schedule,
        events: s.events.clone(),
        ops: s.history.ops().to_vec(),
        unknown: s.history.ops().iter().filter(|o| o.output == Output::Unknown).count(),
        local_reads: s.local_reads,
        sim: Duration::ZERO,
        wall: Duration::ZERO,
        violations,
    }
}

fn heal_network(sim: &mut turmoil::Sim<'_>, all: &[String]) {
    for a in all {
        for b in all {
            if a < b {
                sim.release(a.as_str(), b.as_str());
                sim.repair(a.as_str(), b.as_str());
                sim.set_link_fail_rate(a.as_str(), b.as_str(), 0.0);
            }
        }
    }
}

fn cut(sim: &mut turmoil::Sim<'_>, a: &[u64], b: &[u64]) {
    for x in a {
        for y in b {
            sim.partition(format!("n{x}").as_str(), format!("n{y}").as_str());
        }
    }
}

fn apply(sim: &mut turmoil::Sim<'_>, shared: &SharedRef, fault: &Fault, crashed: &mut BTreeSet<u64>, all: &[String]) {
    let nodes = shared.borrow().cfg.nodes;
    let leader = shared.borrow().leader;
    let others = |x: u64| (1..=nodes).filter(|&i| i != x).collect::<Vec<_>>();
    let fired = match fault {
        Fault::Partition { a, b } => {
            cut(sim, a, b);
            fault.to_string()
        }
        Fault::IsolateLeader => match leader {
            Some(l) => {
                cut(sim, &[l], &others(l));
                format!("isolate the leader n{l}")
            }
            None => "isolate the leader: none known, skipped".into(),
        },
        Fault::Bridge { a, b, .. } => {
            cut(sim, a, b);
            fault.to_string()
        }
        Fault::Delay { links } => {
            for (a, b) in links {
                sim.hold(format!("n{a}").as_str(), format!("n{b}").as_str());
            }
            fault.to_string()
        }
        Fault::Loss { links, rate } => {
            for (a, b) in links {
                sim.set_link_fail_rate(format!("n{a}").as_str(), format!("n{b}").as_str(), *rate);
            }
            fault.to_string()
        }
        Fault::HealNetwork => {
            heal_network(sim, all);
            fault.to_string()
        }
        Fault::Crash { nodes: ids } => {
            for id in ids {
                if crashed.insert(*id) {
                    sim.crash(format!("n{id}").as_str());
                }
            }
            fault.to_string()
        }
        Fault::CrashLeader => match leader {
            Some(l) if !crashed.contains(&l) => {
                crashed.insert(l);
                sim.crash(format!("n{l}").as_str());
                format!("crash the leader n{l}")
            }
            _ => "crash the leader: none known, skipped".into(),
        },
        Fault::Restart => {
            for id in std::mem::take(crashed) {
                sim.bounce(format!("n{id}").as_str());
            }
            fault.to_string()
        }
        Fault::WipeRejoin { node } => {
            let mut s = shared.borrow_mut();
            if s.wipe == Wipe::Idle && !crashed.contains(node) {
                s.wipe = Wipe::Requested(*node);
                format!("{fault}: asking ctl to remove n{node} from the voters")
            } else {
                format!("{fault}: skipped (node down or a wipe in progress)")
            }
        }
    };
    shared.borrow_mut().event(fired);
}

// ---------------------------------------------------------------------------------------------
// Hosts: workload clients and ctl.

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Sends `query` to up to `ATTEMPTS_MAX` random nodes until one answers in a way worth keeping,
/// in client `c`'s session: each answer raises the session's index, and each attempt carries it
/// as `atLeastIndex` unless `Floor::None`. `retry_uncertain`: also retry when an attempt may have
/// taken effect (safe for idempotent operations only).
async fn attempt(
    rng: &mut StdRng,
    shared: &SharedRef,
    c: usize,
    query: &str,
    token: Option<&str>,
    retry_uncertain: bool,
    floor_of: Floor,
) -> Attempted {
    let nodes = shared.borrow().cfg.nodes;
    let mut tried = Vec::new();
    let mut uncertain = false;
    let mut last = (Answer::Net(crate::net::NetError::Unreachable("not tried".into())), Indexes::default());
    let mut floor = 0;
    for i in 0..ATTEMPTS_MAX {
        let node = rng.random_range(1..=nodes);
        tried.push(format!("n{node}"));
        floor = match floor_of {
            Floor::Session => shared.borrow().sessions[c].mark,
            Floor::None => 0,
        };
        last = request_at(&node_addr(node), query, token, floor, REQUEST_TIMEOUT).await;
        if let Some(high) = last.1.high() {
            let mut s = shared.borrow_mut();
            s.sessions[c].mark = s.sessions[c].mark.max(high);
        }
        let answer = &last.0;
        let definite = answer.certainly_not_applied();
        uncertain |= !definite && !matches!(answer, Answer::Data(_));
        let again = answer.worth_retrying() && (definite || retry_uncertain);
        if !again || i + 1 == ATTEMPTS_MAX {
            break;
        }
        sleep_ms(rng.random_range(50..250)).await;
    }
    let (answer, indexes) = last;
    Attempted { answer, uncertain, tried: tried.join(","), floor, indexes }
}

/// Checks a name's status as client `c` read it against the client's session, then remembers a
/// held name: the answer must be served at or after the index the session sent, and must not
/// call a name AVAILABLE that the session has seen held.
fn check_session_read(s: &mut Shared, c: usize, canonical: &str, output: &Output, at: &Attempted, what: &str) {
    let applied = at.indexes.applied.unwrap_or(0);
    if applied < at.floor {
        s.session_violations.push(Violation {
            what: "session order: an answer older than its atLeastIndex".into(),
            detail: format!(
                "client c{c}: {what} sent atLeastIndex {} and was answered from index {applied} ({})",
                at.floor, at.tried
            ),
        });
    }
    match output {
        Output::Free => {
            if let Some(seen) = s.sessions[c].held.get(canonical) {
                let detail = format!(
                    "client c{c}: {what} said {canonical:?} is AVAILABLE at index {applied} (atLeastIndex {}, via {}), \
                     but this session had already {seen}",
                    at.floor, at.tried
                );
                s.session_violations
                    .push(Violation { what: "session: read-your-writes / monotonic reads".into(), detail });
            }
        }
        _ => {
            let seen = format!("seen it held by {what} at index {applied} via {}", at.tried);
            s.sessions[c].held.entry(canonical.to_string()).or_insert(seen);
        }
    }
}

fn status_of(answer: &Answer, field: &str) -> Option<String> {
    match answer {
        Answer::Data(d) => d.get(field)?.get("status")?.as_str().map(String::from),
        _ => None,
    }
}

fn held_or_free(status: &str) -> Option<Output> {
    match status {
        "AVAILABLE" => Some(Output::Free),
        "TAKEN" | "RESERVED" => Some(Output::Held),
        _ => None,
    }
}

async fn workload(c: usize, shared: SharedRef) {
    let (seed, ops_max) = {
        let s = shared.borrow();
        (s.cfg.seed, s.cfg.ops_per_client)
    };
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(c as u64));
    while shared.borrow().phase == Phase::Setup {
        sleep_ms(50).await;
    }
    let Some(setup) = shared.borrow().setup.clone() else { return };
    let token = setup.buyers[c].clone();
    for n in 0..ops_max {
        if shared.borrow().phase != Phase::Faults {
            break;
        }
        let roll: f64 = rng.random();
        if roll < 0.35 {
            claim(&mut rng, &shared, c).await;
        } else if roll < 0.65 {
            check_name(&mut rng, &shared, c, roll < 0.55).await;
        } else if roll < 0.9 {
            let (sale, _) = setup.sales[rng.random_range(0..setup.sales.len())];
            purchase(&mut rng, &shared, c, &token, sale, format!("c{c}-{n}")).await;
        } else {
            let (sale, _) = setup.sales[rng.random_range(0..setup.sales.len())];
            read_sale(&mut rng, &shared, c, sale).await;
        }
        sleep_ms(rng.random_range(0..40)).await;
    }
    shared.borrow_mut().clients_done += 1;
}

fn variant(rng: &mut StdRng, base: &str, lookalike: bool) -> String {
    match rng.random_range(0..if lookalike { 4 } else { 3 }) {
        0 => base.to_string(),
        1 => base.to_uppercase(),
        2 => {
            let mut cs = base.chars();
            cs.next().map(|f| f.to_uppercase().chain(cs).collect()).unwrap_or_default()
        }
        // Cyrillic а/е/о for their Latin twins: a different string with the same canonical form.
        _ => base.replace('a', "\u{430}").replace('e', "\u{435}").replace('o', "\u{43e}"),
    }
}

async fn claim(rng: &mut StdRng, shared: &SharedRef, c: usize) {
    let base = NAMES[rng.random_range(0..NAMES.len())];
    let name = variant(rng, base, false);
    let key = Key::Name(raft::model::names::canonical(&name));
    let q = format!("mutation {{ reserveUsername(name: {}, ttlSeconds: 3600) {{ token }} }}", lit(&name));
    let (call, call_ms) = (shared.borrow_mut().history.tick(), sim_ms());
    let at = attempt(rng, shared, c, &q, None, false, Floor::Session).await;
    let (answer, uncertain, tried) = (&at.answer, at.uncertain, &at.tried);
    let output = match answer.code() {
        _ if matches!(answer, Answer::Data(_)) => Output::Claimed,
        Some("USERNAME_TAKEN" | "USERNAME_RESERVED") => Output::Taken,
        _ if answer.certainly_not_applied() && !uncertain => return,
        _ => Output::Unknown,
    };
    let mut s = shared.borrow_mut();
    if matches!(output, Output::Claimed | Output::Taken) {
        let canonical = raft::model::names::canonical(&name);
        let index = at.indexes.high().unwrap_or(0);
        let seen = format!("claimed it ({output:?}) in the entry at index {index} via {tried}");
        s.sessions[c].held.entry(canonical).or_insert(seen);
    }
    s.history.record(c, key, Input::Claim, output, call, call_ms, format!("{name} via {tried}"));
}

async fn check_name(rng: &mut StdRng, shared: &SharedRef, c: usize, linearizable: bool) {
    let base = NAMES[rng.random_range(0..NAMES.len())];
    let name = variant(rng, base, true);
    let consistency = if linearizable { "LINEARIZABLE" } else { "LOCAL" };
    let q = format!("{{ usernameAvailability(name: {}, consistency: {consistency}) {{ status }} }}", lit(&name));
    let (call, call_ms) = (shared.borrow_mut().history.tick(), sim_ms());
    let floor = if linearizable { Floor::None } else { Floor::Session };
    let at = attempt(rng, shared, c, &q, None, true, floor).await;
    let Some(output) = status_of(&at.answer, "usernameAvailability").as_deref().and_then(held_or_free) else {
        return;
    };
    let canonical = raft::model::names::canonical(&name);
    let mut s = shared.borrow_mut();
    check_session_read(&mut s, c, &canonical, &output, &at, &format!("a {consistency} check of {name:?}"));
    if linearizable {
        let key = Key::Name(canonical);
        s.history.record(c, key, Input::Check, output, call, call_ms, format!("{name} via {}", at.tried));
    } else {
        // LOCAL reads may lag the leader by design: not checked for linearizability, only
        // against the session above.
        s.local_reads += 1;
    }
}

fn purchase_query(sale: u64, quantity: u64, key: &str) -> String {
    format!(
        "mutation {{ purchase(saleId: \"{sale}\", quantity: {quantity}, idempotencyKey: {}) {{ id quantity }} }}",
        lit(key)
    )
}

/// The output of a purchase answer: Some(Bought/SoldOut, order id) when definite.
fn purchase_output(answer: &Answer) -> Option<(Output, Option<String>)> {
    match answer {
        Answer::Data(d) => {
            let id = d.get("purchase")?.get("id")?.as_str()?.to_string();
            Some((Output::Bought, Some(id)))
        }
        Answer::Error { code, .. } if code == "SOLD_OUT" => Some((Output::SoldOut, None)),
        _ => None,
    }
}

async fn purchase(rng: &mut StdRng, shared: &SharedRef, c: usize, token: &str, sale: u64, key: String) {
    let quantity = rng.random_range(1..=2);
    let q = purchase_query(sale, quantity, &key);
    let (call, call_ms) = (shared.borrow_mut().history.tick(), sim_ms());
    // The idempotency key makes a retry after an uncertain attempt safe: it returns the first order.
    let Attempted { answer, uncertain, tried, .. } =
        attempt(rng, shared, c, &q, Some(token), true, Floor::Session).await;
    let note = format!("key {key} via {tried}");
    let mut s = shared.borrow_mut();
    match purchase_output(&answer) {
        Some((output, order)) => {
            let id = s.history.record(c, Key::Sale(sale), Input::Purchase { quantity }, output, call, call_ms, note);
            if let Some(order) = order {
                s.acked_orders.insert((sale, order), id);
            }
        }
        None if answer.certainly_not_applied() && !uncertain => {}
        None => {
            let op = s.history.record(
                c,
                Key::Sale(sale),
                Input::Purchase { quantity },
                Output::Unknown,
                call,
                call_ms,
                note,
            );
            s.unknown_purchases.push(PendingPurchase { op, client: c, sale, quantity, key });
        }
    }
}

fn sale_query(sale: u64, consistency: &str) -> String {
    format!("{{ sale(id: \"{sale}\", consistency: {consistency}) {{ stock sold }} }}")
}

fn stock_of(answer: &Answer) -> Option<(u64, u64)> {
    match answer {
        Answer::Data(d) => {
            let s = d.get("sale")?;
            Some((s.get("stock")?.as_u64()?, s.get("sold")?.as_u64()?))
        }
        _ => None,
    }
}

async fn read_sale(rng: &mut StdRng, shared: &SharedRef, c: usize, sale: u64) {
    let (call, call_ms) = (shared.borrow_mut().history.tick(), sim_ms());
    let Attempted { answer, tried, .. } =
        attempt(rng, shared, c, &sale_query(sale, "LINEARIZABLE"), None, true, Floor::None).await;
    let Some((stock, sold)) = stock_of(&answer) else { return };
    shared.borrow_mut().history.record(
        c,
        Key::Sale(sale),
        Input::ReadSale,
        Output::Stock { stock, sold },
        call,
        call_ms,
        format!("via {tried}"),
    );
}

/// Sends `query` to `node` until it answers with data (setup and final reads: no faults are
/// running then, but the cluster may still be electing or catching up).
async fn until_data(node: u64, query: &str, token: Option<&str>, limit: Duration) -> Result<Value, String> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        match request(&node_addr(node), query, token, REQUEST_TIMEOUT).await {
            Answer::Data(d) => return Ok(d),
            other => last = format!("{other:?}"),
        }
        sleep_ms(200).await;
    }
    Err(format!("n{node} gave no data for {query:?} in {limit:?}: {last}"))
}

async fn register(nodes: u64, name: &str) -> Result<String, String> {
    let q = format!(
        "mutation {{ register(input: {{username: {}, password: \"simulation-password\"}}) {{ token }} }}",
        lit(name)
    );
    let login = format!("mutation {{ login(username: {}, password: \"simulation-password\") {{ token }} }}", lit(name));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut node = 1;
    while tokio::time::Instant::now() < deadline {
        match request(&node_addr(node), &q, None, REQUEST_TIMEOUT).await {
            Answer::Data(d) => return d["register"]["token"].as_str().map(String::from).ok_or("no token".into()),
            // An earlier attempt that timed out went through.
            Answer::Error { code, .. } if code == "USERNAME_TAKEN" => {
                let d = until_data(node, &login, None, Duration::from_secs(20)).await?;
                return d["login"]["token"].as_str().map(String::from).ok_or("no token".into());
            }
            _ => {}
        }
        node = node % nodes + 1;
        sleep_ms(300).await;
    }
    Err(format!("could not register {name}"))
}

async fn setup(shared: &SharedRef) -> Result<Setup, String> {
    let (seed, nodes, clients) = {
        let s = shared.borrow();
        (s.cfg.seed, s.cfg.nodes, s.cfg.clients)
    };
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5e7u64);
    // The first account of a cluster is its ADMIN.
    let admin = register(nodes, "simadmin").await?;
    let mut buyers = Vec::new();
    for c in 0..clients {
        buyers.push(register(nodes, &format!("buyer{c}")).await?);
    }
    let limit = Duration::from_secs(30);
    let product = until_data(
        1,
        "mutation { createProduct(input: {name: \"widget\", description: \"\", priceCents: 100}) { id } }",
        Some(&admin),
        limit,
    )
    .await?;
    let product = product["createProduct"]["id"].as_str().ok_or("no product id")?.to_string();
    let mut sales = Vec::new();
    for _ in 0..SALES {
        let stock: u64 = rng.random_range(6..=16);
        let q = format!(
            "mutation {{ createSale(input: {{productId: \"{product}\", stock: {stock}, perUserLimit: {stock}}}) {{ id }} }}"
        );
        let d = until_data(1, &q, Some(&admin), limit).await?;
        let id: u64 = d["createSale"]["id"].as_str().and_then(|s| s.parse().ok()).ok_or("no sale id")?;
        until_data(1, &format!("mutation {{ startSale(saleId: \"{id}\") {{ id }} }}"), Some(&admin), limit).await?;
        sales.push((id, stock));
    }
    Ok(Setup { admin, buyers, sales })
}

async fn ctl(shared: SharedRef) {
    let nodes = shared.borrow().cfg.nodes;
    let clients = shared.borrow().cfg.clients;
    match setup(&shared).await {
        Ok(s) => {
            let mut sh = shared.borrow_mut();
            sh.event(format!("setup done: sales {:?}; faults start", s.sales));
            sh.setup = Some(s);
            sh.phase = Phase::Faults;
        }
        Err(e) => {
            let mut sh = shared.borrow_mut();
            sh.event(format!("setup failed: {e}"));
            sh.final_state = Some(FinalState { converged: Some(format!("setup failed: {e}")), ..Default::default() });
            sh.phase = Phase::Done;
            return;
        }
    }
    let admin = shared.borrow().setup.as_ref().map(|s| s.admin.clone()).unwrap_or_default();
    let mut rng = StdRng::seed_from_u64(shared.borrow().cfg.seed ^ 0xc71);

    // During faults: follow the leader (for leader-targeted faults), perform membership changes.
    while shared.borrow().phase == Phase::Faults {
        let node = rng.random_range(1..=nodes);
        if let Answer::Data(d) = request(&node_addr(node), "{ cluster { leaderId } }", None, REQUEST_TIMEOUT).await {
            if let Some(l) = d["cluster"]["leaderId"].as_u64() {
                shared.borrow_mut().leader = Some(l);
            }
        }
        let wipe = shared.borrow().wipe;
        if let Wipe::Requested(x) = wipe {
            let outcome = remove_voter(&shared, &admin, nodes, x).await;
            let mut s = shared.borrow_mut();
            match outcome {
                Ok(at) => {
                    s.event(format!("n{x} removed from the voters via n{at}"));
                    s.wipe = Wipe::Removed(x);
                }
                Err(e) => {
                    s.event(format!("could not remove n{x} ({e}); wipe skipped"));
                    s.wipe = Wipe::Idle;
                }
            }
        }
        sleep_ms(200).await;
    }

    while shared.borrow().clients_done < clients {
        sleep_ms(100).await;
    }
    let setup = shared.borrow().setup.clone().expect("setup done");
    resolve_unknown_purchases(&shared, &setup, nodes).await;
    let converged = converge(nodes).await;
    let mut fin = FinalState { converged: converged.err(), ..Default::default() };
    if fin.converged.is_none() {
        final_reads(&shared, &setup, nodes, &mut fin).await;
    }
    let mut s = shared.borrow_mut();
    s.final_state = Some(fin);
    s.phase = Phase::Done;
}

/// Removes `x` from the voters through the current leader, and returns that leader. A change
/// whose answer was lost (the leader crashed after committing it, say) is found done by reading
/// the membership from the leader among the other nodes, so it is neither retried on a node
/// that was itself removed nor reported as failed.
async fn remove_voter(shared: &SharedRef, admin: &str, nodes: u64, x: u64) -> Result<u64, String> {
    let voters: Vec<String> = (1..=nodes).filter(|&i| i != x).map(|i| i.to_string()).collect();
    let q = format!("mutation {{ changeMembership(voterIds: [{}]) {{ leaderId }} }}", voters.join(","));
    let status = "{ cluster { nodeId leaderId members { id voter } } }";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut last = String::from("no leader among the other nodes");
    while tokio::time::Instant::now() < deadline {
        // A node that says it leads, other than x (a removed leader can go on believing it leads).
        let mut leader = None;
        for n in (1..=nodes).filter(|&n| n != x) {
            if let Answer::Data(d) = request(&node_addr(n), status, None, REQUEST_TIMEOUT).await {
                let c = &d["cluster"];
                if c["leaderId"].as_u64() == Some(n) && c["nodeId"].as_u64() == Some(n) {
                    let still_voter = c["members"]
                        .as_array()
                        .is_some_and(|m| m.iter().any(|m| m["id"].as_u64() == Some(x) && m["voter"] == true));
                    leader = Some((n, still_voter));
                    break;
                }
            }
        }
        match leader {
            Some((n, false)) => return Ok(n),
            Some((n, true)) => {
                shared.borrow_mut().leader = Some(n);
                match request(&node_addr(n), &q, Some(admin), REQUEST_TIMEOUT).await {
                    Answer::Data(_) => return Ok(n),
                    other => last = format!("{other:?}"),
                }
            }
            None => {}
        }
        sleep_ms(300).await;
    }
    Err(last)
}

/// Retries each purchase whose outcome was unknown with the same idempotency key until it
/// answers: the cluster returns the first order if there was one, or decides it now.
async fn resolve_unknown_purchases(shared: &SharedRef, setup: &Setup, nodes: u64) {
    let pending = std::mem::take(&mut shared.borrow_mut().unknown_purchases);
    for p in pending {
        let q = purchase_query(p.sale, p.quantity, &p.key);
        let token = setup.buyers[p.client].clone();
        for attempt in 0..40u64 {
            let node = attempt % nodes + 1;
            let answer = request(&node_addr(node), &q, Some(&token), REQUEST_TIMEOUT).await;
            if let Some((output, order)) = purchase_output(&answer) {
                let mut s = shared.borrow_mut();
                s.history.settle(p.op, output, &format!("; settled via n{node} after healing"));
                if let Some(order) = order {
                    s.acked_orders.insert((p.sale, order), p.op);
                }
                break;
            }
            sleep_ms(250).await;
        }
    }
}

/// Waits until every node answers with the same leader and the same last applied index, twice
/// in a row.
async fn converge(nodes: u64) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT;
    let mut previous = None;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        let mut views = Vec::new();
        let mut errors = Vec::new();
        for n in 1..=nodes {
            match request(&node_addr(n), "{ cluster { leaderId lastApplied } }", None, REQUEST_TIMEOUT).await {
                Answer::Data(d) => {
                    views.push((d["cluster"]["leaderId"].as_u64(), d["cluster"]["lastApplied"].as_u64()))
                }
                other => {
                    views.push((None, None));
                    errors.push(format!("n{n}: {other:?}"));
                }
            }
        }
        let first = views[0];
        if first.0.is_some() && views.iter().all(|v| *v == first) {
            if previous == Some(first) {
                return Ok(());
            }
            previous = Some(first);
        } else {
            // (leader, last applied) per node, the latest round only.
            last = format!("{views:?} {}", errors.join("; "));
            previous = None;
        }
        sleep_ms(300).await;
    }
    Err(format!("nodes did not converge within {CONVERGE_TIMEOUT:?} after healing; last views: {last}"))
}

async fn final_reads(shared: &SharedRef, setup: &Setup, nodes: u64, fin: &mut FinalState) {
    let limit = Duration::from_secs(20);
    let mut rng = StdRng::seed_from_u64(shared.borrow().cfg.seed ^ 0xf1a1);
    for base in NAMES {
        // One more linearizable read per name, in the history: it pins down unknown claims.
        let q = format!("{{ usernameAvailability(name: {}, consistency: LINEARIZABLE) {{ status }} }}", lit(base));
        let (call, call_ms) = (shared.borrow_mut().history.tick(), sim_ms());
        let node = rng.random_range(1..=nodes);
        if let Ok(d) = until_data(node, &q, None, limit).await {
            if let Some(out) = d["usernameAvailability"]["status"].as_str().and_then(held_or_free) {
                let key = Key::Name(raft::model::names::canonical(base));
                let note = format!("{base} via n{node}, final read");
                shared.borrow_mut().history.record(usize::MAX, key, Input::Check, out, call, call_ms, note);
            }
        }
        let q = format!("{{ usernameAvailability(name: {}, consistency: LOCAL) {{ status }} }}", lit(base));
        let mut per_node = Vec::new();
        for n in 1..=nodes {
            let status = match until_data(n, &q, None, limit).await {
                Ok(d) => d["usernameAvailability"]["status"].as_str().unwrap_or("?").to_string(),
                Err(e) => format!("error: {e}"),
            };
            per_node.push((n, status));
        }
        fin.names.insert(raft::model::names::canonical(base), per_node);
    }
    for (sale, _) in &setup.sales {
        let mut per_node = Vec::new();
        for n in 1..=nodes {
            let (stock, sold) = match until_data(n, &sale_query(*sale, "LOCAL"), None, limit).await {
                Ok(d) => stock_of(&Answer::Data(d)).unwrap_or((u64::MAX, u64::MAX)),
                Err(_) => (u64::MAX, u64::MAX),
            };
            let orders = all_orders(n, *sale, &setup.admin).await.unwrap_or_default();
            per_node.push((n, stock, sold, orders));
        }
        fin.sales.insert(*sale, per_node);
    }
}

/// Every order of `sale` as node `n` sees it (ADMIN sees everyone's), all pages.
async fn all_orders(n: u64, sale: u64, admin: &str) -> Result<Vec<(String, u64)>, String> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let q = format!(
            "{{ orders(saleId: \"{sale}\", first: 100{after}) {{ edges {{ node {{ id quantity }} }} pageInfo {{ hasNextPage endCursor }} }} }}"
        );
        let d = until_data(n, &q, Some(admin), Duration::from_secs(20)).await?;
        let conn = &d["orders"];
        for e in conn["edges"].as_array().cloned().unwrap_or_default() {
            out.push((
                e["node"]["id"].as_str().unwrap_or("?").to_string(),
                e["node"]["quantity"].as_u64().unwrap_or(0),
            ));
        }
        if conn["pageInfo"]["hasNextPage"].as_bool() != Some(true) {
            return Ok(out);
        }
        after = format!(", after: {}", lit(conn["pageInfo"]["endCursor"].as_str().unwrap_or("")));
    }
}

// ---------------------------------------------------------------------------------------------
// Checks.

fn check_history(s: &Shared) -> Vec<Violation> {
    let mut by_key: BTreeMap<Key, Vec<Op>> = BTreeMap::new();
    for op in s.history.ops() {
        by_key.entry(op.key.clone()).or_default().push(op.clone());
    }
    let initial: BTreeMap<u64, u64> = s.setup.as_ref().map(|x| x.sales.iter().copied().collect()).unwrap_or_default();
    let mut out = Vec::new();
    for (key, ops) in by_key {
        fn explain<M: check::Model>(m: &M, ops: &[Op]) -> (Verdict, String) {
            let v = check::check(m, ops);
            if v != Verdict::Violation {
                return (v, String::new());
            }
            let minimal = check::shrink(m, ops);
            let mut text = format!(
                "minimal failing history ({} operations; removing any one makes it linearizable):\n{}",
                minimal.len(),
                minimal.iter().map(|o| o.to_string()).collect::<Vec<_>>().join("\n")
            );
            if let Some((culprit, before)) = check::first_failure(m, ops) {
                let shown = &before[before.len().saturating_sub(FAILURE_CONTEXT_OPS_MAX)..];
                text += &format!(
                    "\nthe first operation with no linearization:\n{culprit}\nafter these, completed before it was invoked (last {} of {}):\n{}",
                    shown.len(),
                    before.len(),
                    shown.iter().map(|o| o.to_string()).collect::<Vec<_>>().join("\n")
                );
            }
            (v, text)
        }
        let (verdict, detail) = match &key {
            Key::Name(_) => explain(&NameModel, &ops),
            Key::Sale(id) => explain(&SaleModel { initial: initial.get(id).copied().unwrap_or(0) }, &ops),
        };
        match verdict {
            Verdict::Linearizable => {}
            Verdict::Violation => out.push(Violation {
                what: format!("{key}: the history is not linearizable ({} operations)", ops.len()),
                detail,
            }),
            Verdict::Inconclusive(states) => out.push(Violation {
                what: format!("{key}: the checker gave up after {states} states"),
                detail: "the history is too concurrent to check exhaustively; lower --clients".into(),
            }),
        }
    }
    out
}

fn check_final(s: &Shared) -> Vec<Violation> {
    let mut out = Vec::new();
    let Some(fin) = &s.final_state else {
        return vec![Violation { what: "no final state".into(), detail: "ctl never finished".into() }];
    };
    if let Some(e) = &fin.converged {
        out.push(Violation { what: "no convergence after healing".into(), detail: e.clone() });
        return out;
    }
    let claimed: BTreeSet<String> = s
        .history
        .ops()
        .iter()
        .filter(|o| o.output == Output::Claimed)
        .filter_map(|o| match &o.key {
            Key::Name(n) => Some(n.clone()),
            _ => None,
        })
        .collect();
    for (name, per_node) in &fin.names {
        let first = &per_node[0].1;
        if per_node.iter().any(|(_, st)| st != first) {
            out.push(Violation { what: format!("nodes disagree on name {name:?}"), detail: format!("{per_node:?}") });
        }
        if claimed.contains(name) && per_node.iter().any(|(_, st)| st != "RESERVED" && st != "TAKEN") {
            out.push(Violation {
                what: format!("an acknowledged claim of {name:?} is missing"),
                detail: format!("{per_node:?}"),
            });
        }
    }
    let initial: BTreeMap<u64, u64> = s.setup.as_ref().map(|x| x.sales.iter().copied().collect()).unwrap_or_default();
    for (sale, per_node) in &fin.sales {
        let init = initial.get(sale).copied().unwrap_or(0);
        let acked: BTreeSet<&String> = s.acked_orders.keys().filter(|(sl, _)| sl == sale).map(|(_, id)| id).collect();
        for (n, stock, sold, orders) in per_node {
            if stock.saturating_add(*sold) != init || sold > &init {
                out.push(Violation {
                    what: format!("sale {sale} on n{n}: stock + sold != initial stock"),
                    detail: format!("stock {stock} + sold {sold} != {init}"),
                });
            }
            let total: u64 = orders.iter().map(|(_, q)| q).sum();
            if total != *sold {
                out.push(Violation {
                    what: format!("sale {sale} on n{n}: orders do not add up to sold"),
                    detail: format!("orders total {total}, sold {sold}"),
                });
            }
            let ids: Vec<&String> = orders.iter().map(|(id, _)| id).collect();
            let unique: BTreeSet<&String> = ids.iter().copied().collect();
            if unique.len() != ids.len() {
                out.push(Violation {
                    what: format!("sale {sale} on n{n}: an order appears twice"),
                    detail: format!("{ids:?}"),
                });
            }
            let missing: Vec<&&String> = acked.iter().filter(|id| !unique.contains(**id)).collect();
            if !missing.is_empty() {
                out.push(Violation {
                    what: format!("sale {sale} on n{n}: acknowledged orders are missing"),
                    detail: format!("missing {missing:?}"),
                });
            }
        }
        let first = &per_node[0];
        if per_node.iter().any(|p| p.1 != first.1 || p.2 != first.2 || p.3 != first.3) {
            out.push(Violation { what: format!("nodes disagree on sale {sale}"), detail: format!("{per_node:?}") });
        }
    }
    out
}

/// Opens each node's state database after the run and compares fingerprints of every table.
fn check_digests(cfg: &SimConfig, node_dir: &dyn Fn(u64) -> PathBuf) -> Vec<Violation> {
    let mut digests = Vec::new();
    for id in 1..=cfg.nodes {
        match raft::StateMachine::open(&node_dir(id).join("state")).and_then(|sm| sm.digest()) {
            Ok(d) => digests.push((id, d)),
            Err(e) => {
                return vec![Violation {
                    what: format!("n{id}: state unreadable after the run"),
                    detail: e.to_string(),
                }]
            }
        }
    }
    let first = digests[0].1;
    if digests.iter().all(|(_, d)| *d == first) {
        Vec::new()
    } else {
        vec![Violation {
            what: "nodes' state tables differ after healing".into(),
            detail: digests
                .iter()
                .map(|(id, d)| format!("  n{id}: applied {} rows {} hash {:016x}", d.applied_index, d.rows, d.hash))
                .collect::<Vec<_>>()
                .join("\n"),
        }]
    }
}
