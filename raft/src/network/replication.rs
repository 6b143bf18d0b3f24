//! The client half of openraft's network: one [`Connection`] per peer, with appends bounded in
//! bytes so that an entry always reaches a follower within openraft's append timeout.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{call_encoded, Rpc, Transport, TransportError, APPEND_BYTES_MAX};
use crate::config::{SNAPSHOT_CHUNK_TIMEOUT_MS, SNAPSHOT_INSTALL_TIMEOUT_MS};
use crate::stages::Stages;
use crate::state_machine::StateMachine;
use crate::types::{encoded_len, NodeId, TypeConfig};

/// Creates one [`Connection`] per target; openraft keeps it for the replication stream.
#[derive(Clone)]
pub struct Network {
    transport: Arc<dyn Transport>,
    stages: Arc<Stages>,
    /// Where the current snapshot's size is found, to tell a follower how much it will receive.
    snapshots: Option<StateMachine>,
}

impl Network {
    /// A network over `transport`.
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        Network { transport, stages: Arc::default(), snapshots: None }
    }

    /// Records replication round trips into `stages` (shared with the rest of the store).
    pub fn with_stages(mut self, stages: Arc<Stages>) -> Self {
        self.stages = stages;
        self
    }

    /// Sends each snapshot chunk with the snapshot's total size, read from `sm`'s current
    /// snapshot, so a catching-up follower can report how far it has got.
    pub fn with_snapshot_sizes(mut self, sm: StateMachine) -> Self {
        self.snapshots = Some(sm);
        self
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        Connection {
            transport: self.transport.clone(),
            stages: self.stages.clone(),
            snapshots: self.snapshots.clone(),
            target,
            addr: node.addr.clone(),
        }
    }
}

/// openraft's view of one peer.
pub struct Connection {
    transport: Arc<dyn Transport>,
    stages: Arc<Stages>,
    snapshots: Option<StateMachine>,
    target: NodeId,
    addr: String,
}

impl Connection {
    async fn rpc<Req, Resp, E>(
        &self,
        rpc: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.rpc_encoded(rpc, body, option.hard_ttl(), 1).await
    }

    /// `entries`: how many log entries the body carries, for the hint of a follower's 413.
    async fn rpc_encoded<Resp, E>(
        &self,
        rpc: Rpc,
        body: Vec<u8>,
        ttl: Duration,
        entries: usize,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<Resp, RaftError<NodeId, E>> =
            call_encoded(self.transport.as_ref(), &self.addr, rpc, self.target, body, ttl).await.map_err(
                |e| match e {
                    TransportError::Unreachable(_) => RPCError::Unreachable(Unreachable::new(&e)),
                    // The peer's body limit is lower than ours: send fewer entries.
                    TransportError::Status { status: 413, .. } if entries > 1 => {
                        RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint((entries / 2) as u64))
                    }
                    _ => RPCError::Network(NetworkError::new(&e)),
                },
            )?;
        answer
            .map_err(|e| RPCError::RemoteError(RemoteError::new_with_node(self.target, BasicNode::new(&self.addr), e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let started = std::time::Instant::now();
        let body = serde_json::to_vec(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if body.len() > APPEND_BYTES_MAX && rpc.entries.len() > 1 {
            return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(entries_that_fit(&rpc))));
        }
        let answer = self.rpc_encoded(Rpc::Append, body, option.hard_ttl(), rpc.entries.len()).await;
        self.stages.replicate_rpc.since(started);
        answer
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        let total = match &self.snapshots {
            Some(sm) => {
                let (sm, id) = (sm.clone(), rpc.meta.snapshot_id.clone());
                tokio::task::spawn_blocking(move || sm.snapshot_len(&id)).await.ok().flatten()
            }
            None => None,
        };
        // The last chunk is answered once the snapshot is installed: see SNAPSHOT_INSTALL_TIMEOUT_MS.
        let ttl = Duration::from_millis(if rpc.done { SNAPSHOT_INSTALL_TIMEOUT_MS } else { SNAPSHOT_CHUNK_TIMEOUT_MS })
            .min(option.hard_ttl());
        let body = super::encode_snapshot_chunk(&rpc, total)
            .map_err(|e| RPCError::Network(NetworkError::new(&openraft::AnyError::error(e))))?;
        self.rpc_encoded(Rpc::Snapshot, body, ttl, 1).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.rpc(Rpc::Vote, &rpc, &option).await
    }
}

/// How many of an append's first entries fit in [`APPEND_BYTES_MAX`] (at least one: an entry is
/// never larger than that).
fn entries_that_fit(rpc: &AppendEntriesRequest<TypeConfig>) -> u64 {
    let mut bytes = 0;
    let mut fit = 0u64;
    for entry in &rpc.entries {
        bytes += encoded_len(entry);
        if bytes > APPEND_BYTES_MAX {
            break;
        }
        fit += 1;
    }
    fit.max(1)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::future::BoxFuture;

    use super::*;
    use crate::command::Command;
    use crate::types::{Batch, Entry, Proposal};
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    /// A transport whose peer refuses every body with 413, as a follower with a lower body
    /// limit does, and counts the calls.
    struct TooLarge(std::sync::atomic::AtomicUsize);

    impl Transport for TooLarge {
        fn post(
            &self,
            _: &str,
            _: Rpc,
            _: NodeId,
            _: Vec<u8>,
            _: Duration,
        ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Box::pin(async { Err(TransportError::Status { status: 413, body: "too large".into() }) })
        }
    }

    fn entry(index: u64, bytes: usize) -> Entry {
        let command =
            Command::ReserveUsername { name: "x".repeat(bytes), canonical: "x".into(), token: "t".into(), ttl_ms: 1 };
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Batch(vec![Proposal { at_ms: 0, command }])),
        }
    }

    fn append(entries: Vec<Entry>) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: openraft::Vote::new_committed(1, 1),
            prev_log_id: None,
            entries,
            leader_commit: None,
        }
    }

    // An append over APPEND_BYTES_MAX is never sent: openraft is told how many entries fit. A
    // follower's 413 tells it to send half. Either way it shrinks the batch, where a network
    // error would make it re-send the same bytes forever.
    #[tokio::test]
    async fn oversized_appends_come_back_as_payload_too_large() {
        let transport = Arc::new(TooLarge(Default::default()));
        let mut conn = Connection {
            transport: transport.clone(),
            stages: Arc::default(),
            snapshots: None,
            target: 2,
            addr: "peer:1".into(),
        };
        let option = RPCOption::new(Duration::from_millis(100));
        // Phase 1: five entries of a little over 1 MiB: three fit in 4 MiB, and nothing is sent.
        let big: Vec<Entry> = (1..=5).map(|i| entry(i, 1024 * 1024 + 100)).collect();
        match conn.append_entries(append(big), option.clone()).await {
            Err(RPCError::PayloadTooLarge(p)) => assert_eq!(p.entries_hint(), 3),
            other => panic!("expected PayloadTooLarge, got {other:?}"),
        }
        assert_eq!(transport.0.load(std::sync::atomic::Ordering::Relaxed), 0, "nothing was sent");
        // Phase 2: small entries go out; the peer's 413 asks for half of them.
        let small: Vec<Entry> = (1..=8).map(|i| entry(i, 10)).collect();
        match conn.append_entries(append(small), option.clone()).await {
            Err(RPCError::PayloadTooLarge(p)) => assert_eq!(p.entries_hint(), 4),
            other => panic!("expected PayloadTooLarge, got {other:?}"),
        }
        // Phase 3: one entry that is still refused is a plain network error (nothing to shrink).
        match conn.append_entries(append(vec![entry(1, 10)]), option).await {
            Err(RPCError::Network(_)) => {}
            other => panic!("expected a network error, got {other:?}"),
        }
    }
}
