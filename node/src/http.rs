//! The HTTP surface on the node's one port: GraphQL (POST, GET and WebSocket), GraphiQL,
//! health, readiness, metrics, and the Raft RPC routes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use async_graphql::{BatchRequest, ErrorExtensions};
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts as _, Path, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use raft::Store;
use raft::{PeerAuth, SIGNATURE_HEADER};
use schema::{AppSchema, BearerToken, ClientKey, Limiter};

use crate::config::{
    BATCH_REQUESTS_MAX, BODY_BYTES_MAX, BODY_READ_TIMEOUT_MS, RAFT_BODY_BYTES_MAX, WS_READ_BUFFER_BYTES,
};

/// Whether a body read failed on the length limit (`to_bytes` wraps it in its error chain).
fn is_too_large(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}
use crate::metrics::Metrics;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The schemas requests run on.
    pub schemas: Schemas,
    /// The schema in SDL, for `GET /schema.graphql`.
    pub sdl: Arc<str>,
    /// Automatic persisted queries known to this node.
    pub persisted: Arc<crate::persisted::PersistedQueries>,
    /// Browser origins allowed to call the API (`--cors-origins`); empty: same origin only.
    pub cors_origins: Arc<[String]>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// The request stages the HTTP handler times (decode, encode); the schema times the rest.
    pub stages: Arc<schema::observe::RequestStages>,
    /// Verifies the signatures of peers' requests on `/raft/`.
    pub peer_auth: Arc<PeerAuth>,
    /// The per-client cost budget, shared with the schemas (which charge fields' costs; the
    /// transports charge each request and WebSocket message one unit before decoding it).
    pub limiter: Arc<Limiter>,
    /// Open GraphQL WebSockets, in all and per client.
    pub sockets: Arc<crate::ws::Sockets>,
    /// Verifies the bearer tokens of routes outside GraphQL (`/backup`).
    pub tokens: schema::TokenVerifier,
    /// Backups this node may stream at once ([`BACKUPS_AT_ONCE_MAX`]).
    pub backups: Arc<tokio::sync::Semaphore>,
    /// Turns true when the node starts draining. axum's graceful shutdown does not track
    /// upgraded connections, so subscriber sockets watch this to close themselves.
    pub draining: tokio::sync::watch::Receiver<bool>,
}

/// The router of every route.
pub fn router(state: AppState) -> Router {
    // No body limit layer: `raft_rpc` reads a body only after the signature in its headers
    // checks out, and then exactly the signed length (at most RAFT_BODY_BYTES_MAX).
    let raft = Router::new().route("/raft/{rpc}", post(raft_rpc));
    let api = Router::new()
        .route("/graphql", post(graphql).get(graphql_get))
        .route("/schema.graphql", get(sdl))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX));
    let api = match cors(&state.cors_origins) {
        Some(layer) => api.layer(layer),
        None => api,
    };
    Router::new()
        .merge(api)
        .route("/", get(crate::playground::index))
        .route("/assets/graphiql/{name}", get(crate::playground::asset))
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/backup", get(backup))
        .merge(raft)
        // A span per HTTP request (method, path, status, latency at debug level), the parent of
        // the GraphQL execution's spans and the store's propose and read-index spans.
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

fn bearer(headers: &HeaderMap) -> BearerToken {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|t| t.trim().to_string());
    BearerToken(token)
}

fn server_error(code: &'static str, message: &str) -> async_graphql::ServerError {
    async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code)).into_server_error(Default::default())
}

/// Charges one unit for a request (or WebSocket message) before it is decoded; the schema
/// charges its fields' costs once it is parsed. Err is the RATE_LIMITED error to answer.
pub(crate) fn charge_request(limiter: &Limiter, client: ClientKey) -> Result<(), async_graphql::ServerError> {
    limiter.charge(client, schema::limits::COST_READ).map_err(|retry_after_ms| {
        schema::limits::rate_limited(
            format!("too many requests from this client; retry in {retry_after_ms} ms"),
            retry_after_ms,
        )
        .into_server_error(Default::default())
    })
}

/// The media type of a GraphQL response, as the GraphQL-over-HTTP specification names them:
/// `application/graphql-response+json` for a client that asks for it (it then learns a request
/// error from the status too), `application/json` otherwise (always 200, as legacy clients
/// expect).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Media {
    GraphqlResponseJson,
    Json,
}

impl Media {
    fn of(headers: &HeaderMap) -> Media {
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if accept.split(',').any(|t| t.trim().starts_with(GRAPHQL_RESPONSE_JSON)) {
            Media::GraphqlResponseJson
        } else {
            Media::Json
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Media::GraphqlResponseJson => "application/graphql-response+json; charset=utf-8",
            Media::Json => "application/json",
        }
    }

    /// The status of one response: a request error (no data, and no error from a field) is
    /// 4xx with graphql-response+json (429 when rate limited, 503 when unavailable), and
    /// everything is 200 with application/json.
    fn status(self, response: &async_graphql::Response) -> StatusCode {
        let request_error = response.data == async_graphql::Value::Null
            && !response.errors.is_empty()
            && response.errors.iter().all(|e| e.path.is_empty());
        if self == Media::Json || !request_error {
            return StatusCode::OK;
        }
        let code = |e: &async_graphql::ServerError| {
            e.extensions.as_ref().and_then(|x| x.get("code")).and_then(|v| match v {
                async_graphql::Value::String(s) => Some(s.clone()),
                _ => None,
            })
        };
        match code(&response.errors[0]).as_deref() {
            Some(schema::error::code::RATE_LIMITED) => StatusCode::TOO_MANY_REQUESTS,
            Some(schema::error::code::UNAVAILABLE) => StatusCode::SERVICE_UNAVAILABLE,
            // Apollo's clients read the code from a 200 and then send the full query.
            Some(PERSISTED_QUERY_NOT_FOUND) => StatusCode::OK,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
/// The code of an automatic persisted query whose hash this node does not know (DESIGN.md).
pub const PERSISTED_QUERY_NOT_FOUND: &str = "PERSISTED_QUERY_NOT_FOUND";

/// Encodes a response (or a batch's responses) with `media`'s content type and status.
fn encode(state: &AppState, media: Media, status: StatusCode, body: &impl serde::Serialize) -> Response {
    let encoding = Instant::now();
    let resp = match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, media.content_type())], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the response: {e}")).into_response(),
    };
    state.stages.encode.since(encoding);
    resp
}

/// The body is read here, not by async-graphql-axum's extractor: that one reads the body stream
/// itself, past axum's `DefaultBodyLimit`, so a huge body would be read whole. Here it is read
/// within [`BODY_BYTES_MAX`] and [`BODY_READ_TIMEOUT_MS`], and an oversized, late or malformed
/// body gets a GraphQL error with a code.
async fn graphql(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let media = Media::of(&headers);
    let refuse_with = |error| {
        let response = async_graphql::Response::from_errors(vec![error]);
        encode(&state, media, media.status(&response), &response)
    };
    let refuse = |code, message: &str| refuse_with(server_error(code, message));
    let client = ClientKey::of(peer.ip());
    if let Err(e) = charge_request(&state.limiter, client) {
        return refuse_with(e);
    }
    // The whole body within BODY_READ_TIMEOUT_MS: a body that trickles in a byte at a time
    // would otherwise hold the connection for as long as the client likes.
    let read = tokio::time::timeout(
        std::time::Duration::from_millis(BODY_READ_TIMEOUT_MS),
        axum::body::to_bytes(body, BODY_BYTES_MAX),
    )
    .await;
    let body = match read {
        Ok(Ok(b)) => b,
        Ok(Err(e)) if is_too_large(&e) => {
            return refuse(
                schema::error::code::INVALID_INPUT,
                &format!("the request body exceeds {BODY_BYTES_MAX} bytes"),
            )
        }
        Ok(Err(e)) => return refuse(schema::error::code::INVALID_INPUT, &format!("unreadable request body: {e}")),
        Err(_) => {
            return refuse(
                schema::error::code::INVALID_INPUT,
                &format!("the request body did not arrive within {BODY_READ_TIMEOUT_MS} ms"),
            )
        }
    };
    // A large body costs its reading and decoding whatever it holds.
    let body_cost = body.len() as u64 / 1024 * schema::limits::COST_PER_DOCUMENT_KIB;
    if body_cost > 0 {
        if let Err(retry_after_ms) = state.limiter.charge(client, body_cost) {
            let e = schema::limits::rate_limited(
                format!("too many bytes from this client; retry in {retry_after_ms} ms"),
                retry_after_ms,
            );
            return refuse_with(e.into_server_error(Default::default()));
        }
    }
    let decoding = Instant::now();
    let decoded = serde_json::from_slice::<BatchRequest>(&body);
    state.stages.decode.since(decoding);
    let batch = match decoded {
        Ok(b) => b,
        Err(e) => {
            return refuse(
                schema::error::code::INVALID_INPUT,
                &format!("the body must be a JSON GraphQL request (or an array of them): {e}"),
            )
        }
    };
    let token = bearer(&headers);
    match batch {
        BatchRequest::Single(request) => {
            let response = execute(&state, request.data(token).data(client)).await;
            encode(&state, media, media.status(&response), &response)
        }
        BatchRequest::Batch(items) if items.len() > BATCH_REQUESTS_MAX => refuse(
            schema::error::code::INVALID_INPUT,
            &format!("a batch may hold at most {BATCH_REQUESTS_MAX} operations, got {}", items.len()),
        ),
        BatchRequest::Batch(items) => {
            let runs = items.into_iter().map(|r| execute(&state, r.data(token.clone()).data(client)));
            let responses = futures::future::join_all(runs).await;
            encode(&state, media, StatusCode::OK, &responses)
        }
    }
}

/// `GET /graphql`: a WebSocket upgrade, or a read-only query in the URL (`query`, `variables`,
/// `operationName`, `extensions`, as the GraphQL-over-HTTP specification has it), so that
/// persisted queries can be sent as GETs. Mutations are refused with 405.
async fn graphql_get(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
) -> Response {
    let (mut parts, _) = request.into_parts();
    let upgrading = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrading {
        return match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
            Ok(upgrade) => graphql_ws(state, upgrade, &parts.headers, ClientKey::of(peer.ip())),
            Err(rejection) => rejection.into_response(),
        };
    }
    let media = Media::of(&parts.headers);
    let refuse = |status: Option<StatusCode>, code, message: &str| {
        let response = async_graphql::Response::from_errors(vec![server_error(code, message)]);
        let mut resp = encode(&state, media, status.unwrap_or_else(|| media.status(&response)), &response);
        if status == Some(StatusCode::METHOD_NOT_ALLOWED) {
            resp.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        }
        resp
    };
    let client = ClientKey::of(peer.ip());
    if let Err(e) = charge_request(&state.limiter, client) {
        let response = async_graphql::Response::from_errors(vec![e]);
        return encode(&state, media, media.status(&response), &response);
    }
    let query = parts.uri.query().unwrap_or_default();
    let mut request = match async_graphql::http::parse_query_string(query) {
        Ok(r) => r.data(bearer(&parts.headers)).data(client),
        Err(e) => return refuse(None, schema::error::code::INVALID_INPUT, &format!("unreadable query string: {e}")),
    };
    if let Err(e) = state.persisted.resolve(&mut request) {
        let response = async_graphql::Response::from_errors(vec![e]);
        return encode(&state, media, media.status(&response), &response);
    }
    // Only a query may come by GET (the GraphQL-over-HTTP specification); a document that does
    // not parse is left to the executor to report.
    let name = request.operation_name.clone();
    if request.parsed_query().is_ok_and(|doc| !is_query(doc, name.as_deref())) {
        return refuse(Some(StatusCode::METHOD_NOT_ALLOWED), schema::error::code::INVALID_INPUT, MUTATION_OVER_GET);
    }
    let response = state.schemas.route(&mut request).execute(request).await;
    encode(&state, media, media.status(&response), &response)
}

const MUTATION_OVER_GET: &str = "only queries may be sent with GET; send mutations and subscriptions with POST";

/// Runs one POSTed request: resolves an automatic persisted query, then runs it on the schema
/// [`Schemas::route`] picks.
async fn execute(state: &AppState, mut request: async_graphql::Request) -> async_graphql::Response {
    if let Err(e) = state.persisted.resolve(&mut request) {
        return async_graphql::Response::from_errors(vec![e]);
    }
    state.schemas.route(&mut request).execute(request).await
}

/// The main schema and the introspection schema (`schema::build_introspection`: deeper
/// limits, nothing but introspection), and which of them a request runs on.
#[derive(Clone)]
pub struct Schemas {
    /// Everything but introspection-only requests.
    pub main: AppSchema,
    /// Requests whose every root field is `__schema`, `__type` or `__typename`.
    pub introspection: AppSchema,
    /// Parsed documents of repeated queries (see documents.rs).
    pub documents: Arc<crate::documents::Documents>,
}

impl Schemas {
    /// The schema `request` runs on, with its parsed document in it (from the document cache,
    /// or parsed here and kept there), so it is not parsed twice.
    pub fn route(&self, request: &mut async_graphql::Request) -> &AppSchema {
        self.documents.prepare(request);
        let may_introspect = request.query.contains("__schema") || request.query.contains("__type");
        if !may_introspect {
            return &self.main;
        }
        match request.parsed_query() {
            Ok(doc) if schema::is_introspection(doc) => &self.introspection,
            _ => &self.main,
        }
    }
}

/// True when the operation `name` picks (or the only one) is a query; an unknown name is left
/// to the executor to report.
fn is_query(doc: &async_graphql::parser::types::ExecutableDocument, name: Option<&str>) -> bool {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let op = match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) => ops.values().next().filter(|_| ops.len() == 1),
    };
    op.is_none_or(|op| op.node.ty == OperationType::Query)
}

fn graphql_ws(state: AppState, upgrade: WebSocketUpgrade, headers: &HeaderMap, client: ClientKey) -> Response {
    // The first subprotocol the client offers that this server speaks, and the handshake answers
    // that same one: the frames that follow are that protocol's.
    let protocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::ws::Protocol::negotiate);
    let Some(protocol) = protocol else {
        return (StatusCode::BAD_REQUEST, "offer a WebSocket subprotocol: graphql-transport-ws or graphql-ws")
            .into_response();
    };
    // Refused before the upgrade, so a flood of sockets costs a status line each; an upgrade
    // is charged like a subscription.
    if let Err(retry_after_ms) = state.limiter.charge(client, schema::limits::COST_SUBSCRIBE) {
        let retry_after_secs = retry_after_ms.div_ceil(1000).to_string();
        let mut resp = (StatusCode::TOO_MANY_REQUESTS, "too many requests from this client").into_response();
        if let Ok(v) = header::HeaderValue::from_str(&retry_after_secs) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }
    let open = match state.sockets.open(client) {
        Ok(open) => open,
        Err(why) => {
            return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")], why).into_response();
        }
    };
    let header_token = bearer(headers);
    upgrade
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .max_message_size(BODY_BYTES_MAX)
        .max_frame_size(BODY_BYTES_MAX)
        .protocols([protocol.name()])
        .on_upgrade(move |socket| {
            let peer = crate::ws::Peer { client, limiter: state.limiter.clone(), _open: open };
            crate::ws::serve(socket, state.schemas.clone(), protocol, header_token, peer, state.draining)
        })
}

/// The CORS policy of the API routes: none (same origin only) unless origins are listed; `*`
/// allows any origin. Credentials (cookies) are never allowed: the API authenticates with a
/// bearer token, which a page sends explicitly.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| header::HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                header::ACCEPT,
                header::HeaderName::from_static("apollo-require-preflight"),
                header::HeaderName::from_static("x-apollo-operation-name"),
                header::HeaderName::from_static("apollographql-client-name"),
                header::HeaderName::from_static("apollographql-client-version"),
            ])
            .max_age(std::time::Duration::from_secs(CORS_MAX_AGE_SECS)),
    )
}

/// How long a browser may cache a CORS preflight answer.
const CORS_MAX_AGE_SECS: u64 = 600;

/// `GET /schema.graphql`: the schema in SDL, for codegen.
async fn sdl(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], state.sdl.to_string()).into_response()
}

/// `GET /ready`: 200 only once this node is a member, reaches its leader and has applied to
/// within `raft::READY_APPLY_LAG_MAX` entries of the leader's committed index; the body names the
/// phase (`raft::Phase`) and the progress either way. What a load balancer should probe.
async fn ready(State(state): State<AppState>) -> (StatusCode, String) {
    let r = state.store.readiness().await;
    let mut progress = match (r.leader_committed, r.entries_behind) {
        (Some(c), Some(b)) => format!("applied {} of the leader's committed {c} ({b} behind)", r.applied),
        _ => format!("applied {}", r.applied),
    };
    if let Some(p) = state.store.cluster_status().snapshot_receiving {
        let total = p.total_bytes.map_or_else(|| "?".to_string(), |t| t.to_string());
        progress.push_str(&format!("; receiving snapshot {}: {} of {total} bytes", p.snapshot_id, p.received_bytes));
    }
    let why = match r.phase {
        raft::Phase::Ready => return (StatusCode::OK, format!("READY: {progress}\n")),
        raft::Phase::NotMember => "this node is not (yet) a member of the cluster",
        raft::Phase::NoLeader => "no leader known, or the leader does not answer",
        raft::Phase::CatchingUp => "catching up with the leader",
    };
    (StatusCode::SERVICE_UNAVAILABLE, format!("{}: {why}; {progress}\n", r.phase.as_str()))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.metrics.set_limits(state.limiter.refused(), state.sockets.count());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render(&state.store).await)
}

/// Backups one node streams at once. Each holds a read transaction (redb keeps the pages it
/// reads until it ends) and a blocking thread for as long as its client takes to download.
pub const BACKUPS_AT_ONCE_MAX: usize = 2;
/// The retry hint of a backup refused because [`BACKUPS_AT_ONCE_MAX`] are streaming.
const BACKUP_BUSY_RETRY_MS: u64 = 5_000;

/// An error of a route outside GraphQL, in GraphQL's shape (`{"errors": [{"message",
/// "extensions": {"code"}}]}`) with the status its code calls for, so clients read it as they
/// read any other error.
fn coded_error(error: async_graphql::Error) -> Response {
    let error = error.into_server_error(Default::default());
    let code = error
        .extensions
        .as_ref()
        .and_then(|e| e.get("code"))
        .and_then(|v| match v {
            async_graphql::Value::String(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let retry_after_ms = error.extensions.as_ref().and_then(|e| e.get("retryAfterMs")).and_then(|v| match v {
        async_graphql::Value::Number(n) => n.as_u64(),
        _ => None,
    });
    let status = match code.as_str() {
        schema::error::code::UNAUTHENTICATED => StatusCode::UNAUTHORIZED,
        schema::error::code::FORBIDDEN => StatusCode::FORBIDDEN,
        schema::error::code::RATE_LIMITED => StatusCode::TOO_MANY_REQUESTS,
        schema::error::code::UNAVAILABLE => StatusCode::SERVICE_UNAVAILABLE,
        schema::error::code::INVALID_INPUT => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = serde_json::to_vec(&async_graphql::Response::from_errors(vec![error])).unwrap_or_default();
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(ms) = retry_after_ms {
        if let Ok(v) = header::HeaderValue::from_str(&ms.div_ceil(1000).max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    response
}

/// `GET /backup` (ADMIN bearer token): a consistent backup of the whole state, streamed as it is
/// read (see `raft::Backup`), at least as new as every write acknowledged before the request.
/// Headers name what it holds: `x-raftgraph-applied-index`, `x-raftgraph-rows`.
async fn backup(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let client = ClientKey::of(peer.ip());
    if let Err(e) = state.limiter.charge(client, schema::limits::COST_SEARCH) {
        return coded_error(schema::limits::rate_limited(format!("too many requests; retry in {e} ms"), e));
    }
    let token = bearer(&headers).0;
    let admin = match state.tokens.admin(&state.store, token.as_deref()).await {
        Ok(user) => user,
        Err(e) => return coded_error(e),
    };
    let Ok(permit) = state.backups.clone().try_acquire_owned() else {
        let message =
            format!("{BACKUPS_AT_ONCE_MAX} backups are streaming from this node; retry later or ask another node");
        let error =
            raft::StoreError::Unavailable { message, retry_after_ms: BACKUP_BUSY_RETRY_MS, outcome_unknown: false };
        return coded_error(schema::error::store(error));
    };
    let backup = match state.store.backup().await {
        Ok(b) => b,
        Err(e) => return coded_error(schema::error::store(e)),
    };
    let head = backup.head.clone();
    tracing::info!(user = admin.id, index = head.last_applied.index, rows = head.rows, "backup started");
    let chunks = futures::stream::unfold((backup.chunks, permit), |(mut rx, permit)| async move {
        rx.recv().await.map(|chunk| (chunk, (rx, permit)))
    });
    let mut response = Response::new(axum::body::Body::from_stream(chunks));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/octet-stream"));
    let index = head.last_applied.index;
    for (name, value) in [
        (header::CONTENT_DISPOSITION, format!("attachment; filename=\"raftgraph-backup-{index}.bin\"")),
        (header::HeaderName::from_static("x-raftgraph-applied-index"), index.to_string()),
        (header::HeaderName::from_static("x-raftgraph-rows"), head.rows.to_string()),
    ] {
        if let Ok(v) = header::HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    response
}

/// `/raft/{rpc}`: the signature is checked from the headers before any of the body is read
/// (`raft::peer_auth`), then exactly the signed length is read and its digest checked. A
/// request without a valid signature gets 401 and costs this node nothing but its headers.
async fn raft_rpc(
    State(state): State<AppState>,
    Path(rpc): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let header = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    let signed = match state.peer_auth.verify(&rpc, header, raft::now_ms()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(rpc, error = %e, "refused a /raft/ request");
            return (StatusCode::UNAUTHORIZED, "the /raft/ routes need a request signed with the cluster secret")
                .into_response();
        }
    };
    let Some(rpc) = raft::Rpc::from_name(&rpc) else {
        return (StatusCode::NOT_FOUND, format!("no raft rpc named {rpc:?}")).into_response();
    };
    if signed.len > RAFT_BODY_BYTES_MAX {
        return (StatusCode::PAYLOAD_TOO_LARGE, format!("a /raft/ body may be at most {RAFT_BODY_BYTES_MAX} bytes"))
            .into_response();
    }
    // A body longer than the signed length is cut off unread: it is not the signed body.
    let body = match axum::body::to_bytes(body, signed.len).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::UNAUTHORIZED, format!("not the signed body: {e}")).into_response(),
    };
    if let Err(e) = signed.check(&body) {
        return (StatusCode::UNAUTHORIZED, e.to_string()).into_response();
    }
    match state.store.handle_rpc(rpc, &body).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}
