//! Snapshots: a consistent copy of every state table, built from one read transaction.
//!
//! Format (all integers big-endian): the magic line, then for each table of `STATE_TABLES` in
//! order: name length (u32), name, entry count (u64), then each entry as key length (u32), key,
//! value length (u32), value. The current snapshot is kept beside the state database as two files
//! written by rename, so a crash leaves either the old snapshot or the new one, never half of one.

use std::fs;
use std::io::{Cursor, Write};
use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::tables::{self, StateTable, SM_META, STATE_TABLES};
use super::{SmError, StateMachine};
use crate::types::{LogId, Snapshot, SnapshotMeta, StoredMembership};

const MAGIC: &[u8] = b"raftgraph-snapshot-v1\n";
const SNAPSHOT_FILE: &str = "snapshot.bin";
const SNAPSHOT_META_FILE: &str = "snapshot.meta.json";

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

impl StateMachine {
    pub(super) fn build_snapshot_blocking(&self) -> Result<Snapshot, SmError> {
        let txn = self.db.begin_read()?;
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

    fn save_current(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), SmError> {
        // Data first, then the meta that names it: a crash between the two leaves the old meta,
        // which a reader checks against the data's length below.
        write_atomically(&self.dir.join(SNAPSHOT_FILE), data)?;
        let meta_json = serde_json::to_vec(&(meta, data.len()))?;
        write_atomically(&self.dir.join(SNAPSHOT_META_FILE), &meta_json)
    }

    pub(super) fn current_snapshot_blocking(&self) -> Result<Option<Snapshot>, SmError> {
        let meta_path = self.dir.join(SNAPSHOT_META_FILE);
        if !meta_path.exists() {
            return Ok(None);
        }
        let meta_bytes = fs::read(&meta_path).map_err(|e| snap_err("read snapshot meta", e))?;
        let (meta, len): (SnapshotMeta, usize) = serde_json::from_slice(&meta_bytes)?;
        let data = fs::read(self.dir.join(SNAPSHOT_FILE)).map_err(|e| snap_err("read snapshot", e))?;
        if data.len() != len {
            // The data file is newer than its meta (a crash between the two renames): treat it as
            // no snapshot; openraft will build a fresh one.
            return Ok(None);
        }
        Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
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
        self.applied.send_replace(meta.last_log_id.map_or(0, |l| l.index));
        self.events.send_replace(self.read()?.event_window()?.1);
        Ok(())
    }
}
