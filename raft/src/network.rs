//! Node-to-node RPC: openraft's network over HTTP, plus the forwarding and read-index calls.
//!
//! Every RPC is `POST http://{addr}/raft/{name}` with a JSON body and the cluster secret in the
//! [`CLUSTER_SECRET_HEADER`]; the answer is a JSON `Result`. The byte-moving part is a
//! [`Transport`] so a simulation can put its own network underneath the same code.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::stages::Stages;
use crate::types::{NodeId, TypeConfig};

/// The header that carries the cluster secret on every `/raft/` request.
pub const CLUSTER_SECRET_HEADER: &str = "x-cluster-secret";

/// How long a forwarded proposal or read-index request may take before the caller gives up.
pub const FORWARD_TIMEOUT_MS: u64 = 3_000;

/// Why an RPC did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The request never reached the peer (refused, unresolvable, reset before sending): it had
    /// no effect, so it is safe to retry.
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// The request may have been delivered, but no answer came in time.
    #[error("peer did not answer in time: {0}")]
    Timeout(String),
    /// The peer answered with an HTTP error status.
    #[error("peer answered HTTP {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The answer did not decode.
    #[error("bad answer from peer: {0}")]
    Decode(String),
}

/// Moves one request body to a peer and brings the answer back.
pub trait Transport: Send + Sync + 'static {
    /// POSTs `body` to `http://{addr}/raft/{rpc}` with the cluster secret.
    fn post(
        &self,
        addr: &str,
        rpc: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>>;
}

/// The production transport: HTTP/1.1 through a pooled reqwest client.
pub struct HttpTransport {
    client: reqwest::Client,
    secret: String,
}

impl HttpTransport {
    /// A transport that presents `secret` to peers.
    pub fn new(secret: String) -> Self {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(32)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_millis(500))
            .build()
            .unwrap_or_default();
        HttpTransport { client, secret }
    }
}

impl Transport for HttpTransport {
    fn post(
        &self,
        addr: &str,
        rpc: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        let req = self
            .client
            .post(format!("http://{addr}/raft/{rpc}"))
            .header(CLUSTER_SECRET_HEADER, &self.secret)
            .header("content-type", "application/json")
            .timeout(timeout)
            .body(body);
        Box::pin(async move {
            let resp = req.send().await.map_err(|e| {
                if e.is_connect() {
                    TransportError::Unreachable(e.to_string())
                } else {
                    TransportError::Timeout(e.to_string())
                }
            })?;
            let status = resp.status();
            let bytes = resp.bytes().await.map_err(|e| TransportError::Timeout(e.to_string()))?;
            if !status.is_success() {
                let body = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
                return Err(TransportError::Status { status: status.as_u16(), body });
            }
            Ok(bytes.to_vec())
        })
    }
}

/// Sends a typed request and decodes the typed answer.
pub(crate) async fn call<Req: Serialize, Resp: DeserializeOwned>(
    transport: &dyn Transport,
    addr: &str,
    rpc: &str,
    req: &Req,
    timeout: Duration,
) -> Result<Resp, TransportError> {
    let body = serde_json::to_vec(req).map_err(|e| TransportError::Decode(e.to_string()))?;
    let bytes = transport.post(addr, rpc, body, timeout).await?;
    serde_json::from_slice(&bytes).map_err(|e| TransportError::Decode(e.to_string()))
}

/// The error half of forwarded calls (`forward`, `read_index`).
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    /// The peer is not the leader; it names the leader it knows of.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader's id and address, if known.
        leader: Option<(NodeId, String)>,
    },
    /// The peer could not get the request committed (or confirmed) in time.
    #[error("{message}")]
    Unavailable {
        /// What happened.
        message: String,
        /// True when the write reached a leader's log and may still commit.
        outcome_unknown: bool,
    },
    /// Something failed that a retry will not fix.
    #[error("{0}")]
    Internal(String),
}

impl ForwardError {
    /// Certainly not applied: safe to report as plain UNAVAILABLE.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ForwardError::Unavailable { message: message.into(), outcome_unknown: false }
    }
}

/// A request to add a node: first as a learner, then as a voter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The new node's id.
    pub id: NodeId,
    /// The address it serves on.
    pub addr: String,
}

/// What a node says about itself to a peer that is deciding whether to bootstrap.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerStatus {
    /// This node's id.
    pub id: NodeId,
    /// Whether it holds any Raft state (a vote, a log, a membership).
    pub initialized: bool,
}

/// Creates one [`Connection`] per target; openraft keeps it for the replication stream.
#[derive(Clone)]
pub struct Network {
    transport: Arc<dyn Transport>,
    stages: Arc<Stages>,
}

impl Network {
    /// A network over `transport`.
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        Network { transport, stages: Arc::default() }
    }

    /// Records replication round trips into `stages` (shared with the rest of the store).
    pub fn with_stages(mut self, stages: Arc<Stages>) -> Self {
        self.stages = stages;
        self
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        Connection { transport: self.transport.clone(), stages: self.stages.clone(), target, addr: node.addr.clone() }
    }
}

/// openraft's view of one peer.
pub struct Connection {
    transport: Arc<dyn Transport>,
    stages: Arc<Stages>,
    target: NodeId,
    addr: String,
}

impl Connection {
    async fn rpc<Req, Resp, E>(
        &self,
        name: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<Resp, RaftError<NodeId, E>> =
            call(self.transport.as_ref(), &self.addr, name, req, option.hard_ttl()).await.map_err(|e| match e {
                TransportError::Unreachable(_) => RPCError::Unreachable(Unreachable::new(&e)),
                _ => RPCError::Network(NetworkError::new(&e)),
            })?;
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
        let answer = self.rpc("append", &rpc, &option).await;
        self.stages.replicate_rpc.since(started);
        answer
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.rpc("snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.rpc("vote", &rpc, &option).await
    }
}
