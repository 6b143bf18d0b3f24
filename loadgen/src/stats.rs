//! What the workers measure: latencies in HDR histograms of microseconds and outcomes counted by
//! error code, one [`Stats`] per worker so that recording takes no lock, merged at the end; and
//! how a histogram is summarized (percentiles in milliseconds) and counts are written out.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::pacing;

/// Highest latency the histograms track exactly; slower requests are recorded at this value,
/// which is above any sensible request timeout.
pub(crate) const LATENCY_MAX_US: u64 = 60_000_000;

/// Histogram precision: three significant digits bound the quantization error to 0.1%.
const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;

/// Latencies and outcomes of measured requests, and the tallies scenarios keep over the whole
/// run.
pub(crate) struct Stats {
    pub latency_us: Histogram<u64>,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    /// When the last measured request completed, which ends the measured window.
    pub last_done: Option<Instant>,
    /// Successful requests of the whole run, measured or not.
    pub acknowledged: u64,
    /// Units the successful answers of the whole run say were bought.
    pub units: u64,
    /// Answers before the measured window saying it was too early (SALE_NOT_OPEN).
    pub early_refusals: u64,
    /// The `(worker, seq)` of each request whose outcome was still unknown when its worker
    /// stopped; at most one per worker.
    pub unsettled: Vec<(usize, u64)>,
    /// Open loop: how far behind its due time each measured request was sent.
    pub send_lag_us: Histogram<u64>,
    /// Open loop: measured requests sent later than [`pacing::LATE_TOLERANCE`].
    pub late: u64,
    /// Open loop: time from sending each measured request to its answer, without the wait for
    /// a free worker that `latency_us` includes.
    pub service_us: Histogram<u64>,
}

/// A new histogram of microseconds with the run's bounds and precision. It cannot fail: the
/// bounds are constants that meet hdrhistogram's rules (lowest at least 1, highest at least
/// twice the lowest, at most 5 significant digits).
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, LATENCY_SIGNIFICANT_DIGITS).expect("valid histogram bounds")
}

/// Microseconds of `d` for a histogram: at least 1 (the histograms' lowest value), saturating.
pub(crate) fn histogram_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

impl Stats {
    pub fn new() -> Self {
        Self {
            latency_us: latency_histogram(),
            ok: 0,
            errors: BTreeMap::new(),
            last_done: None,
            acknowledged: 0,
            units: 0,
            early_refusals: 0,
            unsettled: Vec::new(),
            send_lag_us: latency_histogram(),
            late: 0,
            service_us: latency_histogram(),
        }
    }

    /// Records one completed request; `error_code` is `None` on success.
    pub fn record(&mut self, latency: Duration, error_code: Option<String>, done: Instant) {
        self.latency_us.saturating_record(histogram_us(latency));
        match error_code {
            None => self.ok += 1,
            Some(code) => *self.errors.entry(code).or_default() += 1,
        }
        self.last_done = self.last_done.max(Some(done));
    }

    /// Records the schedule side of an open-loop request: due, sent and answered at these times.
    pub fn record_paced(&mut self, due: Instant, sent: Instant, done: Instant) {
        // The histograms' lowest value is 1 us, so a punctual send records 1 us of lag.
        self.send_lag_us.saturating_record(histogram_us(sent.saturating_duration_since(due)));
        self.late += u64::from(pacing::is_late(due, sent));
        self.service_us.saturating_record(histogram_us(done.saturating_duration_since(sent)));
    }

    pub fn merge(&mut self, other: Stats) -> anyhow::Result<()> {
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

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct LatencySummary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// Summarizes a histogram of microseconds; all zero when it is empty.
pub(crate) fn summarize(latency_us: &Histogram<u64>) -> LatencySummary {
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

/// Renders error counts as `CODE n, CODE n`.
pub(crate) fn format_errors(errors: &BTreeMap<String, u64>) -> String {
    errors.iter().map(|(code, n)| format!("{code} {n}")).collect::<Vec<_>>().join(", ")
}

/// Divides without producing NaN or infinity for an empty window.
pub(crate) fn per_sec(count: u64, elapsed_secs: f64) -> f64 {
    if elapsed_secs > 0.0 {
        count as f64 / elapsed_secs
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reports_percentiles_in_ms() {
        let mut stats = Stats::new();
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
        let stats = Stats::new();
        assert_eq!(summarize(&stats.latency_us).max, 0.0);

        let mut stats = Stats::new();
        stats.record(Duration::from_secs(3_600), None, Instant::now());
        let max = summarize(&stats.latency_us).max;
        assert!(max >= LATENCY_MAX_US as f64 / 1_000.0 * 0.999, "{max}");
    }

    #[test]
    fn merge_adds_counts_and_histograms() {
        let t = Instant::now();
        let mut a = Stats::new();
        a.record(Duration::from_millis(1), None, t);
        a.record(Duration::from_millis(2), Some("SOLD_OUT".into()), t);
        let mut b = Stats::new();
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
    fn open_loop_latency_is_measured_from_the_due_time() {
        // A request due at t, sent 40 ms late for want of a free worker and answered 2 ms after
        // sending, is 42 ms of latency and 2 ms of service time.
        let t0 = Instant::now();
        let (due, sent, done) = (t0, t0 + Duration::from_millis(40), t0 + Duration::from_millis(42));
        let mut stats = Stats::new();
        stats.record(done - due, None, done);
        stats.record_paced(due, sent, done);
        let latency = summarize(&stats.latency_us);
        let service = summarize(&stats.service_us);
        assert!((latency.max - 42.0).abs() < 0.05, "{latency:?}");
        assert!((service.max - 2.0).abs() < 0.01, "{service:?}");
        assert_eq!(stats.late, 1);
    }
}
