//! Snapshots: a consistent copy of every state table, built from one read transaction.
//!
//! Format (all integers big-endian): the magic line, then for each table of `STATE_TABLES` in
//! order: name length (u32), name, entry count (u64), then each entry as key length (u32), key,
//! value length (u32), value. The current snapshot is kept beside the state database as one file,
//! its meta (length-prefixed JSON) then its data, written by rename: a crash leaves either the
//! old snapshot or the new one, never half of one, and never one snapshot's meta over another's
//! data.

use std::fs;
use std::io::{Cursor, Write};
use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::tables::{self, StateTable, SM_META, STATE_TABLES};
use super::{SmError, StateMachine};
use crate::types::{LogId, Snapshot, SnapshotMeta, StoredMembership};

const MAGIC: &[u8] = b"raftgraph-snapshot-v1\n";
const SNAPSHOT_FILE: &str = "snapshot.bin";

fn snap_err(what: &str, e: impl std::fmt::Display) -> SmError {
    SmError::Snapshot(format!("{what}: {e}"))
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), SmError> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).map_err(|e| snap_err("create snapshot file", e))?;
    f.write_all(bytes).map_err(|e| snap_err("write snapshot file", e))?;
    f.sync_all().map_err(|e| snap_err("sync snapshot file", e))?;
    fs::rename(&tmp, path).map_err(|e| snap_err("rename snapshot file", e))
}

fn encode_tables(txn: &redb::ReadTransaction) -> Result<Vec<u8>, SmError> {
    let mut out = MAGIC.to_vec();
    for def in STATE_TABLES {
        let table = txn.open_table(*def)?;
        let name = redb::TableHandle::name(def).as_bytes();
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&table.len()?.to_be_bytes());
        for item in table.iter()? {
            let (k, v) = item?;
            for part in [k.value(), v.value()] {
                out.extend_from_slice(&(part.len() as u32).to_be_bytes());
                out.extend_from_slice(part);
            }
        }
    }
    Ok(out)
}

/// A cursor over snapshot bytes that reports truncation instead of panicking.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SmError> {
        if self.buf.len() < n {
            return Err(SmError::Snapshot(format!("truncated: wanted {n} bytes, {} left", self.buf.len())));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn u32(&mut self) -> Result<usize, SmError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    fn u64(&mut self) -> Result<u64, SmError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
}

/// One table's rows, borrowed from the snapshot bytes.
type DecodedTable<'a> = (StateTable, Vec<(&'a [u8], &'a [u8])>);

/// Decodes snapshot bytes into one list of entries per state table, checking every table is
/// there, in order, before anything is written.
fn decode_tables(bytes: &[u8]) -> Result<Vec<DecodedTable<'_>>, SmError> {
    let mut r = Reader { buf: bytes };
    if r.take(MAGIC.len())? != MAGIC {
        return Err(SmError::Snapshot("not a snapshot of this format (bad magic)".into()));
    }
    let mut out = Vec::with_capacity(STATE_TABLES.len());
    for def in STATE_TABLES {
        let n = r.u32()?;
        let name = r.take(n)?;
        let expected = redb::TableHandle::name(def);
        if name != expected.as_bytes() {
            return Err(SmError::Snapshot(format!(
                "table {:?} where {expected:?} was expected",
                String::from_utf8_lossy(name)
            )));
        }
        let count = r.u64()?;
        let mut rows = Vec::new();
        for _ in 0..count {
            let k = r.u32()?;
            let k = r.take(k)?;
            let v = r.u32()?;
            let v = r.take(v)?;
            rows.push((k, v));
        }
        out.push((*def, rows));
    }
    if !r.buf.is_empty() {
        return Err(SmError::Snapshot(format!("{} trailing bytes", r.buf.len())));
    }
    Ok(out)
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
        let bytes = encode_tables(&view.txn)?;
        let hash =
            bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
        Ok(StateDigest { applied_index: view.applied_index, rows, hash })
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
        let data = encode_tables(&txn)?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let snapshot_id = match last_log_id {
            Some(l) => format!("{}-{}-{}-{stamp}", l.leader_id.term, l.leader_id.node_id, l.index),
            None => format!("empty-{stamp}"),
        };
        let meta = SnapshotMeta { last_log_id, last_membership, snapshot_id };
        self.save_current(&meta, &data)?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }

    /// Keeps `meta` and `data` as the current snapshot, unless the one already kept is newer
    /// (an install and a build can finish in either order; the newer must stay).
    fn save_current(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), SmError> {
        let _guard = self.snapshot_file.lock().map_err(|_| SmError::Snapshot("snapshot lock poisoned".into()))?;
        if let Some((current, _)) = self.read_current()? {
            if current.last_log_id > meta.last_log_id {
                return Ok(());
            }
        }
        let meta_json = serde_json::to_vec(meta)?;
        let mut file = Vec::with_capacity(4 + meta_json.len() + data.len());
        file.extend_from_slice(&(meta_json.len() as u32).to_be_bytes());
        file.extend_from_slice(&meta_json);
        file.extend_from_slice(data);
        write_atomically(&self.dir.join(SNAPSHOT_FILE), &file)
    }

    fn read_current(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, SmError> {
        let path = self.dir.join(SNAPSHOT_FILE);
        let mut file = match fs::read(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(snap_err("read snapshot", e)),
        };
        let mut r = Reader { buf: &file };
        let meta_len = u32::from_be_bytes(r.take(4)?.try_into().map_err(|_| SmError::Corrupt("snapshot header"))?);
        let meta: SnapshotMeta = serde_json::from_slice(r.take(meta_len as usize)?)?;
        let data = file.split_off(4 + meta_len as usize);
        Ok(Some((meta, data)))
    }

    pub(super) fn current_snapshot_blocking(&self) -> Result<Option<Snapshot>, SmError> {
        let _guard = self.snapshot_file.lock().map_err(|_| SmError::Snapshot("snapshot lock poisoned".into()))?;
        Ok(self.read_current()?.map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }

    pub(super) fn install_snapshot_blocking(&self, meta: &SnapshotMeta, data: Vec<u8>) -> Result<(), SmError> {
        let decoded = decode_tables(&data)?;
        let txn = self.db.begin_write()?;
        for (def, rows) in &decoded {
            let mut table = txn.open_table(*def)?;
            table.retain(|_, _| false)?;
            for (k, v) in rows {
                table.insert(*k, *v)?;
            }
        }
        {
            let mut m = txn.open_table(SM_META)?;
            m.insert(tables::META_LAST_APPLIED, serde_json::to_vec(&meta.last_log_id)?.as_slice())?;
            m.insert(tables::META_MEMBERSHIP, serde_json::to_vec(&meta.last_membership)?.as_slice())?;
        }
        txn.commit()?;
        self.save_current(meta, &data)?;
        self.installed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.applied.send_replace(meta.last_log_id.map_or(0, |l| l.index));
        self.events.send_replace(self.read()?.event_window()?.1);
        Ok(())
    }
}
