//! Backups of a running node and restoring a new data directory from one. The file format is in
//! `state_machine/backup.rs`; this side streams a backup out of the store and seeds the Raft log
//! and the state of a new node.
//!
//! A backup is consistent and complete: it waits for a read index first (like a LINEARIZABLE
//! read), so it holds every write acknowledged before it began, on whichever node it runs, and
//! it copies one read transaction, so it is the state at one applied index.
//!
//! A restore seeds `DIR/state` and `DIR/raft-log.redb` as if the node had installed the backup
//! as a snapshot: the state at the backup's last applied log id, the given members as the
//! voters, and a vote for itself in the backup's term, so the next election has a higher term
//! than any entry it holds. openraft then opens it like any node that has purged its log up to a
//! snapshot: it elects a leader among the members and sends the snapshot to members that have
//! nothing. A crash during a restore leaves `restore.intent`; the next attempt clears what that
//! one wrote and starts again. A finished one leaves [`RESTORED_FILE`], so starting again with
//! the same `--restore` flag starts the node instead of refusing its data dir.

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use openraft::storage::RaftLogStorage as _;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::error::StoreError;
use crate::log_store::LogStore;
use crate::state_machine::{read_head_of, BackupHead, StateMachine, BACKUP_DIGEST_BYTES};
use crate::store::Store;
use crate::types::{NodeId, Vote};

/// Bytes of a backup sent to the response at a time.
pub const BACKUP_CHUNK_BYTES: usize = 1024 * 1024;
/// Chunks queued between the thread reading the tables and the response body. With
/// [`BACKUP_CHUNK_BYTES`] this bounds what a backup in progress holds in memory (a slow reader
/// slows the backup down instead), whatever the state's size.
pub const BACKUP_CHUNKS_IN_FLIGHT: usize = 4;
/// Written into a data dir once a restore into it has finished: which backup it holds.
pub const RESTORED_FILE: &str = "restored.json";
/// Written before a restore touches a data dir, removed when it is done: what a crashed
/// restore left is cleared by the next one.
const RESTORE_INTENT_FILE: &str = "restore.intent";
/// The state and the log inside a data dir (as `Store::open` names them).
const STATE_DIR: &str = "state";
const LOG_FILE: &str = "raft-log.redb";

/// A backup being streamed: its head, known before the first byte, and its bytes in chunks.
/// Dropping the receiver stops the backup (the thread reading the tables sees a closed channel).
pub struct Backup {
    /// What the backup holds.
    pub head: BackupHead,
    /// The file's bytes, in order; an `Err` ends a backup that failed half way (the stream must
    /// then be treated as incomplete).
    pub chunks: mpsc::Receiver<std::io::Result<Vec<u8>>>,
}

/// A `Write` that hands full chunks to a bounded channel, waiting while it is full.
struct ChannelWriter {
    tx: mpsc::Sender<std::io::Result<Vec<u8>>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(BACKUP_CHUNK_BYTES));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the backup's reader went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = BACKUP_CHUNK_BYTES - self.buf.len();
        let n = buf.len().min(room);
        self.buf.extend_from_slice(&buf[..n]);
        if self.buf.len() == BACKUP_CHUNK_BYTES {
            self.send()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            self.send()
        }
    }
}

impl Store {
    /// Starts a backup of this node's state, at least as new as every write acknowledged before
    /// the call (a read-index round first: UNAVAILABLE without a quorum). The tables are read on
    /// a blocking thread, one read transaction, as fast as the receiver takes the chunks.
    pub async fn backup(&self) -> Result<Backup, StoreError> {
        self.linearizable_barrier().await?;
        let sm = self.state_machine().clone();
        let id = self.id();
        let (view, head) = tokio::task::spawn_blocking(move || {
            let view = sm.read()?;
            let head = sm.backup_head(&view, id)?;
            Ok::<_, StoreError>((view, head))
        })
        .await
        .map_err(|e| StoreError::internal(format!("backup task: {e}")))??;
        let (tx, rx) = mpsc::channel(BACKUP_CHUNKS_IN_FLIGHT);
        let streamed = head.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = ChannelWriter { tx: tx.clone(), buf: Vec::with_capacity(BACKUP_CHUNK_BYTES) };
            if let Err(e) = StateMachine::write_backup_blocking(&view, &streamed, &mut out) {
                tracing::warn!(error = %e, "backup stopped");
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        });
        Ok(Backup { head, chunks: rx })
    }
}

/// What [`restore_backup`] did.
#[derive(Debug, Clone)]
pub struct RestoreOutcome {
    /// The backup's head.
    pub head: BackupHead,
    /// The backup's SHA-256, hex.
    pub sha256: String,
    /// True when the data dir already held this backup, restored by an earlier start: nothing
    /// was written.
    pub already: bool,
    /// How long the restore took.
    pub elapsed: Duration,
}

/// What [`RESTORED_FILE`] records.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RestoredRecord {
    sha256: String,
    last_applied_index: u64,
    rows: u64,
    restored_at_ms: i64,
    from: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn invalid(message: String) -> StoreError {
    StoreError::Invalid(message)
}

/// The digest a backup file ends with, hex: its identity, read without reading the file.
fn stored_digest(file: &Path) -> Result<String, StoreError> {
    let mut f = std::fs::File::open(file).map_err(|e| invalid(format!("open backup {}: {e}", file.display())))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len < BACKUP_DIGEST_BYTES as u64 {
        return Err(invalid(format!("{} is not a raftgraph backup (only {len} bytes)", file.display())));
    }
    let mut digest = [0u8; BACKUP_DIGEST_BYTES];
    f.seek(SeekFrom::End(-(BACKUP_DIGEST_BYTES as i64)))
        .and_then(|_| f.read_exact(&mut digest))
        .map_err(|e| invalid(format!("read backup {}: {e}", file.display())))?;
    Ok(hex(&digest))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::internal(format!("sync {}: {e}", dir.display())))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| StoreError::internal(format!("write {}: {e}", path.display())))
}

/// Seeds the data dir `data_dir` of node `id` from the backup `file`, with `members` (id to
/// address, `id` among them) as the new cluster's voters. Refuses a data dir that holds Raft
/// state or state of its own; does nothing (and says so) for one this same backup was restored
/// into before. Every byte of the file is checked against its digest before anything counts.
pub async fn restore_backup(
    file: &Path,
    data_dir: &Path,
    id: NodeId,
    members: &BTreeMap<NodeId, String>,
) -> Result<RestoreOutcome, StoreError> {
    let started = Instant::now();
    if !members.contains_key(&id) {
        return Err(invalid(format!("a restored node must be one of the members; {id} is not in {members:?}")));
    }
    let sha256 = stored_digest(file)?;
    let (state, log) = (data_dir.join(STATE_DIR), data_dir.join(LOG_FILE));
    let record_path = data_dir.join(RESTORED_FILE);
    if let Ok(bytes) = std::fs::read(&record_path) {
        let record: RestoredRecord = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::internal(format!("{} does not parse: {e}", record_path.display())))?;
        if record.sha256 != sha256 {
            return Err(invalid(format!(
                "{} was restored from another backup (sha256 {}, index {}), not {} (sha256 {sha256}): \
                 remove the data dir, or start without --restore",
                data_dir.display(),
                record.sha256,
                record.last_applied_index,
                file.display()
            )));
        }
        let head = read_head_of(file).map_err(|e| invalid(format!("{}: {e}", file.display())))?;
        return Ok(RestoreOutcome { head, sha256, already: true, elapsed: started.elapsed() });
    }
    let intent = data_dir.join(RESTORE_INTENT_FILE);
    if intent.exists() {
        tracing::warn!(dir = %data_dir.display(), "an earlier restore did not finish: clearing what it wrote");
        remove_seeded(&state, &log)?;
    } else if state.exists() || log.exists() {
        return Err(invalid(format!(
            "{} already holds a node's state: --restore only seeds a new data dir (move this one away, or start \
             without --restore)",
            data_dir.display()
        )));
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| StoreError::internal(format!("create {}: {e}", data_dir.display())))?;
    write_synced(&intent, file.display().to_string().as_bytes())?;
    sync_dir(data_dir)?;

    let opened = std::fs::File::open(file).map_err(|e| invalid(format!("open backup {}: {e}", file.display())))?;
    let members_owned = members.clone();
    let state_dir = state.clone();
    let restored = tokio::task::spawn_blocking(move || {
        let sm = StateMachine::open(&state_dir)?;
        sm.restore_blocking(opened, &members_owned)
    })
    .await
    .map_err(|e| StoreError::internal(format!("restore task: {e}")))?;
    let (head, digest) = match restored {
        Ok(r) => r,
        Err(e) => {
            // Nothing half restored stays behind: the data dir is as it was.
            remove_seeded(&state, &log)?;
            let _ = std::fs::remove_file(&intent);
            return Err(invalid(format!("restore {}: {e}", file.display())));
        }
    };
    debug_assert_eq!(hex(&digest), sha256);
    let mut log_store =
        LogStore::open(&log).map_err(|e| StoreError::internal(format!("open raft log {}: {e}", log.display())))?;
    log_store
        .save_vote(&Vote::new(head.last_applied.leader_id.term, id))
        .await
        .map_err(|e| StoreError::internal(format!("seed the vote: {e}")))?;
    drop(log_store);
    let record = RestoredRecord {
        sha256: sha256.clone(),
        last_applied_index: head.last_applied.index,
        rows: head.rows,
        restored_at_ms: crate::clock::now_ms(),
        from: file.display().to_string(),
    };
    write_synced(&record_path, &serde_json::to_vec_pretty(&record).map_err(|e| StoreError::internal(e.to_string()))?)?;
    std::fs::remove_file(&intent).map_err(|e| StoreError::internal(format!("remove {}: {e}", intent.display())))?;
    sync_dir(data_dir)?;
    Ok(RestoreOutcome { head, sha256, already: false, elapsed: started.elapsed() })
}

/// Removes what a restore writes into a data dir.
fn remove_seeded(state: &Path, log: &Path) -> Result<(), StoreError> {
    if state.exists() {
        std::fs::remove_dir_all(state).map_err(|e| StoreError::internal(format!("remove {}: {e}", state.display())))?;
    }
    if log.exists() {
        std::fs::remove_file(log).map_err(|e| StoreError::internal(format!("remove {}: {e}", log.display())))?;
    }
    Ok(())
}
