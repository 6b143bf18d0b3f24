//! Node-to-node RPC, both sides: the client half openraft replicates through
//! ([`replication`]), the forwarding and read-index calls the router makes, and the server half
//! that answers them all ([`server`]).
//!
//! Every RPC is `POST http://{addr}/raft/{name}` with a JSON body, signed with the cluster secret
//! ([`crate::peer_auth`]: the secret itself never travels); the answer is a JSON `Result`. Both
//! sides name an RPC by one [`Rpc`]. The byte-moving part is a [`Transport`] so a simulation can
//! put its own network underneath the same code.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::peer_auth::{PeerAuth, SIGNATURE_HEADER};
use crate::types::NodeId;

pub(crate) mod replication;
pub(crate) mod server;

pub use replication::Network;

/// The node-to-node RPCs, by the name that is their path (`/raft/{name}`) and part of their
/// signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rpc {
    /// openraft's log replication and heartbeats.
    Append,
    /// openraft's elections.
    Vote,
    /// openraft's snapshot installation.
    Snapshot,
    /// A follower's batch of proposals, for the leader to commit.
    Forward,
    /// A follower asks the leader to confirm its leadership and name its commit index.
    ReadIndex,
    /// A new node asks to be added to the cluster.
    Join,
    /// Whether a node holds Raft state (asked before bootstrapping).
    Status,
}

impl Rpc {
    /// Every RPC.
    pub const ALL: [Rpc; 7] =
        [Rpc::Append, Rpc::Vote, Rpc::Snapshot, Rpc::Forward, Rpc::ReadIndex, Rpc::Join, Rpc::Status];

    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Rpc::Append => "append",
            Rpc::Vote => "vote",
            Rpc::Snapshot => "snapshot",
            Rpc::Forward => "forward",
            Rpc::ReadIndex => "read_index",
            Rpc::Join => "join",
            Rpc::Status => "status",
        }
    }

    /// The RPC named `name` on the wire, if any.
    pub fn from_name(name: &str) -> Option<Rpc> {
        Rpc::ALL.into_iter().find(|r| r.name() == name)
    }

    /// True for the RPCs a caller may address to "whoever answers" (target id 0), because it
    /// does not know the id at that address yet: a joining node, or one about to bootstrap.
    pub fn to_any_node(self) -> bool {
        matches!(self, Rpc::Join | Rpc::Status)
    }
}

impl std::fmt::Display for Rpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Most bytes of one append RPC's body. openraft gives an append one heartbeat interval to
/// answer; a body it cannot move, decode and persist in that time is re-sent forever, and the
/// leader loses its quorum. Past this, the network tells openraft `PayloadTooLarge` with the
/// number of entries that do fit, and it sends fewer (a follower's HTTP 413 does the same).
/// Entries are at most [`crate::proposer::PROPOSAL_BATCH_BYTES_MAX`], so one always fits.
pub const APPEND_BYTES_MAX: usize = 4 * 1024 * 1024;

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
    /// known yet: [`Rpc::to_any_node`] only) with [`sign`].
    fn post(
        &self,
        addr: &str,
        rpc: Rpc,
        to: NodeId,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>>;
}

/// The [`SIGNATURE_HEADER`] value of a request, stamped with this machine's clock.
pub fn sign(auth: &PeerAuth, rpc: Rpc, to: NodeId, body: &[u8]) -> (&'static str, String) {
    (SIGNATURE_HEADER, auth.sign(rpc.name(), to, body, crate::clock::now_ms()))
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
        rpc: Rpc,
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
    rpc: Rpc,
    to: NodeId,
    req: &Req,
    timeout: Duration,
) -> Result<Resp, TransportError> {
    let body = serde_json::to_vec(req).map_err(|e| TransportError::Decode(e.to_string()))?;
    call_encoded(transport, addr, rpc, to, body, timeout).await
}

pub(crate) async fn call_encoded<Resp: DeserializeOwned>(
    transport: &dyn Transport,
    addr: &str,
    rpc: Rpc,
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

/// The head of a snapshot chunk: everything of openraft's `InstallSnapshotRequest` but its
/// data, which travels raw after it (see [`encode_snapshot_chunk`]).
#[derive(serde::Serialize, serde::Deserialize)]
struct ChunkHead {
    vote: openraft::Vote<crate::types::NodeId>,
    meta: crate::types::SnapshotMeta,
    offset: u64,
    done: bool,
    /// The whole snapshot's size in bytes, when the sender knows it (older nodes send none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
}

/// A snapshot chunk as one body: the head's length (u32, big-endian), the head as JSON, then the
/// chunk's bytes as they are. JSON would spell each byte as a number (about 3.6 bytes each).
pub(crate) fn encode_snapshot_chunk(
    req: &openraft::raft::InstallSnapshotRequest<crate::TypeConfig>,
    total: Option<u64>,
) -> Result<Vec<u8>, String> {
    let head = ChunkHead { vote: req.vote, meta: req.meta.clone(), offset: req.offset, done: req.done, total };
    let head = serde_json::to_vec(&head).map_err(|e| e.to_string())?;
    let mut body = Vec::with_capacity(4 + head.len() + req.data.len());
    body.extend_from_slice(&(head.len() as u32).to_be_bytes());
    body.extend_from_slice(&head);
    body.extend_from_slice(&req.data);
    Ok(body)
}

/// The inverse of [`encode_snapshot_chunk`]: the request and the snapshot's total size.
#[allow(clippy::type_complexity)]
pub(crate) fn decode_snapshot_chunk(
    body: &[u8],
) -> Result<(openraft::raft::InstallSnapshotRequest<crate::TypeConfig>, Option<u64>), String> {
    let (len, rest) = body.split_at_checked(4).ok_or("snapshot chunk: no head length")?;
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let (head, data) = rest.split_at_checked(len).ok_or("snapshot chunk: truncated head")?;
    let head: ChunkHead = serde_json::from_slice(head).map_err(|e| format!("snapshot chunk head: {e}"))?;
    let req = openraft::raft::InstallSnapshotRequest {
        vote: head.vote,
        meta: head.meta,
        offset: head.offset,
        data: data.to_vec(),
        done: head.done,
    };
    Ok((req, head.total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(done: bool) -> openraft::raft::InstallSnapshotRequest<crate::TypeConfig> {
        openraft::raft::InstallSnapshotRequest {
            vote: openraft::Vote::new(3, 1),
            meta: crate::types::SnapshotMeta { snapshot_id: "3-1-99-7".into(), ..Default::default() },
            offset: 4096,
            data: vec![0, 1, 2, 255],
            done,
        }
    }

    // A follower reports "bytes received of total" from what each chunk says; a chunk from a
    // node that does not send the total still decodes.
    #[test]
    fn a_snapshot_chunk_carries_its_bytes_raw_and_the_total_when_known() {
        let body = encode_snapshot_chunk(&chunk(false), Some(1 << 20)).expect("encode");
        let (back, total) = decode_snapshot_chunk(&body).expect("decode");
        assert_eq!(
            (back.offset, back.data.as_slice(), back.done, total),
            (4096, &[0u8, 1, 2, 255][..], false, Some(1 << 20))
        );
        assert_eq!(back.meta.snapshot_id, "3-1-99-7");
        let (_, total) =
            decode_snapshot_chunk(&encode_snapshot_chunk(&chunk(true), None).expect("encode")).expect("decode");
        assert_eq!(total, None);
        assert!(decode_snapshot_chunk(&body[..body.len().min(10)]).is_err());
    }
}
