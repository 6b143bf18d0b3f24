//! The replicated store: Raft (openraft 0.9) over redb.
//!
//! Every change to the state is a [`Command`] in the Raft log, applied in the same order on every
//! node by a deterministic state machine over redb tables. This crate knows nothing of GraphQL
//! or HTTP servers: the node crate mounts the RPC handlers, the schema crate talks to [`Store`].
//!
//! Layout:
//! - `types`: the openraft type configuration; a log entry carries a batch of proposals.
//! - `command`: commands, responses, stable error codes.
//! - `events`: the event feed's types (numbered at apply, resumable on any node).
//! - `names`: username canonical form (NFKC, case fold, TS #39 skeleton) and policy.
//! - `log_store`: the Raft log in its own redb file (`RaftLogStorage`).
//! - `state_machine`: apply, reads and snapshots over the state redb file (`RaftStateMachine`).
//! - `network`: node-to-node RPC over HTTP (`RaftNetworkFactory`), append size bounded.
//! - `peer_auth`: HMAC signatures of node-to-node requests (the secret never travels).
//! - `proposer`: batches concurrent proposals into one entry and forwards them to the leader.
//! - `store`: the narrow handle the schema uses: propose, read at a consistency, cluster status.
//! - `stages`: per-stage latency histograms of the write and read paths (exported as metrics).
//! - `inject`: bugs the fault simulation can switch on to prove its checker finds them.

pub mod command;
pub mod events;
pub mod inject;
mod log_store;
pub mod names;
pub mod network;
pub mod peer_auth;
mod proposer;
mod read_index;
pub mod stages;
pub mod state_machine;
mod store;
pub mod types;

pub use command::{Command, DomainError, ErrorCode, ProfileChange, Response, Role, User};
pub use inject::Inject;
pub use log_store::LogStore;
pub use proposer::{COMMAND_BYTES_MAX, PROPOSAL_BATCH_BYTES_MAX};
pub use stages::Stages;
pub use state_machine::{ReadView, SmError, StateDigest, StateMachine};
pub use store::{
    ClusterStatus, Consistency, MemberStatus, Read, Store, StoreConfig, StoreError, StoreStats, Written,
    APPLY_WAIT_AFTER_WRITE_MIN_MS, FORWARDED_CLOCK_SKEW_MAX_MS, RETRY_AFTER_MS,
};
pub use types::{NodeId, TypeConfig};
