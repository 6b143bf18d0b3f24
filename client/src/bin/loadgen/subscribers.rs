//! The `subscribers` scenario: fan-out of live updates to many open subscriptions.
//!
//! N graphql-transport-ws sockets, spread round-robin over `--nodes`, subscribe to one topic;
//! a paced sender causes updates at `--rate` per second, also round-robin over the nodes, for
//! `--warmup` (updates delivered and checked but not measured) and then `--duration` seconds.
//! Every delivery on every socket yields one send-to-delivery delay. Two topics:
//!
//! - `sale` (default, `saleUpdates`, see `sale_updates.rs`): an admin creates a product and a
//!   sale with a large stock; one buyer buys one unit per send, and each purchase's update is
//!   recognized on the sockets by its `sold` count.
//! - `chat` (`chatMessages`): one account creates a chat and sends messages whose bodies carry
//!   their send time; all sockets belong to that account, so the chat stays within its
//!   participant limit at any N.
//!
//! The report counts deliveries (committed updates × N expected), delays, and each socket that
//! saw an index go backwards, an error or a close; the run fails if any delivery is missing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use client::{Client, ClientError};
use futures::{Future, SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::pacing::{self, Schedule};
use super::progress::{Extent, Progress, Reading};
use super::purchase::register_or_login;
use super::{format_errors, summarize, LatencySummary, LATENCY_MAX_US, LATENCY_SIGNIFICANT_DIGITS, NAME_PREFIX};

/// Default number of open subscriptions.
const SUBSCRIBERS_DEFAULT_COUNT: u32 = 100;
/// Most subscriptions one run opens (each is a socket on both ends).
const SUBSCRIBERS_MAX_COUNT: u32 = 20_000;
/// Default send rate.
const RATE_DEFAULT_PER_SEC: u32 = 50;
/// Highest send rate.
const RATE_MAX_PER_SEC: u32 = 100_000;
/// Sockets being opened at once during setup.
const CONNECT_PARALLELISM_SOCKETS: usize = 64;
/// Sends in flight at once; beyond it the sender falls behind its schedule (counted as late)
/// rather than pile up.
const SENDS_IN_FLIGHT_MAX: usize = 256;
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
/// Default units on sale for the `sale` topic: more than any run at the highest rate buys.
const STOCK_DEFAULT_UNITS: u32 = 10_000_000;

const CHAT_SUBSCRIPTION: &str =
    "subscription($c:ID!,$a:Int){ chatMessages(chatId:$c, afterIndex:$a){ index message{ body } } }";
const CREATE_CHAT: &str = "mutation($n:String!){ createChat(name:$n, participantIds:[]){ id } }";
const SEND: &str =
    "mutation($c:ID!,$b:String!,$k:String!){ sendMessage(chatId:$c, body:$b, clientMessageId:$k){ seq } }";
const MESSAGE_COUNT: &str = "query($c:ID!){ chat(id:$c){ messageCount } }";
const WARMUP_BODY: &str = "warm-up";
/// Prefix of the bodies of messages sent during `--warmup`, which are delivered but not measured.
const WARMUP_PREFIX: &str = "w";

/// What the sockets subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(super) enum Topic {
    /// `saleUpdates` on a sale one buyer buys from, one unit per send.
    Sale,
    /// `chatMessages` on a chat one account sends messages to.
    Chat,
}

impl Topic {
    fn label(self) -> &'static str {
        match self {
            Self::Sale => "sale",
            Self::Chat => "chat",
        }
    }
}

/// Flags of the `subscribers` scenario.
#[derive(Args, Debug)]
pub(super) struct SubscribersArgs {
    /// What the sockets subscribe to: `sale` (saleUpdates) or `chat` (chatMessages).
    #[arg(long, value_enum, default_value = "sale")]
    pub topic: Topic,
    /// Open subscriptions (sockets), spread round-robin over --nodes.
    #[arg(long, default_value_t = SUBSCRIBERS_DEFAULT_COUNT,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(SUBSCRIBERS_MAX_COUNT)))]
    pub subscribers: u32,
    /// Updates caused per second (purchases or messages), on a fixed schedule.
    #[arg(long, default_value_t = RATE_DEFAULT_PER_SEC,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(RATE_MAX_PER_SEC)))]
    pub rate: u32,
    /// Sale topic: units on sale; must cover --rate x (--warmup + --duration).
    #[arg(long, default_value_t = STOCK_DEFAULT_UNITS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(i32::MAX)))]
    pub stock: u32,
    /// Sale topic: the account that creates the product and the sale, which must be the first
    /// account the cluster registered (the ADMIN). Without it, the scenario registers an admin
    /// of its own, which works only on a cluster that has no account yet.
    #[arg(long, env = "LOADGEN_ADMIN_USER")]
    pub admin_user: Option<String>,
    /// Sale topic: password of the admin account.
    #[arg(long, env = "LOADGEN_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
}

/// The run's timing and identity, from the common flags.
pub(super) struct RunSpec<'a> {
    pub nodes: &'a [String],
    pub warmup_secs: u64,
    pub duration_secs: u64,
    pub seed: u64,
    pub run_id: &'a str,
}

/// The scenario's report, also its `--json` output.
#[derive(Serialize)]
pub(super) struct SubscribersReport {
    pub scenario: &'static str,
    pub topic: &'static str,
    pub nodes: Vec<String>,
    pub subscribers: u32,
    /// Sockets opened on each node, in the order of `nodes`.
    pub sockets_per_node: Vec<u64>,
    pub rate_per_sec: u32,
    pub duration_secs: u64,
    pub warmup_secs: u64,
    /// Reported for the record: the scenario makes no random choices.
    pub seed: u64,
    /// The topic's own parameters: the chat, or the product, sale and stock.
    pub params: Value,
    /// Sends acknowledged.
    pub sent: u64,
    /// Updates committed, read back after the run (includes sends whose answer was lost).
    pub committed: u64,
    pub send_errors: BTreeMap<String, u64>,
    /// Sends the schedule called for over warmup and measured window.
    pub sends_scheduled: u64,
    /// Sends more than the tolerance behind schedule (all in-flight slots taken).
    pub sends_late: u64,
    /// Sends still unsent when the window closed.
    pub sends_dropped: u64,
    /// Sends per second in the measured window.
    pub send_rate_achieved_per_sec: f64,
    /// Answer time of the sends (purchases or messages) in the measured window.
    pub send_latency_ms: LatencySummary,
    pub deliveries_expected: u64,
    pub delivered: u64,
    /// Deliveries of updates sent in the measured window, which the delays are taken from.
    pub measured_deliveries: u64,
    pub out_of_order: u64,
    pub sockets_failed: u64,
    pub failures: BTreeMap<String, u64>,
    /// From the start of the measured window to the last measured delivery.
    pub elapsed_secs: f64,
    /// Measured deliveries per second.
    pub delivered_per_sec: f64,
    /// Send-to-delivery delay of the measured deliveries.
    pub delay_ms: LatencySummary,
    /// Anything else wrong (accounting, attribution); empty on a clean run.
    pub problems: Vec<String>,
}

impl SubscribersReport {
    /// True when every socket received every update, in order, and nothing else went wrong.
    pub fn complete(&self) -> bool {
        self.delivered == self.deliveries_expected
            && self.out_of_order == 0
            && self.sockets_failed == 0
            && self.problems.is_empty()
    }

    pub fn print_table(&self) {
        let d = &self.delay_ms;
        let s = &self.send_latency_ms;
        println!("scenario      subscribers ({}) {}", self.topic, self.params);
        println!("nodes         {}", self.nodes.join(", "));
        println!(
            "subscribers   {} ({} per node)",
            self.subscribers,
            self.sockets_per_node.iter().map(u64::to_string).collect::<Vec<_>>().join("/")
        );
        println!(
            "sent          {} acknowledged, {} committed, at {}/s asked ({:.1}/s achieved) for {} s after {} s warmup",
            self.sent,
            self.committed,
            self.rate_per_sec,
            self.send_rate_achieved_per_sec,
            self.duration_secs,
            self.warmup_secs
        );
        println!(
            "schedule      {} sends scheduled, {} late (>{} ms), {} dropped",
            self.sends_scheduled,
            self.sends_late,
            pacing::LATE_TOLERANCE.as_millis(),
            self.sends_dropped
        );
        println!(
            "delivered     {} of {} ({} measured, {:.0}/s)",
            self.delivered, self.deliveries_expected, self.measured_deliveries, self.delivered_per_sec
        );
        println!(
            "delay ms      p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            d.p50, d.p90, d.p99, d.p999, d.max
        );
        println!(
            "send ms       p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            s.p50, s.p90, s.p99, s.p999, s.max
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
        for problem in &self.problems {
            println!("problem       {problem}");
        }
    }
}

/// Runs the scenario for its topic.
pub(super) async fn run(
    client: &Client,
    args: &SubscribersArgs,
    spec: &RunSpec<'_>,
) -> anyhow::Result<SubscribersReport> {
    match args.topic {
        Topic::Sale => super::sale_updates::run(client, args, spec).await,
        Topic::Chat => run_chat(client, args, spec).await,
    }
}

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

/// A new latency histogram in microseconds.
pub(super) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, LATENCY_SIGNIFICANT_DIGITS).expect("valid histogram bounds")
}

/// Microseconds of `d`, at least 1 (the histograms' lowest value).
pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// One paced send and how it went.
pub(super) struct SendOutcome<T> {
    pub slot: u64,
    /// When the schedule called for it.
    pub due: Instant,
    /// When it was sent.
    pub sent: Instant,
    /// When its answer arrived.
    pub done: Instant,
    pub result: Result<T, ClientError>,
}

/// Live counters of the sender, for the progress line.
#[derive(Default)]
pub(super) struct SendCounters {
    pub sent: AtomicU64,
    pub errors: AtomicU64,
}

/// What the paced sender did.
pub(super) struct Sends<T> {
    /// Every send, in slot order.
    pub outcomes: Vec<SendOutcome<T>>,
    pub scheduled: u64,
    pub late: u64,
    pub dropped: u64,
}

/// Sends slot after slot at `rate` per second from `start` until `end`, with at most
/// [`SENDS_IN_FLIGHT_MAX`] in flight; `send(slot, due)` makes the request of a slot due then. A slot whose
/// time comes while every in-flight place is taken goes out late; slots still unsent at `end`
/// are dropped.
pub(super) async fn paced_sends<T, F, Fut>(
    start: Instant,
    rate: u32,
    end: Instant,
    counters: Arc<SendCounters>,
    send: F,
) -> anyhow::Result<Sends<T>>
where
    T: Send + 'static,
    F: Fn(u64, Instant) -> Fut,
    Fut: Future<Output = Result<T, ClientError>> + Send + 'static,
{
    let schedule = Schedule::new(start, f64::from(rate));
    let scheduled = schedule.slots_before(end);
    let in_flight = Arc::new(Semaphore::new(SENDS_IN_FLIGHT_MAX));
    let mut tasks = Vec::new();
    let (mut late, mut slot) = (0u64, 0u64);
    while slot < scheduled {
        let due = schedule.due(slot);
        tokio::time::sleep_until(due.into()).await;
        let permit = in_flight.clone().acquire_owned().await.context("semaphore")?;
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        late += u64::from(pacing::is_late(due, sent));
        let fut = send(slot, due);
        let counters = counters.clone();
        tasks.push(tokio::spawn(async move {
            counters.sent.fetch_add(1, Ordering::Relaxed);
            let result = fut.await;
            let done = Instant::now();
            drop(permit);
            counters.errors.fetch_add(u64::from(result.is_err()), Ordering::Relaxed);
            SendOutcome { slot, due, sent, done, result }
        }));
        slot += 1;
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.context("send task")?);
    }
    Ok(Sends { outcomes, scheduled, late, dropped: scheduled - slot })
}

/// The progress line of the send phase.
pub(super) fn send_progress(
    start: Instant,
    measure_from: Instant,
    end: Instant,
    counters: Arc<SendCounters>,
    delivered: Arc<AtomicU64>,
) -> Progress {
    Progress::start(Extent::Time { started: start, measure_from, end }, move || Reading {
        done: counters.sent.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        extra: Some((delivered.load(Ordering::Relaxed), "delivered")),
    })
}

/// The measured window: warmup from `start`, then the duration.
pub(super) fn window(start: Instant, spec: &RunSpec<'_>) -> (Instant, Instant) {
    let measure_from = start + Duration::from_secs(spec.warmup_secs);
    (measure_from, measure_from + Duration::from_secs(spec.duration_secs))
}

/// What one chat socket saw.
struct ChatSocket {
    delay_us: Histogram<u64>,
    delivered: u64,
    measured: u64,
    out_of_order: u64,
    last_measured: Option<Instant>,
    failure: Option<String>,
}

/// Reads one chat socket until `stop`: the warm-up message marks it live, and every later
/// message is a delivery; those sent in the measured window yield a delay.
async fn read_chat_socket(
    mut ws: Ws,
    base: Instant,
    live: Arc<AtomicU64>,
    delivered_total: Arc<AtomicU64>,
    stop: watch::Receiver<bool>,
) -> ChatSocket {
    let mut s = ChatSocket {
        delay_us: histogram(),
        delivered: 0,
        measured: 0,
        out_of_order: 0,
        last_measured: None,
        failure: None,
    };
    let mut last_index = 0;
    let failure = read_frames(&mut ws, stop, |data, now| {
        let event = &data["chatMessages"];
        let index = event["index"].as_u64().ok_or_else(|| format!("event without index: {event}"))?;
        if index <= last_index {
            s.out_of_order += 1;
        }
        last_index = index;
        let body = event["message"]["body"].as_str().unwrap_or("");
        if body == WARMUP_BODY {
            live.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        s.delivered += 1;
        delivered_total.fetch_add(1, Ordering::Relaxed);
        // Measured messages carry their send time, warmup ones the same behind a prefix.
        if let Ok(sent_us) = body.parse::<u64>() {
            let sent = base + Duration::from_micros(sent_us);
            s.delay_us.saturating_record(micros(now.saturating_duration_since(sent)));
            s.measured += 1;
            s.last_measured = Some(now);
        }
        Ok(())
    })
    .await;
    s.failure = failure;
    s
}

/// Sends one chat message through node `node`.
async fn send_message(
    client: &Client,
    node: usize,
    token: &str,
    chat: &str,
    body: &str,
    key: &str,
) -> Result<(), ClientError> {
    client.execute(node, SEND, json!({"c": chat, "b": body, "k": key}), Some(token)).await.map(drop)
}

/// The `chat` topic: setup, the paced sends, the drain, and the report.
async fn run_chat(client: &Client, args: &SubscribersArgs, spec: &RunSpec<'_>) -> anyhow::Result<SubscribersReport> {
    let setup_client = client.clone().with_retries(true);
    let username = format!("{NAME_PREFIX}{}fan", spec.run_id);
    let auth = register_or_login(&setup_client, 0, &username, "loadgen subscriber password")
        .await
        .context("registering the subscriber account")?;
    let token: Arc<str> = auth.token.into();
    let chat = setup_client
        .execute_retrying(0, CREATE_CHAT, json!({"n": format!("fan-out {}", spec.run_id)}), Some(&token))
        .await
        .context("creating the chat")?["createChat"]["id"]
        .as_str()
        .context("chat id")?
        .to_string();

    let n = args.subscribers as usize;
    // From index 0, a new chat's whole history, so no subscription can miss the warm-up.
    let (sockets, per_node) = open_all(spec.nodes, n, &token, CHAT_SUBSCRIPTION, json!({"c": chat, "a": 0})).await?;
    let base = Instant::now();
    let live = Arc::new(AtomicU64::new(0));
    let delivered_total = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|(_, ws)| tokio::spawn(read_chat_socket(ws, base, live.clone(), delivered_total.clone(), stop_rx.clone())))
        .collect();

    // Every socket must have the warm-up message before sending starts: then each is live.
    send_message(&setup_client, 0, &token, &chat, WARMUP_BODY, "warm-up").await.context("warm-up message")?;
    await_live(&live, n, "the warm-up message").await?;
    eprintln!(
        "all {n} subscriptions live; sending {} messages/s for {} s warmup + {} s",
        args.rate, spec.warmup_secs, spec.duration_secs
    );

    let start = Instant::now();
    let (measure_from, end) = window(start, spec);
    let counters = Arc::new(SendCounters::default());
    let progress = send_progress(start, measure_from, end, counters.clone(), delivered_total.clone());
    let sends = paced_sends(start, args.rate, end, counters, |slot, due| {
        let (client, token, chat) = (client.clone(), token.clone(), chat.clone());
        async move {
            let now_us = Instant::now().saturating_duration_since(base).as_micros();
            let body = if due < measure_from { format!("{WARMUP_PREFIX}{now_us}") } else { now_us.to_string() };
            send_message(&client, slot as usize, &token, &chat, &body, &format!("m{slot}")).await
        }
    })
    .await?;
    progress.finish();

    // A send that timed out may still have committed, and then it is delivered: the chat's own
    // count, read back after the sends settle, says how many messages exist (less the warm-up).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let count = setup_client
        .execute_retrying(0, MESSAGE_COUNT, json!({"c": chat}), Some(&token))
        .await
        .context("reading the chat's message count")?;
    let committed = count["chat"]["messageCount"].as_u64().context("messageCount")?.saturating_sub(1);
    let expected = committed * n as u64;
    drain(&delivered_total, expected).await;
    stop_tx.send_replace(true);

    let mut got = Deliveries::new(measure_from);
    for r in readers {
        let s = r.await.context("reader task")?;
        got.delay.add(&s.delay_us).context("merging histograms")?;
        got.delivered += s.delivered;
        got.measured += s.measured;
        got.out_of_order += s.out_of_order;
        got.last = got.last.max(s.last_measured.unwrap_or(measure_from));
        got.socket_failed(s.failure);
    }
    let shape = ReportShape { topic: Topic::Chat, spec, args, sockets_per_node: per_node };
    let params = json!({ "run_id": spec.run_id, "chat_id": chat });
    let sent = SendTally::of(&sends, measure_from, end);
    Ok(SubscribersReport::assemble(shape, params, sent, committed, expected, got, Vec::new()))
}

/// What the sockets received, summed over them.
pub(super) struct Deliveries {
    /// Send-to-delivery delay of the measured deliveries, in microseconds.
    pub delay: Histogram<u64>,
    pub delivered: u64,
    pub measured: u64,
    pub out_of_order: u64,
    pub sockets_failed: u64,
    pub failures: BTreeMap<String, u64>,
    /// The start of the measured window.
    pub from: Instant,
    /// The last measured delivery (the window's start if none).
    pub last: Instant,
}

impl Deliveries {
    pub fn new(measure_from: Instant) -> Self {
        Self {
            delay: histogram(),
            delivered: 0,
            measured: 0,
            out_of_order: 0,
            sockets_failed: 0,
            failures: BTreeMap::new(),
            from: measure_from,
            last: measure_from,
        }
    }

    /// Counts a socket that ended with `failure`, if it did.
    pub fn socket_failed(&mut self, failure: Option<String>) {
        if let Some(f) = failure {
            self.sockets_failed += 1;
            *self.failures.entry(f).or_default() += 1;
        }
    }
}

/// What every report of the scenario states about the run itself, whatever the topic.
pub(super) struct ReportShape<'a> {
    pub topic: Topic,
    pub spec: &'a RunSpec<'a>,
    pub args: &'a SubscribersArgs,
    pub sockets_per_node: Vec<u64>,
}

impl SubscribersReport {
    /// The report of a run: its shape, the topic's own `params`, the sends, how many updates
    /// were committed and expected in all, what the sockets received, and any `problems`.
    pub fn assemble(
        shape: ReportShape<'_>,
        params: Value,
        sent: SendTally,
        committed: u64,
        expected: u64,
        got: Deliveries,
        problems: Vec<String>,
    ) -> Self {
        let ReportShape { topic, spec, args, sockets_per_node } = shape;
        let elapsed_secs = got.last.saturating_duration_since(got.from).as_secs_f64();
        Self {
            scenario: "subscribers",
            topic: topic.label(),
            nodes: spec.nodes.to_vec(),
            subscribers: args.subscribers,
            sockets_per_node,
            rate_per_sec: args.rate,
            duration_secs: spec.duration_secs,
            warmup_secs: spec.warmup_secs,
            seed: spec.seed,
            params,
            sent: sent.acknowledged,
            committed,
            send_errors: sent.errors,
            sends_scheduled: sent.scheduled,
            sends_late: sent.late,
            sends_dropped: sent.dropped,
            send_rate_achieved_per_sec: sent.measured_rate,
            send_latency_ms: summarize(&sent.latency_us),
            deliveries_expected: expected,
            delivered: got.delivered,
            measured_deliveries: got.measured,
            out_of_order: got.out_of_order,
            sockets_failed: got.sockets_failed,
            failures: got.failures,
            elapsed_secs,
            delivered_per_sec: if elapsed_secs > 0.0 { got.measured as f64 / elapsed_secs } else { 0.0 },
            delay_ms: summarize(&got.delay),
            problems,
        }
    }
}

/// The sender's figures for the report.
pub(super) struct SendTally {
    /// Sends the schedule called for, late, and dropped (see [`SubscribersReport`]).
    pub scheduled: u64,
    pub late: u64,
    pub dropped: u64,
    pub acknowledged: u64,
    pub errors: BTreeMap<String, u64>,
    /// Answer times of the sends in the measured window.
    pub latency_us: Histogram<u64>,
    /// Sends in the measured window per second of it.
    pub measured_rate: f64,
}

impl SendTally {
    pub fn of<T>(sends: &Sends<T>, measure_from: Instant, end: Instant) -> Self {
        let mut tally = Self {
            scheduled: sends.scheduled,
            late: sends.late,
            dropped: sends.dropped,
            acknowledged: 0,
            errors: BTreeMap::new(),
            latency_us: histogram(),
            measured_rate: 0.0,
        };
        let mut measured = 0u64;
        for o in &sends.outcomes {
            match &o.result {
                Ok(_) => tally.acknowledged += 1,
                Err(e) => *tally.errors.entry(e.code()).or_default() += 1,
            }
            if o.due >= measure_from {
                measured += 1;
                tally.latency_us.saturating_record(micros(o.done - o.sent));
            }
        }
        let window = (end - measure_from).as_secs_f64();
        tally.measured_rate = if window > 0.0 { measured as f64 / window } else { 0.0 };
        tally
    }
}
