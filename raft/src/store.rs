//! The narrow handle the rest of the system uses: propose a command, read at a consistency level,
//! look at the cluster. It hides who leads: any node accepts any proposal and forwards it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Config, RaftMetrics, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
// tokio's clock, not std's: the same in production, and simulated time under turmoil.
use tokio::time::Instant;

use crate::command::{Command, Response};
use crate::inject::Inject;
use crate::log_store::LogStore;
use crate::network::{self, ForwardError, JoinRequest, Network, PeerStatus, Transport, TransportError};
use crate::proposer::{self, Pending, ProposerTx, COMMAND_BYTES_MAX, PROPOSALS_QUEUED_MAX};
use crate::read_index::SharedRounds;
use crate::stages::Stages;
use crate::state_machine::{ReadView, SmError, StateMachine};
use crate::types::{Batch, BatchResponse, NodeId, Proposal, Raft};

/// How long a client should wait before retrying after UNAVAILABLE.
pub const RETRY_AFTER_MS: u64 = 500;
/// A node is ready while it has applied all but at most this many committed entries: under
/// load some committed entries always wait for apply, and readiness must not flap with that.
pub const READY_APPLY_LAG_MAX: u64 = 1_000;

/// Why the store could not serve a request. Business rule refusals are not errors here: they
/// come back as [`Response::Rejected`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// No quorum, no leader, or no answer in time. The write may or may not have been applied
    /// when `outcome_unknown` is set; otherwise it certainly was not.
    #[error("{message}")]
    Unavailable {
        /// What happened.
        message: String,
        /// Suggested wait before retrying.
        retry_after_ms: u64,
        /// True when the command may still commit later (it reached a leader's log).
        outcome_unknown: bool,
    },
    /// The request itself cannot be served as sent (a command over [`COMMAND_BYTES_MAX`]):
    /// nothing was proposed, and the same request will fail again.
    #[error("{0}")]
    Invalid(String),
    /// A failure a retry will not fix.
    #[error("internal error: {0}")]
    Internal(String),
}

impl StoreError {
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        StoreError::Unavailable { message: message.into(), retry_after_ms: RETRY_AFTER_MS, outcome_unknown: false }
    }
    pub(crate) fn unknown(message: impl Into<String>) -> Self {
        StoreError::Unavailable { message: message.into(), retry_after_ms: RETRY_AFTER_MS, outcome_unknown: true }
    }
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        StoreError::Internal(message.into())
    }
}

impl From<SmError> for StoreError {
    fn from(e: SmError) -> Self {
        StoreError::Internal(e.to_string())
    }
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Consistency {
    /// Reflects every write acknowledged before the read began, on any node: the node confirms
    /// the leader's commit index (a read-index round, shared by concurrent reads) and waits until
    /// it has applied that far.
    Linearizable,
    /// This node's applied state, at once. May lag the leader; the answer says how far it got.
    Local,
}

/// How far from the leader's own clock the time stamped on a forwarded proposal may be. State
/// machine time never goes back (apply takes the largest stamp so far), so one node with a
/// clock hours ahead would otherwise move every node's time forward for good: reservations
/// would expire and sales end early everywhere. The leader clamps each forwarded stamp into
/// [its clock - this, its clock + this]; NTP keeps real clocks far closer.
pub const FORWARDED_CLOCK_SKEW_MAX_MS: i64 = 1_000;

/// The least time a node waits to apply its own committed write before it answers, however
/// long the commit took: a follower is normally a few milliseconds behind the leader.
pub const APPLY_WAIT_AFTER_WRITE_MIN_MS: u64 = 200;

/// A write's answer: the response, the log index of the entry that carried it, and whether this
/// node had applied that entry when it answered.
#[derive(Debug, Clone)]
pub struct Written {
    /// The command's response, as applied (by the leader, for a write forwarded to it).
    pub response: Response,
    /// The log index of the entry that carried the command: a client that has seen this answer
    /// passes it as `atLeastIndex` so that no node serves it a state older than its write.
    pub index: u64,
    /// This node's applied index when it answered: at least `index` when `caught_up`.
    pub applied_index: u64,
    /// False when this node had not applied the entry by the write's deadline (it is partitioned
    /// or far behind): the write committed all the same, but reads here may not show it yet.
    pub caught_up: bool,
}

/// A read's value and the log index it was read at.
#[derive(Debug, Clone)]
pub struct Read<T> {
    /// The value.
    pub value: T,
    /// The applied log index of the state the value was read from.
    pub applied_index: u64,
}

/// Settings of the replicated store. Every duration's unit is in its name.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// This node's id (from 1).
    pub id: NodeId,
    /// The address peers reach this node at.
    pub advertise: String,
    /// Where the log and state databases live.
    pub data_dir: PathBuf,
    /// Leader heartbeat period.
    pub heartbeat_interval_ms: u64,
    /// A follower that hears no leader for a random time in [min, max) starts an election.
    pub election_timeout_min_ms: u64,
    /// See `election_timeout_min_ms`.
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_logs: u64,
    /// Entries kept in the log behind the last snapshot, so slightly lagging followers catch up
    /// from the log rather than from a snapshot.
    pub logs_kept_after_snapshot: u64,
    /// A write that has not committed by then answers UNAVAILABLE.
    pub propose_timeout_ms: u64,
    /// A linearizable read that cannot confirm the read index by then answers UNAVAILABLE.
    pub read_timeout_ms: u64,
    /// Deliberate bugs, for the fault simulation only (see [`Inject`]). None by default.
    pub inject: Inject,
}

impl StoreConfig {
    /// Defaults for a node with `id` at `advertise`, storing under `data_dir`.
    pub fn new(id: NodeId, advertise: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            id,
            advertise: advertise.into(),
            data_dir: data_dir.into(),
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            snapshot_logs: 10_000,
            logs_kept_after_snapshot: 1_000,
            propose_timeout_ms: 1_500,
            read_timeout_ms: 1_500,
            inject: Inject::default(),
        }
    }

    /// Checks the rules between fields, naming the rule and the values.
    pub fn validate(&self) -> Result<(), String> {
        if self.id == 0 {
            return Err("node id must be at least 1, got 0".into());
        }
        if self.heartbeat_interval_ms >= self.election_timeout_min_ms {
            return Err(format!(
                "heartbeat interval ({} ms) must be < election timeout min ({} ms)",
                self.heartbeat_interval_ms, self.election_timeout_min_ms
            ));
        }
        if self.election_timeout_min_ms >= self.election_timeout_max_ms {
            return Err(format!(
                "election timeout min ({} ms) must be < max ({} ms)",
                self.election_timeout_min_ms, self.election_timeout_max_ms
            ));
        }
        if self.snapshot_logs == 0 {
            return Err("snapshot_logs must be at least 1".into());
        }
        Ok(())
    }
}

/// One member as the cluster query shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberStatus {
    /// Its id.
    pub id: NodeId,
    /// Its address.
    pub addr: String,
    /// Voter (true) or learner.
    pub voter: bool,
    /// The last log index the leader knows it holds (only on the leader).
    pub matched_index: Option<u64>,
    /// How many entries it is behind the leader's log (only on the leader).
    pub lag: Option<u64>,
}

/// What this node knows of the cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// This node.
    pub node_id: NodeId,
    /// The leader it follows, if any.
    pub leader_id: Option<NodeId>,
    /// Its current term.
    pub term: u64,
    /// Leader, Follower, Candidate or Learner.
    pub state: String,
    /// Last index in its log.
    pub last_log_index: u64,
    /// Last index applied to its state.
    pub last_applied: u64,
    /// Last index included in its snapshot.
    pub snapshot_index: Option<u64>,
    /// Snapshots it installed from a leader since it started.
    pub snapshots_installed: u64,
    /// The members.
    pub members: Vec<MemberStatus>,
}

/// Counters of the store, for metrics.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Log entries proposed by this node's batcher.
    pub batches: AtomicU64,
    /// Commands inside those entries.
    pub commands: AtomicU64,
    /// Read-index rounds run.
    pub read_rounds: AtomicU64,
    /// Time spent in each stage of the write and read paths, shared with the log, the state
    /// machine and the network.
    pub stages: Arc<Stages>,
}

pub(crate) struct Inner {
    config: StoreConfig,
    raft: Raft,
    sm: StateMachine,
    log: LogStore,
    transport: Arc<dyn Transport>,
    proposer: ProposerTx,
    rounds: std::sync::OnceLock<Arc<SharedRounds>>,
    stats: StoreStats,
}

/// The replicated store on this node. Cloning is cheap and shares everything.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The size of `value` encoded as JSON (as the log stores it), without building the encoding.
pub(crate) fn encoded_len(value: &impl Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Encoding a command cannot fail (no maps with non-string keys); a failure counts as huge.
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// `at_ms` moved into [`FORWARDED_CLOCK_SKEW_MAX_MS`] of `now_ms`.
pub(crate) fn clamp_stamp(at_ms: i64, now_ms: i64) -> i64 {
    at_ms.clamp(now_ms.saturating_sub(FORWARDED_CLOCK_SKEW_MAX_MS), now_ms.saturating_add(FORWARDED_CLOCK_SKEW_MAX_MS))
}

impl Store {
    /// Opens the databases under `config.data_dir` and starts Raft. It does not join or form a
    /// cluster: call [`Store::bootstrap`] or [`Store::join`].
    pub async fn open(config: StoreConfig, transport: Arc<dyn Transport>) -> Result<Store, StoreError> {
        config.validate().map_err(StoreError::Internal)?;
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| StoreError::internal(format!("create data dir {}: {e}", config.data_dir.display())))?;
        let stages = Arc::new(Stages::default());
        let log = LogStore::open(&config.data_dir.join("raft-log.redb"))
            .map_err(|e| StoreError::internal(format!("open raft log: {e}")))?
            .with_stages(stages.clone());
        let sm = StateMachine::open_with(&config.data_dir.join("state"), config.inject)?.with_stages(stages.clone());
        let raft_config = Config {
            cluster_name: "raftgraph".into(),
            heartbeat_interval: config.heartbeat_interval_ms,
            election_timeout_min: config.election_timeout_min_ms,
            election_timeout_max: config.election_timeout_max_ms,
            install_snapshot_timeout: 10_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_logs),
            max_in_snapshot_log_to_keep: config.logs_kept_after_snapshot,
            max_payload_entries: 64,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StoreError::internal(format!("raft config: {e}")))?;
        let network = Network::new(transport.clone()).with_stages(stages.clone());
        let raft = Raft::new(config.id, Arc::new(raft_config), network, log.clone(), sm.clone())
            .await
            .map_err(|e| StoreError::internal(format!("start raft: {e}")))?;
        let (tx, rx) = mpsc::channel(PROPOSALS_QUEUED_MAX);
        let inner = Arc::new(Inner {
            config,
            raft,
            sm,
            log,
            transport,
            proposer: tx,
            rounds: std::sync::OnceLock::new(),
            stats: StoreStats { stages, ..StoreStats::default() },
        });
        proposer::spawn(Arc::downgrade(&inner), rx);
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        let rounds = SharedRounds::new(Box::new(move || {
            let weak = weak.clone();
            Box::pin(async move {
                match weak.upgrade() {
                    Some(inner) => inner.read_index_round().await,
                    None => Err(StoreError::unavailable("store is shutting down")),
                }
            })
        }));
        let _ = inner.rounds.set(rounds);
        Ok(Store { inner })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.config.id
    }

    /// The openraft handle, for metrics and administration.
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// Counters for metrics.
    pub fn stats(&self) -> &StoreStats {
        &self.inner.stats
    }

    /// A watch of the newest event sequence number (subscribers wake on it, then read).
    pub fn event_seq(&self) -> watch::Receiver<u64> {
        self.inner.sm.event_seq()
    }

    /// A watch of the applied log index.
    pub fn applied_index(&self) -> watch::Receiver<u64> {
        self.inner.sm.applied_index()
    }

    /// Proposes `command`, stamped with this node's clock, and returns its response once it is
    /// committed and applied. Concurrent calls share log entries. See [`Store::write`] for the
    /// entry's index and whether this node had applied it when the answer came.
    pub async fn propose(&self, command: Command) -> Result<Response, StoreError> {
        self.write(command).await.map(|w| w.response)
    }

    /// Proposes a command with an explicit time stamp (tests use this to control time).
    pub async fn propose_at(&self, proposal: Proposal) -> Result<Response, StoreError> {
        self.write_at(proposal).await.map(|w| w.response)
    }

    /// Proposes `command`, stamped with this node's clock, and returns its response once it is
    /// committed and applied by a quorum's leader *and by this node*: whatever a caller reads
    /// from this node afterwards reflects the write (read-your-writes), whichever node led.
    pub async fn write(&self, command: Command) -> Result<Written, StoreError> {
        self.write_at(Proposal { at_ms: now_ms(), command }).await
    }

    /// [`Store::write`] with an explicit time stamp.
    ///
    /// The response comes from whoever applied the entry first (the leader, for a forwarded
    /// batch); this node then waits, within what is left of the write's deadline (at least
    /// [`APPLY_WAIT_AFTER_WRITE_MIN_MS`]), until its own state has applied the entry. If it cannot
    /// catch up in time the write has still committed: the answer says so with
    /// [`Written::caught_up`] false rather than with an error a client would take as safe to
    /// retry.
    #[tracing::instrument(level = "debug", name = "propose", skip_all)]
    pub async fn write_at(&self, proposal: Proposal) -> Result<Written, StoreError> {
        let started = std::time::Instant::now();
        let bytes = encoded_len(&proposal);
        if bytes > COMMAND_BYTES_MAX {
            return Err(StoreError::Invalid(format!(
                "the command takes {bytes} bytes in the log, over the limit of {COMMAND_BYTES_MAX}"
            )));
        }
        let deadline = Instant::now() + Duration::from_millis(self.inner.config.propose_timeout_ms);
        let result = self.inner.enqueue(vec![proposal], bytes, deadline).await;
        self.inner.stats.stages.propose.since(started);
        let BatchResponse { index, mut responses } = result?;
        let response = responses.pop().ok_or_else(|| StoreError::internal("no response for a proposal"))?;
        let waited = std::time::Instant::now();
        let deadline = deadline.max(Instant::now() + Duration::from_millis(APPLY_WAIT_AFTER_WRITE_MIN_MS));
        // The leader (and a follower that is already there) skips the timer.
        let caught_up = self.inner.config.inject.stale_session
            || self.applied_at_least(index).is_some()
            || self.wait_applied_until(index, deadline).await.is_ok();
        self.inner.stats.stages.apply_wait.since(waited);
        let applied_index = *self.inner.sm.applied_index().borrow();
        if !caught_up {
            tracing::warn!(index, applied_index, "write committed, but this node had not applied it by the deadline");
        }
        Ok(Written { response, index, applied_index, caught_up })
    }

    /// Waits until this node has applied at least `index`, for at most the read timeout: a
    /// request that carries a client's high-water index (`atLeastIndex`) is served only once this
    /// node has caught up to it, so a client never reads a state older than one it has already seen.
    /// Returns the applied index; UNAVAILABLE with a retry hint when this node does not get
    /// there in time (it is partitioned or far behind: another node may serve).
    pub async fn wait_applied(&self, index: u64) -> Result<u64, StoreError> {
        if let Some(applied) = self.applied_at_least(index) {
            return Ok(applied);
        }
        if self.inner.config.inject.stale_session {
            return Ok(*self.inner.sm.applied_index().borrow());
        }
        let started = std::time::Instant::now();
        let timeout = Duration::from_millis(self.inner.config.read_timeout_ms);
        let result = self.wait_applied_until(index, Instant::now() + timeout).await;
        self.inner.stats.stages.apply_wait.since(started);
        result
    }

    /// The applied index if it has reached `index` already (the common case, without a timer).
    fn applied_at_least(&self, index: u64) -> Option<u64> {
        let applied = *self.inner.sm.applied_index().borrow();
        (applied >= index).then_some(applied)
    }

    async fn wait_applied_until(&self, index: u64, deadline: Instant) -> Result<u64, StoreError> {
        let mut applied = self.inner.sm.applied_index();
        let reached = match tokio::time::timeout_at(deadline, applied.wait_for(|a| *a >= index)).await {
            Ok(Ok(a)) => Some(*a),
            Ok(Err(_)) => return Err(StoreError::unavailable("store is shutting down")),
            Err(_) => None,
        };
        reached.ok_or_else(|| {
            StoreError::unavailable(format!(
                "this node has applied up to index {}, not yet {index}; retry, or ask another node",
                *applied.borrow()
            ))
        })
    }

    /// The read-index barrier a read at `consistency` needs (none for LOCAL), timed.
    async fn barrier_for(&self, consistency: Consistency) -> Result<(), StoreError> {
        if consistency == Consistency::Linearizable && !self.inner.config.inject.stale_read {
            let started = std::time::Instant::now();
            let barrier = self.linearizable_barrier().await;
            self.inner.stats.stages.read_index.since(started);
            barrier?;
        }
        Ok(())
    }

    /// Reads with `f` from the applied state, at the given consistency.
    pub async fn read<T>(
        &self,
        consistency: Consistency,
        f: impl FnOnce(&ReadView) -> Result<T, SmError>,
    ) -> Result<Read<T>, StoreError> {
        self.barrier_for(consistency).await?;
        let started = std::time::Instant::now();
        let view = self.inner.sm.read()?;
        let value = f(&view)?;
        self.inner.stats.stages.read_local.since(started);
        Ok(Read { value, applied_index: view.applied_index })
    }

    /// [`Store::read`] with `f` run on a blocking thread: for reads that may walk many rows
    /// (`searchTweets`), which must not hold an async worker, where Raft's heartbeats and every
    /// other request run. Callers bound how many run at once.
    pub async fn read_blocking<T: Send + 'static>(
        &self,
        consistency: Consistency,
        f: impl FnOnce(&ReadView) -> Result<T, SmError> + Send + 'static,
    ) -> Result<Read<T>, StoreError> {
        self.barrier_for(consistency).await?;
        let sm = self.inner.sm.clone();
        let stages = self.inner.stats.stages.clone();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let view = sm.read()?;
            let value = f(&view)?;
            stages.read_local.since(started);
            Ok(Read { value, applied_index: view.applied_index })
        })
        .await
        .map_err(|e| StoreError::internal(format!("read task: {e}")))?
    }

    /// Waits until this node has applied everything committed before the call.
    #[tracing::instrument(level = "debug", name = "read_index", skip_all)]
    pub async fn linearizable_barrier(&self) -> Result<u64, StoreError> {
        let deadline = Duration::from_millis(self.inner.config.read_timeout_ms);
        let rounds = self.inner.rounds.get().ok_or_else(|| StoreError::internal("read rounds not started"))?;
        let index = tokio::time::timeout(deadline, rounds.read_index()).await.map_err(|_| {
            StoreError::unavailable("could not confirm the leader's commit index in time (no quorum?)")
        })??;
        self.wait_applied_until(index, Instant::now() + deadline).await?;
        Ok(index)
    }

    /// What this node knows of the cluster.
    pub fn cluster_status(&self) -> ClusterStatus {
        let m = self.inner.raft.metrics().borrow().clone();
        let last_log_index = m.last_log_index.unwrap_or(0);
        let voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
        let members = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, node)| {
                let matched = m.replication.as_ref().and_then(|r| r.get(id)).map(|l| l.map_or(0, |l| l.index));
                MemberStatus {
                    id: *id,
                    addr: node.addr.clone(),
                    voter: voters.contains(id),
                    matched_index: matched,
                    lag: matched.map(|i| last_log_index.saturating_sub(i)),
                }
            })
            .collect();
        ClusterStatus {
            node_id: self.id(),
            leader_id: m.current_leader,
            term: m.current_term,
            state: format!("{:?}", m.state),
            last_log_index,
            last_applied: m.last_applied.map_or(0, |l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            snapshots_installed: self.inner.sm.snapshots_installed(),
            members,
        }
    }

    /// The index this node knows to be committed (0 when unknown or Raft has stopped).
    pub async fn committed_index(&self) -> u64 {
        self.inner.raft.with_raft_state(|st| st.committed.map_or(0, |l| l.index)).await.unwrap_or(0)
    }

    /// True while this node knows a leader and has applied the committed log (up to
    /// [`READY_APPLY_LAG_MAX`] entries still on their way to apply).
    pub async fn is_ready(&self) -> bool {
        let (leader, applied) = {
            let m = self.inner.raft.metrics();
            let m = m.borrow();
            (m.current_leader, m.last_applied.map_or(0, |l| l.index))
        };
        leader.is_some() && self.committed_index().await <= applied + READY_APPLY_LAG_MAX
    }

    /// Forms the initial cluster, or rejoins it. With existing data this does nothing: the node
    /// is already a member and never re-initializes. On a fresh data directory, the lowest id of
    /// `peers` initializes the cluster with all of them, unless a peer already holds Raft state
    /// (then this node was wiped and must be added back with `join`).
    pub async fn bootstrap(&self, peers: &BTreeMap<NodeId, String>) -> Result<(), StoreError> {
        if self.holds_state().await? {
            tracing::info!("existing raft state found: rejoining, not initializing");
            return Ok(());
        }
        let Some((&lowest, _)) = peers.iter().next() else {
            return Err(StoreError::internal("peers must name at least this node"));
        };
        if !peers.contains_key(&self.id()) {
            return Err(StoreError::internal(format!(
                "peers {:?} must include this node's id {}",
                peers.keys(),
                self.id()
            )));
        }
        if lowest != self.id() {
            tracing::info!(lowest, "waiting for the lowest peer id to initialize the cluster");
            return Ok(());
        }
        for (id, addr) in peers.iter().filter(|(id, _)| **id != self.id()) {
            let status: Result<PeerStatus, _> =
                network::call(self.inner.transport.as_ref(), addr, "status", *id, &(), Duration::from_millis(500))
                    .await;
            if let Ok(s) = status {
                if s.initialized {
                    tracing::warn!(
                        peer = id,
                        "a peer already holds cluster state: not initializing; join this node instead"
                    );
                    return Ok(());
                }
            }
        }
        let members: BTreeMap<NodeId, BasicNode> = peers.iter().map(|(id, a)| (*id, BasicNode::new(a))).collect();
        match self.inner.raft.initialize(members).await {
            Ok(()) => {
                tracing::info!(members = ?peers, "initialized the cluster");
                Ok(())
            }
            Err(RaftError::APIError(e)) => {
                tracing::info!(error = %e, "cluster already initialized");
                Ok(())
            }
            Err(e) => Err(StoreError::internal(format!("initialize: {e}"))),
        }
    }

    /// True when this node has Raft state (a vote or a log): it is, or was, a member, so it must
    /// never initialize a cluster or ask to join again.
    pub async fn holds_state(&self) -> Result<bool, StoreError> {
        let mut log = self.inner.log.clone();
        Ok(!log.is_pristine().await.map_err(|e| StoreError::internal(e.to_string()))?)
    }

    /// Asks the cluster at `addr` to add this node, first as a learner, then as a voter.
    /// Follows a leader redirect; retries until `attempts` run out.
    pub async fn join(&self, addr: &str, attempts: u32) -> Result<(), StoreError> {
        let req = JoinRequest { id: self.id(), addr: self.inner.config.advertise.clone() };
        // The member at `addr` is "whoever answers" (id 0) until it names the leader.
        let (mut target, mut target_id) = (addr.to_string(), 0);
        let mut last = String::new();
        for _ in 0..attempts.max(1) {
            let r: Result<Result<(), ForwardError>, _> =
                network::call(self.inner.transport.as_ref(), &target, "join", target_id, &req, Duration::from_secs(30))
                    .await;
            match r {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(ForwardError::NotLeader { leader: Some((leader_id, leader_addr)) })) => {
                    (target, target_id) = (leader_addr, leader_id);
                    continue;
                }
                Ok(Err(e)) => last = e.to_string(),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(StoreError::unavailable(format!("could not join through {addr}: {last}")))
    }

    /// Adds a learner (leader only; others answer with the leader to ask).
    pub async fn add_learner(&self, id: NodeId, addr: String) -> Result<(), ForwardError> {
        self.inner.raft.add_learner(id, BasicNode::new(&addr), true).await.map_err(|e| self.inner.write_error(e))?;
        Ok(())
    }

    /// Replaces the voter set (leader only).
    pub async fn change_membership(&self, voters: BTreeSet<NodeId>) -> Result<(), ForwardError> {
        self.inner.raft.change_membership(voters, false).await.map_err(|e| self.inner.write_error(e))?;
        Ok(())
    }

    /// Asks this node to build a snapshot now.
    pub async fn trigger_snapshot(&self) -> Result<(), StoreError> {
        self.inner.raft.trigger().snapshot().await.map_err(|e| StoreError::internal(e.to_string()))
    }

    /// Serves one `/raft/{rpc}` request from a peer (already authenticated by the caller).
    /// Returns `None` for an unknown RPC name.
    pub async fn handle_rpc(&self, rpc: &str, body: &[u8]) -> Option<Result<Vec<u8>, String>> {
        fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
            serde_json::from_slice(body).map_err(|e| format!("bad request body: {e}"))
        }
        fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, String> {
            serde_json::to_vec(v).map_err(|e| e.to_string())
        }
        let raft = &self.inner.raft;
        Some(match rpc {
            "append" => match decode(body) {
                Ok(req) => encode(&raft.append_entries(req).await),
                Err(e) => Err(e),
            },
            "vote" => match decode(body) {
                Ok(req) => encode(&raft.vote(req).await),
                Err(e) => Err(e),
            },
            "snapshot" => match decode(body) {
                Ok(req) => encode(&raft.install_snapshot(req).await),
                Err(e) => Err(e),
            },
            "forward" => match decode::<Batch>(body) {
                Ok(batch) => encode(&self.inner.accept_forwarded(batch).await),
                Err(e) => Err(e),
            },
            "read_index" => {
                let r: Result<u64, ForwardError> = match self.inner.leader() {
                    Leader::Me => match self.inner.rounds.get() {
                        Some(rounds) => rounds.read_index().await.map_err(|e| ForwardError::unavailable(e.to_string())),
                        None => Err(ForwardError::Internal("read rounds not started".into())),
                    },
                    other => Err(ForwardError::NotLeader { leader: other.known() }),
                };
                encode(&r)
            }
            "join" => match decode::<JoinRequest>(body) {
                Ok(req) => encode(&self.admit(req).await),
                Err(e) => Err(e),
            },
            "status" => {
                let initialized = self.holds_state().await.unwrap_or(true);
                encode(&PeerStatus { id: self.id(), initialized })
            }
            _ => return None,
        })
    }

    async fn admit(&self, req: JoinRequest) -> Result<(), ForwardError> {
        if let other @ (Leader::Other(..) | Leader::Unknown) = self.inner.leader() {
            return Err(ForwardError::NotLeader { leader: other.known() });
        }
        self.add_learner(req.id, req.addr).await?;
        let m = self.inner.raft.metrics().borrow().clone();
        let mut voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
        voters.insert(req.id);
        self.change_membership(voters).await
    }

    /// Stops Raft. A leader stops sending heartbeats, so the others elect a new one within an
    /// election timeout (openraft 0.9 has no leadership transfer).
    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        let sm = self.inner.sm.clone();
        match tokio::task::spawn_blocking(move || sm.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "flush the state at shutdown"),
            Err(e) => tracing::warn!(error = %e, "flush the state at shutdown"),
        }
    }
}

/// Who leads, from this node's point of view.
enum Leader {
    Me,
    Other(NodeId, String),
    Unknown,
}

impl Leader {
    fn known(&self) -> Option<(NodeId, String)> {
        match self {
            Leader::Other(id, addr) => Some((*id, addr.clone())),
            _ => None,
        }
    }
}

/// The least time a batch gets to commit once it has a pipeline slot, however long it queued.
const WRITE_AFTER_QUEUE_MIN_MS: u64 = 250;

impl Inner {
    fn metrics(&self) -> RaftMetrics<NodeId, BasicNode> {
        self.raft.metrics().borrow().clone()
    }

    fn leader(&self) -> Leader {
        let m = self.metrics();
        match m.current_leader {
            Some(id) if id == self.config.id && m.state == ServerState::Leader => Leader::Me,
            Some(id) if id != self.config.id => match m.membership_config.membership().get_node(&id) {
                Some(node) => Leader::Other(id, node.addr.clone()),
                None => Leader::Unknown,
            },
            _ => Leader::Unknown,
        }
    }

    /// Queues proposals for the batcher and waits for their responses, giving up at `deadline`.
    async fn enqueue(
        &self,
        proposals: Vec<Proposal>,
        bytes: usize,
        deadline: Instant,
    ) -> Result<BatchResponse, StoreError> {
        let (reply, rx) = oneshot::channel();
        let pending = Pending { proposals, reply, deadline, queued: std::time::Instant::now(), bytes };
        match tokio::time::timeout_at(deadline, self.proposer.send(pending)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(StoreError::unavailable("store is shutting down")),
            Err(_) => return Err(StoreError::unavailable("the proposal queue stayed full until the deadline")),
        }
        rx.await.map_err(|_| StoreError::unknown("the proposal was dropped before it was answered"))?
    }

    /// A follower's batch, arrived at (what it believes is) the leader. It joins this node's
    /// queue so that it shares an entry with everything else queued here. A node that does not
    /// lead refuses at once, so the follower retries elsewhere rather than hop through us.
    async fn accept_forwarded(&self, mut batch: Batch) -> Result<BatchResponse, ForwardError> {
        let m = self.metrics();
        if m.state != ServerState::Leader {
            return Err(ForwardError::NotLeader { leader: self.leader().known() });
        }
        if self.quorum_is_stale(&m) {
            return Err(ForwardError::unavailable(format!("leader {} has lost touch with a quorum", self.config.id)));
        }
        // The follower's clock is not ours to trust: see FORWARDED_CLOCK_SKEW_MAX_MS.
        let now = now_ms();
        for p in &mut batch.0 {
            p.at_ms = clamp_stamp(p.at_ms, now);
        }
        // The follower cut its batch under the same byte cap, so it fits one entry.
        let bytes = encoded_len(&batch);
        let deadline = Instant::now() + Duration::from_millis(self.config.propose_timeout_ms);
        match self.enqueue(batch.0, bytes, deadline).await {
            Ok(responses) => Ok(responses),
            Err(StoreError::Unavailable { message, outcome_unknown, .. }) => {
                Err(ForwardError::Unavailable { message, outcome_unknown })
            }
            Err(StoreError::Internal(m) | StoreError::Invalid(m)) => Err(ForwardError::Internal(m)),
        }
    }

    pub(crate) fn stages(&self) -> &Stages {
        &self.stats.stages
    }

    pub(crate) fn metrics_batch(&self, commands: usize) {
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.commands.fetch_add(commands as u64, Ordering::Relaxed);
    }

    /// A leader that has not heard from a quorum for longer than the minimum election timeout
    /// refuses writes at once instead of letting them wait for a commit that may never come.
    /// A leader that has not heard from one *yet* (just elected) is not stale: writes wait.
    fn quorum_is_stale(&self, m: &RaftMetrics<NodeId, BasicNode>) -> bool {
        let voters = m.membership_config.membership().voter_ids().count();
        voters > 1 && m.millis_since_quorum_ack.is_some_and(|ms| ms > self.config.election_timeout_min_ms)
    }

    fn write_error(&self, e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> ForwardError {
        match e.forward_to_leader::<BasicNode>() {
            Some(f) => ForwardError::NotLeader {
                leader: match (f.leader_id, &f.leader_node) {
                    (Some(id), Some(node)) => Some((id, node.addr.clone())),
                    _ => None,
                },
            },
            None => ForwardError::Internal(e.to_string()),
        }
    }

    /// Appends a batch through this node's Raft, which must lead. Used for local proposals and
    /// for batches forwarded by followers.
    async fn write_local(&self, batch: Batch, deadline: Instant) -> Result<BatchResponse, ForwardError> {
        let m = self.metrics();
        if m.state != ServerState::Leader {
            return Err(ForwardError::NotLeader { leader: self.leader().known() });
        }
        if self.quorum_is_stale(&m) {
            return Err(ForwardError::unavailable(format!(
                "leader {} has not heard from a quorum for {} ms",
                self.config.id,
                m.millis_since_quorum_ack.map_or("ever".to_string(), |v| v.to_string())
            )));
        }
        // At least a moment, so a batch cut just before its deadline still gets a chance: a
        // loaded but healthy leader commits in far less, a leader without quorum was refused
        // above, and the total stays within the 2 s a client is promised.
        let deadline = deadline.max(Instant::now() + Duration::from_millis(WRITE_AFTER_QUEUE_MIN_MS));
        let started = std::time::Instant::now();
        let written = tokio::time::timeout_at(deadline, self.raft.client_write(batch)).await;
        self.stats.stages.raft_write.since(started);
        match written {
            Ok(Ok(resp)) => Ok(resp.data),
            Ok(Err(e)) => Err(self.write_error(e)),
            Err(_) => Err(ForwardError::Unavailable {
                message: format!(
                    "not committed within {} ms; the write may still commit",
                    self.config.propose_timeout_ms
                ),
                outcome_unknown: true,
            }),
        }
    }

    /// Gets `batch` committed through whoever leads, following leader changes until the
    /// deadline. Retries only when the batch certainly did not reach a log.
    #[tracing::instrument(level = "debug", name = "submit_batch", skip_all, fields(commands = batch.0.len()))]
    pub(crate) async fn submit_batch(&self, batch: Batch, deadline: Instant) -> Result<BatchResponse, StoreError> {
        let mut metrics = self.raft.metrics();
        let mut last_error = String::from("no leader known");
        loop {
            let result = match self.leader() {
                Leader::Me => self.write_local(batch.clone(), deadline).await,
                Leader::Other(leader_id, addr) => {
                    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(50));
                    let started = std::time::Instant::now();
                    let answer = network::call::<_, Result<BatchResponse, ForwardError>>(
                        self.transport.as_ref(),
                        &addr,
                        "forward",
                        leader_id,
                        &batch,
                        left,
                    )
                    .await;
                    self.stats.stages.forward.since(started);
                    match answer {
                        Ok(r) => r,
                        Err(TransportError::Unreachable(e)) => Err(ForwardError::NotLeader { leader: None })
                            .inspect_err(|_| {
                                last_error = format!("leader at {addr} unreachable: {e}");
                            }),
                        Err(e) => {
                            return Err(StoreError::unknown(format!("forwarding to the leader at {addr} failed: {e}")))
                        }
                    }
                }
                Leader::Unknown => Err(ForwardError::NotLeader { leader: None }),
            };
            match result {
                Ok(r) => return Ok(r),
                Err(ForwardError::NotLeader { .. }) => {
                    // Safe to retry: the batch reached no log. Wait for news of a leader.
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(StoreError::unavailable(format!("no leader could take the write: {last_error}")));
                    }
                    let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), metrics.changed()).await;
                }
                Err(ForwardError::Unavailable { message, outcome_unknown }) => {
                    return Err(StoreError::Unavailable { message, retry_after_ms: RETRY_AFTER_MS, outcome_unknown });
                }
                Err(ForwardError::Internal(m)) => return Err(StoreError::Internal(m)),
            }
        }
    }

    /// One read-index round: confirm leadership with a quorum and return the commit index,
    /// locally on the leader or by asking the leader.
    async fn read_index_round(&self) -> Result<u64, StoreError> {
        self.stats.read_rounds.fetch_add(1, Ordering::Relaxed);
        match self.leader() {
            Leader::Me => match self.raft.get_read_log_id().await {
                Ok((read, _)) => Ok(read.map_or(0, |l| l.index)),
                Err(e) => Err(StoreError::unavailable(format!("leadership not confirmed: {e}"))),
            },
            Leader::Other(leader_id, addr) => {
                let timeout = Duration::from_millis(self.config.read_timeout_ms);
                match network::call::<_, Result<u64, ForwardError>>(
                    self.transport.as_ref(),
                    &addr,
                    "read_index",
                    leader_id,
                    &(),
                    timeout,
                )
                .await
                {
                    Ok(Ok(i)) => Ok(i),
                    Ok(Err(e)) => Err(StoreError::unavailable(format!("leader at {addr}: {e}"))),
                    Err(e) => Err(StoreError::unavailable(format!("leader at {addr}: {e}"))),
                }
            }
            Leader::Unknown => Err(StoreError::unavailable("no leader known")),
        }
    }
}
