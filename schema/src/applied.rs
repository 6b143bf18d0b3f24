//! `extensions.appliedIndex` on responses: the log index the state the answer was read from
//! reflects, so a client can tell how fresh a LOCAL answer is (and compare two nodes' answers).
//!
//! Each request gets its own cell (the extension is created per request); resolvers that read
//! state record the index they read at with [`record`], and the response carries the highest.
//! A request that read nothing carries no index.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute, NextPrepareRequest};
use async_graphql::{Context, Request, Response, ServerResult, Value};

/// The per-request cell resolvers record into.
#[derive(Clone)]
struct AppliedIndex(Arc<AtomicU64>);

/// Notes that this request read state at `index`.
pub(crate) fn record(ctx: &Context<'_>, index: u64) {
    if let Some(cell) = ctx.data_opt::<AppliedIndex>() {
        cell.0.fetch_max(index, Ordering::Relaxed);
    }
}

/// The extension factory.
pub struct AppliedIndexes;

impl ExtensionFactory for AppliedIndexes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(PerRequest(Arc::new(AtomicU64::new(0))))
    }
}

struct PerRequest(Arc<AtomicU64>);

#[async_trait::async_trait]
impl Extension for PerRequest {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        next.run(ctx, request.data(AppliedIndex(self.0.clone()))).await
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let response = next.run(ctx, operation_name).await;
        match self.0.load(Ordering::Relaxed) {
            0 => response,
            index => response.extension("appliedIndex", Value::from(index)),
        }
    }
}

/// The value of a read, noting the index it was read at.
pub(crate) fn value<T>(ctx: &Context<'_>, read: raft::Read<T>) -> T {
    record(ctx, read.applied_index);
    read.value
}
