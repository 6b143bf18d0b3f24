//! Membership: forming a cluster (bootstrap), joining one, admitting a joiner, and what a node
//! knows of the cluster (status, readiness). rqlite keeps the same jobs in its cluster/ package.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::RaftError;
use openraft::BasicNode;
use serde::Serialize;

use crate::error::StoreError;
use crate::log_store::LogStore;
use crate::network::{self, ForwardError, JoinRequest, PeerStatus, Rpc};
use crate::read_index::SharedRounds;
use crate::router::{Leader, Router};
use crate::state_machine::StateMachine;
use crate::types::NodeId;

/// A node is ready while it has applied all but at most this many committed entries: under
/// load some committed entries always wait for apply, and readiness must not flap with that.
pub const READY_APPLY_LAG_MAX: u64 = 1_000;
/// How long a bootstrapping node waits for a peer to say whether it holds state. A peer that
/// does not answer in time is taken as fresh (it is down, or starting like this one).
const PEER_STATUS_TIMEOUT_MS: u64 = 500;
/// How long one join request may take: the leader adds a learner, which must catch up (perhaps
/// from a snapshot) before it becomes a voter in the same request.
const JOIN_TIMEOUT_MS: u64 = 30_000;
/// The pause between join attempts that failed.
const JOIN_RETRY_MS: u64 = 500;

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
    /// The snapshot it is receiving from the leader, if any: bytes so far of the total.
    pub snapshot_receiving: Option<crate::state_machine::SnapshotProgress>,
    /// The members.
    pub members: Vec<MemberStatus>,
}

/// What this node knows of the cluster.
pub(crate) fn status(router: &Router, sm: &StateMachine) -> ClusterStatus {
    let m = router.metrics();
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
        node_id: router.id(),
        leader_id: m.current_leader,
        term: m.current_term,
        state: format!("{:?}", m.state),
        last_log_index,
        last_applied: m.last_applied.map_or(0, |l| l.index),
        snapshot_index: m.snapshot.map(|l| l.index),
        snapshots_installed: sm.snapshots_installed(),
        snapshot_receiving: sm.receiving_progress(),
        members,
    }
}

/// The index this node knows to be committed (0 when unknown or Raft has stopped).
pub(crate) async fn committed_index(router: &Router) -> u64 {
    router.raft().with_raft_state(|st| st.committed.map_or(0, |l| l.index)).await.unwrap_or(0)
}

/// How long `/ready` (and `cluster`, `/metrics`) waits for the leader's committed index before
/// it reports the leader unreachable.
pub const READY_PROBE_TIMEOUT_MS: u64 = 1_000;

/// Where a node stands on its way to serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Phase {
    /// Its membership does not name it and no snapshot is arriving (a joiner not yet added, or a
    /// removed node).
    NotMember,
    /// A member that knows no leader, or cannot reach the one it knows.
    NoLeader,
    /// A member with a leader, more than [`READY_APPLY_LAG_MAX`] committed entries behind it; or a
    /// joiner receiving its first snapshot (its membership arrives inside that snapshot, so until
    /// it is installed the node cannot see itself named).
    CatchingUp,
    /// A member with a leader, caught up to within [`READY_APPLY_LAG_MAX`] entries.
    Ready,
}

impl Phase {
    /// The phase as `/ready`, `/metrics` and the `cluster` query spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::NotMember => "NOT_MEMBER",
            Phase::NoLeader => "NO_LEADER",
            Phase::CatchingUp => "CATCHING_UP",
            Phase::Ready => "READY",
        }
    }
}

/// A node's readiness and its progress towards it.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    /// Where it stands.
    pub phase: Phase,
    /// The last index applied here.
    pub applied: u64,
    /// The leader's committed index, when the leader answered (a read-index round).
    pub leader_committed: Option<u64>,
    /// Committed entries this node has still to apply, when the leader answered.
    pub entries_behind: Option<u64>,
}

/// Whether this node is ready to serve, judged against the leader's committed index rather than
/// its own: a follower's own committed index only covers the log it holds, so a node that has
/// received nothing yet (or is installing a snapshot) would look caught up. Asking costs one
/// read-index round (shared with concurrent reads), bounded by [`READY_PROBE_TIMEOUT_MS`].
pub(crate) async fn readiness(router: &Router, rounds: &Arc<SharedRounds<Router>>, sm: &StateMachine) -> Readiness {
    let (member, leader, applied) = {
        let m = router.raft().metrics();
        let m = m.borrow();
        let member = m.membership_config.membership().nodes().any(|(id, _)| *id == router.id());
        (member, m.current_leader, m.last_applied.map_or(0, |l| l.index))
    };
    let not = |phase| Readiness { phase, applied, leader_committed: None, entries_behind: None };
    if !member {
        // A leader is streaming a snapshot here: this node was added and is on its way.
        let joining = sm.receiving_progress().is_some();
        return not(if joining { Phase::CatchingUp } else { Phase::NotMember });
    }
    if leader.is_none() {
        return not(Phase::NoLeader);
    }
    let probe = tokio::time::timeout(Duration::from_millis(READY_PROBE_TIMEOUT_MS), rounds.read_index()).await;
    let Ok(Ok(committed)) = probe else {
        return not(Phase::NoLeader);
    };
    let behind = committed.saturating_sub(applied);
    Readiness {
        phase: if behind <= READY_APPLY_LAG_MAX { Phase::Ready } else { Phase::CatchingUp },
        applied,
        leader_committed: Some(committed),
        entries_behind: Some(behind),
    }
}

/// True when this node has Raft state (a vote or a log): it is, or was, a member, so it must
/// never initialize a cluster or ask to join again.
pub(crate) async fn holds_state(log: &LogStore) -> Result<bool, StoreError> {
    let mut log = log.clone();
    Ok(!log.is_pristine().await.map_err(|e| StoreError::internal(e.to_string()))?)
}

/// Forms the initial cluster, or rejoins it. With existing data this does nothing: the node is
/// already a member and never re-initializes. On a fresh data directory, the lowest id of
/// `peers` initializes the cluster with all of them, unless a peer already holds Raft state
/// (then this node was wiped and must be added back with `join`).
pub(crate) async fn bootstrap(
    router: &Router,
    log: &LogStore,
    peers: &BTreeMap<NodeId, String>,
) -> Result<(), StoreError> {
    if holds_state(log).await? {
        tracing::info!("existing raft state found: rejoining, not initializing");
        return Ok(());
    }
    let me = router.id();
    let Some((&lowest, _)) = peers.iter().next() else {
        return Err(StoreError::internal("peers must name at least this node"));
    };
    if !peers.contains_key(&me) {
        return Err(StoreError::internal(format!("peers {:?} must include this node's id {me}", peers.keys())));
    }
    if lowest != me {
        tracing::info!(lowest, "waiting for the lowest peer id to initialize the cluster");
        return Ok(());
    }
    for (id, addr) in peers.iter().filter(|(id, _)| **id != me) {
        let timeout = Duration::from_millis(PEER_STATUS_TIMEOUT_MS);
        let status: Result<PeerStatus, _> =
            network::call(router.transport(), addr, Rpc::Status, *id, &(), timeout).await;
        if status.is_ok_and(|s| s.initialized) {
            tracing::warn!(peer = id, "a peer already holds cluster state: not initializing; join this node instead");
            return Ok(());
        }
    }
    let members: BTreeMap<NodeId, BasicNode> = peers.iter().map(|(id, a)| (*id, BasicNode::new(a))).collect();
    match router.raft().initialize(members).await {
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

/// Asks the cluster at `addr` to add this node (at `advertise`), first as a learner, then as a
/// voter. Follows a leader redirect; retries until `attempts` run out.
pub(crate) async fn join(router: &Router, advertise: &str, addr: &str, attempts: u32) -> Result<(), StoreError> {
    let req = JoinRequest { id: router.id(), addr: advertise.to_string() };
    // The member at `addr` is "whoever answers" (id 0) until it names the leader.
    let (mut target, mut target_id) = (addr.to_string(), 0);
    let mut last = String::new();
    let timeout = Duration::from_millis(JOIN_TIMEOUT_MS);
    for _ in 0..attempts.max(1) {
        let r: Result<Result<(), ForwardError>, _> =
            network::call(router.transport(), &target, Rpc::Join, target_id, &req, timeout).await;
        match r {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(ForwardError::NotLeader { leader: Some((leader_id, leader_addr)) })) => {
                (target, target_id) = (leader_addr, leader_id);
                continue;
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(JOIN_RETRY_MS)).await;
    }
    Err(StoreError::unavailable(format!("could not join through {addr}: {last}")))
}

/// Whether this node's latest known membership (committed or not) names it a voter. Asked of
/// the Raft core, which has loaded the log and the snapshot: the metrics are empty until its
/// first report, so right after a restart they would say "not a voter" of any member.
pub(crate) async fn is_voter(router: &Router) -> bool {
    let me = router.id();
    router
        .raft()
        .with_raft_state(move |st| st.membership_state.effective().membership().voter_ids().any(|id| id == me))
        .await
        .unwrap_or(false)
}

/// What [`ensure_joined`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinOutcome {
    /// The node holds state that names it a voter: it is a member, and asks nobody.
    AlreadyMember,
    /// The node asked the cluster and is now a voter.
    Joined,
}

/// Makes a node started with `--join` a voter, whatever point an earlier attempt reached. A node
/// that holds no state asks to join. So does one that holds state without being a voter in it:
/// it crashed during its join, after the leader began replicating to it (so it has a vote, and
/// perhaps the membership entry that adds it as a learner) and before it became a voter; that
/// entry may even have been lost with a leader change. Only the cluster knows, so it asks again:
/// [`admit`] is idempotent. A node whose own state names it a voter is a member and asks nobody
/// (restarting a member must never depend on reaching the leader).
pub(crate) async fn ensure_joined(
    router: &Router,
    log: &LogStore,
    advertise: &str,
    addr: &str,
    attempts: u32,
) -> Result<JoinOutcome, StoreError> {
    if holds_state(log).await? {
        if is_voter(router).await {
            return Ok(JoinOutcome::AlreadyMember);
        }
        tracing::warn!("this node holds state but is not a voter in it (a join was interrupted): asking again");
    }
    join(router, advertise, addr, attempts).await.map(|()| JoinOutcome::Joined)
}

/// Adds a learner (leader only; others answer with the leader to ask).
pub(crate) async fn add_learner(router: &Router, id: NodeId, addr: String) -> Result<(), ForwardError> {
    router.raft().add_learner(id, BasicNode::new(&addr), true).await.map_err(Router::write_error)?;
    Ok(())
}

/// Replaces the voter set (leader only).
pub(crate) async fn change_membership(router: &Router, voters: BTreeSet<NodeId>) -> Result<(), ForwardError> {
    router.raft().change_membership(voters, false).await.map_err(Router::write_error)?;
    Ok(())
}

/// The leader's side of a join: the joiner becomes a learner, catches up, then a voter.
pub(crate) async fn admit(router: &Router, req: JoinRequest) -> Result<(), ForwardError> {
    if let other @ (Leader::Other(..) | Leader::Unknown) = router.leader() {
        return Err(ForwardError::NotLeader { leader: other.known() });
    }
    // A joiner that crashed mid-join asks again after its restart. Already a voter at this
    // address in a committed configuration: the first request got all the way, nothing to do.
    // Anything less (a learner, an uncommitted configuration, another address) goes through the
    // steps again; each is a no-op where it already holds.
    let cfg = router.metrics().membership_config.clone();
    let committed = committed_index(router).await;
    let settled = cfg.log_id().as_ref().is_none_or(|l| l.index <= committed);
    let membership = cfg.membership();
    let voter_here =
        membership.voter_ids().any(|v| v == req.id) && membership.get_node(&req.id).is_some_and(|n| n.addr == req.addr);
    if settled && voter_here {
        return Ok(());
    }
    add_learner(router, req.id, req.addr).await?;
    let mut voters: BTreeSet<NodeId> = router.metrics().membership_config.membership().voter_ids().collect();
    voters.insert(req.id);
    change_membership(router, voters).await
}
