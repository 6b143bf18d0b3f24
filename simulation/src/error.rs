//! The simulation's two error types, one per boundary.
//!
//! [`RunError`] is what [`crate::run`] returns when a run could not happen at all (its data
//! directory). [`SimError`] is why a host's request sequence failed (setup, a membership change,
//! convergence, a final read); it never leaves the run as an `Err`: its text becomes an event or
//! the evidence of a violation, so its messages are part of the reports and stay as they were.

use std::path::PathBuf;
use std::time::Duration;

/// Why a run could not be carried out (as opposed to a run that found a violation).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A run's data directory could not be created or removed.
    #[error("{action} {}: {source}", path.display())]
    DataDir {
        /// What was being done ("create", "remove").
        action: &'static str,
        /// The directory.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
}

/// Why a host's sequence of requests did not get what it needed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SimError {
    /// A node answered no request with data before the deadline (setup and final reads, which
    /// retry the same node while it elects or catches up).
    #[error("n{node} gave no data for {query:?} in {limit:?}: {last}")]
    NoData {
        /// The node asked.
        node: u64,
        /// The GraphQL document.
        query: String,
        /// How long it was asked for.
        limit: Duration,
        /// The last answer it gave instead.
        last: String,
    },
    /// An account could not be registered on any node before the deadline.
    #[error("could not register {name}")]
    NotRegistered {
        /// The username.
        name: String,
    },
    /// An answer with data lacked a field the run needs.
    #[error("no {field}")]
    Missing {
        /// The field ("token", "product id", "sale id").
        field: &'static str,
    },
    /// A membership change found no leader among the other nodes, or the leader refused it.
    #[error("{last}")]
    Membership {
        /// The last answer, or that no leader was found.
        last: String,
    },
    /// After healing, the nodes did not agree on a leader and an applied index in time.
    #[error("nodes did not converge within {within:?} after healing; last views: {last}")]
    NoConvergence {
        /// The bound ([`crate::config::CONVERGE_TIMEOUT`]).
        within: Duration,
        /// (leader, last applied) per node in the latest round that disagreed, and errors.
        last: String,
    },
    /// Setup (accounts, product, sales) failed, so the run had no workload.
    #[error("setup failed: {0}")]
    Setup(Box<SimError>),
}
