//! Deterministic fault simulations of whole clusters (turmoil), with a history recorder and a
//! linearizability checker.
//!
//! Each simulated host runs the node binary's own code (`node::serve`) with turmoil's network in
//! place of the kernel's ([`net`]); each keeps its redb files in its own directory, so a crash and
//! restart reopens real data. Client hosts issue a random mix of username claims and checks,
//! purchases and sale reads, recording each operation's invocation and completion
//! ([`history`]); a schedule drawn from the seed partitions, delays, drops, crashes, restarts and
//! wipes nodes meanwhile ([`faults`]). After healing, the invariants check that each key's
//! history linearizes ([`check`] is the search), that every session saw its own writes, that
//! nodes agree on every name, stock + sold = initial and every acknowledged order is present
//! once, and that every node's state tables are byte-for-byte equal.
//!
//! `cargo run --release -p simulation -- --seeds 500` runs many seeds; a failure prints the one
//! command that replays it. See docs/SIMULATION.md.
//!
//! Layout, one room each:
//! - `config`: [`SimConfig`], its per-seed defaults, the replay command, the shared bounds.
//! - `harness`: [`run`]: builds the turmoil sim, steps it, fires the faults, wipes, heals, checks.
//! - `shared`: the two pieces hosts share: `Stage` (where the run stands) and `Evidence`.
//! - `workload`: a client host: claims, checks, purchases and sale reads, with retries.
//! - `control`: the ctl host: setup, following the leader, the membership change of a wipe.
//! - `resolution`: after healing: settle unknown purchases, converge, read the final state.
//! - `queries`: the GraphQL documents workload and resolution share, and reading their answers.
//! - `invariants/`: one file per invariant: `history`, `sessions`, `final_state`, `digests`.
//! - `outcome`: [`Violation`] and [`Outcome`], with the failure report.
//! - `error`: [`RunError`] (a run could not happen) and [`SimError`] (a host's requests failed).
//! - [`check`]: the linearizability search and the name and sale models.
//! - [`faults`]: the fault schedule, drawn from the seed.
//! - [`history`]: the recorder, one logical clock for every invocation and completion.
//! - [`gql`]: a small GraphQL-over-HTTP client for simulated hosts.
//! - [`net`]: the node's listener and transport over turmoil's TCP.
//!
//! It must not reach into the node's internals: it drives `node::serve` through its public
//! seams and reads the state only through `raft::StateMachine` after a run.

pub mod check;
pub mod config;
mod control;
pub mod error;
pub mod faults;
pub mod gql;
mod harness;
pub mod history;
mod invariants;
pub mod net;
pub mod outcome;
mod queries;
mod resolution;
mod shared;
mod workload;

pub use config::SimConfig;
pub use error::{RunError, SimError};
pub use harness::run;
pub use outcome::{Outcome, Violation};
