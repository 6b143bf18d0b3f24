//! How every topic's run goes, and what it reports. [`run`] takes a [`Topic`] through the same
//! steps: setup, the sockets opened and made live, the paced sends, settling what the sends left
//! unknown, the wait for the last deliveries, and the tally of what each socket saw, which only
//! the topic can read.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use client::{Client, ClientError};
use futures::Future;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use super::sends::{paced_sends, send_progress, SendCounters, SendTally, Sends};
use super::sockets::{drain, open_all, read_frames, Ws};
use crate::node_cpu::CpuSummary;
use crate::pacing;
use crate::stats::{format_errors, latency_histogram, per_sec, summarize, LatencySummary};

/// Default number of open subscriptions.
const SUBSCRIBERS_DEFAULT_COUNT: u32 = 100;
/// Most subscriptions one run opens (each is a socket on both ends).
const SUBSCRIBERS_MAX_COUNT: u32 = 20_000;
/// Default send rate.
const RATE_DEFAULT_PER_SEC: u32 = 50;
/// Highest send rate.
const RATE_MAX_PER_SEC: u32 = 100_000;
/// Default units on sale for the `sale` topic: more than any run at the highest rate buys.
const STOCK_DEFAULT_UNITS: u32 = 10_000_000;

/// What the sockets subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum TopicArg {
    /// `saleUpdates` on a sale one buyer buys from, one unit per send.
    Sale,
    /// `chatMessages` on a chat one account sends messages to.
    Chat,
}

/// Flags of the `subscribers` scenario.
#[derive(Args, Debug)]
pub(crate) struct SubscribersArgs {
    /// What the sockets subscribe to: `sale` (saleUpdates) or `chat` (chatMessages).
    #[arg(long, value_enum, default_value = "sale")]
    pub topic: TopicArg,
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
    /// More sockets, subscribed beside the measured ones to topics nothing is sent to (chat
    /// topic only): what a busy topic costs the subscribers of quiet ones. Each must receive
    /// nothing during the run.
    #[arg(long, default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=i64::from(SUBSCRIBERS_MAX_COUNT)))]
    pub idle_subscribers: u32,
    /// Quiet topics the --idle-subscribers are spread over (chats created for the run).
    #[arg(long, default_value_t = IDLE_TOPICS_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(IDLE_TOPICS_MAX)))]
    pub idle_topics: u32,
}

/// Default number of quiet topics the idle subscribers are spread over.
const IDLE_TOPICS_DEFAULT: u32 = 10;
/// Most quiet topics one run creates.
const IDLE_TOPICS_MAX: u32 = 1_000;

/// The run's timing and identity, from the common flags.
pub(crate) struct RunSpec<'a> {
    pub nodes: &'a [String],
    pub warmup_secs: u64,
    pub duration_secs: u64,
    pub seed: u64,
    pub run_id: &'a str,
}

/// The scenario's report, also its `--json` output.
#[derive(Serialize)]
pub(crate) struct SubscribersReport {
    pub scenario: &'static str,
    pub topic: &'static str,
    pub nodes: Vec<String>,
    pub subscribers: u32,
    /// Sockets subscribed to quiet topics beside the measured ones, and the quiet topics.
    pub idle_subscribers: u32,
    pub idle_topics: u32,
    /// Frames the idle sockets received while the updates were sent (must be 0).
    pub idle_deliveries: u64,
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
    /// The nodes' CPU over the measured window, when local; `cpu_us_per_ok` is per measured
    /// delivery (one event reaching one subscriber).
    pub node_cpu: CpuSummary,
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

    /// Prints the report as a table on stdout.
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
        if self.idle_subscribers > 0 {
            println!(
                "idle          {} more on {} quiet topics, {} frames received (must be 0)",
                self.idle_subscribers, self.idle_topics, self.idle_deliveries
            );
        }
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
        self.node_cpu.print_line("measured delivery");
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

/// One kind of update the sockets subscribe to: what it sets up, how a socket tells that its
/// subscription is live and which update it received, what a send is, and how the sends that
/// left their outcome unknown are settled. [`run`] does the rest the same way for every topic.
pub(super) trait Topic: Sized {
    /// The topic's name in reports, as `--topic` spells it.
    const LABEL: &'static str;
    /// What one socket saw, which its reader returns when the run stops.
    type Socket: Send + 'static;
    /// What a successful send answers.
    type Sent: Send + 'static;
    /// What settling found out beyond the committed count, for [`Topic::tally`].
    type Settled;

    /// Checks the flags against the topic's limits, then creates what the sockets subscribe to
    /// and the sends act on, through the retrying `client`. Not measured.
    async fn setup(client: &Client, args: &SubscribersArgs, spec: &RunSpec<'_>) -> anyhow::Result<Self>;

    /// What every socket subscribes to, and the token it signs in with.
    fn subscription(&self) -> Subscription<'_>;

    /// Creates `topics` quiet topics beside the measured one and returns, for each, the
    /// variables of the same subscription on it (the same token signs in).
    async fn quiet_topics(&self, client: &Client, topics: u32, spec: &RunSpec<'_>) -> anyhow::Result<Vec<Value>>;

    /// Reads one socket until `stop`, counting it once in `live` when it shows its
    /// subscription is live and counting each delivery in `delivered`; arrival times are taken
    /// against `base`.
    fn read(
        ws: Ws,
        base: Instant,
        live: Arc<AtomicU64>,
        delivered: Arc<AtomicU64>,
        stop: watch::Receiver<bool>,
    ) -> impl Future<Output = Self::Socket> + Send + 'static;

    /// Makes all `n` sockets live (waiting until `live` counts them all) and says so on stderr.
    async fn go_live(
        &self,
        client: &Client,
        live: &AtomicU64,
        n: usize,
        args: &SubscribersArgs,
        spec: &RunSpec<'_>,
    ) -> anyhow::Result<()>;

    /// The send of schedule slot `slot`, due at `due`, through node `slot`.
    fn send(
        &self,
        client: &Client,
        slot: u64,
        due: Instant,
        clock: Clock,
    ) -> impl Future<Output = Result<Self::Sent, ClientError>> + Send + 'static;

    /// After the sends, through the retrying `client`: how many updates were committed in all
    /// (sends whose answer was lost included), and what else settling found out.
    async fn settle(&self, client: &Client, sends: &Sends<Self::Sent>) -> anyhow::Result<(u64, Self::Settled)>;

    /// What the sockets received (with the delays of the measured deliveries), the topic's
    /// parameters for the report, and anything wrong.
    fn tally(
        &self,
        settled: Self::Settled,
        sends: &Sends<Self::Sent>,
        sockets: Vec<Self::Socket>,
        committed: u64,
        clock: Clock,
    ) -> anyhow::Result<Tally>;
}

/// A topic's subscription: the query every socket sends, with its variables and token.
pub(super) struct Subscription<'a> {
    pub token: &'a str,
    pub query: &'static str,
    pub variables: Value,
}

/// The instants a run's times are taken against.
#[derive(Clone, Copy, Debug)]
pub(super) struct Clock {
    /// When the sockets' readers started; arrival times are kept as offsets from it.
    pub base: Instant,
    /// The start of the measured window: sends due before it are warmup.
    pub measure_from: Instant,
}

/// What a topic makes of its sockets at the end of a run.
pub(super) struct Tally {
    pub got: Deliveries,
    /// The topic's own parameters: the chat, or the product, sale and stock.
    pub params: Value,
    /// Anything wrong (accounting, attribution); empty on a clean run.
    pub problems: Vec<String>,
}

/// Runs the scenario on topic `T`: setup, the sockets, the paced sends, settling, the wait for
/// the last deliveries, and the report.
pub(super) async fn run<T: Topic>(
    client: &Client,
    args: &SubscribersArgs,
    spec: &RunSpec<'_>,
) -> anyhow::Result<SubscribersReport> {
    let setup_client = client.clone().with_retries(true);
    let topic = T::setup(&setup_client, args, spec).await?;

    let n = args.subscribers as usize;
    let subscription = topic.subscription();
    let (sockets, per_node) =
        open_all(spec.nodes, n, subscription.token, subscription.query, subscription.variables).await?;
    let idle = open_idle(&topic, &setup_client, args, spec).await?;
    let base = Instant::now();
    let live = Arc::new(AtomicU64::new(0));
    let delivered_total = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|(_, ws)| tokio::spawn(T::read(ws, base, live.clone(), delivered_total.clone(), stop_rx.clone())))
        .collect();
    topic.go_live(&setup_client, &live, n, args, spec).await?;

    let start = Instant::now();
    let (measure_from, end) = window(start, spec);
    let clock = Clock { base, measure_from };
    // The nodes' CPU over the measured window, when they are local (see node_cpu).
    let probe = crate::node_cpu::Probe::discover(spec.nodes);
    let window_start = probe.sample_at(measure_from);
    let counters = Arc::new(SendCounters::default());
    let progress = send_progress(start, measure_from, end, counters.clone(), delivered_total.clone());
    let sends = paced_sends(start, args.rate, end, counters, |slot, due| topic.send(client, slot, due, clock)).await?;
    let window_end = probe.sample();
    progress.finish();

    let (committed, settled) = topic.settle(&setup_client, &sends).await?;
    let expected = committed * n as u64;
    drain(&delivered_total, expected).await;
    stop_tx.send_replace(true);
    let idle_deliveries = idle.finish().await?;

    let mut seen = Vec::with_capacity(readers.len());
    for reader in readers {
        seen.push(reader.await.context("reader task")?);
    }
    let mut tally = topic.tally(settled, &sends, seen, committed, clock)?;
    if idle_deliveries > 0 {
        tally
            .problems
            .push(format!("the idle sockets received {idle_deliveries} frames from topics nothing was sent to"));
    }
    let window_start = window_start.await.context("the CPU sampler")?;
    let node_cpu = probe.summary(&window_start, &window_end, tally.got.measured);
    let shape = ReportShape { topic: T::LABEL, spec, args, sockets_per_node: per_node };
    let sent = SendTally::of(&sends, measure_from, end);
    let mut report = SubscribersReport::assemble(shape, sent, committed, expected, tally, node_cpu);
    report.idle_deliveries = idle_deliveries;
    Ok(report)
}

/// The idle sockets of a run: subscribed to quiet topics, read until the run stops.
struct Idle {
    readers: Vec<tokio::task::JoinHandle<u64>>,
    stop: watch::Sender<bool>,
}

impl Idle {
    /// Stops the readers; returns the frames they received in all.
    async fn finish(self) -> anyhow::Result<u64> {
        self.stop.send_replace(true);
        let mut frames = 0;
        for r in self.readers {
            frames += r.await.context("idle reader task")?;
        }
        Ok(frames)
    }
}

/// Opens `--idle-subscribers` sockets spread over `--idle-topics` quiet topics, each read by a
/// task that counts whatever arrives on it.
async fn open_idle<T: Topic>(
    topic: &T,
    client: &Client,
    args: &SubscribersArgs,
    spec: &RunSpec<'_>,
) -> anyhow::Result<Idle> {
    let (stop, stop_rx) = watch::channel(false);
    let mut readers = Vec::new();
    if args.idle_subscribers > 0 {
        let quiet = topic.quiet_topics(client, args.idle_topics, spec).await?;
        let sub = topic.subscription();
        let per_topic = (args.idle_subscribers as usize).div_ceil(quiet.len());
        let mut left = args.idle_subscribers as usize;
        for variables in quiet {
            let count = per_topic.min(left);
            left -= count;
            let (sockets, _) = open_all(spec.nodes, count, sub.token, sub.query, variables).await?;
            for (_, mut ws) in sockets {
                let stop = stop_rx.clone();
                readers.push(tokio::spawn(async move {
                    let mut frames = 0u64;
                    let _ = read_frames(&mut ws, stop, |_, _| {
                        frames += 1;
                        Ok(())
                    })
                    .await;
                    frames
                }));
            }
        }
    }
    Ok(Idle { readers, stop })
}

/// The measured window: warmup from `start`, then the duration.
fn window(start: Instant, spec: &RunSpec<'_>) -> (Instant, Instant) {
    let measure_from = start + Duration::from_secs(spec.warmup_secs);
    (measure_from, measure_from + Duration::from_secs(spec.duration_secs))
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
            delay: latency_histogram(),
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
struct ReportShape<'a> {
    /// The topic's [`Topic::LABEL`].
    pub topic: &'static str,
    pub spec: &'a RunSpec<'a>,
    pub args: &'a SubscribersArgs,
    pub sockets_per_node: Vec<u64>,
}

impl SubscribersReport {
    /// The report of a run: its shape, the sends, how many updates were committed and expected
    /// in all, and the topic's tally of what the sockets received.
    fn assemble(
        shape: ReportShape<'_>,
        sent: SendTally,
        committed: u64,
        expected: u64,
        tally: Tally,
        node_cpu: CpuSummary,
    ) -> Self {
        let ReportShape { topic, spec, args, sockets_per_node } = shape;
        let Tally { got, params, problems } = tally;
        let elapsed_secs = got.last.saturating_duration_since(got.from).as_secs_f64();
        Self {
            scenario: "subscribers",
            topic,
            nodes: spec.nodes.to_vec(),
            subscribers: args.subscribers,
            idle_subscribers: args.idle_subscribers,
            idle_topics: if args.idle_subscribers > 0 { args.idle_topics } else { 0 },
            idle_deliveries: 0,
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
            delivered_per_sec: per_sec(got.measured, elapsed_secs),
            delay_ms: summarize(&got.delay),
            node_cpu,
            problems,
        }
    }
}
