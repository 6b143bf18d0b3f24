//! A small typed client for the Raft-replicated GraphQL backend, and the `cli` command-line
//! tool. The load generator is a crate of its own (`loadgen/`) over this library, so that the
//! library carries none of what only load needs (histograms, the peers' protocols).
//!
//! The crate depends on no other crate of this workspace: it speaks only the GraphQL contract
//! (`POST {node}/graphql`, and graphql-transport-ws on `GET {node}/graphql`), so it exercises the
//! server exactly as an outside caller would.
//!
//! Modules:
//! - [`error`]: [`ClientError`], the decoding of a GraphQL response into data or an error, and
//!   the classification of a failure ([`error::Failure`]) the retry policy acts on.
//! - [`transport`]: [`Client`], which posts a query to a chosen node, once or under a
//!   [`RetryPolicy`].
//! - [`ops`]: the contract's operations as query text, typed results and helper methods.
//! - [`import`]: `importAccounts` calls packed to the server's limits, for `cli import` and
//!   `loadgen seed`.
//! - [`subscribe`](mod@subscribe): a graphql-transport-ws subscription that resumes on another
//!   node from the last index it saw.
//!
//! # Retries
//! Typed helpers retry by default (turn it off with [`Client::with_retries`]). A failure is
//! retried, on the next node of the list and after a jittered exponential backoff that never
//! undercuts the server's `retryAfterMs` hint, when:
//! - the server said `UNAVAILABLE` with `outcomeUnknown: false`, or the connection was refused
//!   before the request was sent: the request certainly took no effect, so any operation is
//!   repeated;
//! - the outcome is unknown (`UNAVAILABLE` with `outcomeUnknown: true`, a timeout or dropped
//!   connection after sending, HTTP 502–504): only **idempotent** operations are repeated. These
//!   are the reads (`usernameAvailability`, `sale`, `timeline`, `messages`, `cluster`), `login`,
//!   `purchase` (its idempotency key returns the first order), `follow`, `sendMessage` (its
//!   client message id), `startSale` and `importAccounts` (a repeat skips what the first attempt
//!   created). The others (`reserveUsername`, `register`,
//!   `postTweet`, `createProduct`, `createSale`, `createChat`) return
//!   [`ClientError::OutcomeUnknown`] at once: the caller should re-check (ask
//!   `usernameAvailability`, try `login`, read the timeline) before trying again.
//!
//! Any other error is returned as is. Attempts and total time are bounded by [`RetryPolicy`].
//! [`Client::execute_retrying`] treats a raw request as idempotent;
//! [`Client::execute_with`] takes its [`Idempotency`] explicitly.
//!
//! # Subscriptions
//! [`subscribe()`] (or [`Client::subscribe`], [`Client::sale_updates`]) starts on a random node
//! and, when that node goes away (its socket closes, it falls silent, it answers `UNAVAILABLE`,
//! or it sends a `complete` nobody asked for, which for the contract's never-ending feeds means
//! it is shutting down), resumes on the next node with `afterIndex` set to the last index seen:
//! no event is lost or repeated. See [`mod@subscribe`].

#![warn(missing_docs)]

pub mod error;
pub mod import;
pub mod ops;
pub mod subscribe;
pub mod transport;

pub use error::{ClientError, Failure};
pub use import::{ImportAccount, ImportResult, SkippedAccount};
pub use ops::{
    AuthPayload, Author, Availability, Chat, ClusterInfo, Connection, Consistency, CreateProductInput, CreateSaleInput,
    Edge, Member, Message, Order, PageInfo, Product, RegisterInput, Reservation, Sale, SaleStatus, SaleUpdate, Tweet,
    User, UserSummary,
};
pub use subscribe::{subscribe, subscribe_with, SubscribeError, SubscribeOptions, Subscription};
pub use transport::{Client, Idempotency, RetryPolicy};
