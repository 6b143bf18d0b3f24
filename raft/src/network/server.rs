//! The server half of the node-to-node RPC: what a node does with each [`Rpc`] a peer sends.
//! The caller (the node's `/raft/{rpc}` route) has checked the peer's signature already.

use serde::de::DeserializeOwned;
use serde::Serialize;
// tokio's clock, not std's: the same in production, and simulated time under turmoil.
use tokio::time::Instant;

use super::{ForwardError, JoinRequest, PeerStatus, Rpc};
use crate::cluster;
use crate::error::StoreError;
use crate::router::Leader;
use crate::store::Store;
use crate::types::{encoded_len, Batch, BatchResponse};

/// How far from the leader's own clock the time stamped on a forwarded proposal may be. State
/// machine time never goes back (apply takes the largest stamp so far), so one node with a
/// clock hours ahead would otherwise move every node's time forward for good: reservations
/// would expire and sales end early everywhere. The leader clamps each forwarded stamp into
/// [its clock - this, its clock + this]; NTP keeps real clocks far closer.
pub const FORWARDED_CLOCK_SKEW_MAX_MS: i64 = 1_000;

/// `at_ms` moved into [`FORWARDED_CLOCK_SKEW_MAX_MS`] of `now_ms`.
pub(crate) fn clamp_stamp(at_ms: i64, now_ms: i64) -> i64 {
    at_ms.clamp(now_ms.saturating_sub(FORWARDED_CLOCK_SKEW_MAX_MS), now_ms.saturating_add(FORWARDED_CLOCK_SKEW_MAX_MS))
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("bad request body: {e}"))
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(v).map_err(|e| e.to_string())
}

/// Answers one RPC: the encoded answer, or why the body could not be served (HTTP 400).
pub(crate) async fn serve(store: &Store, rpc: Rpc, body: &[u8]) -> Result<Vec<u8>, String> {
    let router = store.router();
    let raft = router.raft();
    match rpc {
        Rpc::Append => encode(&raft.append_entries(decode(body)?).await),
        Rpc::Vote => encode(&raft.vote(decode(body)?).await),
        Rpc::Snapshot => {
            let (chunk, total) = super::decode_snapshot_chunk(body)?;
            // Noted as it arrives, so the last chunk's bytes show while the snapshot installs;
            // cleared once the last chunk is answered, installed or not (a leader starts over).
            let sm = store.state_machine();
            let (id, received, done) =
                (chunk.meta.snapshot_id.clone(), chunk.offset + chunk.data.len() as u64, chunk.done);
            sm.note_receiving(id.clone(), received, total, false);
            let answer = raft.install_snapshot(chunk).await;
            if done {
                sm.note_receiving(id, received, total, true);
            }
            encode(&answer)
        }
        Rpc::Forward => encode(&accept_forwarded(store, decode(body)?).await),
        Rpc::ReadIndex => {
            let index: Result<u64, ForwardError> = match router.leader() {
                Leader::Me => {
                    store.read_rounds().read_index().await.map_err(|e| ForwardError::unavailable(e.to_string()))
                }
                other => Err(ForwardError::NotLeader { leader: other.known() }),
            };
            encode(&index)
        }
        Rpc::Join => encode(&cluster::admit(router, decode::<JoinRequest>(body)?).await),
        Rpc::Status => {
            let initialized = cluster::holds_state(store.log()).await.unwrap_or(true);
            encode(&PeerStatus { id: router.id(), initialized })
        }
    }
}

/// A follower's batch, arrived at (what it believes is) the leader. It joins this node's queue
/// so that it shares an entry with everything else queued here. A node that does not lead
/// refuses at once, so the follower retries elsewhere rather than hop through us.
async fn accept_forwarded(store: &Store, mut batch: Batch) -> Result<BatchResponse, ForwardError> {
    store.router().check_leading()?;
    // The follower's clock is not ours to trust: see FORWARDED_CLOCK_SKEW_MAX_MS.
    let now = crate::clock::now_ms();
    for p in &mut batch.0 {
        p.at_ms = clamp_stamp(p.at_ms, now);
    }
    // The follower cut its batch under the same byte cap, so it fits one entry.
    let bytes = encoded_len(&batch);
    let deadline = Instant::now() + store.router().propose_timeout();
    match store.proposer().enqueue(batch.0, bytes, deadline).await {
        Ok(responses) => Ok(responses),
        Err(StoreError::Unavailable { message, outcome_unknown, .. }) => {
            Err(ForwardError::Unavailable { message, outcome_unknown })
        }
        Err(StoreError::Internal(m) | StoreError::Invalid(m)) => Err(ForwardError::Internal(m)),
        Err(e) => Err(ForwardError::Internal(e.to_string())),
    }
}
