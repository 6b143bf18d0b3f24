//! The HTTP surface on the node's one port: GraphQL (POST and WebSocket), the playground,
//! health, readiness, metrics, and the Raft RPC routes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_graphql::http::{playground_source, GraphQLPlaygroundConfig, WebSocketProtocols, WsMessage};
use async_graphql::{BatchRequest, Data, ErrorExtensions};
use async_graphql_axum::GraphQLResponse;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures::{SinkExt as _, StreamExt as _};
use raft::network::CLUSTER_SECRET_HEADER;
use raft::Store;
use schema::{AppSchema, BearerToken};

use crate::config::{
    BATCH_REQUESTS_MAX, BODY_BYTES_MAX, RAFT_BODY_BYTES_MAX, RATE_LIMIT_CLIENTS_MAX, WS_READ_BUFFER_BYTES,
    WS_SEND_TIMEOUT_MS,
};
use crate::metrics::Metrics;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub schema: AppSchema,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// The request stages the HTTP handler times (decode, encode); the schema times the rest.
    pub stages: Arc<schema::observe::RequestStages>,
    pub cluster_secret: Arc<str>,
    pub limiter: Arc<RateLimiter>,
    /// Turns true when the node starts draining. axum's graceful shutdown does not track
    /// upgraded connections, so subscriber sockets watch this to close themselves.
    pub draining: tokio::sync::watch::Receiver<bool>,
}

/// The router of every route.
pub fn router(state: AppState) -> Router {
    let raft = Router::new().route("/raft/{rpc}", post(raft_rpc)).layer(DefaultBodyLimit::max(RAFT_BODY_BYTES_MAX));
    Router::new()
        .route("/graphql", post(graphql).get(graphql_ws))
        .route("/", get(playground))
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
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

fn graphql_error(code: &'static str, message: &str) -> GraphQLResponse {
    let err = async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code));
    async_graphql::Response::from_errors(vec![err.into_server_error(Default::default())]).into()
}

/// The body is taken as bytes, not through async-graphql-axum's extractor: that one reads the
/// body stream itself, past axum's `DefaultBodyLimit`, so a huge body would be read whole. Bytes
/// honour the limit, and both an oversized and a malformed body get a GraphQL error with a code.
async fn graphql(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !state.limiter.allow(peer.ip()) {
        state.metrics.rate_limited();
        return graphql_error(schema::error::code::RATE_LIMITED, "too many requests from this client; slow down")
            .into_response();
    }
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return graphql_error(
                schema::error::code::INVALID_INPUT,
                &format!("the request body exceeds {BODY_BYTES_MAX} bytes"),
            )
            .into_response()
        }
        Err(e) => {
            return graphql_error(schema::error::code::INVALID_INPUT, &format!("unreadable request body: {e}"))
                .into_response()
        }
    };
    let decoding = Instant::now();
    let decoded = serde_json::from_slice::<BatchRequest>(&body);
    state.stages.decode.since(decoding);
    let batch = match decoded {
        Ok(b) => b,
        Err(e) => {
            return graphql_error(
                schema::error::code::INVALID_INPUT,
                &format!("the body must be a JSON GraphQL request (or an array of them): {e}"),
            )
            .into_response()
        }
    };
    if let BatchRequest::Batch(items) = &batch {
        if items.len() > BATCH_REQUESTS_MAX {
            return graphql_error(
                schema::error::code::INVALID_INPUT,
                &format!("a batch may hold at most {BATCH_REQUESTS_MAX} operations, got {}", items.len()),
            )
            .into_response();
        }
    }
    let batch = batch.data(bearer(&headers));
    let resp = GraphQLResponse::from(state.schema.execute_batch(batch).await);
    let encoding = Instant::now();
    let resp = resp.into_response();
    state.stages.encode.since(encoding);
    resp
}

async fn graphql_ws(State(state): State<AppState>, upgrade: WebSocketUpgrade, headers: HeaderMap) -> Response {
    // The first subprotocol offered that async-graphql speaks (graphql-transport-ws, graphql-ws).
    let protocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|list| list.split(',').find_map(|p| WebSocketProtocols::from_str(p.trim()).ok()));
    let Some(protocol) = protocol else {
        return (StatusCode::BAD_REQUEST, "offer a WebSocket subprotocol: graphql-transport-ws or graphql-ws")
            .into_response();
    };
    let header_token = bearer(&headers);
    upgrade
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| serve_socket(socket, state.schema.clone(), protocol, header_token, state.draining))
}

/// async-graphql-axum's `GraphQLWebSocket::serve`, with two changes. Each outgoing message must
/// be accepted within `WS_SEND_TIMEOUT_MS`, or the socket is closed: its own loop awaits a send
/// forever, so a client that stops reading would hold its connection (and task) indefinitely.
/// And when the node starts draining, the socket is closed with 1001 (going away), so clients
/// resume their subscriptions on another node at once instead of waiting on a silent socket.
async fn serve_socket(
    socket: WebSocket,
    schema: AppSchema,
    protocol: WebSocketProtocols,
    header_token: BearerToken,
    mut draining: tokio::sync::watch::Receiver<bool>,
) {
    let (mut sink, stream) = socket.split();
    let input = stream.take_while(|res| futures::future::ready(res.is_ok())).filter_map(|msg| {
        futures::future::ready(match msg {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => Some(m.into_data()),
            _ => None,
        })
    });
    let output = async_graphql::http::WebSocket::new(schema, input, protocol).on_connection_init(
        move |payload: serde_json::Value| async move {
            // graphql-transport-ws carries auth in connection_init:
            // {"Authorization": "Bearer <token>"}; a header on the upgrade also works.
            let from_payload = payload
                .get("Authorization")
                .or_else(|| payload.get("authorization"))
                .and_then(|v| v.as_str())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|t| t.trim().to_string());
            let mut data = Data::default();
            data.insert(BearerToken(from_payload.or(header_token.0)));
            Ok(data)
        },
    );
    futures::pin_mut!(output);
    let timeout = std::time::Duration::from_millis(WS_SEND_TIMEOUT_MS);
    loop {
        let item = tokio::select! {
            item = output.next() => item,
            // The watch guard is dropped inside: it must not live across the select.
            _ = async { drop(draining.wait_for(|d| *d).await) } => {
                let close = CloseFrame { code: 1001, reason: "node shutting down: resume on another node".into() };
                let _ = tokio::time::timeout(timeout, sink.send(Message::Close(Some(close)))).await;
                return;
            }
        };
        let Some(item) = item else { return };
        let msg = match item {
            WsMessage::Text(text) => Message::Text(text.into()),
            WsMessage::Close(code, reason) => Message::Close(Some(CloseFrame { code, reason: reason.into() })),
        };
        match tokio::time::timeout(timeout, sink.send(msg)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::info!(timeout_ms = WS_SEND_TIMEOUT_MS, "closing a subscriber socket that stopped reading");
                // Best effort: a socket this full may not take the close frame either.
                let close = CloseFrame { code: 1008, reason: "too slow: no message accepted in time".into() };
                let _ = tokio::time::timeout(timeout, sink.send(Message::Close(Some(close)))).await;
                return;
            }
        }
    }
}

async fn playground() -> Html<String> {
    Html(playground_source(GraphQLPlaygroundConfig::new("/graphql").subscription_endpoint("/graphql")))
}

async fn ready(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.store.is_ready().await {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: no leader known yet, or still applying the log")
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render(&state.store).await)
}

/// Compares secrets in time independent of where they differ.
fn secret_matches(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

async fn raft_rpc(State(state): State<AppState>, Path(rpc): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let given = headers.get(CLUSTER_SECRET_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
    if !secret_matches(given, state.cluster_secret.as_bytes()) {
        return (StatusCode::UNAUTHORIZED, "the /raft/ routes need the cluster secret").into_response();
    }
    match state.store.handle_rpc(&rpc, &body).await {
        Some(Ok(bytes)) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Some(Err(e)) => (StatusCode::BAD_REQUEST, e).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no raft rpc named {rpc:?}")).into_response(),
    }
}

/// A token bucket per client IP: `rate` requests per second with bursts up to twice that.
///
/// A std mutex around one map: the critical section is a few arithmetic operations, far
/// shorter than a GraphQL request, and never spans an await.
pub struct RateLimiter {
    rate_per_sec: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter allowing `rate_per_sec` per client; 0 allows everything.
    pub fn new(rate_per_sec: u32) -> Self {
        RateLimiter { rate_per_sec: f64::from(rate_per_sec), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `ip`, or says no.
    pub fn allow(&self, ip: IpAddr) -> bool {
        if self.rate_per_sec == 0.0 {
            return true;
        }
        let burst = self.rate_per_sec * 2.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= RATE_LIMIT_CLIENTS_MAX && !buckets.contains_key(&ip) {
            // Forget clients whose buckets have refilled: they are indistinguishable from new ones.
            buckets
                .retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * self.rate_per_sec < burst);
        }
        let (tokens, at) = buckets.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate_per_sec).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A client over its budget is refused, and others are not affected by it.
    #[test]
    fn rate_limiter_refuses_past_the_burst_per_client() {
        let limiter = RateLimiter::new(10);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let allowed = (0..100).filter(|_| limiter.allow(a)).count();
        assert!((20..=21).contains(&allowed), "burst is twice the rate: allowed {allowed}");
        assert!(limiter.allow(b));
        assert!(RateLimiter::new(0).allow(a));
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(secret_matches(b"abc", b"abc"));
        assert!(!secret_matches(b"abd", b"abc"));
        assert!(!secret_matches(b"ab", b"abc"));
    }
}
