//! The domain's home: the rows the state machine stores (users, name records, products, sales,
//! orders, buyer totals, chats, messages, tweets), the refusals it answers with, and the pure
//! rules over them. Apply and the GraphQL schema both decide with these functions (the schema as
//! a fast path before proposing, apply as the rule), so a rule is written once. Nothing here
//! touches storage, the network or a clock.
//!
//! - `accounts`: users, roles, profiles, name records, the name-status rule.
//! - `names`: the username canonical form (NFKC, case fold, TS #39 skeleton) and policy.
//! - `sales`: products, sales and their status, orders, buyer totals, sale updates.
//! - `chats`: chats, messages, their limits, and read ranges.
//! - `tweets`: tweets, their text rules (hashtags, mentions, search words) and search queries.

use serde::{Deserialize, Serialize};

pub mod accounts;
pub mod chats;
pub mod names;
pub mod sales;
pub mod tweets;

pub use accounts::{NameRecord, ProfileChange, Role, User};

/// The stable error codes of the GraphQL contract that the state machine can decide.
///
/// Business rules are decided at apply time on the committed order; a rejected command is still a
/// committed entry, but it changes nothing and answers with one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The caller may not do this.
    Forbidden,
    /// The input broke a rule.
    InvalidInput,
    /// The thing named does not exist.
    NotFound,
    /// The name has an owner.
    UsernameTaken,
    /// The name is held by someone else's reservation.
    UsernameReserved,
    /// The name is reserved by policy or cooling down after a release.
    UsernameBlocked,
    /// The name breaks the username policy.
    UsernameInvalid,
    /// Credentials did not match.
    Unauthenticated,
    /// Not enough stock left for the purchase.
    SoldOut,
    /// The sale is not open (not started yet, or ended).
    SaleNotOpen,
    /// The purchase would exceed the per-user limit.
    LimitExceeded,
}

impl ErrorCode {
    /// The code as it appears in a GraphQL error's `extensions.code`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::InvalidInput => "INVALID_INPUT",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::UsernameTaken => "USERNAME_TAKEN",
            ErrorCode::UsernameReserved => "USERNAME_RESERVED",
            ErrorCode::UsernameBlocked => "USERNAME_BLOCKED",
            ErrorCode::UsernameInvalid => "USERNAME_INVALID",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::SoldOut => "SOLD_OUT",
            ErrorCode::SaleNotOpen => "SALE_NOT_OPEN",
            ErrorCode::LimitExceeded => "LIMIT_EXCEEDED",
        }
    }
}

/// A rule the state machine refused a command for, with a message that names the rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct DomainError {
    /// The stable code.
    pub code: ErrorCode,
    /// A sentence for humans naming the rule and the values that broke it.
    pub message: String,
}

impl DomainError {
    /// A refusal with `code` and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        DomainError { code, message: message.into() }
    }
}
