//! The paced sender: one send per slot of a fixed schedule, a bounded number in flight, and
//! what the sends did, for the report.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use client::ClientError;
use futures::Future;
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;

use crate::pacing::{self, Schedule};
use crate::progress::{Extent, Progress, Reading};
use crate::stats::{histogram_us, latency_histogram, per_sec};

/// Sends in flight at once; beyond it the sender falls behind its schedule (counted as late)
/// rather than pile up.
const SENDS_IN_FLIGHT_MAX: usize = 256;

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

/// The sender's figures for the report.
pub(super) struct SendTally {
    /// Sends the schedule called for, late, and dropped (see [`super::fanout::SubscribersReport`]).
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
            latency_us: latency_histogram(),
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
                tally.latency_us.saturating_record(histogram_us(o.done - o.sent));
            }
        }
        tally.measured_rate = per_sec(measured, (end - measure_from).as_secs_f64());
        tally
    }
}
