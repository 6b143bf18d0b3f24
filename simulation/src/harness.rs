//! The harness: builds the turmoil simulation (node hosts, workload clients, ctl), steps it,
//! fires the fault schedule on it, wipes a node once ctl has removed it, heals, and hands what
//! was observed to the invariants.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raft::Transport;

use crate::config::{SimConfig, RUN_LIMIT};
use crate::control::ctl;
use crate::error::RunError;
use crate::faults::{self, Fault};
use crate::gql::node_addr;
use crate::invariants;
use crate::net::{SimListener, SimTransport};
use crate::outcome::{outcome_of, Outcome, Violation};
use crate::shared::{initial_stock, Evidence, EvidenceRef, Phase, Stage, StageRef, Wipe};
use crate::workload::workload;

/// turmoil's step: the resolution of simulated time.
const TICK_MS: u64 = 1;
/// The fastest a message crosses a simulated link.
const MESSAGE_LATENCY_MIN_MS: u64 = 1;
/// The slowest a message crosses a healthy simulated link (held links are slower: see faults).
const MESSAGE_LATENCY_MAX_MS: u64 = 15;
/// Messages turmoil buffers per simulated TCP connection before the sender waits.
const TCP_CAPACITY_MESSAGES: usize = 4096;
/// Log entries between snapshots: small, so snapshots are built, sent and installed in a run.
const SNAPSHOT_EVERY_LOGS: u64 = 150;
/// Log entries kept after a snapshot: few, so a node that lags is sent the snapshot.
const LOGS_KEPT_AFTER_SNAPSHOT: u64 = 20;

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
    // 0 switches both limits off: the workload is deliberately hotter than any one user.
    c.rate_limit_per_sec = 0;
    c.reservations_per_client_per_hour = 0;
    // Small snapshot spacing, so snapshots are built, sent and installed during a run.
    c.snapshot_logs = SNAPSHOT_EVERY_LOGS;
    c.logs_kept_after_snapshot = LOGS_KEPT_AFTER_SNAPSHOT;
    c.inject = cfg.inject;
    c
}

/// Runs one seed to the end and checks it.
pub fn run(cfg: SimConfig) -> Result<Outcome, RunError> {
    let started = Instant::now();
    // Unique per run: tests run seeds in parallel threads of one process, some the same seed.
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run_no = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = cfg.data_root.join(format!("{}-{run_no}-seed-{}", std::process::id(), cfg.seed));
    if dir.exists() {
        remove_dir(&dir)?;
    }
    std::fs::create_dir_all(&dir).map_err(|source| RunError::DataDir {
        action: "create",
        path: dir.clone(),
        source,
    })?;
    let result = run_in(&cfg, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let (mut outcome, sim) = result?;
    outcome.sim = sim;
    outcome.wall = started.elapsed();
    Ok(outcome)
}

fn remove_dir(path: &Path) -> Result<(), RunError> {
    std::fs::remove_dir_all(path).map_err(|source| RunError::DataDir {
        action: "remove",
        path: path.to_path_buf(),
        source,
    })
}

fn run_in(cfg: &SimConfig, dir: &Path) -> Result<(Outcome, Duration), RunError> {
    let schedule = faults::plan(cfg.seed, cfg.nodes, cfg.fault_ms);
    let stage: StageRef = Rc::new(RefCell::new(Stage::new()));
    let evidence: EvidenceRef = Rc::new(RefCell::new(Evidence::default()));

    let mut sim = turmoil::Builder::new()
        .simulation_duration(RUN_LIMIT)
        .tick_duration(Duration::from_millis(TICK_MS))
        .min_message_latency(Duration::from_millis(MESSAGE_LATENCY_MIN_MS))
        .max_message_latency(Duration::from_millis(MESSAGE_LATENCY_MAX_MS))
        .tcp_capacity(TCP_CAPACITY_MESSAGES)
        .enable_random_order()
        .rng_seed(cfg.seed)
        .build();

    let node_dir = |id: u64| dir.join(format!("n{id}"));
    for id in 1..=cfg.nodes {
        let stage = stage.clone();
        let data = node_dir(id);
        let cfg = cfg.clone();
        sim.host(format!("n{id}"), move || {
            let join = stage.borrow().joiners.contains(&id);
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
        let (cfg, stage, evidence) = (cfg.clone(), stage.clone(), evidence.clone());
        sim.client(format!("c{c}"), async move {
            workload(c, cfg, stage, evidence).await;
            Ok(())
        });
    }
    {
        let (cfg, stage, evidence) = (cfg.clone(), stage.clone(), evidence.clone());
        sim.client("ctl", async move {
            ctl(cfg, stage, evidence).await;
            Ok(())
        });
    }

    // The main loop: step, fire due faults, wipe when ctl has removed the node, heal at the end.
    let mut next = 0;
    let mut crashed: BTreeSet<u64> = BTreeSet::new();
    let mut faults_from: Option<u64> = None;
    let all_nodes: Vec<String> = (1..=cfg.nodes).map(|i| format!("n{i}")).collect();
    loop {
        stage.borrow_mut().now_ms = sim_elapsed_ms(&sim);
        let phase = stage.borrow().phase;
        if phase == Phase::Faults {
            let start = *faults_from.get_or_insert(sim_elapsed_ms(&sim));
            let elapsed = sim_elapsed_ms(&sim) - start;
            while next < schedule.len() && schedule[next].at_ms <= elapsed {
                apply(&mut sim, cfg.nodes, &stage, &schedule[next].fault, &mut crashed, &all_nodes);
                next += 1;
            }
            let wipe = stage.borrow().wipe;
            if let Wipe::Removed(x) = wipe {
                let host = format!("n{x}");
                sim.crash(host.as_str());
                crashed.remove(&x);
                remove_dir(&node_dir(x))?;
                let mut s = stage.borrow_mut();
                s.joiners.insert(x);
                s.wipe = Wipe::Idle;
                s.event(format!("wiped n{x}; restarting it with --join"));
                drop(s);
                sim.bounce(host.as_str());
            }
            if elapsed >= cfg.fault_ms && stage.borrow().wipe == Wipe::Idle {
                heal_network(&mut sim, &all_nodes);
                for id in std::mem::take(&mut crashed) {
                    sim.bounce(format!("n{id}").as_str());
                }
                let mut s = stage.borrow_mut();
                s.event("fault phase over: network healed, crashed nodes restarted".into());
                s.phase = Phase::Healing;
            }
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                let elapsed = sim_elapsed_ms(&sim);
                let s = stage.borrow();
                let violations = vec![Violation {
                    what: "the simulation did not finish".into(),
                    detail: format!("{e} at {elapsed} ms (phase {:?})", s.phase),
                }];
                return Ok((outcome_of(cfg, schedule, &s, &evidence.borrow(), violations), sim.elapsed()));
            }
        }
    }
    let sim_time = sim.elapsed();
    drop(sim);

    let (s, ev) = (stage.borrow(), evidence.borrow());
    let initial = initial_stock(s.setup.as_ref());
    let mut violations = invariants::history::check(&ev.history, &initial);
    violations.extend(ev.session_violations.iter().cloned());
    violations.extend(invariants::final_state::check(&ev, &initial));
    violations.extend(invariants::digests::check(cfg.nodes, &node_dir));
    Ok((outcome_of(cfg, schedule, &s, &ev, violations), sim_time))
}

fn sim_elapsed_ms(sim: &turmoil::Sim<'_>) -> u64 {
    sim.elapsed().as_millis() as u64
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

/// Fires one planned fault on the simulation, resolving "the leader" to the one ctl last saw,
/// and logs what it did.
fn apply(
    sim: &mut turmoil::Sim<'_>,
    nodes: u64,
    stage: &StageRef,
    fault: &Fault,
    crashed: &mut BTreeSet<u64>,
    all: &[String],
) {
    let leader = stage.borrow().leader;
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
            let mut s = stage.borrow_mut();
            if s.wipe == Wipe::Idle && !crashed.contains(node) {
                s.wipe = Wipe::Requested(*node);
                format!("{fault}: asking ctl to remove n{node} from the voters")
            } else {
                format!("{fault}: skipped (node down or a wipe in progress)")
            }
        }
    };
    stage.borrow_mut().event(fired);
}
