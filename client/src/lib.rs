//! A small typed client for the Raft-replicated GraphQL backend, plus the `loadgen` binary
//! that drives it under load.
//!
//! The crate depends on no other crate of this workspace: it speaks only the GraphQL-over-HTTP
//! contract (`POST {node}/graphql`), so it exercises the server exactly as an outside caller would.
//!
//! Modules:
//! - [`error`]: [`ClientError`] and the decoding of a GraphQL response into data or an error.
//! - [`transport`]: [`Client`], which posts a query to a chosen node, once or with retries.
//! - [`ops`]: the contract's operations as query text, typed results and helper methods.
//! - [`subscribe`]: a graphql-transport-ws subscription that resumes on the next node.

#![warn(missing_docs)]

pub mod error;
pub mod ops;
pub mod subscribe;
pub mod transport;

pub use error::ClientError;
pub use ops::{
    AuthPayload, Availability, ClusterInfo, Consistency, CreateProductInput, CreateSaleInput, Member, Order, Product,
    RegisterInput, Reservation, Sale, SaleStatus, User,
};
pub use subscribe::{subscribe, SubscribeError, Subscription};
pub use transport::Client;
