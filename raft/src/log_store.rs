//! The Raft log in redb, behind openraft's `RaftLogStorage`.
//!
//! The log lives in its own redb file, apart from the state machine, so that appending (on the
//! Raft core's path) and applying (on the state machine worker) never wait for each other's write
//! lock or fsync. Every append is durable before openraft is told it is flushed: Raft's safety
//! rests on a follower never forgetting an entry it acknowledged.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, LogState, RaftLogReader, StorageIOError};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::stages::Stages;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// Log entries by index, serialized as JSON.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// The vote, the last purged log id and the committed log id.
const LOG_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_log_meta");

const KEY_VOTE: &str = "vote";
const KEY_PURGED: &str = "last_purged";
const KEY_COMMITTED: &str = "committed";

/// The redb-backed Raft log. Cloning shares the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    stages: Arc<Stages>,
}

/// Errors inside the log store; converted to openraft's (much larger) `StorageError` once, at
/// the trait boundary.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// redb failed.
    #[error("raft log storage: {0}")]
    Redb(#[from] redb::Error),
    /// An entry or a meta value did not encode or decode.
    #[error("raft log codec: {0}")]
    Codec(#[from] serde_json::Error),
    /// The blocking task running the I/O died.
    #[error("raft log task: {0}")]
    Task(String),
}

macro_rules! redb_into_log_error {
    ($($t:ty),*) => {$(
        impl From<$t> for LogError {
            fn from(e: $t) -> Self { LogError::Redb(e.into()) }
        }
    )*};
}
redb_into_log_error!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

fn read_err(e: LogError) -> StorageError {
    StorageIOError::new(ErrorSubject::Logs, ErrorVerb::Read, AnyError::new(&e)).into()
}

fn write_err(e: LogError) -> StorageError {
    StorageIOError::new(ErrorSubject::Logs, ErrorVerb::Write, AnyError::new(&e)).into()
}

/// Runs blocking redb work off the async worker threads: an fsync can take milliseconds, and the
/// Raft core must keep answering heartbeats meanwhile.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, LogError> + Send + 'static) -> Result<T, LogError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| LogError::Task(e.to_string()))?
}

/// Memory redb may use to cache the log database's pages (reads and the write buffer
/// together; redb's default is 1 GiB). Replication reads the newest entries, which this holds
/// many of; older ones come from the OS page cache.
pub const LOG_CACHE_BYTES: usize = 64 * 1024 * 1024;

impl LogStore {
    /// Opens (or creates) the log database at `path`.
    pub fn open(path: &Path) -> Result<Self, redb::Error> {
        let db = Database::builder().set_cache_size(LOG_CACHE_BYTES).create(path)?;
        // Create the tables up front so that readers never see "table does not exist".
        let txn = db.begin_write()?;
        txn.open_table(LOG)?;
        txn.open_table(LOG_META)?;
        txn.commit()?;
        Ok(LogStore { db: Arc::new(db), stages: Arc::default() })
    }

    /// Records append timings into `stages` (shared with the rest of the store).
    pub fn with_stages(mut self, stages: Arc<Stages>) -> Self {
        self.stages = stages;
        self
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, LogError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOG_META)?;
        match table.get(key)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
            None => Ok(None),
        }
    }

    async fn put_meta<T: serde::Serialize>(
        &self,
        key: &'static str,
        value: &T,
        durability: Durability,
    ) -> Result<(), LogError> {
        let bytes = serde_json::to_vec(value)?;
        let db = self.db.clone();
        blocking(move || {
            let mut txn = db.begin_write()?;
            txn.set_durability(durability)?;
            txn.open_table(LOG_META)?.insert(key, bytes.as_slice())?;
            Ok(txn.commit()?)
        })
        .await
    }

    /// True when this node has never voted nor held a log entry: a fresh data directory.
    pub async fn is_pristine(&mut self) -> Result<bool, StorageError> {
        let state = self.get_log_state().await?;
        let vote: Option<Vote> = self.get_meta(KEY_VOTE).map_err(read_err)?;
        Ok(state.last_log_id.is_none() && vote.is_none())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(LOG)?;
            let mut out = Vec::new();
            for item in table.range::<u64>((start, end))? {
                let (_, v) = item?;
                out.push(serde_json::from_slice(v.value())?);
            }
            Ok(out)
        })
        .await
        .map_err(read_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let read = || -> Result<LogState<TypeConfig>, LogError> {
            let last_purged: Option<LogId> = self.get_meta(KEY_PURGED)?;
            let txn = self.db.begin_read()?;
            let table = txn.open_table(LOG)?;
            let last = match table.last()? {
                Some((_, v)) => Some(serde_json::from_slice::<Entry>(v.value())?.log_id),
                None => last_purged,
            };
            Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
        };
        read().map_err(read_err)
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        // A vote must survive a crash, or a node could vote twice in one term.
        self.put_meta(KEY_VOTE, vote, Durability::Immediate).await.map_err(write_err)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.get_meta(KEY_VOTE).map_err(read_err)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // The committed id only lets a restarted node re-apply sooner; losing the latest one on a
        // crash is harmless, so it does not pay for an fsync of its own.
        self.put_meta(KEY_COMMITTED, &committed, Durability::None).await.map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED).map_err(read_err)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let started = Instant::now();
        let mut encoded = Vec::new();
        for entry in entries {
            encoded.push((entry.log_id.index, serde_json::to_vec(&entry).map_err(|e| write_err(e.into()))?));
        }
        let db = self.db.clone();
        let stages = self.stages.clone();
        let res = blocking(move || {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(LOG)?;
                for (index, bytes) in &encoded {
                    table.insert(*index, bytes.as_slice())?;
                }
            }
            let committing = Instant::now();
            txn.commit()?;
            stages.log_fsync.since(committing);
            Ok(())
        })
        .await
        .map_err(write_err);
        self.stages.log_append.since(started);
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_write()?;
            txn.open_table(LOG)?.retain_in::<u64, _>(log_id.index.., |_, _| false)?;
            Ok(txn.commit()?)
        })
        .await
        .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(&log_id).map_err(|e| write_err(e.into()))?;
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_write()?;
            // The purge marker and the removal commit together, so the log state stays coherent.
            txn.open_table(LOG_META)?.insert(KEY_PURGED, bytes.as_slice())?;
            txn.open_table(LOG)?.retain_in::<u64, _>(..=log_id.index, |_, _| false)?;
            Ok(txn.commit()?)
        })
        .await
        .map_err(write_err)
    }
}
