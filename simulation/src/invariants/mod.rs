//! The invariants a run must keep, one file each. All but [`sessions`] run after the
//! simulation has finished, over what it observed; [`sessions`] runs online, as answers arrive,
//! because what a session may see depends on what it had seen at that moment.
//!
//! - [`history`]: every key's recorded history is linearizable (models in [`crate::check`]).
//! - [`sessions`]: read-your-writes, monotonic reads, and `atLeastIndex` honoured, per client.
//! - [`final_state`]: after healing, every node agrees on every name and sale, no acknowledged
//!   claim or order is lost, and stock + sold = the initial stock.
//! - [`digests`]: every node's state tables are byte-for-byte equal.

pub(crate) mod digests;
pub(crate) mod final_state;
pub(crate) mod history;
pub(crate) mod sessions;
