//! The redb tables of the state machine, and small helpers to read and write JSON values in them.
//!
//! Every state table maps bytes to bytes, so snapshots can copy them without knowing their
//! types, and each domain module owns its key encoding (big-endian ids sort numerically).

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::SmError;

/// A state table: bytes to bytes.
pub(crate) type StateTable = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// Accounts by id (big-endian u64) -> `User`.
pub(crate) const USERS: StateTable = TableDefinition::new("users");
/// Password hashes by user id, kept apart so reading a profile never touches them.
pub(crate) const CREDENTIALS: StateTable = TableDefinition::new("credentials");
/// Canonical username -> `NameRecord` (owned, reserved, cooling down).
pub(crate) const NAMES: StateTable = TableDefinition::new("names");
/// Replicated counters and the state machine clock, by name.
pub(crate) const COUNTERS: StateTable = TableDefinition::new("counters");

/// Every table that is part of the replicated state, in snapshot order. A table missing here
/// would silently diverge on a node that catches up from a snapshot.
pub(crate) const STATE_TABLES: &[StateTable] = &[USERS, CREDENTIALS, NAMES, COUNTERS];

/// Bookkeeping that is not state: the last applied log id and the membership. Written in the
/// same transaction as the state it describes.
pub(crate) const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");

pub(crate) const META_LAST_APPLIED: &str = "last_applied";
pub(crate) const META_MEMBERSHIP: &str = "membership";

pub(crate) const COUNTER_CLOCK: &[u8] = b"clock_ms";
pub(crate) const COUNTER_NEXT_USER_ID: &[u8] = b"next_user_id";

/// Encodes an id as a key that sorts numerically.
pub(crate) fn id_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// Reads a JSON value at `key`.
pub(crate) fn get_json<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
) -> Result<Option<T>, SmError> {
    match table.get(key)? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
        None => Ok(None),
    }
}

/// Writes a JSON value at `key`.
pub(crate) fn put_json<T: Serialize>(
    table: &mut Table<&'static [u8], &'static [u8]>,
    key: &[u8],
    value: &T,
) -> Result<(), SmError> {
    let bytes = serde_json::to_vec(value)?;
    table.insert(key, bytes.as_slice())?;
    Ok(())
}

/// The state tables opened once for a whole batch of entries.
pub(crate) struct Tables<'txn> {
    pub users: Table<'txn, &'static [u8], &'static [u8]>,
    pub credentials: Table<'txn, &'static [u8], &'static [u8]>,
    pub names: Table<'txn, &'static [u8], &'static [u8]>,
    pub counters: Table<'txn, &'static [u8], &'static [u8]>,
}

impl<'txn> Tables<'txn> {
    pub(crate) fn open(txn: &'txn WriteTransaction) -> Result<Self, SmError> {
        Ok(Tables {
            users: txn.open_table(USERS)?,
            credentials: txn.open_table(CREDENTIALS)?,
            names: txn.open_table(NAMES)?,
            counters: txn.open_table(COUNTERS)?,
        })
    }

    /// Reads a u64 counter (0 when never set).
    pub(crate) fn counter(&self, name: &[u8]) -> Result<u64, SmError> {
        Ok(match self.counters.get(name)? {
            Some(v) => {
                u64::from_be_bytes(v.value().try_into().map_err(|_| SmError::Corrupt("counter is not 8 bytes"))?)
            }
            None => 0,
        })
    }

    /// Writes a u64 counter.
    pub(crate) fn set_counter(&mut self, name: &[u8], value: u64) -> Result<(), SmError> {
        self.counters.insert(name, value.to_be_bytes().as_slice())?;
        Ok(())
    }
}
