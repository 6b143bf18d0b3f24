//! `loadgen`: a load generator for the GraphQL backend.
//!
//! Closed loop (the default): N workers each send a request, await the answer and send the next,
//! spread round-robin over the given nodes, for a warmup period (not measured) and then a
//! measured period. Open loop (`--rate R`, for claims, checks, timeline and peer): requests are
//! due on a fixed schedule of R per second, taken by whichever of the N workers is free, and
//! each latency is measured from when its request was due (see `loadgen/pacing.rs`). Latencies
//! go into per-worker HDR histograms merged at the end; errors are counted by their GraphQL
//! `extensions.code` rather than ending the run. A progress line runs on stderr. The process exits with status 1 when no
//! measured request succeeded, or when `purchase-burst` finds the sale's counts disagreeing with
//! the purchases acknowledged to the buyers.
//!
//! The `peer` scenario sends the same operations (a claim, a check, a purchase) to etcd,
//! PostgreSQL or Redis instead, through the same driver and report, for `bench/compare`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use client::{ops, transport, Client, ClientError, Consistency};
use futures::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinSet;

// The binary's crate root is this file, so its modules would be looked up beside it in
// `src/bin/`, where Cargo would take them for binaries of their own; they live under
// `src/bin/loadgen/` instead.
#[path = "loadgen/pacing.rs"]
mod pacing;
#[path = "loadgen/peers.rs"]
mod peers;
#[path = "loadgen/progress.rs"]
mod progress;
#[path = "loadgen/purchase.rs"]
mod purchase;
#[path = "loadgen/sale_updates.rs"]
mod sale_updates;
#[path = "loadgen/subscribers.rs"]
mod subscribers;
#[path = "loadgen/timeline.rs"]
mod timeline;

use pacing::{OpenLoopArgs, Schedule};
use progress::{Extent, Progress, Reading};

/// Highest latency the histograms track exactly; slower requests are recorded at this value,
/// which is above any sensible request timeout.
const LATENCY_MAX_US: u64 = 60_000_000;

/// Histogram precision: three significant digits bound the quantization error to 0.1%.
const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;

/// Default measured duration of a run.
const DURATION_DEFAULT_SECS: u64 = 10;

/// Default warmup before measuring, which lets connection pools and server caches fill. The
/// `purchase-burst` scenario has none: its warmup is the wait for the sale to open.
const WARMUP_DEFAULT_SECS: u64 = 1;

/// Default number of closed-loop workers.
const CONCURRENCY_DEFAULT_WORKERS: u32 = 16;

/// Upper bound on workers, so a typo cannot spawn millions of tasks and sockets.
const CONCURRENCY_MAX_WORKERS: u32 = 10_000;

/// Length of a generated run id. Run ids are letters only and of fixed length, so the digits
/// that follow them in a name can never be confused with part of another run's id.
const RUN_ID_LEN_CHARS: usize = 5;

/// Longest run id accepted from `--run-id`, keeping generated names well under the usernames'
/// length limit.
const RUN_ID_MAX_CHARS: usize = 8;

/// Prefix of every generated name, so load-test names are easy to recognize on the server.
const NAME_PREFIX: &str = "lg";

/// Default reservation lifetime of the `claims` scenario.
const CLAIM_TTL_DEFAULT_SECS: u32 = 300;

/// Default number of distinct names the `checks` scenario draws from.
const CHECK_NAMES_DEFAULT_COUNT: usize = 10_000;

/// Extra lifetime given to the `checks` scenario's pre-reservations beyond the run itself, so
/// they are still held when the last measured check arrives.
const PRE_RESERVE_TTL_MARGIN_SECS: u64 = 60;

#[derive(Parser, Debug)]
#[command(name = "loadgen", about = "Load generator for the GraphQL backend (closed loop, or open loop with --rate)")]
struct Cli {
    #[command(subcommand)]
    scenario: ScenarioCommand,
}

/// One subcommand per scenario.
#[derive(Subcommand, Debug)]
enum ScenarioCommand {
    /// Each request reserves a distinct, fresh username (`reserveUsername`).
    Claims {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        open_loop: OpenLoopArgs,
        /// Reservation lifetime in seconds.
        #[arg(long, default_value_t = CLAIM_TTL_DEFAULT_SECS)]
        ttl: u32,
    },
    /// Each request checks the availability of a name drawn at random from a pool
    /// (`usernameAvailability`).
    Checks {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        open_loop: OpenLoopArgs,
        /// Read consistency requested from the server.
        #[arg(long, value_enum)]
        consistency: ConsistencyArg,
        /// How many distinct names the checks draw from.
        #[arg(long, default_value_t = CHECK_NAMES_DEFAULT_COUNT,
              value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        names: usize,
        /// How many of those names to reserve before the run, so that some answers are RESERVED.
        #[arg(long, default_value_t = 0)]
        pool: usize,
    },
    /// A flash sale: one buyer per worker buys (`purchase`) from the moment the sale opens until
    /// it is sold out, then the sale's counts are checked against the acknowledged purchases.
    PurchaseBurst {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        burst: purchase::BurstArgs,
    },
    /// Home-timeline reads (`timeline`) as viewers who each follow many authors; setup registers
    /// the authors and viewers, posts the tweets and makes the follows.
    Timeline {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        open_loop: OpenLoopArgs,
        #[command(flatten)]
        timeline: timeline::TimelineArgs,
    },
    /// Fan-out: N subscriptions (`saleUpdates` by default, or `chatMessages` with --topic chat)
    /// spread over the nodes, updates caused at a fixed rate (one-unit purchases, or messages);
    /// reports deliveries per second and the send-to-delivery delay.
    Subscribers {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        fanout: subscribers::SubscribersArgs,
    },
    /// The claim, check or purchase against etcd, PostgreSQL or Redis, for comparisons:
    /// `--nodes` takes that system's addresses, and each worker opens its own connection.
    Peer {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        open_loop: OpenLoopArgs,
        #[command(flatten)]
        peer: peers::PeerArgs,
    },
}

impl ScenarioCommand {
    /// The flags every scenario takes.
    fn common(&self) -> &Common {
        match self {
            Self::Claims { common, .. }
            | Self::Checks { common, .. }
            | Self::PurchaseBurst { common, .. }
            | Self::Timeline { common, .. }
            | Self::Subscribers { common, .. }
            | Self::Peer { common, .. } => common,
        }
    }

    /// The open-loop rate asked for, if any; `None` runs closed-loop.
    fn rate(&self) -> Option<f64> {
        match self {
            Self::Claims { open_loop, .. }
            | Self::Checks { open_loop, .. }
            | Self::Timeline { open_loop, .. }
            | Self::Peer { open_loop, .. } => open_loop.rate,
            Self::PurchaseBurst { .. } | Self::Subscribers { .. } => None,
        }
    }
}

/// Flags every scenario takes.
#[derive(Args, Debug)]
struct Common {
    /// Comma-separated node base URLs; requests are spread round-robin over them.
    #[arg(long, env = "LOADGEN_NODES", value_delimiter = ',', default_value = "http://127.0.0.1:8080")]
    nodes: Vec<String>,
    /// Number of workers, each awaiting its request before sending the next: the requests in
    /// flight in closed loop, and their cap in open loop (--rate).
    #[arg(long, default_value_t = CONCURRENCY_DEFAULT_WORKERS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(CONCURRENCY_MAX_WORKERS)))]
    concurrency: u32,
    /// Measured duration in seconds, after the warmup.
    #[arg(long, default_value_t = DURATION_DEFAULT_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    duration: u64,
    /// Stop after this many measured requests, even if the duration has not elapsed.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    requests: Option<u64>,
    /// Warmup in seconds before measuring (default 1); its requests are sent but not counted.
    /// Not taken by purchase-burst, which measures from the sale's opening.
    #[arg(long)]
    warmup: Option<u64>,
    /// Per-request timeout in milliseconds.
    #[arg(long, default_value_t = transport::REQUEST_TIMEOUT_MS)]
    timeout_ms: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Seed for the random choices of the scenario (not for the run id), for repeatable runs.
    #[arg(long)]
    seed: Option<u64>,
    /// Lowercase letters that make this run's names unique; random by default.
    #[arg(long, value_parser = parse_run_id)]
    run_id: Option<String>,
}

impl Common {
    /// The warmup asked for, or the default.
    fn warmup_secs(&self) -> u64 {
        self.warmup.unwrap_or(WARMUP_DEFAULT_SECS)
    }
}

/// The `--consistency` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum ConsistencyArg {
    /// LOCAL reads, no session: whatever the answering node has applied.
    Local,
    /// LOCAL reads in a session per worker: each request carries the highest index the worker
    /// has seen as `atLeastIndex` (read-your-writes and monotonic reads across nodes).
    Session,
    /// LINEARIZABLE reads: a read-index round with the leader first.
    Linearizable,
}

impl From<ConsistencyArg> for Consistency {
    fn from(arg: ConsistencyArg) -> Self {
        match arg {
            ConsistencyArg::Local | ConsistencyArg::Session => Consistency::Local,
            ConsistencyArg::Linearizable => Consistency::Linearizable,
        }
    }
}

/// Accepts a run id of 1 to [`RUN_ID_MAX_CHARS`] lowercase ASCII letters.
fn parse_run_id(s: &str) -> Result<String, String> {
    if (1..=RUN_ID_MAX_CHARS).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase()) {
        Ok(s.to_owned())
    } else {
        Err(format!("expected 1 to {RUN_ID_MAX_CHARS} lowercase ASCII letters"))
    }
}

/// A random letters-only run id of [`RUN_ID_LEN_CHARS`] characters.
fn random_run_id(rng: &mut impl Rng) -> String {
    (0..RUN_ID_LEN_CHARS).map(|_| char::from(rng.random_range(b'a'..=b'z'))).collect()
}

/// The name the `claims` scenario reserves as worker `worker`'s request `seq`. Worker and
/// sequence are decimal numbers separated by a letter, so distinct pairs give distinct names.
fn claim_name(run_id: &str, worker: usize, seq: u64) -> String {
    format!("{NAME_PREFIX}{run_id}{worker}x{seq}")
}

/// Name number `index` of the `checks` scenario's pool; the `p` keeps these apart from claim
/// names of the same run.
fn pool_name(run_id: &str, index: usize) -> String {
    format!("{NAME_PREFIX}{run_id}p{index}")
}

/// One request a scenario wants sent.
struct Request {
    query: &'static str,
    variables: Value,
    /// Token to authenticate with; scenarios acting as a user (such as purchases) set it.
    bearer: Option<Arc<str>>,
}

/// A workload: decides what worker `w` sends as its `n`th request.
///
/// Adding a scenario (subscriptions, say) means adding a variant here, an arm in each method,
/// and a subcommand in [`ScenarioCommand`] whose setup (such as registering users and keeping
/// their tokens in the variant) runs in [`build_scenario`] before the clock starts.
enum Scenario {
    /// Reserve a never-used name per request.
    Claims { run_id: String, ttl_secs: u32 },
    /// Check names drawn uniformly from `names`, the first `reserved` of which were reserved.
    /// With `session`, each worker keeps its own session (see [`ConsistencyArg::Session`]).
    Checks { names: Vec<String>, reserved: usize, consistency: Consistency, session: bool },
    /// Buy from a flash sale as one buyer per worker; boxed because it is much larger than the
    /// other variants.
    PurchaseBurst(Box<purchase::Burst>),
    /// Read the first timeline page of a random viewer.
    Timeline(Box<timeline::Timeline>),
}

/// How a worker goes on after an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// Send the next request.
    Advance,
    /// Send the same request again (for purchases, with the same idempotency key), because the
    /// answer left its outcome unknown.
    Repeat,
    /// The answer means it is too early: before the measured window, wait for it and then send
    /// the next request; within it, just send the next request.
    AwaitWindow,
    /// Stop the worker, because every further request would be refused the same way.
    Stop,
}

/// What one answer means to the worker that got it.
#[derive(Debug)]
struct Verdict {
    /// `None` on success, else the error's code.
    error_code: Option<String>,
    /// Units the answer says were bought; zero for scenarios that buy nothing.
    units: u64,
    next: Next,
}

impl Scenario {
    /// Short name for reports.
    fn label(&self) -> &'static str {
        match self {
            Self::Claims { .. } => "claims",
            Self::Checks { .. } => "checks",
            Self::PurchaseBurst(_) => "purchase-burst",
            Self::Timeline(_) => "timeline",
        }
    }

    /// When measuring starts, if the scenario rather than `--warmup` decides it.
    fn measure_from(&self) -> Option<Instant> {
        match self {
            Self::PurchaseBurst(burst) => Some(burst.opens_at()),
            Self::Claims { .. } | Self::Checks { .. } | Self::Timeline(_) => None,
        }
    }

    /// The scenario's parameters, for reports.
    fn params(&self) -> Value {
        match self {
            Self::Claims { run_id, ttl_secs } => json!({ "run_id": run_id, "ttl_secs": ttl_secs }),
            Self::Checks { names, reserved, consistency, session } => json!({
                "consistency": consistency.as_graphql(),
                "session": session,
                "names": names.len(),
                "reserved": reserved,
            }),
            Self::PurchaseBurst(burst) => burst.params(),
            Self::Timeline(timeline) => timeline.params(),
        }
    }

    /// The request worker `worker` sends as its `seq`th.
    fn request(&self, worker: usize, seq: u64, rng: &mut StdRng) -> Request {
        match self {
            Self::Claims { run_id, ttl_secs } => Request {
                query: ops::RESERVE_MUTATION,
                variables: json!({ "name": claim_name(run_id, worker, seq), "ttl": ttl_secs }),
                bearer: None,
            },
            Self::Checks { names, consistency, .. } => Request {
                query: ops::AVAILABILITY_QUERY,
                variables: json!({
                    "name": names[rng.random_range(0..names.len())],
                    "c": consistency.as_graphql(),
                }),
                bearer: None,
            },
            Self::PurchaseBurst(burst) => burst.request(worker, seq),
            Self::Timeline(timeline) => timeline.request(rng),
        }
    }

    /// What an answer means: its error code, the units it bought and how the worker goes on.
    fn judge(&self, result: Result<Value, ClientError>) -> Verdict {
        match self {
            Self::Claims { .. } | Self::Checks { .. } => {
                Verdict { error_code: result.err().map(|e| e.code()), units: 0, next: Next::Advance }
            }
            Self::PurchaseBurst(_) => purchase::judge(result),
            Self::Timeline(timeline) => timeline.judge(result),
        }
    }
}

/// Builds the scenario and runs its setup, which is not measured.
async fn build_scenario(
    command: &ScenarioCommand,
    common: &Common,
    client: &Client,
    run_id: String,
    seed: u64,
) -> anyhow::Result<Scenario> {
    match *command {
        ScenarioCommand::Claims { ttl, .. } => Ok(Scenario::Claims { run_id, ttl_secs: ttl }),
        ScenarioCommand::Checks { consistency, names, pool, .. } => {
            if pool > names {
                bail!("--pool {pool} exceeds --names {names}");
            }
            let names: Vec<String> = (0..names).map(|i| pool_name(&run_id, i)).collect();
            let ttl_secs = common.warmup_secs() + common.duration + PRE_RESERVE_TTL_MARGIN_SECS;
            let ttl_secs = u32::try_from(ttl_secs).unwrap_or(u32::MAX);
            pre_reserve(client, &names[..pool], ttl_secs, common.concurrency as usize).await;
            let session = matches!(consistency, ConsistencyArg::Session);
            Ok(Scenario::Checks { names, reserved: pool, consistency: consistency.into(), session })
        }
        ScenarioCommand::PurchaseBurst { ref burst, .. } => {
            if common.warmup.is_some() {
                bail!("purchase-burst takes no --warmup: it measures from the sale's opening (see --open-delay-ms)");
            }
            let burst = purchase::setup(client, burst, common.concurrency as usize, run_id).await?;
            Ok(Scenario::PurchaseBurst(Box::new(burst)))
        }
        ScenarioCommand::Timeline { ref timeline, .. } => {
            Ok(Scenario::Timeline(Box::new(timeline::setup(client, timeline, seed, run_id).await?)))
        }
        ScenarioCommand::Subscribers { .. } => bail!("the subscribers scenario has no closed-loop workers"),
        ScenarioCommand::Peer { .. } => bail!("the peer scenario does not talk GraphQL"),
    }
}

/// Reserves `names` with at most `concurrency` requests in flight, retrying unavailable nodes,
/// and reports how many succeeded. Failures are reported, not fatal: the checks still run, with
/// fewer RESERVED answers.
async fn pre_reserve(client: &Client, names: &[String], ttl_secs: u32, concurrency: usize) {
    if names.is_empty() {
        return;
    }
    let client = client.clone().with_retries(true);
    let results: Vec<_> = stream::iter(names.iter().enumerate())
        .map(|(i, name)| {
            let client = &client;
            async move { client.reserve_username(i, name, Some(ttl_secs)).await }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut errors = BTreeMap::<String, u64>::new();
    for e in results.iter().filter_map(|r| r.as_ref().err()) {
        *errors.entry(e.code()).or_default() += 1;
    }
    let failed: u64 = errors.values().sum();
    eprintln!(
        "pre-reserved {} of {} names{}",
        names.len() as u64 - failed,
        names.len(),
        if failed == 0 { String::new() } else { format!(" (failures: {})", format_errors(&errors)) }
    );
}

/// When the measured window starts and ends, the optional request cap, and in open loop the
/// schedule requests are due on.
struct Plan {
    started: Instant,
    measure_from: Instant,
    deadline: Instant,
    cap: Option<u64>,
    /// `Some` in open loop: slot 0 is due at `started`, so the warmup is paced too.
    schedule: Option<Schedule>,
}

/// Where the workers send their requests.
enum Target {
    /// This project's nodes, through the GraphQL client.
    Graphql { client: Client, scenario: Scenario },
    /// A peer system, each worker on its own connection; boxed for its size.
    Peer(Box<peers::Peer>),
}

impl Target {
    /// Short name for reports.
    fn label(&self) -> &'static str {
        match self {
            Self::Graphql { scenario, .. } => scenario.label(),
            Self::Peer(_) => "peer",
        }
    }

    /// The scenario's parameters, for reports.
    fn params(&self) -> Value {
        match self {
            Self::Graphql { scenario, .. } => scenario.params(),
            Self::Peer(peer) => peer.params(),
        }
    }
}

/// State the workers share.
struct Shared {
    target: Target,
    plan: Plan,
    /// Measured requests started so far, checked against the cap.
    measured_started: AtomicU64,
    /// Open loop: the next schedule slot no worker has taken yet.
    next_slot: AtomicU64,
    /// All requests completed so far, warmup included, for the progress line.
    completed: AtomicU64,
    /// Of those, the ones that failed.
    failed: AtomicU64,
    /// Set when the measured request cap stopped the run, so no slot counts as dropped.
    capped: std::sync::atomic::AtomicBool,
    /// Becomes true on Ctrl-C, so that workers stop after their in-flight request and waiting
    /// workers wake up; a watch holds one value, so it never queues.
    stop: watch::Sender<bool>,
}

impl Shared {
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

/// Latencies and outcomes of measured requests, and the tallies scenarios keep over the whole
/// run.
struct Stats {
    latency_us: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
    /// When the last measured request completed, which ends the measured window.
    last_done: Option<Instant>,
    /// Successful requests of the whole run, measured or not.
    acknowledged: u64,
    /// Units the successful answers of the whole run say were bought.
    units: u64,
    /// Answers before the measured window saying it was too early (SALE_NOT_OPEN).
    early_refusals: u64,
    /// The `(worker, seq)` of each request whose outcome was still unknown when its worker
    /// stopped; at most one per worker.
    unsettled: Vec<(usize, u64)>,
    /// Open loop: how far behind its due time each measured request was sent.
    send_lag_us: Histogram<u64>,
    /// Open loop: measured requests sent later than [`pacing::LATE_TOLERANCE`].
    late: u64,
    /// Open loop: time from sending each measured request to its answer, without the wait for
    /// a free worker that `latency_us` includes.
    service_us: Histogram<u64>,
}

/// A new histogram of microseconds with the run's bounds and precision.
fn latency_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, LATENCY_SIGNIFICANT_DIGITS).context("creating latency histogram")
}

/// Microseconds of `d` for a histogram: at least 1, saturating.
fn histogram_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

impl Stats {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            latency_us: latency_histogram()?,
            ok: 0,
            errors: BTreeMap::new(),
            last_done: None,
            acknowledged: 0,
            units: 0,
            early_refusals: 0,
            unsettled: Vec::new(),
            send_lag_us: latency_histogram()?,
            late: 0,
            service_us: latency_histogram()?,
        })
    }

    /// Records one completed request; `error_code` is `None` on success.
    fn record(&mut self, latency: Duration, error_code: Option<String>, done: Instant) {
        self.latency_us.saturating_record(histogram_us(latency));
        match error_code {
            None => self.ok += 1,
            Some(code) => *self.errors.entry(code).or_default() += 1,
        }
        self.last_done = self.last_done.max(Some(done));
    }

    /// Records the schedule side of an open-loop request: due, sent and answered at these times.
    fn record_paced(&mut self, due: Instant, sent: Instant, done: Instant) {
        // The histograms' lowest value is 1 us, so a punctual send records 1 us of lag.
        self.send_lag_us.saturating_record(histogram_us(sent.saturating_duration_since(due)));
        self.late += u64::from(pacing::is_late(due, sent));
        self.service_us.saturating_record(histogram_us(done.saturating_duration_since(sent)));
    }

    fn merge(&mut self, other: Stats) -> anyhow::Result<()> {
        self.latency_us.add(&other.latency_us).context("merging latency histograms")?;
        self.ok += other.ok;
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
        self.last_done = self.last_done.max(other.last_done);
        self.acknowledged += other.acknowledged;
        self.units += other.units;
        self.early_refusals += other.early_refusals;
        self.unsettled.extend(other.unsettled);
        self.send_lag_us.add(&other.send_lag_us).context("merging send lag histograms")?;
        self.late += other.late;
        self.service_us.add(&other.service_us).context("merging service time histograms")?;
        Ok(())
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Serialize, PartialEq)]
struct LatencySummary {
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

/// Summarizes a histogram of microseconds; all zero when it is empty.
fn summarize(latency_us: &Histogram<u64>) -> LatencySummary {
    let ms = |us: u64| us as f64 / 1_000.0;
    if latency_us.is_empty() {
        return LatencySummary { p50: 0.0, p90: 0.0, p99: 0.0, p999: 0.0, max: 0.0 };
    }
    LatencySummary {
        p50: ms(latency_us.value_at_quantile(0.50)),
        p90: ms(latency_us.value_at_quantile(0.90)),
        p99: ms(latency_us.value_at_quantile(0.99)),
        p999: ms(latency_us.value_at_quantile(0.999)),
        max: ms(latency_us.max()),
    }
}

/// One worker's loop; it ends at the deadline, at the request cap, on Ctrl-C, or when the
/// scenario says further requests are pointless (the sale sold out). In closed loop it sends
/// as soon as its previous answer arrives; in open loop it takes the oldest slot of the
/// schedule nobody has taken, waits until that slot is due, and measures from then.
async fn run_worker(worker: usize, shared: Arc<Shared>, seed: u64) -> anyhow::Result<Stats> {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(worker as u64));
    let mut stats = Stats::new()?;
    let plan = &shared.plan;
    let mut stop = shared.stop.subscribe();
    // The request number only advances once an answer settles the request's outcome, so that a
    // request whose outcome is unknown is sent again as the same request.
    let mut seq = 0u64;
    let mut unsettled = false;
    // A worker of a session scenario is one session; the others send no `atLeastIndex`.
    let session_client = match &shared.target {
        Target::Graphql { client, scenario: Scenario::Checks { session: true, .. } } => {
            Some(client.clone().with_session(true).new_session())
        }
        _ => None,
    };
    for sent in 0u64.. {
        let now = Instant::now();
        if now >= plan.deadline || shared.stopping() {
            break;
        }
        // The instant latency is measured from: now in closed loop, the slot's due time in open
        // loop (in the past when every worker was busy when it came due).
        let start = match &plan.schedule {
            None => now,
            Some(schedule) => {
                let due = schedule.due(claim_slot(&shared.next_slot, schedule, plan.measure_from, now));
                if due >= plan.deadline {
                    break;
                }
                due
            }
        };
        let measured = start >= plan.measure_from;
        if measured {
            if let Some(cap) = plan.cap {
                if shared.measured_started.fetch_add(1, Ordering::Relaxed) >= cap {
                    shared.capped.store(true, Ordering::Relaxed);
                    break;
                }
            }
        }
        if start > now {
            tokio::select! {
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(start)) => {}
                _ = stop.wait_for(|stopping| *stopping) => break,
            }
        }
        let sent_at = Instant::now();
        let (Verdict { error_code, units, next }, done) = match &shared.target {
            Target::Graphql { client, scenario } => {
                let client = session_client.as_ref().unwrap_or(client);
                let request = scenario.request(worker, seq, &mut rng);
                // Offsetting by the worker spreads concurrent requests over all nodes at every
                // moment; counting sends rather than requests moves a repeated request on to the
                // next node.
                let node = worker.wrapping_add(sent as usize);
                let result = client.execute(node, request.query, request.variables, request.bearer.as_deref()).await;
                let done = Instant::now();
                (scenario.judge(result), done)
            }
            // The peer decodes its answer before returning, as `execute` does.
            Target::Peer(peer) => {
                let verdict = peer.step(worker, seq, &mut rng).await;
                (verdict, Instant::now())
            }
        };
        shared.completed.fetch_add(1, Ordering::Relaxed);
        shared.failed.fetch_add(u64::from(error_code.is_some()), Ordering::Relaxed);
        stats.acknowledged += u64::from(error_code.is_none());
        stats.units += units;
        if measured {
            stats.record(done - start, error_code, done);
            if plan.schedule.is_some() {
                stats.record_paced(start, sent_at, done);
            }
        }
        unsettled = next == Next::Repeat;
        match next {
            Next::Repeat => {}
            Next::Advance => seq += 1,
            Next::Stop => break,
            Next::AwaitWindow => {
                seq += 1;
                if !measured {
                    stats.early_refusals += 1;
                    let window = tokio::time::Instant::from_std(plan.measure_from.min(plan.deadline));
                    tokio::select! {
                        () = tokio::time::sleep_until(window) => {}
                        _ = stop.wait_for(|stopping| *stopping) => {}
                    }
                }
            }
        }
    }
    if unsettled {
        stats.unsettled.push((worker, seq));
    }
    Ok(stats)
}

/// Takes the oldest open-loop slot no worker has taken. Warmup slots still untaken once the
/// measured window has opened are skipped, so that a backlog built up during the warmup (the
/// workers could not keep up) is not carried into the window, where it would push every
/// measured slot back by the same amount and could leave nothing measured at all.
fn claim_slot(next_slot: &AtomicU64, schedule: &Schedule, measure_from: Instant, now: Instant) -> u64 {
    let slot = next_slot.fetch_add(1, Ordering::Relaxed);
    if now < measure_from || schedule.due(slot) >= measure_from {
        return slot;
    }
    next_slot.fetch_max(schedule.slots_before(measure_from), Ordering::Relaxed);
    next_slot.fetch_add(1, Ordering::Relaxed)
}

/// Runs the workers for the plan and returns their merged statistics.
async fn run(shared: Arc<Shared>, concurrency: usize, seed: u64) -> anyhow::Result<Stats> {
    let plan = &shared.plan;
    let progress =
        Progress::start(Extent::Time { started: plan.started, measure_from: plan.measure_from, end: plan.deadline }, {
            let shared = shared.clone();
            move || Reading {
                done: shared.completed.load(Ordering::Relaxed),
                errors: shared.failed.load(Ordering::Relaxed),
                extra: None,
            }
        });
    let interrupt = tokio::spawn({
        let shared = shared.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted; finishing in-flight requests");
                shared.stop.send_replace(true);
            }
        }
    });
    let mut workers = JoinSet::new();
    for worker in 0..concurrency {
        workers.spawn(run_worker(worker, shared.clone(), seed));
    }
    let mut total = Stats::new()?;
    while let Some(joined) = workers.join_next().await {
        total.merge(joined.context("worker panicked")??)?;
    }
    progress.finish();
    interrupt.abort();
    Ok(total)
}

/// The open-loop part of a report.
#[derive(Debug, Serialize)]
struct OpenLoopSummary {
    /// Requests per second the schedule asked for.
    rate_target_per_sec: f64,
    /// Measured requests sent per second of the measured window.
    rate_achieved_per_sec: f64,
    /// Requests the schedule called for in the measured window.
    scheduled: u64,
    /// Measured requests sent.
    sent: u64,
    /// Of those, how many went out more than `late_tolerance_ms` after they were due, because
    /// every worker (--concurrency) was busy or the runtime was.
    late: u64,
    late_tolerance_ms: u64,
    /// Requests due in the window but never sent before it closed.
    dropped: u64,
    /// How far behind its due time each request was sent.
    send_lag_ms: LatencySummary,
    /// From sending to the answer, without the lag: what a closed loop would report.
    service_ms: LatencySummary,
}

impl OpenLoopSummary {
    fn new(schedule: &Schedule, plan: &Plan, stats: &Stats, requests: u64, capped: bool, interrupted: bool) -> Self {
        // The window closes at the deadline, or earlier if the run was cut short by Ctrl-C; at
        // the request cap, slots after the cap were never meant to be sent.
        let window_end = match stats.last_done {
            Some(done) if interrupted => done.min(plan.deadline),
            _ => plan.deadline,
        };
        let scheduled = if capped { requests } else { schedule.slots_between(plan.measure_from, window_end) };
        let sent_window = match stats.last_done {
            Some(done) if capped => done.min(plan.deadline),
            _ => window_end,
        };
        Self {
            rate_target_per_sec: schedule.rate_per_sec(),
            rate_achieved_per_sec: per_sec(
                requests,
                sent_window.saturating_duration_since(plan.measure_from).as_secs_f64(),
            ),
            scheduled,
            sent: requests,
            late: stats.late,
            late_tolerance_ms: pacing::LATE_TOLERANCE.as_millis() as u64,
            dropped: scheduled.saturating_sub(requests),
            send_lag_ms: summarize(&stats.send_lag_us),
            service_ms: summarize(&stats.service_us),
        }
    }
}

/// Everything a run reports; also the `--json` output.
#[derive(Serialize)]
struct Report {
    scenario: &'static str,
    params: Value,
    nodes: Vec<String>,
    /// `closed` (N workers back to back) or `open` (a fixed rate, --rate).
    mode: &'static str,
    concurrency: u32,
    /// Open loop: the rate asked for; null in closed loop.
    rate_target_per_sec: Option<f64>,
    /// Requested measured duration.
    duration_secs: u64,
    /// Time from the start of the run to the measured window, rounded to whole seconds: the
    /// warmup, or for purchase-burst the wait for the sale to open.
    warmup_secs: u64,
    /// Actual measured time: from the end of the warmup to the last measured completion.
    elapsed_secs: f64,
    requests: u64,
    ok: u64,
    errors: BTreeMap<String, u64>,
    /// Successful requests per second.
    throughput_per_sec: f64,
    /// All measured requests per second, errors included.
    requests_per_sec: f64,
    /// Latency of every measured request, successful or not; in open loop from when the
    /// request was due, so waiting for a free worker counts.
    latency_ms: LatencySummary,
    seed: u64,
    /// Open loop: the schedule's figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    open_loop: Option<OpenLoopSummary>,
    /// The `purchase-burst` scenario's own fields, at the top level.
    #[serde(flatten)]
    purchase: Option<purchase::Summary>,
    /// The `peer` scenario's own fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<peers::Summary>,
}

impl Report {
    fn print_table(&self) {
        let l = &self.latency_ms;
        println!("scenario      {} {}", self.scenario, self.params);
        println!("nodes         {}", self.nodes.join(", "));
        match &self.open_loop {
            None => println!("mode          closed loop, concurrency {}", self.concurrency),
            Some(o) => println!(
                "mode          open loop at {} req/s target, at most {} in flight (--concurrency)",
                o.rate_target_per_sec, self.concurrency
            ),
        }
        if self.purchase.is_some() {
            println!(
                "elapsed       {:.2} s from the sale's opening (requested at most {} s; it ends once sold out)",
                self.elapsed_secs, self.duration_secs
            );
        } else {
            println!(
                "elapsed       {:.2} s (requested {} s after {} s warmup)",
                self.elapsed_secs, self.duration_secs, self.warmup_secs
            );
        }
        println!("requests      {}", self.requests);
        println!("ok            {}", self.ok);
        println!("errors        {} {}", self.requests - self.ok, format_errors(&self.errors));
        println!("throughput    {:.1} ok/s ({:.1} req/s)", self.throughput_per_sec, self.requests_per_sec);
        let from = if self.open_loop.is_some() { " (from due time)" } else { "" };
        println!(
            "latency ms    p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}{from}",
            l.p50, l.p90, l.p99, l.p999, l.max
        );
        if let Some(o) = &self.open_loop {
            let (s, g) = (&o.service_ms, &o.send_lag_ms);
            println!(
                "service ms    p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2} (from send)",
                s.p50, s.p90, s.p99, s.p999, s.max
            );
            println!(
                "rate          {:.1} req/s achieved of {} target; {} scheduled, {} sent, {} late (>{} ms), {} dropped",
                o.rate_achieved_per_sec,
                o.rate_target_per_sec,
                o.scheduled,
                o.sent,
                o.late,
                o.late_tolerance_ms,
                o.dropped
            );
            println!("send lag ms   p50 {:.2}  p99 {:.2}  max {:.2}", g.p50, g.p99, g.max);
        }
        if let Some(peer) = &self.peer {
            peer.print_table();
        }
        if let Some(p) = &self.purchase {
            let or_unknown = |v: Option<i64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
            println!("sold          {} units in {} orders, by the answers", p.sold_by_responses, p.orders);
            println!(
                "sale          stock {}  sold {}  status {} (LINEARIZABLE read after the run)",
                or_unknown(p.sale_stock),
                or_unknown(p.sale_sold),
                p.sale_status.as_deref().unwrap_or("?")
            );
            println!(
                "outcomes      {} SALE_NOT_OPEN before the opening (not measured), {} unknown outcomes settled \
                 after the run, {} still unknown",
                p.not_open_before_open, p.settled_after_run, p.unsettled
            );
            if p.accounting_problems.is_empty() {
                println!("accounting    ok: sale and answers agree");
            } else {
                for problem in &p.accounting_problems {
                    println!("accounting    MISMATCH: {problem}");
                }
            }
        }
    }
}

/// Renders error counts as `CODE n, CODE n`.
fn format_errors(errors: &BTreeMap<String, u64>) -> String {
    errors.iter().map(|(code, n)| format!("{code} {n}")).collect::<Vec<_>>().join(", ")
}

/// Divides without producing NaN or infinity for an empty window.
fn per_sec(count: u64, elapsed_secs: f64) -> f64 {
    if elapsed_secs > 0.0 {
        count as f64 / elapsed_secs
    } else {
        0.0
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Setup errors are printed as one line, without the backtrace `anyhow` would attach when
    // returned from `main`, since they are usage problems rather than bugs.
    match run_cli(cli).await {
        Ok(code) => code,
        Err(e) => {
            if std::io::stderr().is_terminal() {
                // Start on a fresh line, in case a progress line was being drawn.
                eprintln!();
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the client and scenario, runs the load, and prints the report.
async fn run_cli(cli: Cli) -> anyhow::Result<ExitCode> {
    let common = cli.scenario.common();
    let seed = common.seed.unwrap_or_else(rand::random);
    let run_id = match &common.run_id {
        Some(id) => id.clone(),
        None => random_run_id(&mut rand::rng()),
    };
    let target = match &cli.scenario {
        ScenarioCommand::Peer { peer, .. } => {
            let timeout = Duration::from_millis(common.timeout_ms);
            let workers = common.concurrency as usize;
            Target::Peer(Box::new(peers::setup(peer, &common.nodes, workers, timeout, run_id).await?))
        }
        ScenarioCommand::Subscribers { fanout, .. } => {
            return run_subscribers(&graphql_client(common)?, common, fanout, &run_id, seed).await;
        }
        command => {
            let client = graphql_client(common)?;
            let scenario = build_scenario(command, common, &client, run_id, seed).await?;
            Target::Graphql { client, scenario }
        }
    };
    let nodes = match &target {
        Target::Peer(peer) => peer.endpoints_redacted(),
        Target::Graphql { .. } => common.nodes.clone(),
    };

    let started = Instant::now();
    let measure_from = match &target {
        Target::Graphql { scenario, .. } => scenario.measure_from(),
        Target::Peer(_) => None,
    };
    let measure_from = match measure_from {
        // A sale that opened during setup is measured from the end of setup.
        Some(at) => at.max(started),
        None => started + Duration::from_secs(common.warmup_secs()),
    };
    let schedule = cli.scenario.rate().map(|rate| Schedule::new(started, rate));
    let shared = Arc::new(Shared {
        target,
        plan: Plan {
            started,
            measure_from,
            deadline: measure_from + Duration::from_secs(common.duration),
            cap: common.requests,
            schedule,
        },
        measured_started: AtomicU64::new(0),
        next_slot: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        capped: std::sync::atomic::AtomicBool::new(false),
        stop: watch::Sender::new(false),
    });
    let stats = run(shared.clone(), common.concurrency as usize, seed).await?;
    let (purchase, peer) = match &shared.target {
        Target::Graphql { client, scenario: Scenario::PurchaseBurst(burst) } => {
            (Some(purchase::finish(client, burst, &stats).await), None)
        }
        Target::Graphql { .. } => (None, None),
        Target::Peer(peer) => (None, Some(peer.finish(stats.units).await)),
    };

    let elapsed_secs = stats.last_done.map_or(0.0, |done| (done - measure_from).as_secs_f64());
    let requests = stats.ok + stats.error_count();
    let open_loop = shared.plan.schedule.as_ref().map(|schedule| {
        let capped = shared.capped.load(Ordering::Relaxed);
        OpenLoopSummary::new(schedule, &shared.plan, &stats, requests, capped, shared.stopping())
    });
    let report = Report {
        scenario: shared.target.label(),
        params: shared.target.params(),
        nodes,
        mode: if open_loop.is_some() { "open" } else { "closed" },
        concurrency: common.concurrency,
        rate_target_per_sec: open_loop.as_ref().map(|o| o.rate_target_per_sec),
        duration_secs: common.duration,
        warmup_secs: (measure_from - started).as_secs_f64().round() as u64,
        elapsed_secs,
        requests,
        ok: stats.ok,
        errors: stats.errors.clone(),
        throughput_per_sec: per_sec(stats.ok, elapsed_secs),
        requests_per_sec: per_sec(requests, elapsed_secs),
        latency_ms: summarize(&stats.latency_us),
        seed,
        open_loop,
        purchase,
        peer,
    };
    if common.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        report.print_table();
    }

    let mut code = ExitCode::SUCCESS;
    if report.ok == 0 {
        eprintln!("no measured request succeeded");
        code = ExitCode::FAILURE;
    }
    if let Some(problems) = report.purchase.as_ref().map(|p| &p.accounting_problems).filter(|p| !p.is_empty()) {
        eprintln!("the sale's counts disagree with the acknowledged purchases: {}", problems.join("; "));
        code = ExitCode::FAILURE;
    }
    if report.peer.as_ref().is_some_and(|peer| !peer.accounting_is_ok()) {
        eprintln!("the stock taken differs from the purchases acknowledged, or could not be read back");
        code = ExitCode::FAILURE;
    }
    if let Some(o) = report.open_loop.as_ref().filter(|o| o.dropped > 0 || o.late * 10 > o.sent.max(1)) {
        eprintln!(
            "note: the open loop fell behind its schedule ({} of {} sent late, {} dropped): every worker was busy \
             (raise --concurrency) or this process lacked CPU; latencies include the wait",
            o.late, o.sent, o.dropped
        );
    }
    Ok(code)
}

/// The GraphQL client for `--nodes`, with a connection pool as large as the concurrency.
fn graphql_client(common: &Common) -> anyhow::Result<Client> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(common.timeout_ms))
        .connect_timeout(Duration::from_millis(transport::CONNECT_TIMEOUT_MS))
        .pool_max_idle_per_host(common.concurrency as usize)
        .build()
        .context("building HTTP client")?;
    // No session: each scenario measures exactly the read level it names; `--consistency
    // session` gives each worker its own.
    Ok(Client::with_http_client(http, &common.nodes)?.with_session(false))
}

/// Runs the `subscribers` scenario, which has no workers: N sockets listening, one paced sender.
async fn run_subscribers(
    client: &Client,
    common: &Common,
    fanout: &subscribers::SubscribersArgs,
    run_id: &str,
    seed: u64,
) -> anyhow::Result<ExitCode> {
    let spec = subscribers::RunSpec {
        nodes: &common.nodes,
        warmup_secs: common.warmup_secs(),
        duration_secs: common.duration,
        seed,
        run_id,
    };
    let report = subscribers::run(client, fanout, &spec).await?;
    if common.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        report.print_table();
    }
    if !report.complete() {
        eprintln!("some deliveries are missing, out of order, or sockets failed");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn claim_names_are_distinct_within_and_across_runs() {
        let mut seen = HashSet::new();
        for run_id in ["abcde", "abcdf"] {
            for worker in 0..120 {
                for seq in 0..300 {
                    assert!(seen.insert(claim_name(run_id, worker, seq)), "duplicate for {run_id} {worker} {seq}");
                }
            }
        }
        // Worker 1 seq 11 and worker 11 seq 1 are the classic collision of unseparated numbers.
        assert_ne!(claim_name("ab", 1, 11), claim_name("ab", 11, 1));
    }

    #[test]
    fn pool_names_do_not_collide_with_claim_names() {
        let claims: HashSet<_> = (0..50).flat_map(|w| (0..50).map(move |s| claim_name("abcde", w, s))).collect();
        let pool: HashSet<_> = (0..2_500).map(|i| pool_name("abcde", i)).collect();
        assert_eq!(pool.len(), 2_500);
        assert!(claims.is_disjoint(&pool));
    }

    #[test]
    fn run_ids_are_fixed_length_letters() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..100 {
            let id = random_run_id(&mut rng);
            assert_eq!(parse_run_id(&id), Ok(id.clone()));
            assert_eq!(id.len(), RUN_ID_LEN_CHARS);
        }
        assert!(parse_run_id("ab1").is_err());
        assert!(parse_run_id("").is_err());
        assert!(parse_run_id("ABC").is_err());
    }

    #[test]
    fn summary_reports_percentiles_in_ms() {
        let mut stats = Stats::new().unwrap();
        let t = Instant::now();
        // One request at each whole millisecond from 1 to 1000.
        for ms in 1..=1_000 {
            stats.record(Duration::from_millis(ms), None, t);
        }
        let s = summarize(&stats.latency_us);
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.002;
        assert!(close(s.p50, 500.0), "{s:?}");
        assert!(close(s.p90, 900.0), "{s:?}");
        assert!(close(s.p99, 990.0), "{s:?}");
        assert!(close(s.p999, 999.0), "{s:?}");
        assert!(close(s.max, 1_000.0), "{s:?}");
    }

    #[test]
    fn summary_of_nothing_is_zero_and_outliers_saturate() {
        let stats = Stats::new().unwrap();
        assert_eq!(summarize(&stats.latency_us).max, 0.0);

        let mut stats = Stats::new().unwrap();
        stats.record(Duration::from_secs(3_600), None, Instant::now());
        let max = summarize(&stats.latency_us).max;
        assert!(max >= LATENCY_MAX_US as f64 / 1_000.0 * 0.999, "{max}");
    }

    #[test]
    fn merge_adds_counts_and_histograms() {
        let t = Instant::now();
        let mut a = Stats::new().unwrap();
        a.record(Duration::from_millis(1), None, t);
        a.record(Duration::from_millis(2), Some("SOLD_OUT".into()), t);
        let mut b = Stats::new().unwrap();
        b.record(Duration::from_millis(3), Some("SOLD_OUT".into()), t);
        b.record(Duration::from_millis(4), Some("UNAVAILABLE".into()), t);
        a.merge(b).unwrap();
        assert_eq!(a.ok, 1);
        assert_eq!(a.error_count(), 3);
        assert_eq!(a.errors["SOLD_OUT"], 2);
        assert_eq!(a.latency_us.len(), 4);
        assert_eq!(format_errors(&a.errors), "SOLD_OUT 2, UNAVAILABLE 1");
    }

    #[test]
    fn cli_parses_documented_usage() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "checks",
            "--consistency",
            "local",
            "--nodes",
            "http://a:1,http://b:2",
            "--pool",
            "10",
            "--requests",
            "100",
        ])
        .unwrap();
        let ScenarioCommand::Checks { common, pool, .. } = cli.scenario else {
            panic!("expected checks");
        };
        assert_eq!(common.nodes, ["http://a:1", "http://b:2"]);
        assert_eq!((pool, common.requests), (10, Some(100)));
        assert!(Cli::try_parse_from(["loadgen", "claims", "--concurrency", "0"]).is_err());
    }

    #[test]
    fn cli_parses_open_loop_rate_where_it_applies() {
        let cli = Cli::try_parse_from(["loadgen", "claims", "--rate", "200", "--concurrency", "8"]).unwrap();
        assert_eq!(cli.scenario.rate(), Some(200.0));
        assert_eq!(cli.scenario.common().concurrency, 8);
        assert_eq!(Cli::try_parse_from(["loadgen", "claims"]).unwrap().scenario.rate(), None);
        let checks = Cli::try_parse_from(["loadgen", "checks", "--consistency", "linearizable", "--rate", "0.5"]);
        assert_eq!(checks.unwrap().scenario.rate(), Some(0.5));
        assert!(Cli::try_parse_from(["loadgen", "claims", "--rate", "0"]).is_err());
        assert!(Cli::try_parse_from(["loadgen", "claims", "--rate", "lots"]).is_err());
        // Purchase bursts are closed-loop by nature; subscribers' --rate is its own send rate.
        assert!(Cli::try_parse_from([
            "loadgen",
            "purchase-burst",
            "--admin-user",
            "a",
            "--admin-password",
            "b",
            "--rate",
            "5"
        ])
        .is_err());
        let subs = Cli::try_parse_from(["loadgen", "subscribers", "--rate", "20"]).unwrap();
        assert_eq!(subs.scenario.rate(), None);
    }

    #[test]
    fn cli_parses_timeline_usage() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "timeline",
            "--authors",
            "300",
            "--viewers",
            "10",
            "--followees",
            "250",
            "--tweets-per-author",
            "2",
            "--page-size",
            "50",
            "--consistency",
            "linearizable",
            "--rate",
            "100",
        ])
        .unwrap();
        let ScenarioCommand::Timeline { timeline, open_loop, .. } = &cli.scenario else {
            panic!("expected timeline");
        };
        assert_eq!((timeline.authors, timeline.viewers, timeline.followees), (300, 10, 250));
        assert_eq!((timeline.tweets_per_author, timeline.page_size), (2, 50));
        assert!(matches!(timeline.consistency, ConsistencyArg::Linearizable));
        assert_eq!(open_loop.rate, Some(100.0));
        let defaults = Cli::try_parse_from(["loadgen", "timeline"]).unwrap();
        let ScenarioCommand::Timeline { timeline, .. } = &defaults.scenario else { panic!("expected timeline") };
        assert_eq!((timeline.authors, timeline.viewers, timeline.followees, timeline.page_size), (200, 50, 100, 20));
        // The server serves pages of 1 to 100 and follows of at most 5,000.
        assert!(Cli::try_parse_from(["loadgen", "timeline", "--page-size", "101"]).is_err());
        assert!(Cli::try_parse_from(["loadgen", "timeline", "--followees", "5001"]).is_err());
    }

    #[test]
    fn cli_parses_subscribers_topics() {
        let cli = Cli::try_parse_from(["loadgen", "subscribers", "--subscribers", "30"]).unwrap();
        let ScenarioCommand::Subscribers { fanout, .. } = &cli.scenario else { panic!("expected subscribers") };
        assert_eq!((fanout.topic, fanout.subscribers), (subscribers::Topic::Sale, 30));
        let cli = Cli::try_parse_from(["loadgen", "subscribers", "--topic", "chat"]).unwrap();
        let ScenarioCommand::Subscribers { fanout, .. } = &cli.scenario else { panic!("expected subscribers") };
        assert_eq!(fanout.topic, subscribers::Topic::Chat);
        assert!(Cli::try_parse_from(["loadgen", "subscribers", "--topic", "tweets"]).is_err());
    }

    fn open_loop_plan(t0: Instant, rate: f64) -> (Schedule, Plan) {
        let schedule = Schedule::new(t0, rate);
        let measure_from = t0 + Duration::from_secs(1);
        let plan = Plan {
            started: t0,
            measure_from,
            deadline: measure_from + Duration::from_secs(10),
            cap: None,
            schedule: Some(schedule),
        };
        (schedule, plan)
    }

    #[test]
    fn open_loop_summary_counts_dropped_slots_and_the_achieved_rate() {
        let t0 = Instant::now();
        let (schedule, plan) = open_loop_plan(t0, 100.0);
        let mut stats = Stats::new().unwrap();
        // 900 of the 1,000 measured slots sent, the last answer just after the deadline.
        for i in 0..900u64 {
            let due = schedule.due(100 + i);
            let sent = due + Duration::from_millis(if i < 30 { 5 } else { 0 });
            stats.record(Duration::from_millis(1), None, sent + Duration::from_millis(1));
            stats.record_paced(due, sent, sent + Duration::from_millis(1));
        }
        stats.last_done = Some(plan.deadline + Duration::from_millis(3));
        let o = OpenLoopSummary::new(&schedule, &plan, &stats, 900, false, false);
        assert_eq!((o.scheduled, o.sent, o.dropped, o.late), (1_000, 900, 100, 30));
        assert!((o.rate_achieved_per_sec - 90.0).abs() < 1e-9, "{o:?}");
        assert_eq!(o.rate_target_per_sec, 100.0);
        assert!(o.send_lag_ms.max >= 5.0, "{o:?}");
        // At the request cap nothing counts as dropped.
        let capped = OpenLoopSummary::new(&schedule, &plan, &stats, 900, true, false);
        assert_eq!((capped.scheduled, capped.dropped), (900, 0));
    }

    #[test]
    fn warmup_backlog_is_skipped_when_the_window_opens() {
        let t0 = Instant::now();
        let (schedule, plan) = open_loop_plan(t0, 100.0);
        let next = AtomicU64::new(0);
        // During the warmup, slots are taken in order even when late.
        let early = t0 + Duration::from_millis(500);
        assert_eq!(claim_slot(&next, &schedule, plan.measure_from, early), 0);
        assert_eq!(claim_slot(&next, &schedule, plan.measure_from, early), 1);
        // Once the window is open, the untaken warmup slots 2..100 are skipped.
        let late = plan.measure_from + Duration::from_millis(10);
        assert_eq!(claim_slot(&next, &schedule, plan.measure_from, late), 100);
        assert_eq!(claim_slot(&next, &schedule, plan.measure_from, late), 101);
        // Measured slots are never skipped, however late.
        let much_later = plan.deadline;
        assert_eq!(claim_slot(&next, &schedule, plan.measure_from, much_later), 102);
    }

    #[test]
    fn open_loop_latency_is_measured_from_the_due_time() {
        // A request due at t, sent 40 ms late for want of a free worker and answered 2 ms after
        // sending, is 42 ms of latency and 2 ms of service time.
        let t0 = Instant::now();
        let (due, sent, done) = (t0, t0 + Duration::from_millis(40), t0 + Duration::from_millis(42));
        let mut stats = Stats::new().unwrap();
        stats.record(done - due, None, done);
        stats.record_paced(due, sent, done);
        let latency = summarize(&stats.latency_us);
        let service = summarize(&stats.service_us);
        assert!((latency.max - 42.0).abs() < 0.05, "{latency:?}");
        assert!((service.max - 2.0).abs() < 0.01, "{service:?}");
        assert_eq!(stats.late, 1);
    }

    #[test]
    fn cli_parses_purchase_burst_usage() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "purchase-burst",
            "--concurrency",
            "32",
            "--stock",
            "500",
            "--per-user-limit",
            "20",
            "--quantity",
            "2",
            "--open-delay-ms",
            "1500",
            "--admin-user",
            "root",
            "--admin-password",
            "correct horse",
        ])
        .unwrap();
        let ScenarioCommand::PurchaseBurst { common, burst } = &cli.scenario else {
            panic!("expected purchase-burst");
        };
        assert_eq!((common.concurrency, common.warmup), (32, None));
        assert_eq!((burst.stock, burst.per_user_limit, burst.quantity, burst.open_delay_ms), (500, 20, 2, 1_500));
        assert_eq!((burst.admin_user.as_str(), burst.admin_password.as_str()), ("root", "correct horse"));
        // GraphQL Int is 32-bit, and a zero stock or quantity makes no sale.
        let with = |flag: &str, value: &str| {
            Cli::try_parse_from([
                "loadgen",
                "purchase-burst",
                "--admin-user",
                "root",
                "--admin-password",
                "pw",
                flag,
                value,
            ])
        };
        assert!(with("--stock", "0").is_err());
        assert!(with("--quantity", "2147483648").is_err());
        assert!(with("--quantity", "2147483647").is_ok());
        assert_eq!(
            Cli::try_parse_from(["loadgen", "checks", "--consistency", "local"])
                .unwrap()
                .scenario
                .common()
                .warmup_secs(),
            WARMUP_DEFAULT_SECS
        );
    }
}
