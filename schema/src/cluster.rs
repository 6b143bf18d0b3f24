//! The cluster: who leads, who follows and how far behind, and admin operations.

use std::collections::BTreeSet;

use async_graphql::{Context, Error, Object, SimpleObject};
use raft::ClusterStatus;
use raft::ForwardError;

use crate::auth::admin;
use crate::error::{api_error, code, invalid, store};
use crate::ApiContext;

/// One member of the cluster.
#[derive(SimpleObject)]
pub struct Member {
    /// Node id.
    pub id: u64,
    /// Address it serves on.
    pub addr: String,
    /// Voter, or learner.
    pub voter: bool,
    /// Last log index the leader knows it holds (null unless asked on the leader).
    pub matched_index: Option<u64>,
    /// Entries it is behind the leader's log (null unless asked on the leader).
    pub lag: Option<u64>,
}

/// What the answering node knows of the cluster.
#[derive(SimpleObject)]
pub struct Cluster {
    /// The answering node.
    pub node_id: u64,
    /// The leader it follows, if any.
    pub leader_id: Option<u64>,
    /// Its current term.
    pub term: u64,
    /// Leader, Follower, Candidate or Learner.
    pub state: String,
    /// Members, voters and learners.
    pub members: Vec<Member>,
    /// Last index applied to its state.
    pub last_applied: u64,
    /// Last index in its log.
    pub last_log_index: u64,
    /// Last index covered by its snapshot.
    pub snapshot_index: Option<u64>,
    /// Snapshots it installed from a leader since it started (catching up past the purge point).
    pub snapshots_installed: u64,
    /// Where it stands on its way to serving: what `/ready` answers 200 for (READY) or not.
    pub phase: NodePhase,
    /// Committed entries (at the leader) it has still to apply; null when the leader does not
    /// answer.
    pub entries_behind: Option<u64>,
    /// Bytes received so far of the snapshot it is installing from the leader; null when it is
    /// receiving none.
    pub snapshot_bytes_received: Option<u64>,
    /// That snapshot's size in bytes; null when it is receiving none (or the leader did not say).
    pub snapshot_bytes_total: Option<u64>,
}

/// Where a node stands on its way to serving (`raft::Phase`).
#[derive(async_graphql::Enum, Clone, Copy, PartialEq, Eq)]
pub enum NodePhase {
    /// Its membership does not name it (a joiner not yet added, or a removed node).
    NotMember,
    /// A member that knows no leader, or whose leader does not answer.
    NoLeader,
    /// A member more than `raft::READY_APPLY_LAG_MAX` committed entries behind its leader.
    CatchingUp,
    /// A member caught up with its leader: `/ready` answers 200.
    Ready,
}

impl From<raft::Phase> for NodePhase {
    fn from(p: raft::Phase) -> Self {
        match p {
            raft::Phase::NotMember => NodePhase::NotMember,
            raft::Phase::NoLeader => NodePhase::NoLeader,
            raft::Phase::CatchingUp => NodePhase::CatchingUp,
            raft::Phase::Ready => NodePhase::Ready,
        }
    }
}

/// The cluster status of the answering node, with its readiness (one read-index round).
async fn cluster_of(store: &raft::Store) -> Cluster {
    let r = store.readiness().await;
    Cluster::new(store.cluster_status(), r)
}

impl Cluster {
    fn new(s: ClusterStatus, r: raft::Readiness) -> Self {
        Cluster {
            node_id: s.node_id,
            leader_id: s.leader_id,
            term: s.term,
            state: s.state,
            members: s
                .members
                .into_iter()
                .map(|m| Member { id: m.id, addr: m.addr, voter: m.voter, matched_index: m.matched_index, lag: m.lag })
                .collect(),
            last_applied: s.last_applied,
            last_log_index: s.last_log_index,
            snapshot_index: s.snapshot_index,
            snapshots_installed: s.snapshots_installed,
            phase: r.phase.into(),
            entries_behind: r.entries_behind,
            snapshot_bytes_received: s.snapshot_receiving.as_ref().map(|p| p.received_bytes),
            snapshot_bytes_total: s.snapshot_receiving.and_then(|p| p.total_bytes),
        }
    }
}

fn admin_error(e: ForwardError) -> Error {
    match e {
        ForwardError::NotLeader { leader: Some((id, addr)) } => {
            api_error(code::UNAVAILABLE, format!("membership changes run on the leader: ask node {id} at {addr}"))
        }
        ForwardError::NotLeader { leader: None } => api_error(code::UNAVAILABLE, "no leader known"),
        ForwardError::Unavailable { message, .. } => api_error(code::UNAVAILABLE, message),
        ForwardError::Internal(m) => api_error(code::INTERNAL, m),
    }
}

/// Cluster queries.
#[derive(Default)]
pub struct ClusterQuery;

#[Object]
impl ClusterQuery {
    /// The answering node's view of the cluster.
    async fn cluster(&self, ctx: &Context<'_>) -> Result<Cluster, Error> {
        Ok(cluster_of(&ctx.data::<ApiContext>()?.store).await)
    }
}

/// Cluster administration (ADMIN; run on the leader).
#[derive(Default)]
pub struct ClusterMutation;

#[Object]
impl ClusterMutation {
    /// Adds a node as a learner; it receives the log (or a snapshot) but does not vote.
    async fn add_learner(&self, ctx: &Context<'_>, id: u64, addr: String) -> Result<Cluster, Error> {
        admin(ctx).await?;
        if id == 0 {
            return Err(invalid("id", "node ids start at 1"));
        }
        let api = ctx.data::<ApiContext>()?;
        api.store.add_learner(id, addr).await.map_err(admin_error)?;
        Ok(cluster_of(&api.store).await)
    }

    /// Makes `voterIds` the voters. Voters left out leave the cluster; learners stay learners.
    async fn change_membership(&self, ctx: &Context<'_>, voter_ids: Vec<u64>) -> Result<Cluster, Error> {
        admin(ctx).await?;
        if voter_ids.is_empty() {
            return Err(invalid("voterIds", "a cluster needs at least one voter"));
        }
        let api = ctx.data::<ApiContext>()?;
        let voters: BTreeSet<u64> = voter_ids.into_iter().collect();
        api.store.change_membership(voters).await.map_err(admin_error)?;
        Ok(cluster_of(&api.store).await)
    }

    /// Asks the answering node to build a snapshot now. `true` means asked: a build already in
    /// progress absorbs the request (openraft drops it), so a caller that needs a snapshot at
    /// or past some index watches `cluster { snapshotIndex }` and asks again.
    async fn trigger_snapshot(&self, ctx: &Context<'_>) -> Result<bool, Error> {
        admin(ctx).await?;
        ctx.data::<ApiContext>()?.store.trigger_snapshot().await.map_err(store)?;
        Ok(true)
    }
}
