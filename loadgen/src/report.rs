//! The report of a request/response run: what was asked for, what was measured (counts,
//! throughput, latency percentiles), the open-loop schedule's figures, and the scenario's own
//! fields; printed as a table, or with `--json` as one JSON object (`bench/` reads those).

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::node_cpu::CpuSummary;
use crate::pacing::{self, Schedule};
use crate::scenarios::{peers, purchase};
use crate::stats::{format_errors, per_sec, summarize, LatencySummary, Stats};

/// The open-loop part of a report.
#[derive(Debug, Serialize)]
pub(crate) struct OpenLoopSummary {
    /// Requests per second the schedule asked for.
    pub rate_target_per_sec: f64,
    /// Measured requests sent per second of the measured window.
    pub rate_achieved_per_sec: f64,
    /// Requests the schedule called for in the measured window.
    pub scheduled: u64,
    /// Measured requests sent.
    pub sent: u64,
    /// Of those, how many went out more than `late_tolerance_ms` after they were due, because
    /// every worker (--concurrency) was busy or the runtime was.
    pub late: u64,
    pub late_tolerance_ms: u64,
    /// Requests due in the window but never sent before it closed.
    pub dropped: u64,
    /// How far behind its due time each request was sent.
    pub send_lag_ms: LatencySummary,
    /// From sending to the answer, without the lag: what a closed loop would report.
    pub service_ms: LatencySummary,
}

impl OpenLoopSummary {
    /// The figures of a run on `schedule` measured from `measure_from` until `deadline`, which
    /// sent `requests` measured requests; `capped` when the request cap ended it, `interrupted`
    /// when Ctrl-C did.
    pub fn new(
        schedule: &Schedule,
        measure_from: Instant,
        deadline: Instant,
        stats: &Stats,
        requests: u64,
        capped: bool,
        interrupted: bool,
    ) -> Self {
        // The window closes at the deadline, or earlier if the run was cut short by Ctrl-C; at
        // the request cap, slots after the cap were never meant to be sent.
        let window_end = match stats.last_done {
            Some(done) if interrupted => done.min(deadline),
            _ => deadline,
        };
        let scheduled = if capped { requests } else { schedule.slots_between(measure_from, window_end) };
        let sent_window = match stats.last_done {
            Some(done) if capped => done.min(deadline),
            _ => window_end,
        };
        Self {
            rate_target_per_sec: schedule.rate_per_sec(),
            rate_achieved_per_sec: per_sec(requests, sent_window.saturating_duration_since(measure_from).as_secs_f64()),
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
pub(crate) struct Report {
    pub scenario: &'static str,
    pub params: Value,
    pub nodes: Vec<String>,
    /// `closed` (N workers back to back) or `open` (a fixed rate, --rate).
    pub mode: &'static str,
    pub concurrency: u32,
    /// Open loop: the rate asked for; null in closed loop.
    pub rate_target_per_sec: Option<f64>,
    /// Requested measured duration.
    pub duration_secs: u64,
    /// Time from the start of the run to the measured window, rounded to whole seconds: the
    /// warmup, or for purchase-burst the wait for the sale to open.
    pub warmup_secs: u64,
    /// Actual measured time: from the end of the warmup to the last measured completion.
    pub elapsed_secs: f64,
    pub requests: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    /// Successful requests per second.
    pub throughput_per_sec: f64,
    /// All measured requests per second, errors included.
    pub requests_per_sec: f64,
    /// Latency of every measured request, successful or not; in open loop from when the
    /// request was due, so waiting for a free worker counts.
    pub latency_ms: LatencySummary,
    /// The servers' CPU over the measured window, for those on this machine (see node_cpu).
    pub node_cpu: CpuSummary,
    pub seed: u64,
    /// Open loop: the schedule's figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_loop: Option<OpenLoopSummary>,
    /// The `purchase-burst` scenario's own fields, at the top level.
    #[serde(flatten)]
    pub purchase: Option<purchase::Summary>,
    /// The `peer` scenario's own fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<peers::Summary>,
}

impl Report {
    /// Prints the report as a table on stdout.
    pub fn print_table(&self) {
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
        self.node_cpu.print_line("ok request");
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn open_loop_summary_counts_dropped_slots_and_the_achieved_rate() {
        // A 1 s warmup then a 10 s window at 100 requests per second: 1,000 measured slots.
        let t0 = Instant::now();
        let schedule = Schedule::new(t0, 100.0);
        let measure_from = t0 + Duration::from_secs(1);
        let deadline = measure_from + Duration::from_secs(10);
        let mut stats = Stats::new();
        // 900 of the 1,000 measured slots sent, the last answer just after the deadline.
        for i in 0..900u64 {
            let due = schedule.due(100 + i);
            let sent = due + Duration::from_millis(if i < 30 { 5 } else { 0 });
            stats.record(Duration::from_millis(1), None, sent + Duration::from_millis(1));
            stats.record_paced(due, sent, sent + Duration::from_millis(1));
        }
        stats.last_done = Some(deadline + Duration::from_millis(3));
        let o = OpenLoopSummary::new(&schedule, measure_from, deadline, &stats, 900, false, false);
        assert_eq!((o.scheduled, o.sent, o.dropped, o.late), (1_000, 900, 100, 30));
        assert!((o.rate_achieved_per_sec - 90.0).abs() < 1e-9, "{o:?}");
        assert_eq!(o.rate_target_per_sec, 100.0);
        assert!(o.send_lag_ms.max >= 5.0, "{o:?}");
        // At the request cap nothing counts as dropped.
        let capped = OpenLoopSummary::new(&schedule, measure_from, deadline, &stats, 900, true, false);
        assert_eq!((capped.scheduled, capped.dropped), (900, 0));
    }
}
