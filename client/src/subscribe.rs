//! A graphql-transport-ws subscription that survives a node going away.
//!
//! [`subscribe`] opens a WebSocket to one of the nodes (a random one unless
//! [`SubscribeOptions::start_node`] says which, so that many subscribers spread over the
//! cluster), signs in through `connection_init`, and forwards each event's `data` to a bounded
//! channel. Every event of the server's replicated feeds carries an `index`; the subscription
//! remembers the last one it received, and when the socket drops it reconnects to the next node
//! with the variable `afterIndex` set to that index. The server then replays exactly the events
//! after it, so the consumer sees no gap; an event below the last index, or a repeat of the last
//! one (a replay overlap), is dropped, so it sees no repeat either.
//!
//! # When the subscription resumes
//! - The socket closes, errors, or stays silent past [`SUBSCRIBE_IDLE_TIMEOUT_MS`] (a node that
//!   exits, crashes or is partitioned), or the connection cannot be made: resume on the next node.
//! - The server reports `UNAVAILABLE` (no leader to confirm the initial read): resume elsewhere.
//! - The server sends `complete` although the consumer did not ask to stop. The contract's feeds
//!   (`saleUpdates`, `chatMessages`, `timelineUpdates`) never end by themselves: the server's
//!   stream ends only when its node's store shuts down, so an unasked `complete` means "this
//!   node is going away" and, with [`SubscribeOptions::resume_on_complete`] (the default), the
//!   subscription resumes on another node. For a subscription that legitimately finishes, turn
//!   that option off and the channel simply closes after the last event.
//! - Any other GraphQL error (a bad id, no permission, a resume point older than the retained
//!   window) ends the subscription with that error.
//!
//! The consumer stops the subscription by dropping the receiver: the task then sends
//! `complete` for its operation and closes the socket.
//!
//! # A slow consumer
//! Between the socket and the consumer's channel sits a buffer of up to
//! [`SUBSCRIBE_PENDING_MAX`] events, so the socket keeps being read (and the server's pings
//! answered, and the client's own pings sent) while the consumer lags. Past that the socket is
//! no longer read: the server's send timeout may then close it, and the subscription resumes
//! from the last index it received, losing nothing.

use std::collections::VecDeque;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rand::Rng;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::error::{FALLBACK_ERROR_CODE, UNAVAILABLE_CODE};
use crate::ops::{SALE_UPDATES_INDEX_PATH, SALE_UPDATES_SUBSCRIPTION};
use crate::transport::{Client, CONNECT_TIMEOUT_MS};

/// Name of the variable the server resumes a feed from; the subscription's query must declare it
/// (e.g. `$afterIndex:Int`) and pass it to the field.
pub const AFTER_INDEX_VARIABLE: &str = "afterIndex";

/// Consecutive failed connections (no event received in between) after which the subscription
/// gives up; with the backoff below and three nodes this rides out a few leader elections.
pub const SUBSCRIBE_RECONNECT_MAX_ATTEMPTS: u32 = 8;

/// Wait before the first reconnect; it doubles on each further consecutive failure.
pub const SUBSCRIBE_BACKOFF_BASE_MS: u64 = 100;

/// Cap on the wait between reconnects, so that the whole give-up time stays near ten seconds.
pub const SUBSCRIBE_BACKOFF_MAX_MS: u64 = 2_000;

/// Capacity of the channel the consumer reads.
pub const SUBSCRIBE_CHANNEL_CAPACITY: usize = 64;

/// Events held for a consumer that lags behind the channel, while the socket is still read;
/// past this the socket is read no more until the consumer catches up.
pub const SUBSCRIBE_PENDING_MAX: usize = 1_024;

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

    /// The human-readable part: the server's message for GraphQL errors, the whole description
    /// otherwise.
    pub fn message(&self) -> String {
        match self {
            Self::Graphql { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

/// The receiving end of a subscription: `Ok(data)` per event, then at most one `Err` before the
/// channel closes. Dropping it stops the subscription and closes the socket.
pub type Subscription = mpsc::Receiver<Result<Value, SubscribeError>>;

/// How a subscription starts and when it resumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Index of the node to connect to first (wrapping around the list); `None`, the default,
    /// picks one at random so that subscribers spread over the cluster.
    pub start_node: Option<usize>,
    /// Whether a `complete` the consumer did not ask for resumes on another node (the default:
    /// the contract's feeds end only when a node shuts down) or ends the subscription.
    pub resume_on_complete: bool,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self { start_node: None, resume_on_complete: true }
    }
}

/// Everything one subscription needs, owned by its task.
struct Settings {
    ws_urls: Vec<String>,
    query: String,
    variables: Value,
    bearer: Option<String>,
    index_path: String,
    options: SubscribeOptions,
}

/// Starts a resuming subscription with the default [`SubscribeOptions`] and returns its events.
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
    subscribe_with(nodes, query, variables, bearer, index_path, SubscribeOptions::default())
}

/// [`subscribe`] with explicit [`SubscribeOptions`].
pub fn subscribe_with(
    nodes: &[String],
    query: &str,
    variables: Value,
    bearer: Option<&str>,
    index_path: &str,
    options: SubscribeOptions,
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
        options,
    };
    let (tx, rx) = mpsc::channel(SUBSCRIBE_CHANNEL_CAPACITY);
    tokio::spawn(run(settings, tx));
    Ok(rx)
}

impl Client {
    /// Starts a resuming subscription on this client's nodes with its bearer token; see
    /// [`subscribe_with`].
    pub fn subscribe(
        &self,
        query: &str,
        variables: Value,
        index_path: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription, SubscribeError> {
        subscribe_with(self.nodes(), query, variables, self.bearer(), index_path, options)
    }

    /// Follows a sale's stock and status changes: after `after_index` when given, otherwise the
    /// current state first. Decode each event with
    /// `ops::field::<ops::SaleUpdate>(data, "saleUpdates")`.
    pub fn sale_updates(
        &self,
        sale_id: &str,
        after_index: Option<u64>,
        options: SubscribeOptions,
    ) -> Result<Subscription, SubscribeError> {
        let vars = json!({ "s": sale_id, AFTER_INDEX_VARIABLE: after_index });
        self.subscribe(SALE_UPDATES_SUBSCRIPTION, vars, SALE_UPDATES_INDEX_PATH, options)
    }
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
    /// The consumer dropped the receiver: stop quietly.
    Stop,
    /// The server sent `complete` unasked; `delivered` says whether the socket brought any
    /// event first.
    Completed { delivered: bool },
    /// A failure that reconnecting cannot fix.
    Fatal(SubscribeError),
    /// The socket dropped; `delivered` says whether it brought any event first.
    Dropped { delivered: bool, reason: String },
}

/// What survives from one socket to the next: the resume point and the events the consumer has
/// not taken yet.
#[derive(Default)]
struct Progress {
    /// Index and data of the last event received; events at or below it are not forwarded again.
    last: Option<(u64, Value)>,
    /// Events received but not yet in the consumer's channel, oldest first.
    pending: VecDeque<Value>,
}

impl Progress {
    /// Whether an event with `index` and `data` was already received: an older index, or the
    /// last index with the same data (a replay overlap). The same index with other data is a
    /// new state report (a sale opening by the clock is reported at the last event's index).
    fn is_repeat(&self, index: u64, data: &Value) -> bool {
        match &self.last {
            None => false,
            Some((last, last_data)) => index < *last || (index == *last && last_data == data),
        }
    }

    /// Sends every pending event, waiting for the consumer; false if the consumer left.
    async fn flush(&mut self, tx: &mpsc::Sender<Result<Value, SubscribeError>>) -> bool {
        while let Some(data) = self.pending.pop_front() {
            if tx.send(Ok(data)).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Hands pending events to the consumer until `deadline`; false if the consumer left.
    async fn drain_until(&mut self, deadline: Instant, tx: &mpsc::Sender<Result<Value, SubscribeError>>) -> bool {
        // Bounded by the deadline.
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return true,
                permit = tx.reserve(), if !self.pending.is_empty() => match permit {
                    Ok(p) => p.send(Ok(self.pending.pop_front().expect("guarded non-empty"))),
                    Err(_) => return false,
                },
                _ = tx.closed(), if self.pending.is_empty() => return false,
            }
        }
    }
}

/// What to do after a socket ended: `None` to reconnect (with whether it delivered and why),
/// or `Some(end)` to stop with that end.
fn after_end(ended: Ended, resume_on_complete: bool) -> Result<(bool, String), Ended> {
    match ended {
        Ended::Dropped { delivered, reason } => Ok((delivered, reason)),
        Ended::Completed { delivered } if resume_on_complete => {
            Ok((delivered, "the server completed the subscription unasked (its node is shutting down)".to_owned()))
        }
        other => Err(other),
    }
}

/// Drives the subscription across sockets until the consumer stops, the server ends it, or
/// [`SUBSCRIBE_RECONNECT_MAX_ATTEMPTS`] consecutive connections fail.
async fn run(settings: Settings, tx: mpsc::Sender<Result<Value, SubscribeError>>) {
    let mut progress = Progress {
        // No data is known for an index the caller passed: only older events count as seen.
        last: initial_after_index(&settings.variables).map(|i| (i, Value::Null)),
        pending: VecDeque::new(),
    };
    let n = settings.ws_urls.len();
    let mut node = settings.options.start_node.unwrap_or_else(|| rand::rng().random_range(0..n));
    let mut failures = 0u32;
    // Bounded: every pass either returns or counts a failure, and failures reset only when a
    // socket delivered an event, i.e. made progress.
    loop {
        let url = &settings.ws_urls[node % n];
        let ended = session(url, &settings, &mut progress, &tx).await;
        let (delivered, reason) = match after_end(ended, settings.options.resume_on_complete) {
            Ok(again) => again,
            Err(Ended::Fatal(e)) => {
                if progress.flush(&tx).await {
                    let _ = tx.send(Err(e)).await;
                }
                return;
            }
            Err(_) => {
                progress.flush(&tx).await;
                return;
            }
        };
        failures = if delivered { 1 } else { failures + 1 };
        if failures >= SUBSCRIBE_RECONNECT_MAX_ATTEMPTS {
            if progress.flush(&tx).await {
                let _ = tx.send(Err(SubscribeError::Disconnected { attempts: failures, last: reason })).await;
            }
            return;
        }
        let deadline = Instant::now() + Duration::from_millis(reconnect_backoff_ms(failures));
        if !progress.drain_until(deadline, &tx).await {
            return;
        }
        // The next node, because the one that dropped is likely down or partitioned.
        node = node.wrapping_add(1);
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

/// What one text frame means for the session.
enum Step {
    /// Go on reading.
    Continue,
    /// The socket is done with.
    End(Ended),
}

/// Handles one text frame of the server.
async fn on_text(text: &str, ws: &mut Ws, settings: &Settings, progress: &mut Progress, delivered: &mut bool) -> Step {
    let Ok(msg) = serde_json::from_str::<Value>(text) else {
        return Step::End(Ended::Fatal(SubscribeError::Decode(format!("not JSON: {text}"))));
    };
    match msg["type"].as_str() {
        Some("next") => {
            let payload = &msg["payload"];
            if payload["errors"].as_array().is_some_and(|e| !e.is_empty()) {
                return Step::End(on_error(graphql_error(&payload["errors"]), *delivered));
            }
            let data = payload["data"].clone();
            let Some(index) = index_at(&data, &settings.index_path) else {
                return Step::End(Ended::Fatal(SubscribeError::Decode(format!("no index at {}", settings.index_path))));
            };
            // A replay may overlap what was already received; skip it so nothing repeats.
            if progress.is_repeat(index, &data) {
                return Step::Continue;
            }
            progress.last = Some((index, data.clone()));
            progress.pending.push_back(data);
            *delivered = true;
        }
        Some("ping") => {
            let _ = ws.send(WsMessage::text(json!({"type": "pong"}).to_string())).await;
        }
        Some("error") => return Step::End(on_error(graphql_error(&msg["payload"]), *delivered)),
        Some("complete") => return Step::End(Ended::Completed { delivered: *delivered }),
        _ => {}
    }
    Step::Continue
}

/// Runs one socket: subscribes from the last index received and takes new events until it ends,
/// handing them to the consumer as it takes them.
async fn session(
    url: &str,
    settings: &Settings,
    progress: &mut Progress,
    tx: &mpsc::Sender<Result<Value, SubscribeError>>,
) -> Ended {
    let mut ws = match connect(url, settings.bearer.as_deref()).await {
        Ok(ws) => ws,
        Err(reason) => return Ended::Dropped { delivered: false, reason },
    };
    let variables = match &progress.last {
        Some((i, _)) => with_after_index(&settings.variables, *i),
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
    let mut last_frame = Instant::now();
    let mut close_reason = None;
    // Bounded by the socket's life: it ends on close, error, silence, or the consumer leaving.
    loop {
        // A full buffer stops reading (and the silence check, which only reading can satisfy).
        let reading = progress.pending.len() < SUBSCRIBE_PENDING_MAX;
        let frame = tokio::select! {
            permit = tx.reserve(), if !progress.pending.is_empty() => {
                match permit {
                    Ok(p) => p.send(Ok(progress.pending.pop_front().expect("guarded non-empty"))),
                    Err(_) => return stop(ws).await,
                }
                continue;
            }
            f = ws.next(), if reading => f,
            _ = tokio::time::sleep_until(last_frame + idle), if reading => {
                return Ended::Dropped { delivered, reason: "socket silent too long".to_owned() };
            }
            _ = ping.tick() => {
                if let Err(e) = ws.send(WsMessage::text(json!({"type": "ping"}).to_string())).await {
                    return Ended::Dropped { delivered, reason: format!("sending ping: {e}") };
                }
                continue;
            }
            _ = tx.closed(), if progress.pending.is_empty() => return stop(ws).await,
        };
        last_frame = Instant::now();
        match frame {
            Some(Ok(WsMessage::Text(t))) => {
                if let Step::End(ended) = on_text(&t, &mut ws, settings, progress, &mut delivered).await {
                    return ended;
                }
            }
            Some(Ok(WsMessage::Close(frame))) => {
                close_reason = frame.map(|f| format!("closed by the server: {} {}", f.code, f.reason));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Ended::Dropped { delivered, reason: format!("socket error: {e}") },
            None => {
                let reason = close_reason.unwrap_or_else(|| "socket closed".to_owned());
                return Ended::Dropped { delivered, reason };
            }
        }
    }
}

/// The consumer left: tell the server the operation is over and close the socket.
async fn stop(mut ws: Ws) -> Ended {
    let complete = json!({"id": OPERATION_ID, "type": "complete"});
    let _ = ws.send(WsMessage::text(complete.to_string())).await;
    let _ = ws.close(None).await;
    Ended::Stop
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

    #[test]
    fn an_unasked_complete_resumes_only_when_asked_to() {
        // Resumable: reconnect, keeping whether the socket made progress.
        let again = after_end(Ended::Completed { delivered: true }, true);
        assert!(matches!(again, Ok((true, ref reason)) if reason.contains("completed")));
        // Not resumable: the subscription ends quietly.
        assert!(matches!(after_end(Ended::Completed { delivered: false }, false), Err(Ended::Completed { .. })));
        // Drops always reconnect; the consumer leaving and fatal errors never do.
        assert!(after_end(Ended::Dropped { delivered: false, reason: "x".into() }, false).is_ok());
        assert!(matches!(after_end(Ended::Stop, true), Err(Ended::Stop)));
        assert!(matches!(after_end(Ended::Fatal(SubscribeError::Decode("x".into())), true), Err(Ended::Fatal(_))));
    }

    #[test]
    fn repeats_are_older_indexes_or_the_same_last_event() {
        let mut p = Progress::default();
        let a = json!({"s": {"index": 5, "sold": 1}});
        assert!(!p.is_repeat(5, &a));
        p.last = Some((5, a.clone()));
        assert!(p.is_repeat(4, &json!({})));
        assert!(p.is_repeat(5, &a));
        // A state report at the same index with other data (a sale opened by the clock) is new.
        assert!(!p.is_repeat(5, &json!({"s": {"index": 5, "sold": 1, "status": "OPEN"}})));
        assert!(!p.is_repeat(6, &a));
        // An afterIndex the caller passed counts as seen, whatever its data.
        p.last = Some((5, Value::Null));
        assert!(p.is_repeat(3, &a) && !p.is_repeat(6, &a));
    }

    #[test]
    fn options_default_to_a_random_start_and_resuming_on_complete() {
        let o = SubscribeOptions::default();
        assert_eq!((o.start_node, o.resume_on_complete), (None, true));
    }

    #[tokio::test]
    async fn pending_events_reach_the_consumer_in_order_while_draining() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut p = Progress::default();
        p.pending.extend((0..5).map(|i| json!(i)));
        let consumer = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(Ok(v)) = rx.recv().await {
                got.push(v);
            }
            got
        });
        assert!(p.drain_until(Instant::now() + Duration::from_millis(200), &tx).await);
        assert!(p.pending.is_empty());
        drop(tx);
        assert_eq!(consumer.await.unwrap(), (0..5).map(|i| json!(i)).collect::<Vec<_>>());
    }
}
