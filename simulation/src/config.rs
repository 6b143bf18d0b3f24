//! What to simulate: [`SimConfig`], its per-seed defaults, the command that replays a run, and
//! the bounds every run shares.

use std::path::{Path, PathBuf};
use std::time::Duration;

use raft::Inject;

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

/// Cluster size for one seed in [`LARGE_CLUSTER_EVERY_SEEDS`]: five nodes survive two failures.
pub const NODES_LARGE: u64 = 5;
/// Cluster size for the other seeds: three nodes, the smallest that tolerates a failure.
pub const NODES_SMALL: u64 = 3;
/// Every this many seeds (those divisible by it) run [`NODES_LARGE`] nodes.
pub const LARGE_CLUSTER_EVERY_SEEDS: u64 = 3;
/// Workload clients by default: enough concurrency to collide, few enough to check exhaustively.
pub const CLIENTS_DEFAULT: usize = 4;
/// Length of the fault phase by default, simulated milliseconds.
pub const FAULT_PHASE_DEFAULT_MS: u64 = 12_000;
/// Operations per client at most, by default.
pub const OPS_PER_CLIENT_DEFAULT: usize = 120;

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
            nodes: if seed.is_multiple_of(LARGE_CLUSTER_EVERY_SEEDS) { NODES_LARGE } else { NODES_SMALL },
            clients: CLIENTS_DEFAULT,
            fault_ms: FAULT_PHASE_DEFAULT_MS,
            ops_per_client: OPS_PER_CLIENT_DEFAULT,
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
