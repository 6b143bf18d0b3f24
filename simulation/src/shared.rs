//! What the hosts and the main loop share, in two pieces with different readers.
//!
//! turmoil runs every host and the main loop on one thread, so each piece is an
//! `Rc<RefCell<…>>`: no locking is needed, and a borrow is never held across an `.await` (a
//! host that did so would panic the next one to borrow, which is a bug in the harness, not in the
//! system under test).
//!
//! - [`Stage`]: where the run stands and the hand-offs that move it along (the phase, setup's
//!   accounts and sales, the leader ctl last saw, the wipe hand-shake, the event log). The main
//!   loop, ctl, the node hosts (who joins) and the workload (when to start and stop) use it.
//! - [`Evidence`]: what the run observed, for the invariants: the history, acknowledged orders,
//!   purchases still to settle, the session checks' findings and the final state. The workload
//!   and ctl write it; the checks only read it.
//!
//! The configuration is not shared state: each host gets its own copy. A client's session is
//! not shared either: only that client touches it, so it lives in the client's own future.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use crate::history::History;
use crate::outcome::Violation;
use crate::resolution::FinalState;

/// Where a run is; the main loop and the hosts move through these in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// ctl registers the accounts and creates the sales; no faults, no workload.
    Setup,
    /// The workload runs and the main loop fires the schedule.
    Faults,
    /// The network is healed: clients finish, ctl settles, converges and reads the final state.
    Healing,
    /// ctl is done (or setup failed): the run ends when the hosts do.
    Done,
}

/// The wipe-and-rejoin hand-shake between the main loop (which crashes and wipes) and ctl
/// (which changes the membership through the cluster's API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wipe {
    /// No wipe under way.
    Idle,
    /// The main loop asks ctl to remove this node from the membership.
    Requested(u64),
    /// Removed: the main loop may crash, wipe and restart it with --join.
    Removed(u64),
}

/// The accounts and sales ctl created before faults start.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    pub(crate) admin: String,
    pub(crate) buyers: Vec<String>,
    /// (sale id, initial stock).
    pub(crate) sales: Vec<(u64, u64)>,
}

/// Each sale's initial stock (none when setup failed), for the models and the end-state check.
pub(crate) fn initial_stock(setup: Option<&Setup>) -> BTreeMap<u64, u64> {
    setup.map(|x| x.sales.iter().copied().collect()).unwrap_or_default()
}

/// Where the run stands, and the hand-offs between the main loop and the hosts.
pub(crate) struct Stage {
    pub(crate) phase: Phase,
    pub(crate) setup: Option<Setup>,
    /// The leader ctl last saw, for leader-targeted faults.
    pub(crate) leader: Option<u64>,
    /// Workload clients that have finished; ctl waits for all before settling.
    pub(crate) clients_done: usize,
    pub(crate) wipe: Wipe,
    /// Nodes that start with --join (a wiped node) rather than --peers.
    pub(crate) joiners: BTreeSet<u64>,
    /// What fired and what ctl did, stamped with simulated milliseconds, for reports.
    pub(crate) events: Vec<String>,
    /// Simulated milliseconds, as the main loop last saw them.
    pub(crate) now_ms: u64,
}

pub(crate) type StageRef = Rc<RefCell<Stage>>;

impl Stage {
    pub(crate) fn new() -> Self {
        Stage {
            phase: Phase::Setup,
            setup: None,
            leader: None,
            clients_done: 0,
            wipe: Wipe::Idle,
            joiners: BTreeSet::new(),
            events: Vec::new(),
            now_ms: 0,
        }
    }

    pub(crate) fn event(&mut self, text: String) {
        // Inside a host turmoil knows the time; the main loop keeps `now_ms` for itself.
        let at = turmoil::sim_elapsed().map_or(self.now_ms, |d| d.as_millis() as u64);
        self.events.push(format!("{at:>7} ms  {text}"));
    }
}

/// A purchase whose outcome stayed unknown, to settle after healing with the same key.
#[derive(Debug, Clone)]
pub(crate) struct PendingPurchase {
    pub(crate) op: usize,
    pub(crate) client: usize,
    pub(crate) sale: u64,
    pub(crate) quantity: u64,
    pub(crate) key: String,
}

/// What the run observed, for the invariants.
#[derive(Default)]
pub(crate) struct Evidence {
    pub(crate) history: History,
    /// Acknowledged orders: (sale, order id) -> op id.
    pub(crate) acked_orders: BTreeMap<(u64, String), usize>,
    pub(crate) unknown_purchases: Vec<PendingPurchase>,
    /// LOCAL reads served (checked against sessions only, so counted rather than recorded).
    pub(crate) local_reads: usize,
    /// What the session checks found, as they ran.
    pub(crate) session_violations: Vec<Violation>,
    /// What ctl read from every node after healing; `None` until ctl finishes.
    pub(crate) final_state: Option<FinalState>,
}

pub(crate) type EvidenceRef = Rc<RefCell<Evidence>>;
