//! The replicated state machine: deterministic apply functions over redb tables.
//!
//! Apply takes every entry openraft hands over in one call and applies them in one redb write
//! transaction, committed together with the last applied log id and the membership. A crash
//! therefore either keeps the whole batch and its log id, or neither: an entry is never applied
//! twice nor lost. Apply reads nothing but the entry and redb: no clock, no randomness, no network.

mod accounts;
mod backup;
mod chats;
mod feed;
mod hub;
mod sales;
mod snapshot;
mod tables;
mod tweets;

pub(crate) use backup::read_head_of;
pub use backup::{BackupHead, BACKUP_DIGEST_BYTES, BACKUP_MAGIC};
pub use hub::{TopicWatch, TOPIC_RECENT_EVENTS_MAX};
pub use snapshot::{StateDigest, SNAPSHOT_IO_BUFFER_BYTES, SNAPSHOT_ROW_BYTES_MAX};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, StorageIOError};
use redb::{Database, Durability, ReadTransaction, ReadableDatabase};
use tokio::sync::watch;

use crate::command::{Command, Response};
use crate::inject::Inject;
use crate::stages::Stages;
use crate::types::{BatchResponse, Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use tables::{Tables, SM_META};

/// Errors of the state machine's storage: redb, or a value that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum SmError {
    /// redb failed.
    #[error("state storage: {0}")]
    Redb(#[from] redb::Error),
    /// A stored value did not decode, or a value did not encode.
    #[error("state codec: {0}")]
    Codec(#[from] serde_json::Error),
    /// Stored bytes broke an invariant.
    #[error("state corrupt: {0}")]
    Corrupt(&'static str),
    /// A snapshot could not be read or written.
    #[error("snapshot: {0}")]
    Snapshot(String),
}

macro_rules! redb_from {
    ($($t:ty),*) => {$(
        impl From<$t> for SmError {
            fn from(e: $t) -> Self { SmError::Redb(e.into()) }
        }
    )*};
}
redb_from!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::DatabaseError,
    redb::SetDurabilityError
);

fn sm_err(verb: ErrorVerb, e: SmError) -> StorageError {
    StorageIOError::new(ErrorSubject::StateMachine, verb, AnyError::new(&e)).into()
}

/// A consistent, read-only view of the state at one applied index.
pub struct ReadView {
    pub(crate) txn: ReadTransaction,
    /// The log index this view reflects.
    pub applied_index: u64,
}

/// The state machine. Cloning shares the database and the applied-index channel.
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<Database>,
    dir: PathBuf,
    applied: Arc<watch::Sender<u64>>,
    /// Each watched topic's wake-up and recent events (see hub.rs).
    hub: Arc<hub::Hub>,
    /// Deliberate bugs switched on for the fault simulation; none otherwise.
    inject: Inject,
    /// Serializes writes of the current snapshot file. openraft builds snapshots in a task of
    /// its own, which may overlap an install; both write the same file through the same
    /// temporary name. A std mutex, held only inside blocking tasks, never across an await.
    snapshot_file: Arc<std::sync::Mutex<()>>,
    /// Snapshots installed from a leader since this process opened the state: tests and
    /// operators tell "caught up from a snapshot" from "replayed the log" by it.
    installed: Arc<std::sync::atomic::AtomicU64>,
    /// Files snapshots from the leader are being received into, oldest first (see snapshot.rs).
    receiving: Arc<std::sync::Mutex<Vec<PathBuf>>>,
    /// How far the snapshot arriving from the leader has got (see [`SnapshotProgress`]).
    progress: Arc<std::sync::Mutex<Option<SnapshotProgress>>>,
    /// Apply timings, shared with the rest of the store.
    stages: Arc<Stages>,
    /// When the state was last made durable (fsynced). Held by an apply through its commit and
    /// by a snapshot build from its durable commit to its read, so the two never interleave
    /// there. A std mutex, taken only on blocking threads.
    durable: Arc<std::sync::Mutex<std::time::Instant>>,
}

/// Applies commit without an fsync of the state file, and at most this long after the last
/// durable commit one commits durably (fsync), which persists every commit before it.
///
/// Safe because the state is derived: every applied entry is in the Raft log, which is
/// durable before it is acknowledged (`LogStore::append`). After a crash, redb reopens at the
/// last durable commit, whose `last_applied` says where the state really is, and openraft
/// re-applies the committed entries after it (deterministically: time comes from the
/// entries). What must hold is that the log still has those entries: logs are only purged
/// behind a snapshot, and building one first makes the state durable (see
/// `build_snapshot_blocking`); an installed snapshot commits durably too. The interval bounds
/// the re-apply work after a crash, not safety.
///
/// Measured: an apply's fsync was about 1.8 ms of a three-node purchase's 12 ms Raft write,
/// on the leader's critical path (docs/BENCHMARKS.md, "Where the time goes").
pub const STATE_DURABLE_INTERVAL_MS: u64 = 1_000;

/// Memory redb may use to cache the state database's pages, reads and the write buffer
/// together (its default is 1 GiB). With [`snapshot::SNAPSHOT_IO_BUFFER_BYTES`] this bounds
/// what a node holds for its state whatever the state's size: a snapshot build reads through
/// it, an install writes through it. Pages beyond it are read from the OS page cache.
pub const STATE_CACHE_BYTES: usize = 256 * 1024 * 1024;

/// A snapshot arriving from the leader: the bytes received so far of its total.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotProgress {
    /// The snapshot's id (its term, leader, index and build time).
    pub snapshot_id: String,
    /// Bytes received and written so far.
    pub received_bytes: u64,
    /// The snapshot's size, when the leader said (nodes of this version do).
    pub total_bytes: Option<u64>,
}

impl StateMachine {
    /// Records a snapshot chunk accepted from the leader; the last one (`done`) ends the
    /// transfer, and the progress is cleared.
    pub(crate) fn note_receiving(
        &self,
        snapshot_id: String,
        received_bytes: u64,
        total_bytes: Option<u64>,
        done: bool,
    ) {
        let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        *progress = (!done).then_some(SnapshotProgress { snapshot_id, received_bytes, total_bytes });
    }

    /// The snapshot being received from the leader, if one is.
    pub fn receiving_progress(&self) -> Option<SnapshotProgress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Snapshots installed from a leader since the state was opened.
    pub fn snapshots_installed(&self) -> u64 {
        self.installed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Opens (or creates) the state database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, SmError> {
        Self::open_with(dir, Inject::default())
    }

    /// [`StateMachine::open`], with deliberate bugs for the fault simulation.
    pub fn open_with(dir: &Path, inject: Inject) -> Result<Self, SmError> {
        std::fs::create_dir_all(dir).map_err(|e| SmError::Snapshot(format!("create {}: {e}", dir.display())))?;
        let db = Database::builder().set_cache_size(STATE_CACHE_BYTES).create(dir.join("state.redb"))?;
        let txn = db.begin_write()?;
        Tables::open(&txn)?;
        txn.open_table(SM_META)?;
        txn.commit()?;
        let sm = StateMachine {
            db: Arc::new(db),
            dir: dir.to_path_buf(),
            applied: Arc::new(watch::channel(0).0),
            hub: Arc::default(),
            inject,
            snapshot_file: Arc::new(std::sync::Mutex::new(())),
            installed: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            receiving: Arc::default(),
            progress: Arc::default(),
            stages: Arc::default(),
            durable: Arc::new(std::sync::Mutex::new(std::time::Instant::now())),
        };
        sm.clean_snapshot_dir()?;
        let (last, _) = sm.read_applied_state()?;
        sm.applied.send_replace(last.map_or(0, |l| l.index));
        sm.hub.reset(sm.read()?.event_window()?.1);
        Ok(sm)
    }

    /// Makes every commit so far durable (one fsync). The guard of `durable` must be held.
    fn make_durable(&self, durable_at: &mut std::time::Instant) -> Result<(), SmError> {
        let started = std::time::Instant::now();
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.commit()?;
        *durable_at = started;
        Ok(())
    }

    /// Makes the applied state durable, so a restart need not re-apply anything: on a graceful
    /// shutdown, after Raft has stopped applying.
    pub fn flush(&self) -> Result<(), SmError> {
        let mut durable_at = self.durable.lock().unwrap_or_else(|p| p.into_inner());
        self.make_durable(&mut durable_at)
    }

    /// Records apply timings into `stages` (shared with the rest of the store).
    pub fn with_stages(mut self, stages: Arc<Stages>) -> Self {
        self.stages = stages;
        self
    }

    /// A watch of the last applied log index, updated after each committed apply batch.
    pub fn applied_index(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Watches one topic: woken by its events only, with its recent events at hand (see
    /// hub.rs). Take it before the subscription's initial read.
    pub fn watch_topic(&self, topic: &str) -> TopicWatch {
        self.hub.watch(topic)
    }

    /// Topics some subscription watches now.
    pub fn watched_topics(&self) -> usize {
        self.hub.watched_topics()
    }

    /// A consistent read view of the applied state.
    pub fn read(&self) -> Result<ReadView, SmError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(SM_META)?;
        let applied_index = match meta.get(tables::META_LAST_APPLIED)? {
            Some(v) => serde_json::from_slice::<Option<LogId>>(v.value())?.map_or(0, |l| l.index),
            None => 0,
        };
        drop(meta);
        Ok(ReadView { txn, applied_index })
    }

    fn read_applied_state(&self) -> Result<(Option<LogId>, StoredMembership), SmError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(SM_META)?;
        let last = match meta.get(tables::META_LAST_APPLIED)? {
            Some(v) => serde_json::from_slice(v.value())?,
            None => None,
        };
        let membership = match meta.get(tables::META_MEMBERSHIP)? {
            Some(v) => serde_json::from_slice(v.value())?,
            None => StoredMembership::default(),
        };
        Ok((last, membership))
    }

    /// Applies entries in one write transaction. Runs on a blocking thread.
    #[tracing::instrument(level = "debug", name = "apply", skip_all, fields(entries = entries.len()))]
    fn apply_blocking(&self, entries: Vec<Entry>) -> Result<Vec<BatchResponse>, SmError> {
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return Ok(Vec::new());
        };
        let started = std::time::Instant::now();
        let mut durable_at = self.durable.lock().unwrap_or_else(|p| p.into_inner());
        let durable = durable_at.elapsed() >= Duration::from_millis(STATE_DURABLE_INTERVAL_MS);
        let mut txn = self.db.begin_write()?;
        txn.set_durability(if durable { Durability::Immediate } else { Durability::None })?;
        let mut responses = Vec::with_capacity(entries.len());
        let mut membership = None;
        let last_event;
        let mut emitted = Vec::new();
        {
            let mut t = Tables::open(&txn)?;
            let mut clock = t.counter(tables::COUNTER_CLOCK)? as i64;
            for entry in entries {
                match entry.payload {
                    EntryPayload::Blank => {
                        responses.push(BatchResponse { index: entry.log_id.index, responses: Vec::new() })
                    }
                    EntryPayload::Membership(m) => {
                        membership = Some(StoredMembership::new(Some(entry.log_id), m));
                        responses.push(BatchResponse { index: entry.log_id.index, responses: Vec::new() });
                    }
                    EntryPayload::Normal(batch) => {
                        let mut out = Vec::with_capacity(batch.0.len());
                        for p in batch.0 {
                            // Time never goes back, whatever the proposers' clocks say.
                            clock = clock.max(p.at_ms);
                            out.push(apply_command(&mut t, clock, p.command, self.inject)?);
                        }
                        accounts::collect_expired(&mut t, clock)?;
                        responses.push(BatchResponse { index: entry.log_id.index, responses: out });
                    }
                }
            }
            t.set_counter(tables::COUNTER_CLOCK, clock.max(0) as u64)?;
            last_event = feed::flush(&mut t, &mut emitted)?;
        }
        {
            let mut meta = txn.open_table(SM_META)?;
            meta.insert(tables::META_LAST_APPLIED, serde_json::to_vec(&Some(last))?.as_slice())?;
            if let Some(m) = membership {
                meta.insert(tables::META_MEMBERSHIP, serde_json::to_vec(&m)?.as_slice())?;
            }
        }
        let committing = std::time::Instant::now();
        txn.commit()?;
        if durable {
            *durable_at = committing;
        }
        drop(durable_at);
        self.stages.apply_commit.since(committing);
        self.stages.apply.since(started);
        // Wakes only the topics the batch emitted events on (most writes emit none).
        self.hub.publish(emitted, last_event);
        self.applied.send_replace(last.index);
        Ok(responses)
    }
}

/// Applies one command at state machine time `now`. Business rules are decided here.
fn apply_command(t: &mut Tables, now: i64, command: Command, inject: Inject) -> Result<Response, SmError> {
    match command {
        Command::ReserveUsername { canonical, token, ttl_ms, .. } => {
            accounts::reserve(t, now, &canonical, token, ttl_ms)
        }
        Command::Register { username, canonical, password_hash, display_name, email, reservation_token } => {
            accounts::register(
                t,
                now,
                accounts::NewAccount { username, canonical, password_hash, display_name, email, reservation_token },
            )
        }
        Command::ImportAccounts { actor, accounts: list } => accounts::import_accounts(t, now, actor, list),
        Command::ChangeUsername { user_id, username, canonical, reservation_token, cooldown_ms } => {
            accounts::change_username(t, now, user_id, username, canonical, reservation_token, cooldown_ms)
        }
        Command::DeleteAccount { user_id, cooldown_ms } => accounts::delete_account(t, now, user_id, cooldown_ms),
        Command::CreateProduct { actor, name, description, price_cents } => {
            sales::create_product(t, now, actor, name, description, price_cents)
        }
        Command::CreateSale { actor, product_id, stock, starts_at_ms, ends_at_ms, per_user_limit } => {
            sales::create_sale(
                t,
                now,
                actor,
                sales::NewSale { product_id, stock, starts_at_ms, ends_at_ms, per_user_limit },
            )
        }
        Command::StartSale { actor, sale_id } => sales::set_sale_open(t, now, actor, sale_id, true),
        Command::EndSale { actor, sale_id } => sales::set_sale_open(t, now, actor, sale_id, false),
        Command::Purchase { user_id, sale_id, quantity, idempotency_key } => {
            sales::purchase(t, now, user_id, sale_id, quantity, idempotency_key, inject.unchecked_stock)
        }
        Command::UpdateProfile { user_id, change } => accounts::update_profile(t, user_id, change),
        Command::CreateChat { actor, name, participant_ids } => {
            chats::create_chat(t, now, actor, name, participant_ids)
        }
        Command::AddParticipants { actor, chat_id, user_ids } => chats::add_participants(t, actor, chat_id, user_ids),
        Command::RemoveParticipant { actor, chat_id, user_id } => chats::remove_participant(t, actor, chat_id, user_id),
        Command::SendMessage { sender_id, chat_id, body, client_message_id } => {
            chats::send_message(t, now, sender_id, chat_id, body, client_message_id)
        }
        Command::Follow { follower, followee } => tweets::follow(t, follower, followee),
        Command::Unfollow { follower, followee } => tweets::unfollow(t, follower, followee),
        Command::PostTweet { author, body, reply_to } => tweets::post_tweet(t, now, author, body, reply_to),
        Command::DeleteTweet { actor, tweet_id } => tweets::delete_tweet(t, actor, tweet_id),
    }
}

async fn blocking<T: Send + 'static>(
    verb: ErrorVerb,
    f: impl FnOnce() -> Result<T, SmError> + Send + 'static,
) -> Result<T, StorageError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| sm_err(verb, e)),
        Err(e) => Err(sm_err(verb, SmError::Snapshot(format!("blocking task failed: {e}")))),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let sm = self.clone();
        blocking(ErrorVerb::Write, move || sm.build_snapshot_blocking()).await
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        self.read_applied_state().map_err(|e| sm_err(ErrorVerb::Read, e))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let sm = self.clone();
        blocking(ErrorVerb::Write, move || sm.apply_blocking(entries)).await
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let sm = self.clone();
        let file = blocking(ErrorVerb::Write, move || sm.begin_receiving_blocking()).await?;
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        mut snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        use tokio::io::AsyncWriteExt as _;
        // tokio's File may still be writing the last chunk in the background: finish it, and
        // hear of its failure, before the file is read.
        snapshot
            .flush()
            .await
            .map_err(|e| sm_err(ErrorVerb::Write, SmError::Snapshot(format!("flush received snapshot: {e}"))))?;
        let file = snapshot.into_std().await;
        let sm = self.clone();
        let meta = meta.clone();
        blocking(ErrorVerb::Write, move || sm.install_snapshot_blocking(&meta, file)).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let sm = self.clone();
        blocking(ErrorVerb::Read, move || sm.current_snapshot_blocking()).await
    }
}
