//! One run from its command line: the scenario's setup (not measured), then N workers sending
//! requests over the warmup and the measured window, closed-loop or on the open-loop schedule,
//! then the scenario's own checks, the report and the exit status. The `subscribers` scenario
//! has no workers; it is handed to [`subscribers::run`] and only reported here.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use client::{transport, Client};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cli::{random_run_id, Cli, Common, ScenarioCommand};
use crate::pacing::Schedule;
use crate::progress::{Extent, Progress, Reading};
use crate::report::{OpenLoopSummary, Report};
use crate::scenarios::{checks, claims, peers, purchase, seed, subscribers, timeline, Next, Scenario, Verdict};
use crate::stats::{per_sec, summarize, Stats};

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
    fn params(&self) -> serde_json::Value {
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
    capped: AtomicBool,
    /// Becomes true on Ctrl-C, so that workers stop after their in-flight request and waiting
    /// workers wake up; a watch holds one value, so it never queues.
    stop: watch::Sender<bool>,
}

impl Shared {
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

/// Builds the client and scenario, runs the load, and prints the report.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
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
        ScenarioCommand::Seed { seed: args, .. } => {
            let client = graphql_client(common)?;
            let report = seed::run(&client, &common.nodes, common.concurrency as usize, &run_id, args).await?;
            if common.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                report.print();
            }
            return Ok(ExitCode::SUCCESS);
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
        capped: AtomicBool::new(false),
        stop: watch::Sender::new(false),
    });
    // The servers' CPU is read when the measured window opens and when the workers are done.
    let probe = crate::node_cpu::Probe::discover(&common.nodes);
    let window_start = probe.sample_at(measure_from);
    let stats = run_workers(shared.clone(), common.concurrency as usize, seed).await?;
    let window_end = probe.sample();
    let node_cpu = match window_start.await {
        Ok(start) => probe.summary(&start, &window_end, stats.ok),
        Err(e) => anyhow::bail!("the CPU sampler failed: {e}"),
    };
    let (purchase, peer) = match &shared.target {
        Target::Graphql { client, scenario: Scenario::PurchaseBurst(burst) } => {
            (Some(purchase::finish(client, burst, &stats).await), None)
        }
        Target::Graphql { .. } => (None, None),
        Target::Peer(peer) => (None, Some(peer.finish(stats.units).await)),
    };

    let elapsed_secs = stats.last_done.map_or(0.0, |done| (done - measure_from).as_secs_f64());
    let requests = stats.ok + stats.error_count();
    let plan = &shared.plan;
    let open_loop = plan.schedule.as_ref().map(|schedule| {
        let capped = shared.capped.load(Ordering::Relaxed);
        OpenLoopSummary::new(schedule, plan.measure_from, plan.deadline, &stats, requests, capped, shared.stopping())
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
        node_cpu,
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

/// Builds the GraphQL scenario and runs its setup, which is not measured.
async fn build_scenario(
    command: &ScenarioCommand,
    common: &Common,
    client: &Client,
    run_id: String,
    seed: u64,
) -> anyhow::Result<Scenario> {
    match command {
        ScenarioCommand::Claims { claims: args, .. } => Ok(Scenario::Claims(claims::Claims::new(args, run_id))),
        ScenarioCommand::Checks { checks: args, .. } => {
            let run_secs = common.warmup_secs() + common.duration;
            let checks = checks::setup(client, args, run_secs, common.concurrency as usize, &run_id).await?;
            Ok(Scenario::Checks(checks))
        }
        ScenarioCommand::PurchaseBurst { burst, .. } => {
            if common.warmup.is_some() {
                bail!("purchase-burst takes no --warmup: it measures from the sale's opening (see --open-delay-ms)");
            }
            let burst = purchase::setup(client, burst, common.concurrency as usize, run_id).await?;
            Ok(Scenario::PurchaseBurst(Box::new(burst)))
        }
        ScenarioCommand::Timeline { timeline: args, .. } => {
            Ok(Scenario::Timeline(Box::new(timeline::setup(client, args, seed, run_id).await?)))
        }
        ScenarioCommand::Subscribers { .. } => bail!("the subscribers scenario has no closed-loop workers"),
        ScenarioCommand::Seed { .. } => bail!("the seed scenario has no closed-loop workers"),
        ScenarioCommand::Peer { .. } => bail!("the peer scenario does not talk GraphQL"),
    }
}

/// Runs the workers for the plan and returns their merged statistics.
async fn run_workers(shared: Arc<Shared>, concurrency: usize, seed: u64) -> anyhow::Result<Stats> {
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
    let mut total = Stats::new();
    while let Some(joined) = workers.join_next().await {
        total.merge(joined.context("worker panicked")??)?;
    }
    progress.finish();
    interrupt.abort();
    Ok(total)
}

/// One worker's loop; it ends at the deadline, at the request cap, on Ctrl-C, or when the
/// scenario says further requests are pointless (the sale sold out). In closed loop it sends
/// as soon as its previous answer arrives; in open loop it takes the oldest slot of the
/// schedule nobody has taken, waits until that slot is due, and measures from then.
async fn run_worker(worker: usize, shared: Arc<Shared>, seed: u64) -> anyhow::Result<Stats> {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(worker as u64));
    let mut stats = Stats::new();
    let plan = &shared.plan;
    let mut stop = shared.stop.subscribe();
    // The request number only advances once an answer settles the request's outcome, so that a
    // request whose outcome is unknown is sent again as the same request.
    let mut seq = 0u64;
    let mut unsettled = false;
    // A worker of a session scenario is one session; the others send no `atLeastIndex`.
    let session_client = match &shared.target {
        Target::Graphql { client, scenario } if scenario.session_per_worker() => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_backlog_is_skipped_when_the_window_opens() {
        // A 1 s warmup then a 10 s window at 100 requests per second.
        let t0 = Instant::now();
        let schedule = Schedule::new(t0, 100.0);
        let measure_from = t0 + Duration::from_secs(1);
        let deadline = measure_from + Duration::from_secs(10);
        let next = AtomicU64::new(0);
        // During the warmup, slots are taken in order even when late.
        let early = t0 + Duration::from_millis(500);
        assert_eq!(claim_slot(&next, &schedule, measure_from, early), 0);
        assert_eq!(claim_slot(&next, &schedule, measure_from, early), 1);
        // Once the window is open, the untaken warmup slots 2..100 are skipped.
        let late = measure_from + Duration::from_millis(10);
        assert_eq!(claim_slot(&next, &schedule, measure_from, late), 100);
        assert_eq!(claim_slot(&next, &schedule, measure_from, late), 101);
        // Measured slots are never skipped, however late.
        assert_eq!(claim_slot(&next, &schedule, measure_from, deadline), 102);
    }
}
