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
}

impl From<ClusterStatus> for Cluster {
    fn from(s: ClusterStatus) -> Self {
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
        Ok(ctx.data::<ApiContext>()?.store.cluster_status().into())
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
        Ok(api.store.cluster_status().into())
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
        Ok(api.store.cluster_status().into())
    }

    /// Builds a snapshot on the answering node now.
    async fn trigger_snapshot(&self, ctx: &Context<'_>) -> Result<bool, Error> {
        admin(ctx).await?;
        ctx.data::<ApiContext>()?.store.trigger_snapshot().await.map_err(store)?;
        Ok(true)
    }
}
