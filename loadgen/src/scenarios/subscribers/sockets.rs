//! The subscriptions' sockets: opening many of them over the nodes, reading their frames
//! (graphql-transport-ws), and waiting until they are live or have received what was sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::progress::{Extent, Progress, Reading};

/// Sockets being opened at once during setup.
const CONNECT_PARALLELISM_SOCKETS: usize = 64;
/// How long setup waits for every socket to be live.
pub(super) const LIVE_TIMEOUT_SECS: u64 = 60;
/// How long a socket may take to acknowledge `connection_init`.
const ACK_TIMEOUT_SECS: u64 = 10;
/// Read buffer of each socket. tungstenite's default (128 KiB) is zeroed afresh on every read,
/// which with thousands of sockets receiving small frames costs more CPU than the frames
/// themselves; its documentation suggests 4 KiB for many connections.
const SOCKET_READ_BUFFER_BYTES: usize = 4 * 1024;
/// How long after the last send the deliveries may still arrive.
pub(super) const DRAIN_TIMEOUT_SECS: u64 = 30;

/// One subscription's socket.
pub(super) type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a socket to `node`, signs in through `connection_init` and sends one subscription.
async fn connect(node: &str, token: &str, query: &str, variables: &Value) -> anyhow::Result<Ws> {
    let ws_url = format!("{}/graphql", node.replacen("http://", "ws://", 1).replacen("https://", "wss://", 1));
    let mut req = ws_url.as_str().into_client_request().context("websocket url")?;
    req.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().context("header")?);
    let config = WebSocketConfig::default().read_buffer_size(SOCKET_READ_BUFFER_BYTES);
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(req, Some(config), false).await.context("websocket connect")?;
    let init = json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}});
    ws.send(WsMessage::text(init.to_string())).await?;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(ACK_TIMEOUT_SECS), ws.next())
            .await
            .context("connection_ack in time")?;
        match frame {
            Some(Ok(WsMessage::Text(t))) if serde_json::from_str::<Value>(&t)?["type"] == "connection_ack" => break,
            Some(Ok(_)) => continue,
            other => bail!("socket closed before connection_ack: {other:?}"),
        }
    }
    let sub = json!({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables}});
    ws.send(WsMessage::text(sub.to_string())).await?;
    Ok(ws)
}

/// Opens `n` subscriptions, socket `i` on node `i % nodes`, with progress; returns each socket
/// with its node index, in order, and how many went to each node.
pub(super) async fn open_all(
    nodes: &[String],
    n: usize,
    token: &str,
    query: &'static str,
    variables: Value,
) -> anyhow::Result<(Vec<(usize, Ws)>, Vec<u64>)> {
    eprintln!("opening {n} subscriptions over {} node(s)", nodes.len());
    let opened = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(Extent::Count { label: "subscribing", total: n as u64, unit: "sockets" }, {
        let opened = opened.clone();
        move || Reading { done: opened.load(Ordering::Relaxed), ..Reading::default() }
    });
    let sem = Arc::new(Semaphore::new(CONNECT_PARALLELISM_SOCKETS));
    let variables = Arc::new(variables);
    let mut opening = Vec::with_capacity(n);
    for i in 0..n {
        let node_index = i % nodes.len();
        let (sem, node, token, vars, opened) =
            (sem.clone(), nodes[node_index].clone(), token.to_owned(), variables.clone(), opened.clone());
        opening.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.context("semaphore")?;
            let ws = connect(&node, &token, query, &vars).await.with_context(|| format!("on {node}"))?;
            opened.fetch_add(1, Ordering::Relaxed);
            anyhow::Ok((node_index, ws))
        }));
    }
    let mut sockets = Vec::with_capacity(n);
    let mut per_node = vec![0u64; nodes.len()];
    for (i, task) in opening.into_iter().enumerate() {
        let (node_index, ws) =
            task.await.context("connect task")?.with_context(|| format!("opening subscription {i}"))?;
        per_node[node_index] += 1;
        sockets.push((node_index, ws));
    }
    progress.finish();
    Ok((sockets, per_node))
}

/// Reads `ws` until `stop`, answering pings and handing each `next` payload's `data` to
/// `on_next` with its arrival time. Returns why the socket ended, if it was not `stop`:
/// an error, a close, an error event, or what `on_next` refused.
pub(super) async fn read_frames(
    ws: &mut Ws,
    mut stop: watch::Receiver<bool>,
    mut on_next: impl FnMut(&Value, Instant) -> Result<(), String>,
) -> Option<String> {
    loop {
        let frame = tokio::select! {
            f = ws.next() => f,
            _ = stop.wait_for(|stop| *stop) => return None,
        };
        let text = match frame {
            Some(Ok(WsMessage::Text(t))) => t,
            Some(Ok(WsMessage::Ping(p))) => {
                let _ = ws.send(WsMessage::Pong(p)).await;
                continue;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Some(format!("socket error: {e}")),
            None => return Some("closed".into()),
        };
        let now = Instant::now();
        let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
        match v["type"].as_str() {
            Some("next") => {
                let payload = &v["payload"];
                if payload.get("errors").is_some_and(|e| !e.is_null()) || payload["data"].is_null() {
                    return Some(format!("error event: {}", payload["errors"]));
                }
                if let Err(problem) = on_next(&payload["data"], now) {
                    return Some(problem);
                }
            }
            Some("ping") => {
                let _ = ws.send(WsMessage::text(json!({"type": "pong"}).to_string())).await;
            }
            Some("error") | Some("complete") => return Some(format!("subscription ended: {}", v["payload"])),
            _ => {}
        }
    }
}

/// Waits until `live` reaches `n` or [`LIVE_TIMEOUT_SECS`] pass.
pub(super) async fn await_live(live: &AtomicU64, n: usize, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(LIVE_TIMEOUT_SECS);
    while (live.load(Ordering::Relaxed) as usize) < n {
        if Instant::now() > deadline {
            bail!(
                "only {} of {n} subscriptions received {what} in {LIVE_TIMEOUT_SECS} s",
                live.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Waits until `delivered` reaches `expected` or [`DRAIN_TIMEOUT_SECS`] pass: a socket that lost
/// a delivery never completes, so the wait is bounded and the report says what is missing.
pub(super) async fn drain(delivered: &AtomicU64, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(DRAIN_TIMEOUT_SECS);
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
