//! Backups: a consistent copy of the whole replicated state streamed out of a running node, and
//! the restore that seeds a new data directory from one.
//!
//! A backup file (integers big-endian):
//! - [`BACKUP_MAGIC`];
//! - the head: its length (u32), then [`BackupHead`] as JSON;
//! - the snapshot encoding of every state table (the format of snapshot.rs), read from one
//!   read transaction, so the copy is of one applied index;
//! - the SHA-256 of every byte before it ([`BACKUP_DIGEST_BYTES`]).
//!
//! Both ways the rows stream through [`SNAPSHOT_IO_BUFFER_BYTES`] buffers: neither a backup
//! nor a restore holds the state in memory, whatever its size. A restore writes the tables into
//! a fresh state database in one write transaction, committed only once the digest checks out,
//! and keeps the same bytes as the new node's current snapshot, so followers that join it
//! receive them without a second pass over the tables.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufReader, Read, Write};

use redb::ReadableTableMetadata;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::snapshot::{decode_tables, encode_tables, write_data_file, Reader, SNAPSHOT_IO_BUFFER_BYTES};
use super::tables::{self, SM_META, STATE_TABLES};
use super::{ReadView, SmError, StateMachine};
use crate::types::{LogId, NodeId, SnapshotMeta, StoredMembership};

/// The first bytes of every backup file.
pub const BACKUP_MAGIC: &[u8] = b"raftgraph-backup-v1\n";
/// Length of the digest that ends a backup (SHA-256).
pub const BACKUP_DIGEST_BYTES: usize = 32;
/// Largest head a backup may declare; a longer one means it is not a backup.
const BACKUP_HEAD_BYTES_MAX: usize = 64 * 1024;

/// What a backup says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupHead {
    /// The last log entry the copied state reflects. A restored cluster continues from it: its
    /// next entry gets the index after this one, so event-feed indices (`afterIndex`) stay
    /// meaningful across a restore.
    pub last_applied: LogId,
    /// Rows across all state tables.
    pub rows: u64,
    /// When the node began the backup (ms since the Unix epoch, its clock).
    pub created_at_ms: i64,
    /// The node that wrote it.
    pub node_id: NodeId,
    /// The members of the cluster it was taken from (id to address), for the record: a restore
    /// uses the members it is given.
    pub members: BTreeMap<NodeId, String>,
}

/// A writer that hashes what goes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes what it reads.
struct Hashed<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A reader that copies what it reads to `copy`.
struct Copying<'a, R> {
    inner: &'a mut R,
    copy: &'a mut dyn Write,
}

impl<R: Read> Read for Copying<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

fn io_err(what: &str, e: impl std::fmt::Display) -> SmError {
    SmError::Snapshot(format!("{what}: {e}"))
}

/// The last applied log id and membership a view's meta table holds.
fn applied_state(view: &ReadView) -> Result<(Option<LogId>, StoredMembership), SmError> {
    let meta = view.txn.open_table(SM_META)?;
    let last: Option<LogId> = match meta.get(tables::META_LAST_APPLIED)? {
        Some(v) => serde_json::from_slice(v.value())?,
        None => None,
    };
    let membership: StoredMembership = match meta.get(tables::META_MEMBERSHIP)? {
        Some(v) => serde_json::from_slice(v.value())?,
        None => StoredMembership::default(),
    };
    Ok((last, membership))
}

/// Reads the magic and the head a backup starts with.
pub(crate) fn read_head(r: &mut Reader<impl Read>) -> Result<BackupHead, SmError> {
    let mut magic = vec![0u8; BACKUP_MAGIC.len()];
    r.exact(&mut magic)?;
    if magic != BACKUP_MAGIC {
        return Err(SmError::Snapshot("not a raftgraph backup (bad magic)".into()));
    }
    let head_len = r.u32()?;
    if head_len > BACKUP_HEAD_BYTES_MAX {
        return Err(SmError::Snapshot(format!("a backup head of {head_len} bytes: corrupt")));
    }
    let mut head = vec![0u8; head_len];
    r.exact(&mut head)?;
    serde_json::from_slice(&head).map_err(|e| io_err("the backup's head does not parse", e))
}

/// The head of the backup file at `path`.
pub(crate) fn read_head_of(path: &std::path::Path) -> Result<BackupHead, SmError> {
    let file = fs::File::open(path).map_err(|e| io_err("open backup", e))?;
    read_head(&mut Reader { inner: BufReader::new(file) })
}

impl StateMachine {
    /// The head of a backup of `view`: which entry it reflects, how many rows, whose members.
    /// Errs for a state that has applied nothing (there is nothing to back up).
    pub(crate) fn backup_head(&self, view: &ReadView, node_id: NodeId) -> Result<BackupHead, SmError> {
        let (last_applied, membership) = applied_state(view)?;
        let last_applied =
            last_applied.ok_or_else(|| SmError::Snapshot("nothing is applied yet: no state to back up".into()))?;
        let mut rows = 0;
        for def in STATE_TABLES {
            rows += view.txn.open_table(*def)?.len()?;
        }
        let members = membership.membership().nodes().map(|(id, node)| (*id, node.addr.clone())).collect();
        Ok(BackupHead { last_applied, rows, created_at_ms: crate::clock::now_ms(), node_id, members })
    }

    /// Writes the backup of `view` with `head` to `out` (blocking: call it off the async
    /// workers). `out` should buffer; the tables go out row by row.
    pub(crate) fn write_backup_blocking(view: &ReadView, head: &BackupHead, out: impl Write) -> Result<(), SmError> {
        let io = |e: std::io::Error| io_err("write backup", e);
        let mut out = Hashing { inner: out, hasher: Sha256::new() };
        let head_json = serde_json::to_vec(head)?;
        out.write_all(BACKUP_MAGIC).map_err(io)?;
        out.write_all(&(head_json.len() as u32).to_be_bytes()).map_err(io)?;
        out.write_all(&head_json).map_err(io)?;
        encode_tables(&view.txn, &mut out)?;
        let digest = out.hasher.finalize();
        out.inner.write_all(&digest).map_err(io)?;
        out.inner.flush().map_err(io)
    }

    /// Seeds this (fresh, empty) state with the backup `input`: its tables, its last applied
    /// log id, and `members` (id to address) as the membership, all voters; the backup's table
    /// bytes become the current snapshot. Nothing is committed unless the whole file reads and
    /// its digest matches. Returns the backup's head and its digest.
    pub(crate) fn restore_blocking(
        &self,
        input: fs::File,
        members: &BTreeMap<NodeId, String>,
    ) -> Result<(BackupHead, [u8; BACKUP_DIGEST_BYTES]), SmError> {
        let mut hashed =
            Hashed { inner: BufReader::with_capacity(SNAPSHOT_IO_BUFFER_BYTES, input), hasher: Sha256::new() };
        let head = read_head(&mut Reader { inner: &mut hashed })?;

        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate)?;
        let mut rows = 0;
        let (name, path) = write_data_file(&self.dir, |out| {
            let mut r = Reader { inner: Copying { inner: &mut hashed, copy: out } };
            rows = decode_tables(&mut r, &txn)?;
            Ok(())
        })?;
        let checked = (|| {
            let digest: [u8; BACKUP_DIGEST_BYTES] = std::mem::take(&mut hashed.hasher).finalize().into();
            let mut stored = [0u8; BACKUP_DIGEST_BYTES];
            let mut plain = Reader { inner: &mut hashed.inner };
            plain.exact(&mut stored)?;
            if stored != digest {
                return Err(SmError::Snapshot("the backup's digest does not match its contents: corrupt".into()));
            }
            if !plain.at_end()? {
                return Err(SmError::Snapshot("trailing bytes after the backup's digest".into()));
            }
            if rows != head.rows {
                return Err(SmError::Snapshot(format!("the backup holds {rows} rows, its head says {}", head.rows)));
            }
            Ok(digest)
        })();
        let digest = match checked {
            Ok(d) => d,
            Err(e) => {
                let _ = fs::remove_file(&path);
                return Err(e);
            }
        };

        let voters: BTreeSet<NodeId> = members.keys().copied().collect();
        let nodes: BTreeMap<NodeId, openraft::BasicNode> =
            members.iter().map(|(id, addr)| (*id, openraft::BasicNode::new(addr))).collect();
        let membership = StoredMembership::new(Some(head.last_applied), openraft::Membership::new(vec![voters], nodes));
        {
            let mut m = txn.open_table(SM_META)?;
            m.insert(tables::META_LAST_APPLIED, serde_json::to_vec(&Some(head.last_applied))?.as_slice())?;
            m.insert(tables::META_MEMBERSHIP, serde_json::to_vec(&membership)?.as_slice())?;
        }
        txn.commit()?;
        let meta = SnapshotMeta {
            last_log_id: Some(head.last_applied),
            last_membership: membership,
            snapshot_id: format!("restored-{}-{}", head.last_applied.leader_id.term, head.last_applied.index),
        };
        let _guard = self.lock_snapshot_file()?;
        self.make_current(&meta, &name)?;
        Ok((head, digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_machine::tables::{id_key, Tables};

    /// A state holding `n` raw rows and a last applied log id, as if it had applied entries.
    fn filled(dir: &std::path::Path, n: u64) -> StateMachine {
        let sm = StateMachine::open(dir).expect("open");
        let txn = sm.db.begin_write().expect("begin");
        {
            let mut t = Tables::open(&txn).expect("tables");
            for i in 0..n {
                t.users.insert(id_key(i).as_slice(), format!("user {i} ").repeat(8).as_bytes()).expect("insert");
            }
            let mut meta = txn.open_table(SM_META).expect("meta");
            let applied = Some(LogId::new(openraft::CommittedLeaderId::new(3, 1), 4_242));
            meta.insert(tables::META_LAST_APPLIED, serde_json::to_vec(&applied).expect("json").as_slice())
                .expect("put");
        }
        txn.commit().expect("commit");
        sm
    }

    fn backup_bytes(sm: &StateMachine) -> Vec<u8> {
        let view = sm.read().expect("view");
        let head = sm.backup_head(&view, 1).expect("head");
        let mut out = Vec::new();
        StateMachine::write_backup_blocking(&view, &head, &mut out).expect("backup");
        out
    }

    type Restored = Result<(BackupHead, [u8; BACKUP_DIGEST_BYTES]), SmError>;

    fn restore(bytes: &[u8]) -> (tempfile::TempDir, Restored, StateMachine) {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("b");
        fs::write(&file, bytes).expect("write");
        let sm = StateMachine::open(&dir.path().join("state")).expect("open");
        let members = BTreeMap::from([(7, "10.0.0.7:8080".to_string())]);
        let result = sm.restore_blocking(fs::File::open(&file).expect("open"), &members);
        (dir, result, sm)
    }

    #[test]
    fn a_restore_holds_exactly_the_backed_up_state_and_a_damaged_one_holds_nothing() {
        let a = tempfile::tempdir().expect("dir");
        let source = filled(a.path(), 5_000);
        let bytes = backup_bytes(&source);
        // Phase 1: the restored tables hash the same as the source's (the snapshot encoding of
        // every table), at the same log id, with the given members, and its snapshot serves.
        let (_d, result, restored) = restore(&bytes);
        let (head, digest) = result.expect("restore");
        assert_eq!(digest.as_slice(), &bytes[bytes.len() - 32..]);
        assert_eq!(head.rows, 5_000);
        let (s, r) = (source.digest().expect("digest"), restored.digest().expect("digest"));
        assert_eq!((s.rows, s.hash, s.applied_index), (r.rows, r.hash, r.applied_index));
        let snapshot = restored.current_snapshot_blocking().expect("read").expect("the restore is the snapshot");
        assert_eq!(snapshot.meta.last_log_id, Some(head.last_applied));
        let voters: Vec<NodeId> = snapshot.meta.last_membership.membership().voter_ids().collect();
        assert_eq!(voters, [7]);
        // Phase 2: one flipped bit anywhere, a cut, or a trailing byte: refused, nothing applied.
        let mut cases = Vec::new();
        for at in [BACKUP_MAGIC.len() + 10, bytes.len() / 2, bytes.len() - 1] {
            let mut b = bytes.clone();
            b[at] ^= 0x10;
            cases.push(b);
        }
        cases.push(bytes[..bytes.len() - 100].to_vec());
        cases.push([bytes.clone(), vec![0]].concat());
        for case in cases {
            let (_d, result, sm) = restore(&case);
            assert!(result.is_err(), "a damaged backup must be refused");
            assert_eq!(sm.digest().expect("digest").rows, 0);
            assert!(sm.current_snapshot_blocking().expect("read").is_none());
        }
    }
}
