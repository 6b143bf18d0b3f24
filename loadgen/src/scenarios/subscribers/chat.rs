//! The `chat` topic (`--topic chat`): `chatMessages` on a chat one account sends messages to.
//!
//! Setup (not measured) registers one account and creates a chat; every socket belongs to that
//! account, so the chat stays within its participant limit at any N, and subscribes from index
//! 0. A warm-up message shows each socket live. Then the sender sends one message per slot of a
//! fixed schedule, its body carrying its send time (behind a prefix during `--warmup`), so that
//! each socket measures the delay of every measured delivery itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use client::{Client, ClientError};
use futures::Future;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::fanout::{Clock, Deliveries, RunSpec, SubscribersArgs, Subscription, Tally, Topic};
use super::sends::Sends;
use super::sockets::{await_live, read_frames, Ws};
use crate::scenarios::accounts::register_or_login;
use crate::scenarios::NAME_PREFIX;
use crate::stats::{histogram_us, latency_histogram};

const CHAT_SUBSCRIPTION: &str =
    "subscription($c:ID!,$a:Int){ chatMessages(chatId:$c, afterIndex:$a){ index message{ body } } }";
const CREATE_CHAT: &str = "mutation($n:String!){ createChat(name:$n, participantIds:[]){ id } }";
const SEND: &str =
    "mutation($c:ID!,$b:String!,$k:String!){ sendMessage(chatId:$c, body:$b, clientMessageId:$k){ seq } }";
const MESSAGE_COUNT: &str = "query($c:ID!){ chat(id:$c){ messageCount } }";
const WARMUP_BODY: &str = "warm-up";
/// Prefix of the bodies of messages sent during `--warmup`, which are delivered but not measured.
const WARMUP_PREFIX: &str = "w";

/// How long after the last send the chat's message count is read, so that sends still in flight
/// on the server when their answer was lost have committed by then.
const SETTLE_WAIT_MS: u64 = 500;

/// The topic, set up: the chat and the account that sends to it and reads it.
pub(super) struct ChatTopic {
    run_id: String,
    token: Arc<str>,
    chat: String,
}

/// What one chat socket saw.
pub(super) struct ChatSocket {
    delay_us: Histogram<u64>,
    delivered: u64,
    measured: u64,
    out_of_order: u64,
    last_measured: Option<Instant>,
    failure: Option<String>,
}

impl Topic for ChatTopic {
    const LABEL: &'static str = "chat";
    type Socket = ChatSocket;
    type Sent = ();
    /// The chat's own count is all settling finds out.
    type Settled = ();

    async fn setup(client: &Client, _args: &SubscribersArgs, spec: &RunSpec<'_>) -> anyhow::Result<Self> {
        let username = format!("{NAME_PREFIX}{}fan", spec.run_id);
        let auth = register_or_login(client, 0, &username, "loadgen subscriber password")
            .await
            .context("registering the subscriber account")?;
        let token: Arc<str> = auth.token.into();
        let chat = client
            .execute_retrying(0, CREATE_CHAT, json!({"n": format!("fan-out {}", spec.run_id)}), Some(&token))
            .await
            .context("creating the chat")?["createChat"]["id"]
            .as_str()
            .context("chat id")?
            .to_string();
        Ok(Self { run_id: spec.run_id.to_owned(), token, chat })
    }

    fn subscription(&self) -> Subscription<'_> {
        // From index 0, a new chat's whole history, so no subscription can miss the warm-up.
        Subscription { token: &self.token, query: CHAT_SUBSCRIPTION, variables: json!({"c": self.chat, "a": 0}) }
    }

    async fn quiet_topics(&self, client: &Client, topics: u32, spec: &RunSpec<'_>) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::with_capacity(topics as usize);
        for i in 0..topics {
            let name = format!("quiet {i} {}", spec.run_id);
            let id = client
                .execute_retrying(0, CREATE_CHAT, json!({"n": name}), Some(&self.token))
                .await
                .context("creating a quiet chat")?["createChat"]["id"]
                .as_str()
                .context("chat id")?
                .to_string();
            out.push(json!({"c": id, "a": 0}));
        }
        Ok(out)
    }

    fn read(
        ws: Ws,
        base: Instant,
        live: Arc<AtomicU64>,
        delivered: Arc<AtomicU64>,
        stop: watch::Receiver<bool>,
    ) -> impl Future<Output = ChatSocket> + Send + 'static {
        read_chat_socket(ws, base, live, delivered, stop)
    }

    async fn go_live(
        &self,
        client: &Client,
        live: &AtomicU64,
        n: usize,
        args: &SubscribersArgs,
        spec: &RunSpec<'_>,
    ) -> anyhow::Result<()> {
        // Every socket must have the warm-up message before sending starts: then each is live.
        send_message(client, 0, &self.token, &self.chat, WARMUP_BODY, "warm-up").await.context("warm-up message")?;
        await_live(live, n, "the warm-up message").await?;
        eprintln!(
            "all {n} subscriptions live; sending {} messages/s for {} s warmup + {} s",
            args.rate, spec.warmup_secs, spec.duration_secs
        );
        Ok(())
    }

    fn send(
        &self,
        client: &Client,
        slot: u64,
        due: Instant,
        clock: Clock,
    ) -> impl Future<Output = Result<(), ClientError>> + Send + 'static {
        let (client, token, chat) = (client.clone(), self.token.clone(), self.chat.clone());
        async move {
            let now_us = Instant::now().saturating_duration_since(clock.base).as_micros();
            let body = if due < clock.measure_from { format!("{WARMUP_PREFIX}{now_us}") } else { now_us.to_string() };
            send_message(&client, slot as usize, &token, &chat, &body, &format!("m{slot}")).await
        }
    }

    async fn settle(&self, client: &Client, _sends: &Sends<()>) -> anyhow::Result<(u64, ())> {
        // A send that timed out may still have committed, and then it is delivered: the chat's own
        // count, read back after the sends settle, says how many messages exist (less the warm-up).
        tokio::time::sleep(Duration::from_millis(SETTLE_WAIT_MS)).await;
        let count = client
            .execute_retrying(0, MESSAGE_COUNT, json!({"c": self.chat}), Some(&self.token))
            .await
            .context("reading the chat's message count")?;
        let committed = count["chat"]["messageCount"].as_u64().context("messageCount")?.saturating_sub(1);
        Ok((committed, ()))
    }

    fn tally(
        &self,
        _settled: (),
        _sends: &Sends<()>,
        sockets: Vec<ChatSocket>,
        _committed: u64,
        clock: Clock,
    ) -> anyhow::Result<Tally> {
        let mut got = Deliveries::new(clock.measure_from);
        for s in sockets {
            got.delay.add(&s.delay_us).context("merging histograms")?;
            got.delivered += s.delivered;
            got.measured += s.measured;
            got.out_of_order += s.out_of_order;
            got.last = got.last.max(s.last_measured.unwrap_or(clock.measure_from));
            got.socket_failed(s.failure);
        }
        let params = json!({ "run_id": self.run_id, "chat_id": self.chat });
        Ok(Tally { got, params, problems: Vec::new() })
    }
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
        delay_us: latency_histogram(),
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
            s.delay_us.saturating_record(histogram_us(now.saturating_duration_since(sent)));
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
