//! Snapshots: a consistent copy of every state table, built from one read transaction and
//! streamed through files, so no snapshot is ever held whole in memory.
//!
//! Format (all integers big-endian): the magic line, then for each table of `STATE_TABLES` in
//! order: name length (u32), name, entry count (u64), then each entry as key length (u32), key,
//! value length (u32), value.
//!
//! Files, beside the state database:
//! - `snapshot-<stamp>.data`: a snapshot's bytes, written through a [`SNAPSHOT_IO_BUFFER_BYTES`]
//!   buffer and fsynced before anything names it;
//! - `snapshot.meta`: which data file is the current snapshot and its meta (JSON), replaced by
//!   rename, so a crash leaves the old current snapshot or the new one, never half of one, and
//!   never one snapshot's meta over another's data;
//! - `receiving-<stamp>.data`: a snapshot arriving from the leader, chunk by chunk (openraft's
//!   chunked transfer writes each chunk at its offset); once installed it is renamed into a data
//!   file and becomes current. Leftovers of a crash are removed at open.
//!
//! A build reads the state tables in key order and writes them out; an install reads the file
//! back row by row into one write transaction (atomic for readers; redb's write buffer, not the
//! snapshot's size, bounds its memory). The current snapshot is served to every follower that
//! needs it from its one file: each sender opens it and reads the chunks it sends.

use std::fs;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};

use super::tables::{self, SM_META, STATE_TABLES};
use super::{SmError, StateMachine};
use crate::types::{LogId, Snapshot, SnapshotMeta, StoredMembership};

const MAGIC: &[u8] = b"raftgraph-snapshot-v1\n";
/// The current snapshot's meta and data file name.
const META_FILE: &str = "snapshot.meta";
/// Before streamed snapshots, meta and data were one file; an old data dir's is converted at
/// open.
const LEGACY_FILE: &str = "snapshot.bin";
const DATA_PREFIX: &str = "snapshot-";
const RECEIVING_PREFIX: &str = "receiving-";
const DATA_SUFFIX: &str = ".data";

/// The buffer between a snapshot file and the tables, each way: with one row at a time, the
/// memory a snapshot build, send or install takes beyond redb's own cache, whatever the
/// state's size.
pub const SNAPSHOT_IO_BUFFER_BYTES: usize = 1024 * 1024;
/// Largest key or value a snapshot file may declare; a longer one means a corrupt file, refused
/// before anything is allocated for it. Rows are far smaller (commands are at most
/// [`crate::COMMAND_BYTES_MAX`]).
pub const SNAPSHOT_ROW_BYTES_MAX: usize = 16 * 1024 * 1024;

fn snap_err(what: &str, e: impl std::fmt::Display) -> SmError {
    SmError::Snapshot(format!("{what}: {e}"))
}

/// What `snapshot.meta` holds.
#[derive(Serialize, Deserialize)]
struct CurrentFile {
    meta: SnapshotMeta,
    /// The data file's name, in the state directory.
    data: String,
}

/// A data file name no other snapshot file has.
fn new_data_name() -> String {
    format!("{DATA_PREFIX}{}{DATA_SUFFIX}", unique_stamp())
}

/// A name no other snapshot file of this process or an earlier one has.
fn unique_stamp() -> String {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    format!("{nanos}-{}", SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// Fsyncs a directory, so a rename or a new file in it survives a crash.
fn sync_dir(dir: &Path) -> Result<(), SmError> {
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| snap_err("sync snapshot directory", e))
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), SmError> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).map_err(|e| snap_err("create snapshot file", e))?;
    f.write_all(bytes).map_err(|e| snap_err("write snapshot file", e))?;
    f.sync_all().map_err(|e| snap_err("sync snapshot file", e))?;
    fs::rename(&tmp, path).map_err(|e| snap_err("rename snapshot file", e))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// A new data file in `dir` filled by `fill` through a [`SNAPSHOT_IO_BUFFER_BYTES`] buffer and
/// fsynced: its name and path. Not yet named by `snapshot.meta`.
pub(super) fn write_data_file(
    dir: &Path,
    fill: impl FnOnce(&mut BufWriter<Syncing>) -> Result<(), SmError>,
) -> Result<(String, PathBuf), SmError> {
    let name = new_data_name();
    let path = dir.join(&name);
    let file = fs::File::create(&path).map_err(|e| snap_err("create snapshot file", e))?;
    let mut out = BufWriter::with_capacity(SNAPSHOT_IO_BUFFER_BYTES, Syncing { file, unsynced: 0 });
    fill(&mut out)?;
    let file = out.into_inner().map_err(|e| snap_err("write snapshot file", e.error()))?.file;
    file.sync_all().map_err(|e| snap_err("sync snapshot file", e))?;
    Ok((name, path))
}

/// Dirty bytes a snapshot file may hold before it is synced on the way (`fdatasync`), so that a
/// multi-GiB snapshot never has gigabytes of dirty pages waiting for one final flush. Without
/// it, three co-located nodes each writing a 3.4 GiB snapshot at the same log index pushed the
/// kernel past its dirty-page limit; every writer on the disk was throttled, the log's appends
/// with them, a follower missed its heartbeats and the cluster held an election
/// (docs/SCALING.md, the 10 M run).
pub const SNAPSHOT_SYNC_EVERY_BYTES: u64 = 64 * 1024 * 1024;

/// A snapshot data file being written, synced every [`SNAPSHOT_SYNC_EVERY_BYTES`].
pub(super) struct Syncing {
    file: fs::File,
    unsynced: u64,
}

impl Write for Syncing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.unsynced += n as u64;
        if self.unsynced >= SNAPSHOT_SYNC_EVERY_BYTES {
            self.file.sync_data()?;
            self.unsynced = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Names `data` (a file in `dir`) as the current snapshot with `meta`, by rename.
pub(super) fn write_meta(dir: &Path, meta: &SnapshotMeta, data: &str) -> Result<(), SmError> {
    sync_dir(dir)?;
    let record = CurrentFile { meta: meta.clone(), data: data.to_string() };
    write_atomically(&dir.join(META_FILE), &serde_json::to_vec(&record)?)
}

/// Writes every state table of `txn` to `out` in the snapshot format.
pub(super) fn encode_tables(txn: &redb::ReadTransaction, out: &mut impl Write) -> Result<(), SmError> {
    let io = |e: std::io::Error| snap_err("write snapshot", e);
    out.write_all(MAGIC).map_err(io)?;
    for def in STATE_TABLES {
        let table = txn.open_table(*def)?;
        let name = redb::TableHandle::name(def).as_bytes();
        out.write_all(&(name.len() as u32).to_be_bytes()).map_err(io)?;
        out.write_all(name).map_err(io)?;
        out.write_all(&table.len()?.to_be_bytes()).map_err(io)?;
        for item in table.iter()? {
            let (k, v) = item?;
            for part in [k.value(), v.value()] {
                out.write_all(&(part.len() as u32).to_be_bytes()).map_err(io)?;
                out.write_all(part).map_err(io)?;
            }
        }
    }
    Ok(())
}

/// Reads snapshot bytes, reporting truncation and absurd lengths instead of panicking or
/// allocating them.
pub(super) struct Reader<R> {
    pub(super) inner: R,
}

impl<R: Read> Reader<R> {
    pub(super) fn exact(&mut self, buf: &mut [u8]) -> Result<(), SmError> {
        self.inner.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                SmError::Snapshot(format!("truncated: wanted {} more bytes", buf.len()))
            }
            _ => snap_err("read snapshot", e),
        })
    }
    pub(super) fn u32(&mut self) -> Result<usize, SmError> {
        let mut b = [0u8; 4];
        self.exact(&mut b)?;
        Ok(u32::from_be_bytes(b) as usize)
    }
    fn u64(&mut self) -> Result<u64, SmError> {
        let mut b = [0u8; 8];
        self.exact(&mut b)?;
        Ok(u64::from_be_bytes(b))
    }
    /// A length-prefixed part into `buf` (reused row to row).
    pub(super) fn part(&mut self, buf: &mut Vec<u8>) -> Result<(), SmError> {
        let n = self.u32()?;
        if n > SNAPSHOT_ROW_BYTES_MAX {
            return Err(SmError::Snapshot(format!("a row part of {n} bytes, over {SNAPSHOT_ROW_BYTES_MAX}: corrupt")));
        }
        buf.resize(n, 0);
        self.exact(buf)
    }
    pub(super) fn at_end(&mut self) -> Result<bool, SmError> {
        let mut b = [0u8; 1];
        match self.inner.read(&mut b) {
            Ok(0) => Ok(true),
            Ok(_) => Ok(false),
            Err(e) => Err(snap_err("read snapshot", e)),
        }
    }
}

/// Replaces every state table in `txn` with the rows of the snapshot `input`, checking each
/// table is there, in order, and nothing trails. Rows stream through two reused buffers; an
/// error leaves `txn` to be dropped, which changes nothing.
fn decode_into(input: impl Read, txn: &redb::WriteTransaction) -> Result<u64, SmError> {
    let mut r = Reader { inner: input };
    let rows = decode_tables(&mut r, txn)?;
    if !r.at_end()? {
        return Err(SmError::Snapshot("trailing bytes after the last table".into()));
    }
    Ok(rows)
}

/// [`decode_into`] without the check that nothing follows: reads exactly the snapshot's bytes
/// (a backup carries its digest after them). The rows read.
pub(super) fn decode_tables(r: &mut Reader<impl Read>, txn: &redb::WriteTransaction) -> Result<u64, SmError> {
    let mut magic = vec![0u8; MAGIC.len()];
    r.exact(&mut magic)?;
    if magic != MAGIC {
        return Err(SmError::Snapshot("not a snapshot of this format (bad magic)".into()));
    }
    let (mut k, mut v) = (Vec::new(), Vec::new());
    let mut rows = 0;
    for def in STATE_TABLES {
        r.part(&mut k)?;
        let expected = redb::TableHandle::name(def);
        if k != expected.as_bytes() {
            return Err(SmError::Snapshot(format!(
                "table {:?} where {expected:?} was expected",
                String::from_utf8_lossy(&k)
            )));
        }
        let count = r.u64()?;
        let mut table: StateTableMut = txn.open_table(*def)?;
        table.retain(|_, _| false)?;
        for _ in 0..count {
            r.part(&mut k)?;
            r.part(&mut v)?;
            table.insert(k.as_slice(), v.as_slice())?;
        }
        rows += count;
    }
    Ok(rows)
}

type StateTableMut<'txn> = redb::Table<'txn, &'static [u8], &'static [u8]>;

/// A writer that only hashes (FNV-1a, 64 bits) what goes through it.
struct Fnv(u64);

impl Write for Fnv {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = buf.iter().fold(self.0, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A fingerprint of the whole replicated state, to compare nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateDigest {
    /// The log index the state reflects.
    pub applied_index: u64,
    /// Rows across all state tables.
    pub rows: u64,
    /// FNV-1a (64 bits) of the snapshot encoding of every state table: equal states, equal
    /// hashes, on any machine and build.
    pub hash: u64,
}

impl StateMachine {
    /// Fingerprints every state table (the snapshot's encoding, so exactly what replicates).
    /// Two nodes that applied the same log agree; the simulation checks that they do.
    pub fn digest(&self) -> Result<StateDigest, SmError> {
        let view = self.read()?;
        let mut rows = 0;
        for def in STATE_TABLES {
            rows += view.txn.open_table(*def)?.len()?;
        }
        let mut hash = Fnv(0xcbf2_9ce4_8422_2325);
        encode_tables(&view.txn, &mut hash)?;
        Ok(StateDigest { applied_index: view.applied_index, rows, hash: hash.0 })
    }

    pub(super) fn build_snapshot_blocking(&self) -> Result<Snapshot, SmError> {
        // Applies commit without fsync (`STATE_DURABLE_INTERVAL_MS`), but openraft purges the
        // log up to this snapshot once it is built: first make the state durable, and read it
        // before any further apply, so the durable state covers everything the snapshot does.
        let txn = {
            let mut durable_at = self.durable.lock().unwrap_or_else(|p| p.into_inner());
            self.make_durable(&mut durable_at)?;
            self.db.begin_read()?
        };
        let (last_log_id, last_membership) = {
            let meta = txn.open_table(SM_META)?;
            let last: Option<LogId> = match meta.get(tables::META_LAST_APPLIED)? {
                Some(v) => serde_json::from_slice(v.value())?,
                None => None,
            };
            let membership: StoredMembership = match meta.get(tables::META_MEMBERSHIP)? {
                Some(v) => serde_json::from_slice(v.value())?,
                None => StoredMembership::default(),
            };
            (last, membership)
        };
        let (name, path) = write_data_file(&self.dir, |out| encode_tables(&txn, out))?;
        drop(txn);
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let snapshot_id = match last_log_id {
            Some(l) => format!("{}-{}-{}-{stamp}", l.leader_id.term, l.leader_id.node_id, l.index),
            None => format!("empty-{stamp}"),
        };
        let meta = SnapshotMeta { last_log_id, last_membership, snapshot_id };
        // Opened before it may be made current: if a newer snapshot was installed meanwhile,
        // this one is still returned to openraft, from a file nobody names any more.
        let data = fs::File::open(&path).map_err(|e| snap_err("open snapshot file", e))?;
        let _guard = self.lock_snapshot_file()?;
        if !self.make_current(&meta, &name)? {
            let _ = fs::remove_file(&path);
        }
        Ok(Snapshot { meta, snapshot: Box::new(tokio::fs::File::from_std(data)) })
    }

    /// Names the data file `name` as the current snapshot with `meta`, unless the current one
    /// is newer (an install and a build can finish in either order; the newer must stay), and
    /// removes the data file it replaces. Whether it became current. The guard of
    /// `snapshot_file` must be held.
    pub(super) fn make_current(&self, meta: &SnapshotMeta, name: &str) -> Result<bool, SmError> {
        let before = self.read_current()?;
        if let Some((current, _)) = &before {
            if current.last_log_id > meta.last_log_id {
                return Ok(false);
            }
        }
        write_meta(&self.dir, meta, name)?;
        if let Some((_, old)) = before {
            if old.file_name().is_some_and(|n| n != name) {
                let _ = fs::remove_file(old);
            }
        }
        Ok(true)
    }

    /// The current snapshot's meta and data file, converting a legacy single-file snapshot
    /// first. The guard of `snapshot_file` must be held.
    fn read_current(&self) -> Result<Option<(SnapshotMeta, PathBuf)>, SmError> {
        match fs::read(self.dir.join(META_FILE)) {
            Ok(bytes) => {
                let current: CurrentFile = serde_json::from_slice(&bytes)?;
                if current.data.contains(['/', '\\']) {
                    return Err(SmError::Snapshot(format!("snapshot.meta names {:?}: corrupt", current.data)));
                }
                Ok(Some((current.meta, self.dir.join(current.data))))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.convert_legacy(),
            Err(e) => Err(snap_err("read snapshot.meta", e)),
        }
    }

    /// Turns a `snapshot.bin` (meta and data in one file) into a data file and `snapshot.meta`,
    /// copying through a bounded buffer.
    fn convert_legacy(&self) -> Result<Option<(SnapshotMeta, PathBuf)>, SmError> {
        let legacy = self.dir.join(LEGACY_FILE);
        let file = match fs::File::open(&legacy) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(snap_err("open legacy snapshot", e)),
        };
        let mut r = Reader { inner: BufReader::with_capacity(SNAPSHOT_IO_BUFFER_BYTES, file) };
        let mut meta = Vec::new();
        r.part(&mut meta)?;
        let meta: SnapshotMeta = serde_json::from_slice(&meta)?;
        let (name, path) = write_data_file(&self.dir, |out| {
            std::io::copy(&mut r.inner, out).map(drop).map_err(|e| snap_err("convert legacy snapshot", e))
        })?;
        write_meta(&self.dir, &meta, &name)?;
        let _ = fs::remove_file(&legacy);
        Ok(Some((meta, path)))
    }

    /// Removes what a crash can leave behind: snapshots half received, data files no meta
    /// names, the temporary meta. Called at open, before anything else touches the files.
    pub(super) fn clean_snapshot_dir(&self) -> Result<(), SmError> {
        let _guard = self.lock_snapshot_file()?;
        let current = self.read_current()?.map(|(_, path)| path);
        let entries = fs::read_dir(&self.dir).map_err(|e| snap_err("list state directory", e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale_data = name.starts_with(DATA_PREFIX)
                && name.ends_with(DATA_SUFFIX)
                && current.as_deref() != Some(entry.path().as_path());
            if stale_data || name.starts_with(RECEIVING_PREFIX) || name == "snapshot.tmp" {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// The guard every reader and writer of the snapshot files holds.
    pub(super) fn lock_snapshot_file(&self) -> Result<std::sync::MutexGuard<'_, ()>, SmError> {
        self.snapshot_file.lock().map_err(|_| SmError::Snapshot("snapshot lock poisoned".into()))
    }

    /// The size of the current snapshot's data file, if its id is `snapshot_id` (blocking).
    pub(crate) fn snapshot_len(&self, snapshot_id: &str) -> Option<u64> {
        let _guard = self.lock_snapshot_file().ok()?;
        let (meta, path) = self.read_current().ok()??;
        (meta.snapshot_id == snapshot_id).then(|| fs::metadata(path).ok().map(|m| m.len())).flatten()
    }

    pub(super) fn current_snapshot_blocking(&self) -> Result<Option<Snapshot>, SmError> {
        let _guard = self.lock_snapshot_file()?;
        let Some((meta, path)) = self.read_current()? else { return Ok(None) };
        let data = fs::File::open(&path).map_err(|e| snap_err("open snapshot file", e))?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(tokio::fs::File::from_std(data)) }))
    }

    /// A new file for a snapshot arriving from the leader, which openraft writes chunk by chunk.
    pub(super) fn begin_receiving_blocking(&self) -> Result<fs::File, SmError> {
        let path = self.dir.join(format!("{RECEIVING_PREFIX}{}{DATA_SUFFIX}", unique_stamp()));
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| snap_err("create receiving snapshot file", e))?;
        self.receiving.lock().unwrap_or_else(|p| p.into_inner()).push(path);
        Ok(file)
    }

    /// The path `file` was created at by [`Self::begin_receiving_blocking`], found by inode;
    /// forgets it and every older receiving file (openraft receives one snapshot at a time, so
    /// those were abandoned), removing them.
    fn take_receiving_path(&self, file: &fs::File) -> Option<PathBuf> {
        use std::os::unix::fs::MetadataExt as _;
        let meta = file.metadata().ok()?;
        let mut receiving = self.receiving.lock().unwrap_or_else(|p| p.into_inner());
        let at = receiving
            .iter()
            .position(|p| fs::metadata(p).is_ok_and(|m| m.ino() == meta.ino() && m.dev() == meta.dev()))?;
        let path = receiving.remove(at);
        for old in receiving.drain(..at) {
            let _ = fs::remove_file(old);
        }
        Some(path)
    }

    pub(super) fn install_snapshot_blocking(&self, meta: &SnapshotMeta, mut data: fs::File) -> Result<(), SmError> {
        data.sync_all().map_err(|e| snap_err("sync received snapshot", e))?;
        data.seek(SeekFrom::Start(0)).map_err(|e| snap_err("rewind received snapshot", e))?;
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate)?;
        decode_into(BufReader::with_capacity(SNAPSHOT_IO_BUFFER_BYTES, &data), &txn)?;
        {
            let mut m = txn.open_table(SM_META)?;
            m.insert(tables::META_LAST_APPLIED, serde_json::to_vec(&meta.last_log_id)?.as_slice())?;
            m.insert(tables::META_MEMBERSHIP, serde_json::to_vec(&meta.last_membership)?.as_slice())?;
        }
        txn.commit()?;
        // The received file becomes the current snapshot, renamed where it is; a file whose path
        // was lost is copied (through a bounded buffer) instead.
        let (name, path) = match self.take_receiving_path(&data) {
            Some(received) => {
                let name = new_data_name();
                let path = self.dir.join(&name);
                fs::rename(&received, &path).map_err(|e| snap_err("keep received snapshot", e))?;
                (name, path)
            }
            None => {
                data.seek(SeekFrom::Start(0)).map_err(|e| snap_err("rewind received snapshot", e))?;
                write_data_file(&self.dir, |out| {
                    std::io::copy(&mut BufReader::with_capacity(SNAPSHOT_IO_BUFFER_BYTES, &data), out)
                        .map(drop)
                        .map_err(|e| snap_err("keep received snapshot", e))
                })?
            }
        };
        {
            let _guard = self.lock_snapshot_file()?;
            if !self.make_current(meta, &name)? {
                let _ = fs::remove_file(&path);
            }
        }
        self.installed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.applied.send_replace(meta.last_log_id.map_or(0, |l| l.index));
        self.hub.reset(self.read()?.event_window()?.1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_machine::tables::{id_key, Tables};

    /// A state machine holding `n` rows in the users table (raw rows: the snapshot copies
    /// bytes, it does not read them).
    fn filled(dir: &Path, n: u64) -> StateMachine {
        let sm = StateMachine::open(dir).expect("open");
        let txn = sm.db.begin_write().expect("begin");
        {
            let mut t = Tables::open(&txn).expect("tables");
            for i in 0..n {
                t.users.insert(id_key(i).as_slice(), format!("user {i} ").repeat(8).as_bytes()).expect("insert");
            }
        }
        txn.commit().expect("commit");
        sm
    }

    /// The current snapshot's meta and data file.
    fn current(sm: &StateMachine) -> (SnapshotMeta, PathBuf) {
        let _g = sm.lock_snapshot_file().expect("lock");
        sm.read_current().expect("current").expect("a current snapshot")
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).expect("dir").flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names.retain(|n| n.starts_with("snapshot") || n.starts_with("receiving"));
        names
    }

    /// Receives `sm`'s current snapshot into `into` as openraft does (a receiving file written
    /// in chunks) and installs it.
    fn transfer(from: &StateMachine, into: &StateMachine) -> Result<(), SmError> {
        let snapshot = from.current_snapshot_blocking()?.expect("a current snapshot");
        let mut data = tokio::runtime::Runtime::new().expect("rt").block_on(snapshot.snapshot.into_std());
        let mut received = into.begin_receiving_blocking()?;
        let mut chunk = vec![0u8; 4096];
        loop {
            let n = data.read(&mut chunk).expect("read");
            if n == 0 {
                break;
            }
            received.write_all(&chunk[..n]).expect("write");
        }
        into.install_snapshot_blocking(&snapshot.meta, received)
    }

    #[test]
    fn a_snapshot_streams_through_files_and_installs_the_same_state() {
        let (a, b) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let leader = filled(a.path(), 20_000);
        // Phase 1: a build leaves exactly one data file and the meta that names it; a second
        // build replaces both, and the first data file goes.
        leader.build_snapshot_blocking().expect("build");
        leader.build_snapshot_blocking().expect("build again");
        let names = files(a.path());
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.contains(&META_FILE.to_string()) && names[0].ends_with(DATA_SUFFIX), "{names:?}");
        // Phase 2: a follower receives it as a file, installs it, and holds the same state; its
        // received file became its current snapshot, nothing left behind.
        let follower = filled(b.path(), 3);
        transfer(&leader, &follower).expect("install");
        let (da, db) = (leader.digest().expect("digest"), follower.digest().expect("digest"));
        assert_eq!((da.rows, da.hash), (db.rows, db.hash));
        assert_eq!(follower.snapshots_installed(), 1);
        assert_eq!(files(b.path()).len(), 2, "{:?}", files(b.path()));
        // Phase 3: after a restart the current snapshot is still there and still serves.
        drop(follower);
        let follower = StateMachine::open(b.path()).expect("reopen");
        let c = tempfile::tempdir().expect("dir");
        let third = StateMachine::open(c.path()).expect("open");
        transfer(&follower, &third).expect("install from the restarted node");
        assert_eq!(third.digest().expect("digest").hash, da.hash);
    }

    #[test]
    fn a_corrupt_snapshot_changes_nothing_and_leftovers_go_at_open() {
        let (a, b) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let leader = filled(a.path(), 500);
        let snapshot = leader.build_snapshot_blocking().expect("build");
        let follower = filled(b.path(), 7);
        let before = follower.digest().expect("digest");
        // Phase 1: truncated, or declaring a row longer than any real one: refused, the state
        // as it was.
        let (_, path) = current(&leader);
        let bytes = fs::read(&path).expect("read");
        let mut huge = bytes[..MAGIC.len()].to_vec();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        for bad in [bytes[..bytes.len() - 3].to_vec(), huge, b"not a snapshot at all".to_vec()] {
            let mut f = follower.begin_receiving_blocking().expect("receiving");
            f.write_all(&bad).expect("write");
            assert!(follower.install_snapshot_blocking(&snapshot.meta, f).is_err());
            let after = follower.digest().expect("digest");
            assert_eq!((after.rows, after.hash), (before.rows, before.hash));
        }
        // Phase 2: a restart removes the half-received files and unnamed data files.
        fs::write(b.path().join("snapshot-123-0.data"), b"orphan").expect("orphan");
        drop(follower);
        let _follower = StateMachine::open(b.path()).expect("reopen");
        assert!(files(b.path()).is_empty(), "{:?}", files(b.path()));
    }

    #[test]
    fn a_legacy_single_file_snapshot_is_converted() {
        let a = tempfile::tempdir().expect("dir");
        let sm = filled(a.path(), 100);
        let snapshot = sm.build_snapshot_blocking().expect("build");
        let (meta, path) = current(&sm);
        // The old layout: meta length, meta JSON, data, in `snapshot.bin`.
        let meta_json = serde_json::to_vec(&meta).expect("json");
        let mut legacy = (meta_json.len() as u32).to_be_bytes().to_vec();
        legacy.extend_from_slice(&meta_json);
        legacy.extend_from_slice(&fs::read(&path).expect("data"));
        drop(sm);
        for f in files(a.path()) {
            fs::remove_file(a.path().join(f)).expect("remove");
        }
        fs::write(a.path().join(LEGACY_FILE), legacy).expect("legacy");
        let sm = StateMachine::open(a.path()).expect("reopen");
        let current = sm.current_snapshot_blocking().expect("read").expect("converted");
        assert_eq!(current.meta, snapshot.meta);
        assert!(!a.path().join(LEGACY_FILE).exists());
        let b = tempfile::tempdir().expect("dir");
        let other = StateMachine::open(b.path()).expect("open");
        transfer(&sm, &other).expect("the converted snapshot installs");
        assert_eq!(other.digest().expect("digest").hash, sm.digest().expect("digest").hash);
    }
}
