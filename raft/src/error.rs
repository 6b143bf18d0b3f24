//! Why the store could not serve a request.

use std::sync::Arc;

use crate::config::ConfigError;
use crate::state_machine::SmError;

/// How long a client should wait before retrying after UNAVAILABLE.
pub const RETRY_AFTER_MS: u64 = 500;

/// Why the store could not serve a request. Business rule refusals are not errors here: they
/// come back as [`crate::Response::Rejected`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// No quorum, no leader, or no answer in time. The write may or may not have been applied
    /// when `outcome_unknown` is set; otherwise it certainly was not.
    #[error("{message}")]
    Unavailable {
        /// What happened.
        message: String,
        /// Suggested wait before retrying.
        retry_after_ms: u64,
        /// True when the command may still commit later (it reached a leader's log).
        outcome_unknown: bool,
    },
    /// The request itself cannot be served as sent (a command over
    /// [`crate::COMMAND_BYTES_MAX`]): nothing was proposed, and the same request will fail again.
    #[error("{0}")]
    Invalid(String),
    /// The store's configuration breaks a rule: it does not start.
    #[error("invalid store configuration: {0}")]
    Config(#[from] ConfigError),
    /// The state's storage failed (redb, a value that does not decode, a snapshot file). Shared,
    /// because one failure may answer every proposal of a batch.
    #[error("{0}")]
    State(Arc<SmError>),
    /// Any other failure a retry will not fix.
    #[error("internal error: {0}")]
    Internal(String),
}

impl StoreError {
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        StoreError::Unavailable { message: message.into(), retry_after_ms: RETRY_AFTER_MS, outcome_unknown: false }
    }
    pub(crate) fn unknown(message: impl Into<String>) -> Self {
        StoreError::Unavailable { message: message.into(), retry_after_ms: RETRY_AFTER_MS, outcome_unknown: true }
    }
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        StoreError::Internal(message.into())
    }
}

impl From<SmError> for StoreError {
    fn from(e: SmError) -> Self {
        StoreError::State(Arc::new(e))
    }
}
