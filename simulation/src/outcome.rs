//! What a run reports: each [`Violation`] the invariants found, and the [`Outcome`] with the
//! schedule, what fired and the history, which prints the failure report.

use std::time::Duration;

use crate::config::SimConfig;
use crate::faults::Planned;
use crate::history::{Op, Output};
use crate::shared::{Evidence, Stage};

/// FNV-1a's 64-bit offset basis: the fingerprint is FNV-1a over the history's text.
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a's 64-bit prime.
const FNV_PRIME: u64 = 0x0100_0000_01b3;

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
        text.bytes().fold(FNV_OFFSET_BASIS, |h, b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
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

/// The outcome of a run that ended (finished or stuck), before its times are filled in.
pub(crate) fn outcome_of(
    cfg: &SimConfig,
    schedule: Vec<Planned>,
    stage: &Stage,
    evidence: &Evidence,
    violations: Vec<Violation>,
) -> Outcome {
    Outcome {
        config: cfg.clone(),
        schedule,
        events: stage.events.clone(),
        ops: evidence.history.ops().to_vec(),
        unknown: evidence.history.ops().iter().filter(|o| o.output == Output::Unknown).count(),
        local_reads: evidence.local_reads,
        sim: Duration::ZERO,
        wall: Duration::ZERO,
        violations,
    }
}
