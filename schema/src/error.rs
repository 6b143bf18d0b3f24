//! GraphQL errors with a stable `extensions.code`.
//!
//! Every error the API returns carries one of the codes of the contract (DESIGN.md). Resolver
//! errors are built here; errors async-graphql raises itself (parse, validation, depth and
//! complexity limits) are stamped `INVALID_INPUT` by [`ErrorCodes`].

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextRequest};
use async_graphql::{Error, ErrorExtensions, Response};
use raft::{DomainError, StoreError};

/// The codes of the contract.
pub mod code {
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    pub const FORBIDDEN: &str = "FORBIDDEN";
    pub const INVALID_INPUT: &str = "INVALID_INPUT";
    pub const NOT_FOUND: &str = "NOT_FOUND";
    pub const USERNAME_TAKEN: &str = "USERNAME_TAKEN";
    pub const USERNAME_RESERVED: &str = "USERNAME_RESERVED";
    pub const USERNAME_BLOCKED: &str = "USERNAME_BLOCKED";
    pub const USERNAME_INVALID: &str = "USERNAME_INVALID";
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    pub const UNAVAILABLE: &str = "UNAVAILABLE";
    pub const INTERNAL: &str = "INTERNAL";
}

/// An error with `code` and a message for humans.
pub fn api_error(code: &'static str, message: impl Into<String>) -> Error {
    Error::new(message.into()).extend_with(|_, e| e.set("code", code))
}

/// `INVALID_INPUT` naming the offending field.
pub fn invalid(field: &str, message: impl std::fmt::Display) -> Error {
    let field = field.to_string();
    Error::new(format!("{field}: {message}")).extend_with(move |_, e| {
        e.set("code", code::INVALID_INPUT);
        e.set("field", field.clone());
    })
}

/// A rule the state machine refused.
pub fn domain(e: DomainError) -> Error {
    api_error(e.code.as_str(), e.message)
}

/// A store failure: UNAVAILABLE with a retry hint, or INTERNAL.
pub fn store(e: StoreError) -> Error {
    match e {
        StoreError::Unavailable { message, retry_after_ms, outcome_unknown } => {
            Error::new(message).extend_with(move |_, ext| {
                ext.set("code", code::UNAVAILABLE);
                ext.set("retryAfterMs", retry_after_ms);
                ext.set("outcomeUnknown", outcome_unknown);
            })
        }
        StoreError::Invalid(message) => api_error(code::INVALID_INPUT, message),
        StoreError::Internal(message) => internal_store_error(message),
        other @ (StoreError::Config(_) | StoreError::State(_)) => internal_store_error(other.to_string()),
    }
}

fn internal_store_error(message: String) -> Error {
    tracing::error!(%message, "internal store error");
    api_error(code::INTERNAL, message)
}

/// Stamps `INVALID_INPUT` on errors that carry no code: they come from async-graphql's parser
/// and validators (unknown field, wrong type, depth or complexity over the limit), which is to
/// say from the request itself.
pub struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodes)
    }
}

#[async_trait::async_trait]
impl Extension for ErrorCodes {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut resp = next.run(ctx).await;
        stamp_codes(&mut resp.errors);
        resp
    }
}

/// Stamps `INVALID_INPUT` on every error that carries no code (see [`ErrorCodes`]); the
/// WebSocket transport calls it on each result of a stream, which that extension does not see.
pub fn stamp_codes(errors: &mut [async_graphql::ServerError]) {
    for err in errors {
        let ext = err.extensions.get_or_insert_with(Default::default);
        if ext.get("code").is_none() {
            ext.set("code", code::INVALID_INPUT);
        }
    }
}
