//! GraphQL over WebSocket, both protocols, each exactly as negotiated in the handshake.
//!
//! - `graphql-transport-ws` (the `graphql-ws` library's protocol, PROTOCOL.md of
//!   enisdenjo/graphql-ws): `connection_init` within [`WS_CONNECTION_INIT_TIMEOUT_MS`] or close
//!   4408; a second `connection_init` closes 4429; `subscribe` before `connection_ack` closes
//!   4401; a `subscribe` whose id is still running closes 4409; a malformed message closes 4400.
//!   An operation that fails without data (validation, a refused subscription) gets `error` with
//!   the GraphQL errors and nothing after it; otherwise `next` per result, then `complete`. A
//!   client's `complete` stops the operation, and the server sends nothing more for it. `ping`
//!   is answered with `pong`, before or after the handshake.
//! - `graphql-ws` (the legacy subscriptions-transport-ws protocol of older Apollo clients):
//!   `connection_init`, `connection_ack` then `ka` every [`WS_LEGACY_KEEPALIVE_MS`], `start`,
//!   `data`, `error` (for a failure before execution, as the reference server sends it),
//!   `complete` (also in answer to `stop`), `connection_terminate`.
//!
//! Limits: a node holds at most [`WS_SOCKETS_MAX`] sockets and a client (`schema::ClientKey`)
//! at most its configured share, refused with HTTP 429 before the upgrade; a socket runs at most
//! [`WS_OPERATIONS_PER_SOCKET_MAX`] operations at once (one more is answered with an `error` of
//! code RATE_LIMITED); every `subscribe` is charged to the client's cost budget like an HTTP
//! request, and its fields' costs by the schema, so queries and mutations sent over a socket
//! are limited exactly as over HTTP.
//!
//! Errors carry the same `extensions.code` they carry over HTTP. The bearer token comes from the
//! `connection_init` payload (`{"Authorization": "Bearer <token>"}`) or else from the upgrade
//! request's header. Each operation runs in its own task and sends into one bounded queue, so a
//! client that stops reading holds back only its own operations; a message the socket does not
//! accept within `WS_SEND_TIMEOUT_MS` closes it (1008), and a draining node closes it with 1001.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Data, Request};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::stream::{SplitSink, StreamExt as _};
use futures::SinkExt as _;
use schema::BearerToken;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use crate::config::{
    WS_CONNECTION_INIT_TIMEOUT_MS, WS_LEGACY_KEEPALIVE_MS, WS_OPERATIONS_PER_SOCKET_MAX, WS_OUTGOING_QUEUED_MAX,
    WS_SEND_TIMEOUT_MS, WS_SOCKETS_MAX,
};
use crate::http::Schemas;
use schema::{ClientKey, Limiter};

/// Counts open sockets, in all and per client, against the caps.
pub struct Sockets {
    per_client_max: usize,
    open: std::sync::Mutex<(usize, HashMap<ClientKey, usize>)>,
}

impl Sockets {
    /// At most [`WS_SOCKETS_MAX`] in all and `per_client_max` per client (0: no per-client cap).
    pub fn new(per_client_max: usize) -> Arc<Self> {
        Arc::new(Sockets { per_client_max, open: Default::default() })
    }

    /// Counts a socket for `client` until the answer is dropped, or says why not.
    pub fn open(self: &Arc<Self>, client: ClientKey) -> Result<OpenSocket, String> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.0 >= WS_SOCKETS_MAX {
            return Err(format!("this node has {WS_SOCKETS_MAX} WebSockets open; connect to another node"));
        }
        let mine = open.1.get(&client).copied().unwrap_or(0);
        if self.per_client_max > 0 && mine >= self.per_client_max {
            return Err(format!(
                "this client has {} WebSockets open on this node, the most it may",
                self.per_client_max
            ));
        }
        open.0 += 1;
        open.1.insert(client, mine + 1);
        Ok(OpenSocket { sockets: self.clone(), client })
    }

    /// Sockets open now.
    pub fn count(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).0
    }
}

/// One counted socket; dropping it gives its place back.
pub struct OpenSocket {
    sockets: Arc<Sockets>,
    client: ClientKey,
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        let mut open = self.sockets.open.lock().unwrap_or_else(|p| p.into_inner());
        open.0 -= 1;
        if let Some(n) = open.1.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.client);
            }
        }
    }
}

/// Who is on the other end of a socket, for limits.
pub struct Peer {
    /// The client's key.
    pub client: ClientKey,
    /// Its cost budget.
    pub limiter: Arc<Limiter>,
    /// Its place among the open sockets, held for as long as the socket lives.
    pub _open: OpenSocket,
}

/// The subprotocols, by their `Sec-WebSocket-Protocol` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `graphql-transport-ws`.
    TransportWs,
    /// `graphql-ws`, the legacy subscriptions-transport-ws protocol.
    LegacyWs,
}

impl Protocol {
    /// The name in the handshake.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::TransportWs => "graphql-transport-ws",
            Protocol::LegacyWs => "graphql-ws",
        }
    }

    /// The first protocol the client offers that this server speaks, in the client's order
    /// (the handshake's answer is this same one: see `http::graphql_ws`).
    pub fn negotiate(offered: &str) -> Option<Protocol> {
        offered.split(',').map(str::trim).find_map(|p| match p {
            "graphql-transport-ws" => Some(Protocol::TransportWs),
            "graphql-ws" => Some(Protocol::LegacyWs),
            _ => None,
        })
    }
}

/// What an operation task hands the socket loop.
enum Out {
    /// A message for the client about operation `id` (generation `generation`).
    Message { id: String, generation: u64, message: Value },
    /// Operation `id` ended; `complete` says whether to tell the client.
    Finished { id: String, generation: u64, complete: bool },
}

/// One running operation.
struct Running {
    generation: u64,
    task: AbortHandle,
}

/// A close the server decided on.
struct Close(u16, String);

type Sink = SplitSink<WebSocket, Message>;

/// Serves one upgraded socket until either side closes it.
pub async fn serve(
    socket: WebSocket,
    schemas: Schemas,
    protocol: Protocol,
    header_token: BearerToken,
    peer: Peer,
    mut draining: watch::Receiver<bool>,
) {
    let (mut sink, mut stream) = socket.split();
    let mut conn = Connection {
        schemas,
        protocol,
        header_token,
        peer,
        data: None,
        running: HashMap::new(),
        generation: 0,
        queue: mpsc::channel(WS_OUTGOING_QUEUED_MAX),
    };
    let init_deadline = tokio::time::sleep(Duration::from_millis(WS_CONNECTION_INIT_TIMEOUT_MS));
    tokio::pin!(init_deadline);
    // The first `ka` goes with the ack; the interval's first tick is one period later.
    let period = Duration::from_millis(WS_LEGACY_KEEPALIVE_MS);
    let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let close = loop {
        let acked = conn.data.is_some();
        tokio::select! {
            () = &mut init_deadline, if !acked => {
                break Some(Close(4408, "Connection initialisation timeout".into()));
            }
            // The watch guard is dropped inside: it must not live across the select.
            _ = async { drop(draining.wait_for(|d| *d).await) } => {
                break Some(Close(1001, "node shutting down: resume on another node".into()));
            }
            _ = keepalive.tick(), if acked && protocol == Protocol::LegacyWs => {
                if !send(&mut sink, json!({ "type": "ka" })).await {
                    break None;
                }
            }
            incoming = stream.next() => {
                let text = match incoming {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                    // axum answers pings itself; a pong needs nothing.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
                };
                match conn.on_message(&text) {
                    Ok(replies) => {
                        let mut ok = true;
                        for reply in replies {
                            ok = ok && send(&mut sink, reply).await;
                        }
                        if !ok {
                            break None;
                        }
                    }
                    Err(Some(close)) => break Some(close),
                    Err(None) => break None,
                }
            }
            out = conn.queue.1.recv() => {
                // The loop holds a sender, so the queue never closes while it runs.
                let Some(out) = out else { break None };
                if let Some(message) = conn.on_output(out) {
                    if !send(&mut sink, message).await {
                        break None;
                    }
                }
            }
        }
    };
    for (_, op) in conn.running.drain() {
        op.task.abort();
    }
    if let Some(Close(code, reason)) = close {
        let frame = CloseFrame { code, reason: reason.into() };
        let _ = tokio::time::timeout(Duration::from_millis(WS_SEND_TIMEOUT_MS), sink.send(Message::Close(Some(frame))))
            .await;
    }
}

/// Sends one message within `WS_SEND_TIMEOUT_MS`; false when the socket is gone or too slow
/// (then it is closed with 1008, best effort: a socket this full may not take that either).
async fn send(sink: &mut Sink, message: Value) -> bool {
    let timeout = Duration::from_millis(WS_SEND_TIMEOUT_MS);
    match tokio::time::timeout(timeout, sink.send(Message::Text(message.to_string().into()))).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            tracing::info!(timeout_ms = WS_SEND_TIMEOUT_MS, "closing a subscriber socket that stopped reading");
            let close = CloseFrame { code: 1008, reason: "too slow: no message accepted in time".into() };
            let _ = tokio::time::timeout(timeout, sink.send(Message::Close(Some(close)))).await;
            false
        }
    }
}

struct Connection {
    schemas: Schemas,
    protocol: Protocol,
    header_token: BearerToken,
    peer: Peer,
    /// The connection's data once `connection_init` was acknowledged.
    data: Option<Arc<Data>>,
    running: HashMap<String, Running>,
    generation: u64,
    queue: (mpsc::Sender<Out>, mpsc::Receiver<Out>),
}

/// `Err(Some(close))` closes with a code; `Err(None)` ends the socket without one.
type Handled = Result<Vec<Value>, Option<Close>>;

impl Connection {
    fn on_message(&mut self, text: &str) -> Handled {
        let Ok(message) = serde_json::from_str::<Value>(text) else {
            return self.malformed("the message is not JSON");
        };
        let kind = message.get("type").and_then(Value::as_str).unwrap_or_default().to_owned();
        match (self.protocol, kind.as_str()) {
            (_, "connection_init") => self.on_init(message.get("payload")),
            (Protocol::TransportWs, "ping") => {
                let mut pong = json!({ "type": "pong" });
                if let Some(payload) = message.get("payload").filter(|p| !p.is_null()) {
                    pong["payload"] = payload.clone();
                }
                Ok(vec![pong])
            }
            (Protocol::TransportWs, "pong") => Ok(vec![]),
            (Protocol::TransportWs, "subscribe") | (Protocol::LegacyWs, "start") => self.on_start(&message),
            (Protocol::TransportWs, "complete") => {
                if let Some(op) = message.get("id").and_then(Value::as_str).and_then(|id| self.running.remove(id)) {
                    op.task.abort();
                }
                Ok(vec![])
            }
            (Protocol::LegacyWs, "stop") => {
                let Some(id) = message.get("id").and_then(Value::as_str) else {
                    return self.malformed("stop needs an id");
                };
                match self.running.remove(id) {
                    Some(op) => {
                        op.task.abort();
                        Ok(vec![json!({ "type": "complete", "id": id })])
                    }
                    None => Ok(vec![]),
                }
            }
            (Protocol::LegacyWs, "connection_terminate") => Err(None),
            (_, other) => self.malformed(&format!("unknown message type {other:?}")),
        }
    }

    fn malformed(&self, why: &str) -> Handled {
        match self.protocol {
            Protocol::TransportWs => Err(Some(Close(4400, format!("Invalid message received: {why}")))),
            Protocol::LegacyWs => Ok(vec![json!({ "type": "connection_error", "payload": { "message": why } })]),
        }
    }

    fn on_init(&mut self, payload: Option<&Value>) -> Handled {
        if self.data.is_some() {
            return match self.protocol {
                Protocol::TransportWs => Err(Some(Close(4429, "Too many initialisation requests".into()))),
                Protocol::LegacyWs => Ok(vec![
                    json!({ "type": "connection_error", "payload": { "message": "Too many initialisation requests" } }),
                ]),
            };
        }
        let from_payload = payload
            .and_then(|p| p.get("Authorization").or_else(|| p.get("authorization")))
            .and_then(Value::as_str)
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(|t| t.trim().to_string());
        let mut data = Data::default();
        data.insert(BearerToken(from_payload.or_else(|| self.header_token.0.clone())));
        data.insert(self.peer.client);
        self.data = Some(Arc::new(data));
        let mut replies = vec![json!({ "type": "connection_ack" })];
        if self.protocol == Protocol::LegacyWs {
            replies.push(json!({ "type": "ka" }));
        }
        Ok(replies)
    }

    fn on_start(&mut self, message: &Value) -> Handled {
        let Some(id) = message.get("id").and_then(Value::as_str).filter(|id| !id.is_empty()) else {
            return self.malformed("subscribe needs a non-empty string id");
        };
        let id = id.to_owned();
        let Some(data) = self.data.clone() else {
            return match self.protocol {
                Protocol::TransportWs => Err(Some(Close(4401, "Unauthorized".into()))),
                Protocol::LegacyWs => Ok(vec![legacy_error(&id, "send connection_init first")]),
            };
        };
        let request = match message.get("payload").map(|p| serde_json::from_value::<Request>(p.clone())) {
            Some(Ok(r)) => r,
            Some(Err(e)) => return self.malformed(&format!("the payload is not a GraphQL request: {e}")),
            None => return self.malformed("subscribe needs a payload"),
        };
        if let Some(op) = self.running.get(&id) {
            match self.protocol {
                Protocol::TransportWs => return Err(Some(Close(4409, format!("Subscriber for {id} already exists")))),
                // The reference server of the legacy protocol replaces the operation.
                Protocol::LegacyWs => op.task.abort(),
            }
        } else if self.running.len() >= WS_OPERATIONS_PER_SOCKET_MAX {
            let message = format!("a socket may run at most {WS_OPERATIONS_PER_SOCKET_MAX} operations at once");
            let error = schema::limits::rate_limited(message, 1_000).into_server_error(Default::default());
            return Ok(vec![self.refusal(&id, error)]);
        }
        // Charged like an HTTP request; the schema charges the fields' costs.
        if let Err(e) = crate::http::charge_request(&self.peer.limiter, self.peer.client) {
            return Ok(vec![self.refusal(&id, e)]);
        }
        self.generation += 1;
        let generation = self.generation;
        let task = tokio::spawn(run_operation(
            self.schemas.clone(),
            request,
            data,
            id.clone(),
            generation,
            self.protocol,
            self.queue.0.clone(),
        ));
        self.running.insert(id, Running { generation, task: task.abort_handle() });
        Ok(vec![])
    }

    /// The `error` message refusing operation `id` before it runs.
    fn refusal(&self, id: &str, error: async_graphql::ServerError) -> Value {
        match self.protocol {
            Protocol::TransportWs => json!({ "type": "error", "id": id, "payload": [error] }),
            Protocol::LegacyWs => json!({ "type": "error", "id": id, "payload": error }),
        }
    }

    /// What to send for an operation's output, if anything: nothing for an operation the client
    /// stopped (or replaced) meanwhile.
    fn on_output(&mut self, out: Out) -> Option<Value> {
        let current = |running: &HashMap<String, Running>, id: &str, generation: u64| {
            running.get(id).is_some_and(|op| op.generation == generation)
        };
        match out {
            Out::Message { id, generation, message } => current(&self.running, &id, generation).then_some(message),
            Out::Finished { id, generation, complete } => {
                if !current(&self.running, &id, generation) {
                    return None;
                }
                self.running.remove(&id);
                complete.then(|| json!({ "type": "complete", "id": id }))
            }
        }
    }
}

fn legacy_error(id: &str, message: &str) -> Value {
    json!({ "type": "error", "id": id, "payload": { "message": message } })
}

/// Runs one operation and queues its messages: `next`/`data` per result, then `complete`; or a
/// single `error` when it failed without data.
async fn run_operation(
    schemas: Schemas,
    mut request: Request,
    data: Arc<Data>,
    id: String,
    generation: u64,
    protocol: Protocol,
    queue: mpsc::Sender<Out>,
) {
    let mut stream = schemas.route(&mut request).execute_stream_with_session_data(request, data);
    let mut complete = true;
    while let Some(mut response) = stream.next().await {
        schema::error::stamp_codes(&mut response.errors);
        let failed = response.data == async_graphql::Value::Null && !response.errors.is_empty();
        let message = match (protocol, failed) {
            (Protocol::TransportWs, true) => json!({ "type": "error", "id": id, "payload": response.errors }),
            (Protocol::LegacyWs, true) => {
                let first = serde_json::to_value(&response.errors[0]).unwrap_or(Value::Null);
                json!({ "type": "error", "id": id, "payload": first })
            }
            (Protocol::TransportWs, false) => json!({ "type": "next", "id": id, "payload": response }),
            (Protocol::LegacyWs, false) => json!({ "type": "data", "id": id, "payload": response }),
        };
        if queue.send(Out::Message { id: id.clone(), generation, message }).await.is_err() {
            return;
        }
        if failed {
            // graphql-transport-ws: `error` ends the operation, with no `complete` after it.
            complete = protocol == Protocol::LegacyWs;
            break;
        }
    }
    let _ = queue.send(Out::Finished { id, generation, complete }).await;
}
