//! The narrow handle the rest of the system uses: propose a command, read at a consistency level,
//! look at and change the cluster. It hides who leads: any node accepts any proposal and forwards
//! it. The work is done in the rooms behind it: the proposer batches, the router finds the leader,
//! the read rounds confirm it, the cluster module forms and joins, the network serves peers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
// tokio's clock, not std's: the same in production, and simulated time under turmoil.
use tokio::time::Instant;

use crate::cluster::{self, ClusterStatus, JoinOutcome, Readiness};
use crate::command::{Command, Response};
use crate::config::StoreConfig;
use crate::error::StoreError;
use crate::log_store::LogStore;
use crate::network::{self, ForwardError, Network, Rpc, Transport};
use crate::proposer::{Proposer, COMMAND_BYTES_MAX};
use crate::read_index::SharedRounds;
use crate::router::Router;
use crate::stages::Stages;
use crate::state_machine::{ReadView, SmError, StateMachine};
use crate::types::{encoded_len, BatchResponse, NodeId, Proposal, Raft};

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

struct Inner {
    config: StoreConfig,
    router: Arc<Router>,
    proposer: Proposer,
    rounds: Arc<SharedRounds<Router>>,
    sm: StateMachine,
    log: LogStore,
    stats: Arc<StoreStats>,
}

/// The replicated store on this node. Cloning is cheap and shares everything.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
    /// Opens the databases under `config.data_dir` and starts Raft. It does not join or form a
    /// cluster: call [`Store::bootstrap`] or [`Store::join`].
    pub async fn open(config: StoreConfig, transport: Arc<dyn Transport>) -> Result<Store, StoreError> {
        let raft_config = config.openraft()?;
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| StoreError::internal(format!("create data dir {}: {e}", config.data_dir.display())))?;
        let stages = Arc::new(Stages::default());
        let log = LogStore::open(&config.data_dir.join("raft-log.redb"))
            .map_err(|e| StoreError::internal(format!("open raft log: {e}")))?
            .with_stages(stages.clone());
        let sm = StateMachine::open_with(&config.data_dir.join("state"), config.inject)?.with_stages(stages.clone());
        let network = Network::new(transport.clone()).with_stages(stages.clone()).with_snapshot_sizes(sm.clone());
        let raft = Raft::new(config.id, Arc::new(raft_config), network, log.clone(), sm.clone())
            .await
            .map_err(|e| StoreError::internal(format!("start raft: {e}")))?;
        let stats = Arc::new(StoreStats { stages, ..StoreStats::default() });
        let router = Arc::new(Router::new(&config, raft, transport, stats.clone()));
        let proposer = Proposer::start(router.clone());
        let rounds = SharedRounds::new(router.clone());
        Ok(Store { inner: Arc::new(Inner { config, router, proposer, rounds, sm, log, stats }) })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.config.id
    }

    /// The openraft handle, for metrics and administration.
    pub fn raft(&self) -> &Raft {
        self.inner.router.raft()
    }

    /// Counters for metrics.
    pub fn stats(&self) -> &StoreStats {
        &self.inner.stats
    }

    /// Watches one topic for subscribers: woken by that topic's events only, with its recent
    /// events shared by all its watchers (see `state_machine::hub`).
    pub fn watch_topic(&self, topic: &str) -> crate::TopicWatch {
        self.inner.sm.watch_topic(topic)
    }

    /// Topics some subscription on this node watches now.
    pub fn watched_topics(&self) -> usize {
        self.inner.sm.watched_topics()
    }

    /// A watch of the applied log index.
    pub fn applied_index(&self) -> watch::Receiver<u64> {
        self.inner.sm.applied_index()
    }

    pub(crate) fn router(&self) -> &Router {
        &self.inner.router
    }

    pub(crate) fn proposer(&self) -> &Proposer {
        &self.inner.proposer
    }

    pub(crate) fn read_rounds(&self) -> &Arc<SharedRounds<Router>> {
        &self.inner.rounds
    }

    pub(crate) fn state_machine(&self) -> &StateMachine {
        &self.inner.sm
    }

    pub(crate) fn log(&self) -> &LogStore {
        &self.inner.log
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
        self.write_at(Proposal { at_ms: crate::clock::now_ms(), command }).await
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
        let result = self.inner.proposer.enqueue(vec![proposal], bytes, deadline).await;
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
        let index = tokio::time::timeout(deadline, self.inner.rounds.read_index()).await.map_err(|_| {
            StoreError::unavailable("could not confirm the leader's commit index in time (no quorum?)")
        })??;
        self.wait_applied_until(index, Instant::now() + deadline).await?;
        Ok(index)
    }

    /// What this node knows of the cluster.
    pub fn cluster_status(&self) -> ClusterStatus {
        cluster::status(&self.inner.router, &self.inner.sm)
    }

    /// The index this node knows to be committed (0 when unknown or Raft has stopped).
    pub async fn committed_index(&self) -> u64 {
        cluster::committed_index(&self.inner.router).await
    }

    /// Whether this node is ready to serve: a member, with a leader that answers, and applied
    /// to within [`cluster::READY_APPLY_LAG_MAX`] entries of the leader's committed index; else
    /// the phase it is in and how far it has to go (see `cluster::readiness`).
    pub async fn readiness(&self) -> Readiness {
        cluster::readiness(&self.inner.router, &self.inner.rounds, self.state_machine()).await
    }

    /// Forms the initial cluster, or rejoins it (see `cluster::bootstrap`): on a fresh data
    /// directory the lowest id of `peers` initializes the cluster, unless a peer already holds
    /// state; with existing data it does nothing.
    pub async fn bootstrap(&self, peers: &BTreeMap<NodeId, String>) -> Result<(), StoreError> {
        cluster::bootstrap(&self.inner.router, &self.inner.log, peers).await
    }

    /// True when this node has Raft state (a vote or a log): it is, or was, a member, so it must
    /// never initialize a cluster or ask to join again.
    pub async fn holds_state(&self) -> Result<bool, StoreError> {
        cluster::holds_state(&self.inner.log).await
    }

    /// Asks the cluster at `addr` to add this node, first as a learner, then as a voter.
    /// Follows a leader redirect; retries until `attempts` run out.
    pub async fn join(&self, addr: &str, attempts: u32) -> Result<(), StoreError> {
        cluster::join(&self.inner.router, &self.inner.config.advertise, addr, attempts).await
    }

    /// Makes a node started with `--join` a voter, whatever point an earlier attempt reached
    /// (see `cluster::ensure_joined`): a member asks nobody; a fresh node, or one that crashed
    /// during its join, asks the cluster at `addr` until it is a voter or `attempts` run out.
    pub async fn ensure_joined(&self, addr: &str, attempts: u32) -> Result<JoinOutcome, StoreError> {
        cluster::ensure_joined(&self.inner.router, &self.inner.log, &self.inner.config.advertise, addr, attempts).await
    }

    /// Adds a learner (leader only; others answer with the leader to ask).
    pub async fn add_learner(&self, id: NodeId, addr: String) -> Result<(), ForwardError> {
        cluster::add_learner(&self.inner.router, id, addr).await
    }

    /// Replaces the voter set (leader only).
    pub async fn change_membership(&self, voters: BTreeSet<NodeId>) -> Result<(), ForwardError> {
        cluster::change_membership(&self.inner.router, voters).await
    }

    /// Asks this node to build a snapshot now.
    pub async fn trigger_snapshot(&self) -> Result<(), StoreError> {
        self.raft().trigger().snapshot().await.map_err(|e| StoreError::internal(e.to_string()))
    }

    /// Serves one `/raft/{rpc}` request from a peer (already authenticated by the caller): the
    /// encoded answer, or why the body could not be served.
    pub async fn handle_rpc(&self, rpc: Rpc, body: &[u8]) -> Result<Vec<u8>, String> {
        network::server::serve(self, rpc, body).await
    }

    /// Stops Raft. A leader stops sending heartbeats, so the others elect a new one within an
    /// election timeout (openraft 0.9 has no leadership transfer).
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft().shutdown().await {
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
