//! A graphql-transport-ws subscription that survives a node going away.
//!
//! [`subscribe`] opens a WebSocket to the first node, signs in through `connection_init`, and
//! forwards each event's `data` to a bounded channel. Every event of the server's replicated feeds
//! carries an `index`; the subscription remembers the last one it forwarded, and when the socket
//! drops it reconnects to the next node with the variable `afterIndex` set to that index. The
//! server then replays exactly the events after it, so the consumer sees no gap; any event at or
//! below the last index (a replay overlap) is dropped, so it sees no repeat either.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::error::{FALLBACK_ERROR_CODE, UNAVAILABLE_CODE};
use crate::transport::CONNECT_TIMEOUT_MS;

/// Name of the variable the server resumes a feed from; the subscription's query must declare it
/// (e.g. `$afterIndex:Int`) and pass it to the field.
pub const AFTER_INDEX_VARIABLE: &str = "afterIndex";

/// Consecutive failed connections (no event delivered in between) after which the subscription
/// gives up; with the backoff below and three nodes this rides out a few leader elections.
pub const SUBSCRIBE_RECONNECT_MAX_ATTEMPTS: u32 = 8;

/// Wait before the first reconnect; it doubles on each further consecutive failure.
pub const SUBSCRIBE_BACKOFF_BASE_MS: u64 = 100;

/// Cap on the wait between reconnects, so that the whole give-up time stays near ten seconds.
pub const SUBSCRIBE_BACKOFF_MAX_MS: u64 = 2_000;

/// Events buffered between the socket and the consumer; a slow consumer slows the socket reads
/// rather than growing memory.
pub const SUBSCRIBE_CHANNEL_CAPACITY: usize = 64;

/// How long the server may take to answer `connection_init` with `connection_ack`.
pub const SUBSCRIBE_ACK_TIMEOUT_MS: u64 = 10_000;

/// Interval at which the client sends a protocol `ping`, so that a silent but dead connection
/// (a partitioned node) is noticed.
pub const SUBSCRIBE_PING_INTERVAL_MS: u64 = 10_000;

/// Longest silence (no frame at all, not even a `pong`) before the socket is treated as dropped.
pub const SUBSCRIBE_IDLE_TIMEOUT_MS: u64 = 3 * SUBSCRIBE_PING_INTERVAL_MS;

/// WebSocket subprotocol the server speaks.
const SUBPROTOCOL: &str = "graphql-transport-ws";

/// Id of the one operation each socket carries.
const OPERATION_ID: &str = "1";

/// Why a subscription ended before the consumer stopped it.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// The server rejected the subscription or an event with a GraphQL error.
    #[error("{code}: {message}")]
    Graphql {
        /// Machine-readable code from `extensions.code`.
        code: String,
        /// Human-readable message from the server.
        message: String,
    },
    /// Every reconnect failed; `last` says how the last one did.
    #[error("gave up after {attempts} connection attempts: {last}")]
    Disconnected {
        /// Consecutive failed connections.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// An event did not have the promised shape, e.g. no integer at the index path.
    #[error("malformed event: {0}")]
    Decode(String),
    /// Unusable settings, such as no nodes or an unparsable URL.
    #[error("invalid subscription configuration: {0}")]
    Config(String),
}

impl SubscribeError {
    /// A short code naming this error: the server's code for GraphQL errors, otherwise
    /// `DISCONNECTED`, `DECODE` or `CONFIG`.
    pub fn code(&self) -> String {
        match self {
            Self::Graphql { code, .. } => code.clone(),
            Self::Disconnected { .. } => "DISCONNECTED".to_owned(),
            Self::Decode(_) => "DECODE".to_owned(),
            Self::Config(_) => "CONFIG".to_owned(),
        }
    }
}

/// The receiving end of a subscription: `Ok(data)` per event, then at most one `Err` before the
/// channel closes. Dropping it stops the subscription and closes the socket.
pub type Subscription = mpsc::Receiver<Result<Value, SubscribeError>>;

/// Everything one subscription needs, owned by its task.
struct Settings {
    ws_urls: Vec<String>,
    query: String,
    variables: Value,
    bearer: Option<String>,
    index_path: String,
}

/// Starts a resuming subscription and returns its events.
///
/// `nodes` are base URLs (`http://127.0.0.1:8080`); `query` must declare `$afterIndex` and pass it
/// on; `index_path` is the dot-separated path of each event's index inside `data`
/// (e.g. `saleUpdates.index`). If `variables` already sets `afterIndex`, events up to it are
/// treated as seen. Must be called within a Tokio runtime, which runs the socket.
pub fn subscribe(
    nodes: &[String],
    query: &str,
    variables: Value,
    bearer: Option<&str>,
    index_path: &str,
) -> Result<Subscription, SubscribeError> {
    let ws_urls = nodes.iter().map(|n| ws_url(n)).collect::<Result<Vec<_>, _>>()?;
    if ws_urls.is_empty() {
        return Err(SubscribeError::Config("no nodes given".to_owned()));
    }
    if index_path.is_empty() {
        return Err(SubscribeError::Config("empty index path".to_owned()));
    }
    let settings = Settings {
        ws_urls,
        query: query.to_owned(),
        variables,
        bearer: bearer.map(str::to_owned),
        index_path: index_path.to_owned(),
    };
    let (tx, rx) = mpsc::channel(SUBSCRIBE_CHANNEL_CAPACITY);
    tokio::spawn(run(settings, tx));
    Ok(rx)
}

/// Reads the integer at a dot-separated `path` of `data`, as a number or a decimal string (a
/// server may render 64-bit indexes as strings).
pub fn index_at(data: &Value, path: &str) -> Option<u64> {
    let value = path.split('.').try_fold(data, |v, key| v.get(key))?;
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Returns `variables` with `afterIndex` set to `index`, keeping every other variable; anything
/// but an object is replaced by an object holding only `afterIndex`.
pub fn with_after_index(variables: &Value, index: u64) -> Value {
    let mut map = variables.as_object().cloned().unwrap_or_else(Map::new);
    map.insert(AFTER_INDEX_VARIABLE.to_owned(), json!(index));
    Value::Object(map)
}

/// Wait before reconnecting after `failures` consecutive failed connections (at least one):
/// [`SUBSCRIBE_BACKOFF_BASE_MS`] doubled per further failure, capped at [`SUBSCRIBE_BACKOFF_MAX_MS`].
fn reconnect_backoff_ms(failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(u64::BITS - 1);
    SUBSCRIBE_BACKOFF_BASE_MS.saturating_mul(1 << doublings).min(SUBSCRIBE_BACKOFF_MAX_MS)
}

/// The `afterIndex` already set in `variables`, if any.
fn initial_after_index(variables: &Value) -> Option<u64> {
    index_at(variables, AFTER_INDEX_VARIABLE)
}

/// Turns a node base URL into its WebSocket GraphQL endpoint.
fn ws_url(node: &str) -> Result<String, SubscribeError> {
    let base = node.trim().trim_end_matches('/');
    let rest = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        return Err(SubscribeError::Config(format!("node URL {base:?} is not http(s)")));
    };
    Ok(format!("{rest}/graphql"))
}

/// The first error of a GraphQL `errors` list (or a single error object) as a [`SubscribeError`].
fn graphql_error(errors: &Value) -> SubscribeError {
    let first = errors.as_array().and_then(|a| a.first()).unwrap_or(errors);
    SubscribeError::Graphql {
        code: first["extensions"]["code"].as_str().unwrap_or(FALLBACK_ERROR_CODE).to_owned(),
        message: first["message"].as_str().unwrap_or_default().to_owned(),
    }
}

/// How one socket ended.
enum Ended {
    /// The consumer dropped the receiver, or the server completed the operation: stop quietly.
    Stop,
    /// A failure that reconnecting cannot fix.
    Fatal(SubscribeError),
    /// The socket dropped; `delivered` says whether it forwarded any event first.
    Dropped { delivered: bool, reason: String },
}

/// Drives the subscription across sockets until the consumer stops, the server ends it, or
/// [`SUBSCRIBE_RECONNECT_MAX_ATTEMPTS`] consecutive connections fail.
async fn run(settings: Settings, tx: mpsc::Sender<Result<Value, SubscribeError>>) {
    let mut last_index = initial_after_index(&settings.variables);
    let mut node = 0usize;
    let mut failures = 0u32;
    // Bounded: every pass either returns or counts a failure, and failures reset only when a
    // socket delivered an event, i.e. made progress.
    loop {
        let url = &settings.ws_urls[node % settings.ws_urls.len()];
        match session(url, &settings, &mut last_index, &tx).await {
            Ended::Stop => return,
            Ended::Fatal(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
            Ended::Dropped { delivered, reason } => {
                failures = if delivered { 1 } else { failures + 1 };
                if failures >= SUBSCRIBE_RECONNECT_MAX_ATTEMPTS {
                    let _ = tx.send(Err(SubscribeError::Disconnected { attempts: failures, last: reason })).await;
                    return;
                }
                let wait = Duration::from_millis(reconnect_backoff_ms(failures));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = tx.closed() => return,
                }
                // The next node, because the one that dropped is likely down or partitioned.
                node = node.wrapping_add(1);
            }
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a socket and completes the `connection_init` / `connection_ack` handshake.
async fn connect(url: &str, bearer: Option<&str>) -> Result<Ws, String> {
    let mut req = url.into_client_request().map_err(|e| format!("bad websocket URL {url}: {e}"))?;
    req.headers_mut().insert("Sec-WebSocket-Protocol", SUBPROTOCOL.parse().map_err(|e| format!("header: {e}"))?);
    let (mut ws, _) =
        tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), tokio_tungstenite::connect_async(req))
            .await
            .map_err(|_| format!("connecting to {url} timed out"))?
            .map_err(|e| format!("connecting to {url}: {e}"))?;
    let payload = match bearer {
        Some(token) => json!({"Authorization": format!("Bearer {token}")}),
        None => json!({}),
    };
    let init = json!({"type": "connection_init", "payload": payload});
    ws.send(WsMessage::text(init.to_string())).await.map_err(|e| format!("sending connection_init: {e}"))?;
    let ack = async {
        // Bounded by the timeout around it.
        loop {
            match ws.next().await {
                Some(Ok(WsMessage::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                    match v["type"].as_str() {
                        Some("connection_ack") => return Ok(()),
                        Some("ping") => {
                            let _ = ws.send(WsMessage::text(json!({"type": "pong"}).to_string())).await;
                        }
                        _ => {}
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("before connection_ack: {e}")),
                None => return Err("closed before connection_ack (bad token?)".to_owned()),
            }
        }
    };
    tokio::time::timeout(Duration::from_millis(SUBSCRIBE_ACK_TIMEOUT_MS), ack)
        .await
        .map_err(|_| "no connection_ack in time".to_owned())??;
    Ok(ws)
}

/// Runs one socket: subscribes from `last_index` and forwards new events until it ends.
async fn session(
    url: &str,
    settings: &Settings,
    last_index: &mut Option<u64>,
    tx: &mpsc::Sender<Result<Value, SubscribeError>>,
) -> Ended {
    let mut ws = match connect(url, settings.bearer.as_deref()).await {
        Ok(ws) => ws,
        Err(reason) => return Ended::Dropped { delivered: false, reason },
    };
    let variables = match *last_index {
        Some(i) => with_after_index(&settings.variables, i),
        None => settings.variables.clone(),
    };
    let sub = json!({"id": OPERATION_ID, "type": "subscribe",
                     "payload": {"query": settings.query, "variables": variables}});
    if let Err(e) = ws.send(WsMessage::text(sub.to_string())).await {
        return Ended::Dropped { delivered: false, reason: format!("sending subscribe: {e}") };
    }
    let mut delivered = false;
    let mut ping = tokio::time::interval(Duration::from_millis(SUBSCRIBE_PING_INTERVAL_MS));
    ping.tick().await;
    let idle = Duration::from_millis(SUBSCRIBE_IDLE_TIMEOUT_MS);
    let dropped = |delivered, reason: String| Ended::Dropped { delivered, reason };
    // Bounded by the socket's life: it ends on close, error, silence, or the consumer leaving.
    loop {
        let frame = tokio::select! {
            f = tokio::time::timeout(idle, ws.next()) => match f {
                Ok(f) => f,
                Err(_) => return dropped(delivered, "socket silent too long".to_owned()),
            },
            _ = ping.tick() => {
                if let Err(e) = ws.send(WsMessage::text(json!({"type": "ping"}).to_string())).await {
                    return dropped(delivered, format!("sending ping: {e}"));
                }
                continue;
            }
            _ = tx.closed() => {
                let _ = ws.close(None).await;
                return Ended::Stop;
            }
        };
        let text = match frame {
            Some(Ok(WsMessage::Text(t))) => t,
            Some(Ok(_)) => continue,
            Some(Err(e)) => return dropped(delivered, format!("socket error: {e}")),
            None => return dropped(delivered, "socket closed".to_owned()),
        };
        let Ok(msg) = serde_json::from_str::<Value>(&text) else {
            return Ended::Fatal(SubscribeError::Decode(format!("not JSON: {text}")));
        };
        match msg["type"].as_str() {
            Some("next") => {
                let payload = &msg["payload"];
                if payload["errors"].as_array().is_some_and(|e| !e.is_empty()) {
                    return on_error(graphql_error(&payload["errors"]), delivered);
                }
                let data = payload["data"].clone();
                let Some(index) = index_at(&data, &settings.index_path) else {
                    return Ended::Fatal(SubscribeError::Decode(format!("no index at {}", settings.index_path)));
                };
                // A replay may overlap what was already forwarded; skip it so nothing repeats.
                if last_index.is_some_and(|last| index <= last) {
                    continue;
                }
                *last_index = Some(index);
                if tx.send(Ok(data)).await.is_err() {
                    return Ended::Stop;
                }
                delivered = true;
            }
            Some("ping") => {
                let _ = ws.send(WsMessage::text(json!({"type": "pong"}).to_string())).await;
            }
            Some("error") => return on_error(graphql_error(&msg["payload"]), delivered),
            Some("complete") => return Ended::Stop,
            _ => {}
        }
    }
}

/// A GraphQL error ends the subscription, except UNAVAILABLE: that node cannot serve right now
/// (no leader), and another may.
fn on_error(error: SubscribeError, delivered: bool) -> Ended {
    match error {
        SubscribeError::Graphql { ref code, .. } if code == UNAVAILABLE_CODE => {
            Ended::Dropped { delivered, reason: error.to_string() }
        }
        other => Ended::Fatal(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_read_at_a_dotted_path() {
        let data = json!({"saleUpdates": {"index": 42, "stock": 3}});
        assert_eq!(index_at(&data, "saleUpdates.index"), Some(42));
        assert_eq!(index_at(&json!({"a": {"index": "7"}}), "a.index"), Some(7));
        assert_eq!(index_at(&data, "saleUpdates.stock.index"), None);
        assert_eq!(index_at(&data, "chatMessages.index"), None);
        assert_eq!(index_at(&json!({"a": {"index": -1}}), "a.index"), None);
    }

    #[test]
    fn after_index_is_set_and_other_variables_kept() {
        let vars = json!({"s": "1", "afterIndex": null});
        assert_eq!(initial_after_index(&vars), None);
        let resumed = with_after_index(&vars, 9);
        assert_eq!(resumed, json!({"s": "1", "afterIndex": 9}));
        assert_eq!(initial_after_index(&resumed), Some(9));
        assert_eq!(with_after_index(&Value::Null, 3), json!({"afterIndex": 3}));
    }

    #[test]
    fn reconnect_backoff_doubles_then_caps() {
        assert_eq!(reconnect_backoff_ms(1), SUBSCRIBE_BACKOFF_BASE_MS);
        assert_eq!(reconnect_backoff_ms(2), SUBSCRIBE_BACKOFF_BASE_MS * 2);
        assert_eq!(reconnect_backoff_ms(40), SUBSCRIBE_BACKOFF_MAX_MS);
        assert_eq!(reconnect_backoff_ms(u32::MAX), SUBSCRIBE_BACKOFF_MAX_MS);
    }

    #[test]
    fn node_urls_become_websocket_endpoints() {
        assert_eq!(ws_url("http://127.0.0.1:8080/").unwrap(), "ws://127.0.0.1:8080/graphql");
        assert_eq!(ws_url("https://h").unwrap(), "wss://h/graphql");
        assert!(matches!(ws_url("127.0.0.1:8080"), Err(SubscribeError::Config(_))));
    }

    #[test]
    fn errors_take_the_first_code_and_only_unavailable_reconnects() {
        let e = graphql_error(&json!([{"message": "gone", "extensions": {"code": "NOT_FOUND"}}, {"message": "x"}]));
        assert_eq!(e.code(), "NOT_FOUND");
        assert!(matches!(on_error(e, false), Ended::Fatal(_)));
        let e = graphql_error(&json!({"message": "no leader", "extensions": {"code": "UNAVAILABLE"}}));
        assert!(matches!(on_error(e, true), Ended::Dropped { delivered: true, .. }));
        assert_eq!(graphql_error(&json!([{"message": "m"}])).code(), FALLBACK_ERROR_CODE);
    }
}
