//! Prometheus metrics: requests by operation, and the node's Raft position.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use raft::Store;
use raft::{Histogram, BUCKET_BOUNDS_US};
use schema::observe::RequestStages;

/// The node's metrics. Registered in their own registry so tests can run several nodes in one
/// process without collisions.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    rate_limited: IntCounter,
    ws_sockets: IntGauge,
    topics_watched: IntGauge,
    term: IntGauge,
    last_log_index: IntGauge,
    committed_index: IntGauge,
    applied_index: IntGauge,
    is_leader: IntGauge,
    batches: IntGauge,
    commands: IntGauge,
    read_rounds: IntGauge,
    ready: IntGauge,
    entries_behind: IntGauge,
    snapshot_received: IntGauge,
    snapshot_total: IntGauge,
    /// The serving side's request stages (the store's come from the store at render time).
    request_stages: Arc<RequestStages>,
}

/// The name of the per-stage histogram family: every stage of a request, on the serving node
/// (`http_decode` .. `http_encode`) and in the store (`propose` .. `read_index`, see
/// [`raft::Stages`]), labelled by `stage`.
pub const STAGE_METRIC: &str = "stage_duration_seconds";

impl Metrics {
    /// Creates and registers every metric.
    pub fn new(request_stages: Arc<RequestStages>) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("graphql_requests_total", "GraphQL requests by root field and outcome"),
            &["operation", "outcome"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("graphql_request_duration_seconds", "GraphQL request latency by root field")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            &["operation"],
        )?;
        let rate_limited = IntCounter::new("rate_limited_total", "Requests refused by the per-client rate limit")?;
        let ws_sockets = IntGauge::new("ws_sockets_open", "GraphQL WebSockets open on this node")?;
        let topics_watched =
            IntGauge::new("subscription_topics_watched", "Topics at least one subscription on this node follows")?;
        let term = IntGauge::new("raft_term", "Current Raft term")?;
        let last_log_index = IntGauge::new("raft_last_log_index", "Last index in this node's log")?;
        let applied_index = IntGauge::new("raft_applied_index", "Last index applied to this node's state")?;
        let committed_index = IntGauge::new("raft_committed_index", "Last index this node knows is committed")?;
        let is_leader = IntGauge::new("raft_is_leader", "1 when this node leads")?;
        let ready = IntGauge::new("raft_ready", "1 when /ready answers 200: a member, caught up with the leader")?;
        let entries_behind = IntGauge::new(
            "raft_entries_behind",
            "Committed entries (at the leader) not yet applied here; -1 when the leader does not answer",
        )?;
        let snapshot_received = IntGauge::new(
            "raft_snapshot_receiving_bytes",
            "Bytes received so far of the snapshot this node is installing from its leader; 0 when none",
        )?;
        let snapshot_total = IntGauge::new(
            "raft_snapshot_receiving_total_bytes",
            "Size of the snapshot this node is receiving; 0 when none (or the leader did not say)",
        )?;
        let batches = IntGauge::new("raft_proposal_batches_total", "Log entries proposed by this node's batcher")?;
        let commands = IntGauge::new("raft_proposed_commands_total", "Commands inside those entries")?;
        let read_rounds =
            IntGauge::new("raft_read_index_rounds_total", "Read-index rounds (shared by concurrent reads)")?;
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(rate_limited.clone()),
            Box::new(ws_sockets.clone()),
            Box::new(topics_watched.clone()),
            Box::new(term.clone()),
            Box::new(last_log_index.clone()),
            Box::new(applied_index.clone()),
            Box::new(committed_index.clone()),
            Box::new(is_leader.clone()),
            Box::new(ready.clone()),
            Box::new(entries_behind.clone()),
            Box::new(snapshot_received.clone()),
            Box::new(snapshot_total.clone()),
            Box::new(batches.clone()),
            Box::new(commands.clone()),
            Box::new(read_rounds.clone()),
        ] {
            registry.register(c)?;
        }
        Ok(Metrics {
            registry,
            requests,
            latency,
            rate_limited,
            ws_sockets,
            topics_watched,
            term,
            last_log_index,
            committed_index,
            applied_index,
            is_leader,
            ready,
            entries_behind,
            snapshot_received,
            snapshot_total,
            batches,
            commands,
            read_rounds,
            request_stages,
        })
    }

    /// Records one GraphQL request.
    pub fn observe(&self, operation: &str, elapsed: Duration, failed: bool) {
        let outcome = if failed { "error" } else { "ok" };
        self.requests.with_label_values(&[operation, outcome]).inc();
        self.latency.with_label_values(&[operation]).observe(elapsed.as_secs_f64());
    }

    /// Brings the limit metrics up to date: requests the rate limit refused so far (a
    /// counter the limiter keeps), and WebSockets open now.
    pub fn set_limits(&self, refused_total: u64, sockets_open: usize) {
        self.rate_limited.inc_by(refused_total.saturating_sub(self.rate_limited.get()));
        self.ws_sockets.set(sockets_open as i64);
    }

    /// The text exposition, with Raft gauges read fresh from the store.
    pub async fn render(&self, store: &Store) -> String {
        self.committed_index.set(store.committed_index().await as i64);
        self.topics_watched.set(store.watched_topics() as i64);
        let s = store.cluster_status();
        self.term.set(s.term as i64);
        self.last_log_index.set(s.last_log_index as i64);
        self.applied_index.set(s.last_applied as i64);
        self.is_leader.set(i64::from(s.leader_id == Some(s.node_id)));
        let receiving = s.snapshot_receiving.as_ref();
        self.snapshot_received.set(receiving.map_or(0, |p| p.received_bytes as i64));
        self.snapshot_total.set(receiving.and_then(|p| p.total_bytes).map_or(0, |t| t as i64));
        let r = store.readiness().await;
        self.ready.set(i64::from(r.phase == raft::Phase::Ready));
        self.entries_behind.set(r.entries_behind.map_or(-1, |b| b as i64));
        let stats = store.stats();
        self.batches.set(stats.batches.load(std::sync::atomic::Ordering::Relaxed) as i64);
        self.commands.set(stats.commands.load(std::sync::atomic::Ordering::Relaxed) as i64);
        self.read_rounds.set(stats.read_rounds.load(std::sync::atomic::Ordering::Relaxed) as i64);
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encode metrics");
        }
        let mut text = String::from_utf8(out).unwrap_or_default();
        let stages = store.stats().stages.clone();
        let all = self.request_stages.all().into_iter().chain(stages.all());
        render_stages(&mut text, all);
        text
    }
}

/// Appends `stages` as one Prometheus histogram family in the text format.
fn render_stages<'a>(out: &mut String, stages: impl Iterator<Item = (&'static str, &'a Histogram)>) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "# HELP {STAGE_METRIC} Time spent in each stage of a request on this node");
    let _ = writeln!(out, "# TYPE {STAGE_METRIC} histogram");
    for (stage, h) in stages {
        let s = h.snapshot();
        let mut cumulative = 0;
        for (i, n) in s.buckets.iter().enumerate() {
            cumulative += n;
            let le = match BUCKET_BOUNDS_US.get(i) {
                Some(us) => format!("{}", *us as f64 / 1e6),
                None => "+Inf".to_string(),
            };
            let _ = writeln!(out, "{STAGE_METRIC}_bucket{{stage=\"{stage}\",le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{STAGE_METRIC}_sum{{stage=\"{stage}\"}} {}", s.sum_ns as f64 / 1e9);
        let _ = writeln!(out, "{STAGE_METRIC}_count{{stage=\"{stage}\"}} {}", s.count);
    }
}
