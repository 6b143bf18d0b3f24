//! Node-to-node RPC: openraft's network over HTTP, plus the forwarding and read-index calls.
//!
//! Every RPC is `POST http://{addr}/raft/{name}` with a JSON body, signed with the cluster secret
//! ([`crate::peer_auth`]: the secret itself never travels); the answer is a JSON `Result`. The
//! byte-moving part is a [`Transport`] so a simulation can put its own network underneath the
//! same code.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
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
use serde::{Deserialize, Serialize};

use crate::peer_auth::{PeerAuth, SIGNATURE_HEADER};
use crate::stages::Stages;
use crate::types::{NodeId, TypeConfig};

/// Most bytes of one append RPC's body. openraft gives an append one heartbeat interval to
/// answer; a body it cannot move, decode and persist in that time is re-sent forever, and the
/// leader loses its quorum. Past this, the network tells openraft `PayloadTooLarge` with the
/// number of entries that do fit, and it sends fewer (a follower's HTTP 413 does the same).
/// Entries are at most [`crate::proposer::PROPOSAL_BATCH_BYTES_MAX`], so one always fits.
pub const APPEND_BYTES_MAX: usize = 4 * 1024 * 1024;

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
    /// POSTs `body` to `http://{addr}/raft/{rpc}`, signed for node `to` (0 when its id is not
    /// known yet: `join` and `status` only) with [`sign`].
    fn post(
        &self,
        addr: &str,
        rpc: &str,
        to: NodeId,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>>;
}

/// The [`SIGNATURE_HEADER`] value of a request, stamped with this machine's clock.
pub fn sign(auth: &PeerAuth, rpc: &str, to: NodeId, body: &[u8]) -> (&'static str, String) {
    (SIGNATURE_HEADER, auth.sign(rpc, to, body, crate::peer_auth::now_ms()))
}

/// The production transport: HTTP/1.1 (or HTTPS) through a pooled reqwest client.
pub struct HttpTransport {
    client: reqwest::Client,
    auth: PeerAuth,
    scheme: &'static str,
}

impl HttpTransport {
    /// A plain-HTTP transport that signs with the cluster secret `secret`.
    pub fn new(secret: String) -> Self {
        let client = Self::builder().build().unwrap_or_default();
        HttpTransport { client, auth: PeerAuth::new(secret.as_bytes(), 0), scheme: "http" }
    }

    /// An HTTPS transport that trusts only the certificates in `roots_pem` (the cluster's CA,
    /// or its one self-signed certificate), not the public web's.
    pub fn with_tls(secret: String, roots_pem: &[u8]) -> Result<Self, String> {
        let roots = reqwest::Certificate::from_pem_bundle(roots_pem).map_err(|e| format!("peer CA: {e}"))?;
        let mut builder = Self::builder().use_rustls_tls().tls_built_in_root_certs(false);
        for root in roots {
            builder = builder.add_root_certificate(root);
        }
        let client = builder.build().map_err(|e| format!("TLS client: {e}"))?;
        Ok(HttpTransport { client, auth: PeerAuth::new(secret.as_bytes(), 0), scheme: "https" })
    }

    fn builder() -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .pool_max_idle_per_host(32)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_millis(500))
            // A peer's answer is never a redirect; following one would send a signed request
            // (and its body) to wherever a member's address points it.
            .redirect(reqwest::redirect::Policy::none())
    }
}

impl Transport for HttpTransport {
    fn post(
        &self,
        addr: &str,
        rpc: &str,
        to: NodeId,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        let (name, signature) = sign(&self.auth, rpc, to, &body);
        let req = self
            .client
            .post(format!("{}://{addr}/raft/{rpc}", self.scheme))
            .header(name, signature)
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

/// Sends a typed request to node `to` (0: whoever answers at `addr`) and decodes the answer.
pub(crate) async fn call<Req: Serialize, Resp: DeserializeOwned>(
    transport: &dyn Transport,
    addr: &str,
    rpc: &str,
    to: NodeId,
    req: &Req,
    timeout: Duration,
) -> Result<Resp, TransportError> {
    let body = serde_json::to_vec(req).map_err(|e| TransportError::Decode(e.to_string()))?;
    call_encoded(transport, addr, rpc, to, body, timeout).await
}

async fn call_encoded<Resp: DeserializeOwned>(
    transport: &dyn Transport,
    addr: &str,
    rpc: &str,
    to: NodeId,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Resp, TransportError> {
    let bytes = transport.post(addr, rpc, to, body, timeout).await?;
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
        let body = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.rpc_encoded(name, body, option, 1).await
    }

    /// `entries`: how many log entries the body carries, for the hint of a follower's 413.
    async fn rpc_encoded<Resp, E>(
        &self,
        name: &str,
        body: Vec<u8>,
        option: &RPCOption,
        entries: usize,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<Resp, RaftError<NodeId, E>> =
            call_encoded(self.transport.as_ref(), &self.addr, name, self.target, body, option.hard_ttl())
                .await
                .map_err(|e| match e {
                    TransportError::Unreachable(_) => RPCError::Unreachable(Unreachable::new(&e)),
                    // The peer's body limit is lower than ours: send fewer entries.
                    TransportError::Status { status: 413, .. } if entries > 1 => {
                        RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint((entries / 2) as u64))
                    }
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
        let body = serde_json::to_vec(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if body.len() > APPEND_BYTES_MAX && rpc.entries.len() > 1 {
            return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(entries_that_fit(&rpc))));
        }
        let answer = self.rpc_encoded("append", body, &option, rpc.entries.len()).await;
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

/// How many of an append's first entries fit in [`APPEND_BYTES_MAX`] (at least one: an entry is
/// never larger than that).
fn entries_that_fit(rpc: &AppendEntriesRequest<TypeConfig>) -> u64 {
    let mut bytes = 0;
    let mut fit = 0u64;
    for entry in &rpc.entries {
        bytes += crate::store::encoded_len(entry);
        if bytes > APPEND_BYTES_MAX {
            break;
        }
        fit += 1;
    }
    fit.max(1)
}

#[cfg(test)]
mod tests {
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
            _: &str,
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
        let mut conn =
            Connection { transport: transport.clone(), stages: Arc::default(), target: 2, addr: "peer:1".into() };
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
