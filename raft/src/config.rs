//! The store's settings, their defaults, and the rules between them.
//!
//! The node's command line takes its defaults from here, so a default is written once.

use std::path::PathBuf;

use openraft::{Config, SnapshotPolicy};

use crate::inject::Inject;
use crate::types::NodeId;

/// Default leader heartbeat period.
pub const HEARTBEAT_INTERVAL_DEFAULT_MS: u64 = 100;
/// Default least election timeout; the default greatest is twice this.
pub const ELECTION_TIMEOUT_MIN_DEFAULT_MS: u64 = 500;
/// Default entries between snapshots.
pub const SNAPSHOT_LOGS_DEFAULT: u64 = 10_000;
/// Default entries kept in the log behind a snapshot.
pub const LOGS_KEPT_AFTER_SNAPSHOT_DEFAULT: u64 = 1_000;
/// Default budget of a write, from its proposal to its commit. Under the 2 s a client is promised
/// for an answer, with room for the wait to apply it locally.
pub const PROPOSE_TIMEOUT_DEFAULT_MS: u64 = 1_500;
/// Default budget of a linearizable read's read-index round.
pub const READ_TIMEOUT_DEFAULT_MS: u64 = 1_500;

/// How long one snapshot chunk RPC may take: [`SNAPSHOT_CHUNK_BYTES`] read from the leader's
/// snapshot file and written into the follower's receiving file.
pub const SNAPSHOT_CHUNK_TIMEOUT_MS: u64 = 10_000;
/// How long the *last* chunk's RPC may take: the follower answers it only once the whole
/// snapshot is installed into its state database, which takes about 5 s per GiB on this
/// project's machine (a 10 M-account snapshot, 3.4 GiB, installed in about 50 s). With the
/// chunk timeout instead, a leader gave up on every install past 10 s and sent the whole
/// snapshot again while the first install was still running (docs/SCALING.md). Ten minutes
/// covers about 100 GiB at that rate; openraft's own bound on a snapshot RPC is set to it too,
/// and the transport applies the chunk timeout to every other chunk.
pub const SNAPSHOT_INSTALL_TIMEOUT_MS: u64 = 600_000;
/// Bytes of snapshot per install RPC (openraft's chunked transfer): well under the Raft body
/// limit, and the most of a snapshot either side holds in memory for the transfer.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 4 * 1024 * 1024;
/// Most entries in one append RPC. Entries are batches (see `proposer`), so 64 entries carry up
/// to 32,768 commands; the byte cap of an append is [`crate::network::APPEND_BYTES_MAX`].
const APPEND_ENTRIES_PER_RPC_MAX: u64 = 64;

/// Settings of the replicated store. Every duration's unit is in its name.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// This node's id (from 1).
    pub id: NodeId,
    /// The address peers reach this node at.
    pub advertise: String,
    /// Where the log and state databases live.
    pub data_dir: PathBuf,
    /// Leader heartbeat period.
    pub heartbeat_interval_ms: u64,
    /// A follower that hears no leader for a random time in [min, max) starts an election.
    pub election_timeout_min_ms: u64,
    /// See `election_timeout_min_ms`.
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_logs: u64,
    /// Entries kept in the log behind the last snapshot, so slightly lagging followers catch up
    /// from the log rather than from a snapshot.
    pub logs_kept_after_snapshot: u64,
    /// A write that has not committed by then answers UNAVAILABLE.
    pub propose_timeout_ms: u64,
    /// A linearizable read that cannot confirm the read index by then answers UNAVAILABLE.
    pub read_timeout_ms: u64,
    /// Deliberate bugs, for the fault simulation only (see [`Inject`]). None by default.
    pub inject: Inject,
}

/// A rule of [`StoreConfig`] that a configuration breaks, with the values that break it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Ids start at 1 (0 means "whoever answers" on the wire).
    #[error("node id must be at least 1, got 0")]
    ZeroId,
    /// A heartbeat must come well within an election timeout, or followers elect while the
    /// leader is healthy.
    #[error(
        "heartbeat interval ({heartbeat_ms} ms) must be > 0 and < the election timeout min ({election_min_ms} ms)"
    )]
    Heartbeat {
        /// The heartbeat interval.
        heartbeat_ms: u64,
        /// The least election timeout.
        election_min_ms: u64,
    },
    /// Election timeouts are drawn from [min, max): the range must not be empty.
    #[error("election timeout min ({min_ms} ms) must be < max ({max_ms} ms)")]
    ElectionRange {
        /// The least election timeout.
        min_ms: u64,
        /// The greatest election timeout.
        max_ms: u64,
    },
    /// A snapshot after every 0 entries is no policy.
    #[error("snapshot logs must be at least 1")]
    ZeroSnapshotLogs,
    /// openraft's own checks of the configuration built from these settings.
    #[error("openraft refused the configuration: {0}")]
    Raft(String),
}

impl StoreConfig {
    /// Defaults for a node with `id` at `advertise`, storing under `data_dir`.
    pub fn new(id: NodeId, advertise: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            id,
            advertise: advertise.into(),
            data_dir: data_dir.into(),
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_DEFAULT_MS,
            election_timeout_min_ms: ELECTION_TIMEOUT_MIN_DEFAULT_MS,
            election_timeout_max_ms: ELECTION_TIMEOUT_MIN_DEFAULT_MS * 2,
            snapshot_logs: SNAPSHOT_LOGS_DEFAULT,
            logs_kept_after_snapshot: LOGS_KEPT_AFTER_SNAPSHOT_DEFAULT,
            propose_timeout_ms: PROPOSE_TIMEOUT_DEFAULT_MS,
            read_timeout_ms: READ_TIMEOUT_DEFAULT_MS,
            inject: Inject::default(),
        }
    }

    /// Checks the rules between fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(ConfigError::ZeroId);
        }
        if self.heartbeat_interval_ms == 0 || self.heartbeat_interval_ms >= self.election_timeout_min_ms {
            return Err(ConfigError::Heartbeat {
                heartbeat_ms: self.heartbeat_interval_ms,
                election_min_ms: self.election_timeout_min_ms,
            });
        }
        if self.election_timeout_min_ms >= self.election_timeout_max_ms {
            return Err(ConfigError::ElectionRange {
                min_ms: self.election_timeout_min_ms,
                max_ms: self.election_timeout_max_ms,
            });
        }
        if self.snapshot_logs == 0 {
            return Err(ConfigError::ZeroSnapshotLogs);
        }
        Ok(())
    }

    /// The openraft configuration these settings stand for, validated by openraft too.
    pub(crate) fn openraft(&self) -> Result<Config, ConfigError> {
        self.validate()?;
        Config {
            cluster_name: "raftgraph".into(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            install_snapshot_timeout: SNAPSHOT_INSTALL_TIMEOUT_MS,
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(staggered_snapshot_logs(self.snapshot_logs, self.id)),
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            max_payload_entries: APPEND_ENTRIES_PER_RPC_MAX,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ConfigError::Raft(e.to_string()))
    }
}

/// Entries between this node's snapshots: `snapshot_logs` stretched by `(id mod 8)` sixteenths,
/// so that the members of a cluster do not all build a snapshot at the same log index (ids 1, 2
/// and 3 snapshot every 1.0625, 1.125 and 1.1875 × `snapshot_logs` entries; under 16 entries,
/// as in tests, exactly `snapshot_logs`). At 10 M accounts three co-located nodes each wrote a
/// 3.4 GiB snapshot at the same index and the shared disk stalled them all (docs/SCALING.md);
/// with their own disks the cost is CPU and I/O on every member at once, which staggering spreads.
pub(crate) fn staggered_snapshot_logs(snapshot_logs: u64, id: NodeId) -> u64 {
    snapshot_logs + snapshot_logs / 16 * (id % 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_snapshot_at_different_indexes_and_tiny_settings_stay_exact() {
        let every: Vec<u64> = (1..=3).map(|id| staggered_snapshot_logs(10_000, id)).collect();
        assert_eq!(every, vec![10_625, 11_250, 11_875]);
        assert_eq!(staggered_snapshot_logs(10, 3), 10);
        assert_eq!(staggered_snapshot_logs(10_000, 8), 10_000);
    }

    // Each rule names itself and its values; the defaults pass all of them.
    #[test]
    fn each_rule_is_named_with_its_values() {
        let ok = StoreConfig::new(1, "a:1", "/tmp/x");
        ok.openraft().expect("defaults are valid");
        let with = |f: fn(&mut StoreConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert_eq!(with(|c| c.id = 0), ConfigError::ZeroId);
        assert_eq!(
            with(|c| c.heartbeat_interval_ms = 600),
            ConfigError::Heartbeat { heartbeat_ms: 600, election_min_ms: 500 }
        );
        assert_eq!(with(|c| c.election_timeout_max_ms = 500), ConfigError::ElectionRange { min_ms: 500, max_ms: 500 });
        assert_eq!(with(|c| c.snapshot_logs = 0), ConfigError::ZeroSnapshotLogs);
    }
}
