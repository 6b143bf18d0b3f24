//! Groups concurrent proposals into one Raft entry.
//!
//! openraft 0.9 appends and flushes each `client_write` on its own, so one command per entry
//! would cost one fsync and one replication round each. Instead, commands wait in a bounded
//! queue; a batch is cut whenever one of the `PROPOSAL_BATCHES_IN_FLIGHT_MAX` pipeline slots is
//! free, so the slower the log, the larger the batches. This is group commit, not a lock: no
//! command waits for another to be applied before it can join a batch.
//!
//! Followers batch too, and forward each batch to the leader, where it joins the leader's own
//! queue as one item: the leader cuts entries from everything queued, local and forwarded, so
//! entry size does not shrink as the cluster grows.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

use crate::error::StoreError;
use crate::router::Router;
use crate::types::{Batch, BatchResponse, Proposal};

/// Most commands in one log entry.
pub const PROPOSAL_BATCH_MAX: usize = 512;
/// Most bytes of commands (as encoded in the log) in one log entry. With
/// [`crate::network::APPEND_BYTES_MAX`] this bounds what one append RPC carries, so that an
/// entry always reaches a follower within the append timeout (openraft's is the heartbeat
/// interval): an entry that could not would be re-sent forever and cost the leader its quorum.
/// A command alone is at most [`COMMAND_BYTES_MAX`], so one always fits.
pub const PROPOSAL_BATCH_BYTES_MAX: usize = 1024 * 1024;
/// Most bytes one command may take in the log. The GraphQL layer's argument limits keep every
/// real command far below this; it is the store's own guard, checked before anything is queued.
pub const COMMAND_BYTES_MAX: usize = 512 * 1024;
/// Batches proposed but not yet applied. More overlaps replication with the next append; fewer
/// makes batches larger, and every entry costs a redb write transaction on each node, an
/// append RPC per follower and an apply run, so on CPU-bound nodes fewer is faster.
///
/// Measured (docs/BENCHMARKS.md, "Second: fewer pipeline slots"), claims at 64 clients:
/// one node 7,704/s with 4, 9,489/s with 2, 11,091/s with 1; three nodes 4,406 / 4,824 / 5,117;
/// latency at 8 clients the same for all three. 2 rather than 1: on a real network a second
/// slot lets a batch start while the previous one is still replicating, which loopback cannot
/// show, and it keeps most of the gain.
pub const PROPOSAL_BATCHES_IN_FLIGHT_MAX: usize = 2;
/// Commands waiting for a batch. Past this, `propose` waits for room (backpressure).
pub const PROPOSALS_QUEUED_MAX: usize = 16_384;

/// Proposals that must stay together (one caller's command, or a follower's forwarded batch)
/// and where to send their responses, in the same order, with the index of the entry that
/// carried them.
struct Pending {
    proposals: Vec<Proposal>,
    reply: oneshot::Sender<Result<BatchResponse, StoreError>>,
    /// When the caller gives up: set when it was queued, so time spent waiting for a pipeline
    /// slot counts against the same budget (without quorum, slots stay busy until their own
    /// deadlines; a write must still answer UNAVAILABLE within one budget, not two).
    deadline: Instant,
    /// When it joined the queue, for the `propose_queue` stage.
    queued: std::time::Instant,
    /// The proposals' encoded size, for [`PROPOSAL_BATCH_BYTES_MAX`].
    bytes: usize,
}

/// The queue's sending half; the batching task ends when it is dropped.
pub(crate) struct Proposer {
    tx: mpsc::Sender<Pending>,
}

impl Proposer {
    /// Starts the batching task, which submits batches through `router`.
    pub(crate) fn start(router: Arc<Router>) -> Proposer {
        let (tx, rx) = mpsc::channel(PROPOSALS_QUEUED_MAX);
        tokio::spawn(batch(router, rx));
        Proposer { tx }
    }

    /// Queues proposals (`bytes` long, as encoded) for the next batch and waits for their
    /// responses, giving up at `deadline`.
    pub(crate) async fn enqueue(
        &self,
        proposals: Vec<Proposal>,
        bytes: usize,
        deadline: Instant,
    ) -> Result<BatchResponse, StoreError> {
        let (reply, rx) = oneshot::channel();
        let pending = Pending { proposals, reply, deadline, queued: std::time::Instant::now(), bytes };
        match tokio::time::timeout_at(deadline, self.tx.send(pending)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(StoreError::unavailable("store is shutting down")),
            Err(_) => return Err(StoreError::unavailable("the proposal queue stayed full until the deadline")),
        }
        rx.await.map_err(|_| StoreError::unknown("the proposal was dropped before it was answered"))?
    }
}

/// The batching task: cuts batches from the queue whenever a pipeline slot is free.
async fn batch(router: Arc<Router>, mut rx: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(PROPOSAL_BATCHES_IN_FLIGHT_MAX));
    // A proposal that would have pushed the previous batch past its byte cap starts the next.
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        // Wait for a pipeline slot before cutting the batch: whatever arrives meanwhile joins.
        let permit = match tokio::time::timeout_at(first.deadline, slots.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return,
            Err(_) => {
                // Its budget ran out in the queue: it reached no log, so it is safe to retry.
                let e =
                    StoreError::unavailable("no pipeline slot freed before the deadline: the log is not committing");
                let _ = first.reply.send(Err(e));
                continue;
            }
        };
        let mut deadline = first.deadline;
        let mut count = first.proposals.len();
        let mut bytes = first.bytes;
        let mut pending = vec![first];
        while count < PROPOSAL_BATCH_MAX {
            match rx.try_recv() {
                Ok(p) if bytes + p.bytes > PROPOSAL_BATCH_BYTES_MAX => {
                    carried = Some(p);
                    break;
                }
                Ok(p) => {
                    count += p.proposals.len();
                    bytes += p.bytes;
                    deadline = deadline.min(p.deadline);
                    pending.push(p);
                }
                Err(_) => break,
            }
        }
        let router = router.clone();
        tokio::spawn(async move {
            let mut proposals = Vec::with_capacity(count);
            let mut replies = Vec::with_capacity(pending.len());
            let stats = router.stats();
            for p in pending {
                stats.stages.propose_queue.since(p.queued);
                replies.push((p.proposals.len(), p.reply));
                proposals.extend(p.proposals);
            }
            stats.batches.fetch_add(1, Ordering::Relaxed);
            stats.commands.fetch_add(count as u64, Ordering::Relaxed);
            match router.submit_batch(Batch(proposals), deadline).await {
                Ok(resp) if resp.responses.len() == count => {
                    let index = resp.index;
                    let mut responses = resp.responses.into_iter();
                    for (n, reply) in replies {
                        let _ =
                            reply.send(Ok(BatchResponse { index, responses: responses.by_ref().take(n).collect() }));
                    }
                }
                Ok(resp) => {
                    let e = StoreError::internal(format!(
                        "batch of {count} answered with {} responses",
                        resp.responses.len()
                    ));
                    for (_, reply) in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
                Err(e) => {
                    for (_, reply) in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            drop(permit);
        });
    }
}
