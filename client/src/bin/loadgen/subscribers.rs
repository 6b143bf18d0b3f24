//! The `subscribers` scenario: fan-out of chat messages to many open subscriptions.
//!
//! Setup (not measured) registers one account, creates a chat, and opens N graphql-transport-ws
//! sockets to the first node, each subscribed to `chatMessages` on that chat with the token in
//! `connection_init`. One warm-up message must reach every socket before measuring starts, so
//! every subscription is live. Then messages are sent through the first node at a fixed rate;
//! each body carries the instant it was sent (microseconds since the run's base instant, on this
//! process's monotonic clock), so every delivery on every socket yields one send-to-delivery
//! delay. All sockets belong to one account: what fan-out costs is per socket, and it keeps the
//! chat within its participant limit at any N.
//!
//! Reported: messages acknowledged, messages committed (the chat's `messageCount` read back, which
//! also counts sends whose answer was lost), deliveries (committed × N expected), deliveries per
//! second over the measured window, and the delay distribution. A socket that sees an index go backwards, a
//! repeat, an error or a close is counted; the run fails if any delivery is missing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use client::{AuthPayload, Client, RegisterInput};
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::{format_errors, summarize, LatencySummary, LATENCY_MAX_US, LATENCY_SIGNIFICANT_DIGITS, NAME_PREFIX};

/// Default number of open subscriptions.
const SUBSCRIBERS_DEFAULT_COUNT: u32 = 100;
/// Most subscriptions one run opens (each is a socket on both ends).
const SUBSCRIBERS_MAX_COUNT: u32 = 20_000;
/// Default send rate.
const RATE_DEFAULT_PER_SEC: u32 = 50;
/// Sockets being opened at once during setup.
const CONNECT_PARALLELISM_SOCKETS: usize = 64;
/// Sends in flight at once; beyond it the sender falls behind its rate rather than pile up.
const SENDS_IN_FLIGHT_MAX: usize = 256;
/// How long setup waits for every socket to receive the warm-up message.
const WARMUP_TIMEOUT_SECS: u64 = 60;
/// Read buffer of each socket. tungstenite's default (128 KiB) is zeroed afresh on every read,
/// which with thousands of sockets receiving small frames costs more CPU than the frames
/// themselves; its documentation suggests 4 KiB for many connections.
const SOCKET_READ_BUFFER_BYTES: usize = 4 * 1024;
/// How long after the last send the deliveries may still arrive.
const DRAIN_TIMEOUT_SECS: u64 = 30;

const SUBSCRIPTION: &str =
    "subscription($c:ID!,$a:Int){ chatMessages(chatId:$c, afterIndex:$a){ index message{ body } } }";
const CREATE_CHAT: &str = "mutation($n:String!){ createChat(name:$n, participantIds:[]){ id } }";
const SEND: &str =
    "mutation($c:ID!,$b:String!,$k:String!){ sendMessage(chatId:$c, body:$b, clientMessageId:$k){ seq } }";
const WARMUP_BODY: &str = "warm-up";

/// Flags of the `subscribers` scenario.
#[derive(Args, Debug)]
pub(super) struct SubscribersArgs {
    /// Open subscriptions (sockets) on the first node.
    #[arg(long, default_value_t = SUBSCRIBERS_DEFAULT_COUNT,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(SUBSCRIBERS_MAX_COUNT)))]
    pub subscribers: u32,
    /// Messages sent per second (fixed rate, open loop).
    #[arg(long, default_value_t = RATE_DEFAULT_PER_SEC, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate: u32,
}

/// What one socket saw.
struct SocketStats {
    delay_us: Histogram<u64>,
    delivered: u64,
    out_of_order: u64,
    last_delivery: Option<Instant>,
    failure: Option<String>,
}

/// The scenario's report.
#[derive(Serialize)]
pub(super) struct SubscribersReport {
    scenario: &'static str,
    node: String,
    subscribers: u32,
    rate_per_sec: u32,
    duration_secs: u64,
    sent: u64,
    committed: u64,
    send_errors: BTreeMap<String, u64>,
    deliveries_expected: u64,
    delivered: u64,
    out_of_order: u64,
    sockets_failed: u64,
    failures: BTreeMap<String, u64>,
    elapsed_secs: f64,
    delivered_per_sec: f64,
    delay_ms: LatencySummary,
}

impl SubscribersReport {
    /// True when every socket received every message, in order.
    pub fn complete(&self) -> bool {
        self.delivered == self.deliveries_expected && self.out_of_order == 0 && self.sockets_failed == 0
    }

    pub fn print_table(&self) {
        let d = &self.delay_ms;
        println!("scenario      subscribers on {}", self.node);
        println!("subscribers   {}", self.subscribers);
        println!(
            "sent          {} acknowledged, {} committed, at {}/s for {} s",
            self.sent, self.committed, self.rate_per_sec, self.duration_secs
        );
        println!("delivered     {} of {} ({:.0}/s)", self.delivered, self.deliveries_expected, self.delivered_per_sec);
        println!(
            "delay ms      p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            d.p50, d.p90, d.p99, d.p999, d.max
        );
        if !self.send_errors.is_empty() {
            println!("send errors   {}", format_errors(&self.send_errors));
        }
        if self.sockets_failed > 0 || self.out_of_order > 0 {
            println!(
                "problems      {} sockets failed ({}), {} out of order",
                self.sockets_failed,
                format_errors(&self.failures),
                self.out_of_order
            );
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a socket, signs in through `connection_init` and subscribes to the chat from index 0
/// (a new chat's whole history), so no subscription can miss the warm-up.
async fn open(node: &str, token: &str, chat: &str) -> anyhow::Result<Ws> {
    let ws_url = format!("{}/graphql", node.replacen("http://", "ws://", 1).replacen("https://", "wss://", 1));
    let mut req = ws_url.as_str().into_client_request().context("websocket url")?;
    req.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().context("header")?);
    let config = WebSocketConfig::default().read_buffer_size(SOCKET_READ_BUFFER_BYTES);
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(req, Some(config), false).await.context("websocket connect")?;
    let init = json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}});
    ws.send(WsMessage::text(init.to_string())).await?;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.context("connection_ack in time")?;
        match frame {
            Some(Ok(WsMessage::Text(t))) if serde_json::from_str::<Value>(&t)?["type"] == "connection_ack" => break,
            Some(Ok(_)) => continue,
            other => bail!("socket closed before connection_ack: {other:?}"),
        }
    }
    let sub =
        json!({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIPTION, "variables": {"c": chat, "a": 0}}});
    ws.send(WsMessage::text(sub.to_string())).await?;
    Ok(ws)
}

/// Reads one socket until `stop`: every message after the warm-up yields a delay.
async fn read_socket(
    mut ws: Ws,
    base: Instant,
    warmed: Arc<AtomicU64>,
    delivered_total: Arc<AtomicU64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> SocketStats {
    let mut s = SocketStats {
        delay_us: Histogram::new_with_bounds(1, LATENCY_MAX_US, LATENCY_SIGNIFICANT_DIGITS).expect("valid bounds"),
        delivered: 0,
        out_of_order: 0,
        last_delivery: None,
        failure: None,
    };
    let mut last_index = 0;
    loop {
        let frame = tokio::select! {
            f = ws.next() => f,
            _ = stop.changed() => break,
        };
        let text = match frame {
            Some(Ok(WsMessage::Text(t))) => t,
            Some(Ok(WsMessage::Ping(p))) => {
                let _ = ws.send(WsMessage::Pong(p)).await;
                continue;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                s.failure = Some(format!("socket error: {e}"));
                break;
            }
            None => {
                s.failure = Some("closed".into());
                break;
            }
        };
        let now = Instant::now();
        let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
        match v["type"].as_str() {
            Some("next") => {
                let event = &v["payload"]["data"]["chatMessages"];
                let Some(index) = event["index"].as_u64() else {
                    s.failure = Some(format!("error event: {}", v["payload"]["errors"]));
                    break;
                };
                if index <= last_index {
                    s.out_of_order += 1;
                }
                last_index = index;
                let body = event["message"]["body"].as_str().unwrap_or("");
                if body == WARMUP_BODY {
                    warmed.fetch_add(1, Ordering::Relaxed);
                } else if let Ok(sent_us) = body.parse::<u64>() {
                    let delay = (now - base).as_micros() as u64 - sent_us.min((now - base).as_micros() as u64);
                    s.delay_us.saturating_record(delay.max(1));
                    s.delivered += 1;
                    delivered_total.fetch_add(1, Ordering::Relaxed);
                    s.last_delivery = Some(now);
                }
            }
            Some("ping") => {
                let _ = ws.send(WsMessage::text(json!({"type": "pong"}).to_string())).await;
            }
            Some("error") | Some("complete") => {
                s.failure = Some(format!("subscription ended: {}", v["payload"]));
                break;
            }
            _ => {}
        }
    }
    s
}

/// Runs the whole scenario: setup, the measured sends, the drain, and the report.
pub(super) async fn run(
    client: &Client,
    node: &str,
    args: &SubscribersArgs,
    duration_secs: u64,
    run_id: &str,
) -> anyhow::Result<SubscribersReport> {
    let input = RegisterInput {
        username: format!("{NAME_PREFIX}{run_id}fan"),
        password: "loadgen subscriber password".into(),
        ..Default::default()
    };
    let auth: AuthPayload = client.register(0, &input).await.context("registering the subscriber account")?;
    let token = auth.token;
    let chat = client
        .execute(0, CREATE_CHAT, json!({"n": format!("fan-out {run_id}")}), Some(&token))
        .await
        .context("creating the chat")?["createChat"]["id"]
        .as_str()
        .context("chat id")?
        .to_string();

    let n = args.subscribers as usize;
    eprintln!("opening {n} subscriptions on {node}");
    let sem = Arc::new(Semaphore::new(CONNECT_PARALLELISM_SOCKETS));
    let mut opening = Vec::with_capacity(n);
    for _ in 0..n {
        let (sem, node, token, chat) = (sem.clone(), node.to_string(), token.clone(), chat.clone());
        opening.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.context("semaphore")?;
            open(&node, &token, &chat).await
        }));
    }
    let base = Instant::now();
    let warmed = Arc::new(AtomicU64::new(0));
    let delivered_total = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut readers = Vec::with_capacity(n);
    for (i, task) in opening.into_iter().enumerate() {
        let ws = task.await.context("connect task")?.with_context(|| format!("opening subscription {i}"))?;
        readers.push(tokio::spawn(read_socket(ws, base, warmed.clone(), delivered_total.clone(), stop_rx.clone())));
    }

    // Every socket must have the warm-up before measuring: then each subscription is live.
    let (_, e) = send(client, &token, &chat, WARMUP_BODY, "warm-up").await;
    if let Some(e) = e {
        bail!("warm-up message: {e}");
    }
    let deadline = Instant::now() + Duration::from_secs(WARMUP_TIMEOUT_SECS);
    while (warmed.load(Ordering::Relaxed) as usize) < n {
        if Instant::now() > deadline {
            bail!(
                "only {} of {n} subscriptions received the warm-up in {WARMUP_TIMEOUT_SECS} s",
                warmed.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("all {n} subscriptions live; sending {} messages/s for {duration_secs} s", args.rate);

    let start = Instant::now();
    let end = start + Duration::from_secs(duration_secs);
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate));
    let in_flight = Arc::new(Semaphore::new(SENDS_IN_FLIGHT_MAX));
    let mut sends = Vec::new();
    let mut seq = 0u64;
    while Instant::now() < end {
        let at = start + interval.mul_f64(seq as f64);
        tokio::time::sleep_until(at.into()).await;
        let permit = in_flight.clone().acquire_owned().await.context("semaphore")?;
        let (client, token, chat) = (client.clone(), token.clone(), chat.clone());
        let body = (Instant::now() - base).as_micros().to_string();
        let key = format!("m{seq}");
        sends.push(tokio::spawn(async move {
            let r = send(&client, &token, &chat, &body, &key).await;
            drop(permit);
            r
        }));
        seq += 1;
    }
    let mut sent = 0u64;
    let mut send_errors = BTreeMap::new();
    for s in sends {
        match s.await.context("send task")? {
            (true, _) => sent += 1,
            (false, e) => *send_errors.entry(e.unwrap_or_default()).or_default() += 1,
        }
    }
    // A send that timed out may still have committed, and then it is delivered: the chat's own
    // count, read back after the sends settle, says how many messages exist (less the warm-up).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let count = client
        .execute_retrying(0, "query($c:ID!){ chat(id:$c){ messageCount } }", json!({"c": chat}), Some(&token))
        .await
        .context("reading the chat's message count")?;
    let committed = count["chat"]["messageCount"].as_u64().context("messageCount")?.saturating_sub(1);
    let expected = committed * n as u64;
    // Wait for the deliveries still on their way; a socket that lost one never completes, so
    // the wait is bounded and the report says what is missing.
    let drain_deadline = Instant::now() + Duration::from_secs(DRAIN_TIMEOUT_SECS);
    while delivered_total.load(Ordering::Relaxed) < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop_tx.send_replace(true);

    let mut delay = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_US, LATENCY_SIGNIFICANT_DIGITS).expect("bounds");
    let (mut delivered, mut out_of_order, mut sockets_failed) = (0, 0, 0);
    let mut failures = BTreeMap::new();
    let mut last = start;
    for r in readers {
        let s = r.await.context("reader task")?;
        delay.add(&s.delay_us).context("merging histograms")?;
        delivered += s.delivered;
        out_of_order += s.out_of_order;
        last = last.max(s.last_delivery.unwrap_or(start));
        if let Some(f) = s.failure {
            sockets_failed += 1;
            *failures.entry(f).or_default() += 1;
        }
    }
    let elapsed_secs = (last - start).as_secs_f64();
    Ok(SubscribersReport {
        scenario: "subscribers",
        node: node.to_string(),
        subscribers: args.subscribers,
        rate_per_sec: args.rate,
        duration_secs,
        sent,
        committed,
        send_errors,
        deliveries_expected: expected,
        delivered,
        out_of_order,
        sockets_failed,
        failures,
        elapsed_secs,
        delivered_per_sec: if elapsed_secs > 0.0 { delivered as f64 / elapsed_secs } else { 0.0 },
        delay_ms: summarize(&delay),
    })
}

/// Sends one message: (acknowledged, error code).
async fn send(client: &Client, token: &str, chat: &str, body: &str, key: &str) -> (bool, Option<String>) {
    match client.execute(0, SEND, json!({"c": chat, "b": body, "k": key}), Some(token)).await {
        Ok(_) => (true, None),
        Err(e) => (false, Some(e.code())),
    }
}
