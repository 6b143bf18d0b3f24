//! Session guarantees: the log index an answer reflects, the index of the entry a mutation
//! committed in, and `atLeastIndex`, the index a request must be served at or after.
//!
//! - `extensions.appliedIndex`: the applied log index of the state the answer was read from
//!   (the highest, when several fields read), so a client can tell how fresh a LOCAL answer is.
//! - `extensions.writeIndex`: on a mutation's answer, the log index of the entry that carried it
//!   (the highest, for several mutations in one request; rejected commands committed too). The
//!   node that answers has applied that entry before any field of the answer is read, whichever
//!   node led (read-your-writes); if it could not catch up within the write's deadline the
//!   answer still carries the committed result, with `extensions.behind: true`.
//! - `extensions.atLeastIndex` on a *request*: the node serves it only once it has applied that
//!   index, waiting up to the store's read timeout, then answers UNAVAILABLE with `retryAfterMs`.
//!   A client that passes the highest index it has seen (as the typed client and the CLI do)
//!   never reads a state older than one it already saw or wrote, on any node (monotonic reads
//!   and read-your-writes across nodes).
//!
//! Each request gets its own cells (the extension is created per request). Resolvers reach the
//! store only through [`read`], [`read_indexed`], [`read_blocking`] and [`write`], which record
//! what they read and wrote, so no answer that read state goes without its index.
//! (Subscriptions read through the feed instead: each event they deliver carries its own
//! `index`.)

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute, NextPrepareRequest};
use async_graphql::{Context, Error, Pos, Request, Response, ServerResult, Value};
use raft::{Command, Consistency, ReadView, SmError};

use crate::error::{api_error, code, domain, invalid, store};
use crate::ApiContext;

/// The request extension naming the least applied index a request must be served at.
pub const AT_LEAST_INDEX: &str = "atLeastIndex";

/// What one request read and wrote.
#[derive(Default)]
struct Cells {
    /// Highest applied index any field was read at.
    applied: AtomicU64,
    /// Highest log index of an entry a mutation of this request committed in.
    write: AtomicU64,
    /// A mutation committed but this node had not applied it in time.
    behind: AtomicBool,
}

/// The per-request cells, as request data for resolvers.
#[derive(Clone)]
struct PerRequestCells(Arc<Cells>);

/// Notes that this request read state at `index`.
fn record(ctx: &Context<'_>, index: u64) {
    if let Some(cells) = ctx.data_opt::<PerRequestCells>() {
        cells.0.applied.fetch_max(index, Ordering::Relaxed);
    }
}

/// Proposes `command` and returns its response once this node has applied it (see
/// [`raft::Store::write`]), noting its entry's index for `extensions.writeIndex` and the state
/// it reflects for `extensions.appliedIndex`. Store failures become UNAVAILABLE or INTERNAL.
async fn propose(ctx: &Context<'_>, command: Command) -> Result<raft::Response, Error> {
    let api = ctx.data::<ApiContext>()?;
    let written = api.store.write(command).await.map_err(store)?;
    if let Some(cells) = ctx.data_opt::<PerRequestCells>() {
        cells.0.write.fetch_max(written.index, Ordering::Relaxed);
        cells.0.applied.fetch_max(written.applied_index, Ordering::Relaxed);
        if !written.caught_up {
            cells.0.behind.store(true, Ordering::Relaxed);
        }
    }
    Ok(written.response)
}

/// Proposes `command` and hands its response to `expect`, which takes the variant the command
/// answers with (`None` for any other). A rule the state machine refused becomes its domain
/// error (its stable code); a variant `expect` does not take is a bug, reported as INTERNAL.
pub(crate) async fn write<T>(
    ctx: &Context<'_>,
    command: Command,
    expect: impl FnOnce(raft::Response) -> Option<T>,
) -> Result<T, Error> {
    let kind = command.kind();
    let response = match propose(ctx, command).await? {
        raft::Response::Rejected(e) => return Err(domain(e)),
        response => response,
    };
    let got = response.kind();
    expect(response).ok_or_else(|| {
        tracing::error!(kind, got, "unexpected response");
        api_error(code::INTERNAL, format!("unexpected response {got} to {kind}"))
    })
}

/// Reads with `f` at `consistency`, noting the index it was read at for
/// `extensions.appliedIndex`. Store failures become UNAVAILABLE or INTERNAL.
pub(crate) async fn read<T>(
    ctx: &Context<'_>,
    consistency: Consistency,
    f: impl FnOnce(&ReadView) -> Result<T, SmError>,
) -> Result<T, Error> {
    Ok(read_indexed(ctx, consistency, f).await?.value)
}

/// [`read`], returning the index too, for answers that show it (`usernameAvailability`).
pub(crate) async fn read_indexed<T>(
    ctx: &Context<'_>,
    consistency: Consistency,
    f: impl FnOnce(&ReadView) -> Result<T, SmError>,
) -> Result<raft::Read<T>, Error> {
    let api = ctx.data::<ApiContext>()?;
    let read = api.store.read(consistency, f).await.map_err(store)?;
    record(ctx, read.applied_index);
    Ok(read)
}

/// [`read`] with `f` on a blocking thread, for reads that may walk many rows (see
/// [`raft::Store::read_blocking`]).
pub(crate) async fn read_blocking<T: Send + 'static>(
    ctx: &Context<'_>,
    consistency: Consistency,
    f: impl FnOnce(&ReadView) -> Result<T, SmError> + Send + 'static,
) -> Result<T, Error> {
    let api = ctx.data::<ApiContext>()?;
    let read = api.store.read_blocking(consistency, f).await.map_err(store)?;
    record(ctx, read.applied_index);
    Ok(read.value)
}

/// `atLeastIndex` from a request's extensions: absent or null is 0 (no floor).
fn at_least_index(request: &Request) -> Result<u64, Error> {
    match request.extensions.get(AT_LEAST_INDEX) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| invalid(AT_LEAST_INDEX, "must be a whole number from 0")),
        Some(_) => Err(invalid(AT_LEAST_INDEX, "must be a whole number from 0")),
    }
}

/// The extension factory.
pub struct AppliedIndexes;

impl ExtensionFactory for AppliedIndexes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(PerRequest(Arc::new(Cells::default())))
    }
}

struct PerRequest(Arc<Cells>);

#[async_trait::async_trait]
impl Extension for PerRequest {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let floor = at_least_index(&request).map_err(|e| e.into_server_error(Pos::default()))?;
        if floor > 0 {
            let api = ctx.data::<ApiContext>().map_err(|e| e.into_server_error(Pos::default()))?;
            api.store.wait_applied(floor).await.map_err(|e| store(e).into_server_error(Pos::default()))?;
        }
        next.run(ctx, request.data(PerRequestCells(self.0.clone()))).await
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let mut response = next.run(ctx, operation_name).await;
        let cells = &self.0;
        match cells.applied.load(Ordering::Relaxed) {
            0 => {}
            index => response = response.extension("appliedIndex", Value::from(index)),
        }
        match cells.write.load(Ordering::Relaxed) {
            0 => {}
            index => response = response.extension("writeIndex", Value::from(index)),
        }
        if cells.behind.load(Ordering::Relaxed) {
            response = response.extension("behind", Value::from(true));
        }
        response
    }
}
