//! The replicated store: Raft (openraft 0.9) over redb.
//!
//! Every change to the state is a [`Command`] in the Raft log, applied in the same order on every
//! node by a deterministic state machine over redb tables. This crate knows nothing of GraphQL
//! or HTTP servers: the node crate mounts the RPC handlers, the schema crate talks to [`Store`].
//!
//! Its modules are private; this file chooses the public API (as redb's lib.rs does). The one
//! public module is [`model`], the domain's vocabulary and rules, which the schema shares.
//!
//! Rooms, one line each:
//! - `model`: the domain's home: rows, refusals, and the pure rules apply and schema share.
//! - `command`: commands and responses: the log's wire contract.
//! - `events`: the event feed's types (numbered at apply, resumable on any node).
//! - `types`: the openraft type configuration; a log entry carries a batch of proposals.
//! - `config`: the store's settings, defaults and the rules between them ([`ConfigError`]).
//! - `error`: why the store could not serve a request ([`StoreError`]).
//! - `store`: the facade the schema uses: propose, read at a consistency, the cluster.
//! - `proposer`: batches concurrent proposals into one entry (group commit).
//! - `router`: who leads; local writes, forwarding, read-index rounds, the leader's checks.
//! - `read_index`: concurrent linearizable reads share one leadership confirmation.
//! - `cluster`: bootstrap, join, admit; cluster status and readiness.
//! - `network`: node-to-node RPC, both halves, named by one [`Rpc`]; appends bounded in bytes.
//! - `peer_auth`: HMAC signatures of node-to-node requests (the secret never travels).
//! - `log_store`: the Raft log in its own redb file (`RaftLogStorage`).
//! - `state_machine`: apply, reads and snapshots over the state redb file (`RaftStateMachine`).
//! - `backup`: a consistent backup streamed from a running node; restoring a new data dir.
//! - `stages`: per-stage latency histograms of the write and read paths (exported as metrics).
//! - `clock`: the wall clock, read in one place.
//! - `inject`: bugs the fault simulation can switch on to prove its checker finds them.

mod backup;
mod clock;
mod cluster;
mod command;
mod config;
mod error;
mod events;
mod inject;
mod log_store;
pub mod model;
mod network;
mod peer_auth;
mod proposer;
mod read_index;
mod router;
mod stages;
mod state_machine;
mod store;
mod types;

pub use backup::{restore_backup, Backup, RestoreOutcome, BACKUP_CHUNKS_IN_FLIGHT, BACKUP_CHUNK_BYTES, RESTORED_FILE};
pub use clock::now_ms;
pub use cluster::{
    ClusterStatus, JoinOutcome, MemberStatus, Phase, Readiness, READY_APPLY_LAG_MAX, READY_PROBE_TIMEOUT_MS,
};
pub use command::{Command, Response};
pub use config::{
    ConfigError, StoreConfig, ELECTION_TIMEOUT_MIN_DEFAULT_MS, HEARTBEAT_INTERVAL_DEFAULT_MS,
    LOGS_KEPT_AFTER_SNAPSHOT_DEFAULT, PROPOSE_TIMEOUT_DEFAULT_MS, READ_TIMEOUT_DEFAULT_MS, SNAPSHOT_CHUNK_BYTES,
    SNAPSHOT_CHUNK_TIMEOUT_MS, SNAPSHOT_INSTALL_TIMEOUT_MS, SNAPSHOT_LOGS_DEFAULT,
};
pub use error::{StoreError, RETRY_AFTER_MS};
pub use events::{chat_topic, sale_topic, Event, EventPayload, ACCOUNTS_TOPIC, EVENTS_RETAINED_MAX, TWEETS_TOPIC};
pub use inject::Inject;
pub use log_store::{LogError, LogStore, LOG_CACHE_BYTES};
pub use model::{DomainError, ErrorCode, ProfileChange, Role, User};
pub use network::server::FORWARDED_CLOCK_SKEW_MAX_MS;
pub use network::{
    sign, ForwardError, HttpTransport, JoinRequest, Network, PeerStatus, Rpc, Transport, TransportError,
    APPEND_BYTES_MAX,
};
pub use peer_auth::{AuthError, PeerAuth, SignedBody, PEER_CLOCK_SKEW_MAX_MS, PEER_NONCES_MAX, SIGNATURE_HEADER};
pub use proposer::{COMMAND_BYTES_MAX, PROPOSAL_BATCHES_IN_FLIGHT_MAX, PROPOSAL_BATCH_BYTES_MAX, PROPOSAL_BATCH_MAX};
pub use stages::{Histogram, HistogramSnapshot, Stages, BUCKET_BOUNDS_US};
pub use state_machine::{
    BackupHead, ReadView, SmError, SnapshotProgress, StateDigest, StateMachine, TopicWatch, BACKUP_DIGEST_BYTES,
    BACKUP_MAGIC, SNAPSHOT_IO_BUFFER_BYTES, SNAPSHOT_ROW_BYTES_MAX, STATE_CACHE_BYTES, STATE_DURABLE_INTERVAL_MS,
    TOPIC_RECENT_EVENTS_MAX,
};
pub use store::{Consistency, Read, Store, StoreStats, Written, APPLY_WAIT_AFTER_WRITE_MIN_MS};
pub use types::{Batch, BatchResponse, Entry, NodeId, Proposal, StorageError, TypeConfig};
