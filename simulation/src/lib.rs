//! Deterministic fault simulations of whole clusters (turmoil), with a history recorder and a
//! linearizability checker.
//!
//! Each simulated host runs the node binary's own code (`node::serve`) with turmoil's network in
//! place of the kernel's ([`net`]); each keeps its redb files in its own directory, so a crash and
//! restart reopens real data. Client hosts issue a random mix of username claims and checks,
//! purchases and sale reads, recording each operation's invocation and completion
//! ([`history`]); a schedule drawn from the seed partitions, delays, drops, crashes, restarts and
//! wipes nodes meanwhile ([`faults`]). After healing, [`check`] searches each key's history for a
//! linearization, and [`sim`] checks end-state invariants: nodes agree on every name, stock +
//! sold = initial, every acknowledged order is present once, and every node's state tables are
//! byte-for-byte equal.
//!
//! `cargo run --release -p simulation -- --seeds 500` runs many seeds; a failure prints the one
//! command that replays it. See docs/SIMULATION.md.

pub mod check;
pub mod error;
pub mod faults;
pub mod gql;
pub mod history;
pub mod net;
pub mod sim;

pub use sim::{run, Outcome, SimConfig};
