//! The openraft type configuration and the data that travels through the log.

use serde::{Deserialize, Serialize};

use crate::command::{Command, Response};

/// A node's id in the cluster. Ids start at 1; the lowest id of the initial members bootstraps.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The openraft type configuration of this store.
    ///
    /// One log entry carries a [`Batch`] of commands: openraft 0.9 flushes the log once per
    /// `client_write` call, so the proposer groups concurrent commands into one entry to share
    /// that fsync and the replication round trip (see `proposer.rs`).
    pub TypeConfig:
        D = Batch,
        R = BatchResponse,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = tokio::fs::File,
);

/// One command together with the time it was proposed at.
///
/// The time is stamped by the node that accepted the client's request, before proposing, so
/// apply never reads a clock: it uses `max(last applied time, at_ms)` and time in the state
/// machine never goes back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// Milliseconds since the Unix epoch on the proposing node's clock.
    pub at_ms: i64,
    /// What to do.
    pub command: Command,
}

/// The payload of one normal log entry: commands applied in order, in one redb transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Batch(pub Vec<Proposal>);

/// One response per proposal of a [`Batch`], in the same order, and the log index of the entry
/// that carried them. Blank and membership entries answer with an empty list.
///
/// The index travels back with a forwarded batch, so the follower that took the client's request
/// can wait until it has applied that entry itself before it answers (read-your-writes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct BatchResponse {
    /// The log index of the entry these responses were applied from.
    pub index: u64,
    /// One response per proposal, in order.
    pub responses: Vec<Response>,
}

/// The size of `value` encoded as JSON (as the log stores it), without building the encoding.
pub(crate) fn encoded_len(value: &impl Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Encoding a command cannot fail (no maps with non-string keys); a failure counts as huge.
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// Shorthands for openraft's generic types instantiated with [`TypeConfig`].
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry of this store.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id.
pub type LogId = openraft::LogId<NodeId>;
/// A vote.
pub type Vote = openraft::Vote<NodeId>;
/// The error type openraft's storage traits use.
pub type StorageError = openraft::StorageError<NodeId>;
/// The membership stored with the state.
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
/// A snapshot's metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
/// A snapshot.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
