//! Who leads, and getting work to the leader: the leader lookup, the leader's own checks (it
//! leads, and a quorum heard from it lately), committing a batch locally or forwarding it, and
//! read-index rounds. The proposer and the read rounds hold the router; it holds neither, so
//! nothing here needs a weak reference or a late initialisation.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, RaftMetrics, ServerState};
// tokio's clock, not std's: the same in production, and simulated time under turmoil.
use tokio::time::Instant;

use crate::config::StoreConfig;
use crate::error::{StoreError, RETRY_AFTER_MS};
use crate::network::{self, ForwardError, Rpc, Transport, TransportError};
use crate::read_index::ReadIndexSource;
use crate::store::StoreStats;
use crate::types::{Batch, BatchResponse, NodeId, Raft};

/// The least time a batch gets to commit once it has a pipeline slot, however long it queued.
const WRITE_AFTER_QUEUE_MIN_MS: u64 = 250;
/// The least time a forwarded batch is given to reach the leader and commit there, even when
/// the caller's deadline has (nearly) passed: a batch that was cut in time deserves one try.
const FORWARD_MIN_MS: u64 = 50;
/// While no leader is known, how long a write waits for news of one before it looks again.
const LEADER_WAIT_POLL_MS: u64 = 100;

/// Who leads, from this node's point of view.
pub(crate) enum Leader {
    Me,
    Other(NodeId, String),
    Unknown,
}

impl Leader {
    /// The leader to name in a redirect: another node, if one is known.
    pub(crate) fn known(&self) -> Option<(NodeId, String)> {
        match self {
            Leader::Other(id, addr) => Some((*id, addr.clone())),
            _ => None,
        }
    }
}

/// The raft handle, the transport to peers and the leader logic over them.
pub(crate) struct Router {
    id: NodeId,
    raft: Raft,
    transport: Arc<dyn Transport>,
    election_timeout_min_ms: u64,
    propose_timeout_ms: u64,
    read_timeout_ms: u64,
    stats: Arc<StoreStats>,
}

impl Router {
    pub(crate) fn new(config: &StoreConfig, raft: Raft, transport: Arc<dyn Transport>, stats: Arc<StoreStats>) -> Self {
        Router {
            id: config.id,
            raft,
            transport,
            election_timeout_min_ms: config.election_timeout_min_ms,
            propose_timeout_ms: config.propose_timeout_ms,
            read_timeout_ms: config.read_timeout_ms,
            stats,
        }
    }

    pub(crate) fn id(&self) -> NodeId {
        self.id
    }

    pub(crate) fn raft(&self) -> &Raft {
        &self.raft
    }

    pub(crate) fn transport(&self) -> &dyn Transport {
        self.transport.as_ref()
    }

    pub(crate) fn stats(&self) -> &StoreStats {
        &self.stats
    }

    pub(crate) fn propose_timeout(&self) -> Duration {
        Duration::from_millis(self.propose_timeout_ms)
    }

    pub(crate) fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.read_timeout_ms)
    }

    pub(crate) fn metrics(&self) -> RaftMetrics<NodeId, BasicNode> {
        self.raft.metrics().borrow().clone()
    }

    pub(crate) fn leader(&self) -> Leader {
        let m = self.metrics();
        match m.current_leader {
            Some(id) if id == self.id && m.state == ServerState::Leader => Leader::Me,
            Some(id) if id != self.id => match m.membership_config.membership().get_node(&id) {
                Some(node) => Leader::Other(id, node.addr.clone()),
                None => Leader::Unknown,
            },
            _ => Leader::Unknown,
        }
    }

    /// Refuses unless this node leads and has heard from a quorum lately: a leader that has not
    /// heard from one for longer than the least election timeout refuses writes at once instead
    /// of letting them wait for a commit that may never come. A leader that has not heard from
    /// one *yet* (just elected) is not stale: writes wait. One check for local and forwarded
    /// writes alike.
    pub(crate) fn check_leading(&self) -> Result<(), ForwardError> {
        let m = self.metrics();
        if m.state != ServerState::Leader {
            return Err(ForwardError::NotLeader { leader: self.leader().known() });
        }
        let voters = m.membership_config.membership().voter_ids().count();
        let since_ack_ms = m.millis_since_quorum_ack;
        if voters > 1 && since_ack_ms.is_some_and(|ms| ms > self.election_timeout_min_ms) {
            return Err(ForwardError::unavailable(format!(
                "leader {} has not heard from a quorum for {} ms",
                self.id,
                since_ack_ms.unwrap_or_default()
            )));
        }
        Ok(())
    }

    /// A write refusal from openraft as the wire names it: a redirect to the leader it knows of,
    /// or a failure.
    pub(crate) fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> ForwardError {
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
        self.check_leading()?;
        // At least a moment, so a batch cut just before its deadline still gets a chance: a
        // loaded but healthy leader commits in far less, a leader without quorum was refused
        // above, and the total stays within the 2 s a client is promised.
        let deadline = deadline.max(Instant::now() + Duration::from_millis(WRITE_AFTER_QUEUE_MIN_MS));
        let started = std::time::Instant::now();
        let written = tokio::time::timeout_at(deadline, self.raft.client_write(batch)).await;
        self.stats.stages.raft_write.since(started);
        match written {
            Ok(Ok(resp)) => Ok(resp.data),
            Ok(Err(e)) => Err(Self::write_error(e)),
            Err(_) => Err(ForwardError::Unavailable {
                message: format!("not committed within {} ms; the write may still commit", self.propose_timeout_ms),
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
                    let left =
                        deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(FORWARD_MIN_MS));
                    let started = std::time::Instant::now();
                    let answer = network::call::<_, Result<BatchResponse, ForwardError>>(
                        self.transport(),
                        &addr,
                        Rpc::Forward,
                        leader_id,
                        &batch,
                        left,
                    )
                    .await;
                    self.stats.stages.forward.since(started);
                    match answer {
                        Ok(r) => r,
                        Err(TransportError::Unreachable(e)) => {
                            last_error = format!("leader at {addr} unreachable: {e}");
                            Err(ForwardError::NotLeader { leader: None })
                        }
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
                    let poll = left.min(Duration::from_millis(LEADER_WAIT_POLL_MS));
                    let _ = tokio::time::timeout(poll, metrics.changed()).await;
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
                let answer = network::call::<_, Result<u64, ForwardError>>(
                    self.transport(),
                    &addr,
                    Rpc::ReadIndex,
                    leader_id,
                    &(),
                    self.read_timeout(),
                )
                .await;
                match answer {
                    Ok(Ok(i)) => Ok(i),
                    Ok(Err(e)) => Err(StoreError::unavailable(format!("leader at {addr}: {e}"))),
                    Err(e) => Err(StoreError::unavailable(format!("leader at {addr}: {e}"))),
                }
            }
            Leader::Unknown => Err(StoreError::unavailable("no leader known")),
        }
    }
}

impl ReadIndexSource for Router {
    fn round(&self) -> futures::future::BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(self.read_index_round())
    }
}
