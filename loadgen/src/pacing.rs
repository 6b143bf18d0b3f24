//! Open-loop pacing: a fixed schedule of intended send times, as wrk2 does it.
//!
//! Slot `i` of a schedule at `R` requests per second is due `i / R` seconds after its origin.
//! A free worker takes the oldest slot nobody has taken, sleeps until it is due and sends; when
//! every worker is busy (the `--concurrency` cap on requests in flight) the slot waits, is sent
//! late, and its latency is still measured from when it was due. That is the correction for
//! coordinated omission: a stalled server cannot hide its stall by slowing down the client that
//! measures it. Slots still unsent when the window closes are counted as dropped.

use std::time::{Duration, Instant};

use clap::Args;

/// Highest accepted `--rate`; far above what one process can send, so only typos hit it.
const RATE_MAX_PER_SEC: f64 = 10_000_000.0;

/// A send this much after its slot's due time counts as late. Tokio's timers have millisecond
/// resolution, so a punctual send is up to about a millisecond behind; beyond twice that it
/// waited for a free worker or for a busy runtime.
pub(crate) const LATE_TOLERANCE: Duration = Duration::from_millis(2);

/// The open-loop flag of the request/response scenarios.
#[derive(Args, Debug, Clone, Copy)]
pub(crate) struct OpenLoopArgs {
    /// Open loop: send this many requests per second in total, on a fixed schedule, and measure
    /// each latency from its scheduled send time (coordinated-omission correction, like wrk2);
    /// --concurrency then caps the requests in flight. Without it the run is closed-loop.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
}

/// Accepts a finite rate above zero and at most [`RATE_MAX_PER_SEC`], such as `200` or `0.5`.
pub(crate) fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number"))?;
    if rate.is_finite() && rate > 0.0 && rate <= RATE_MAX_PER_SEC {
        Ok(rate)
    } else {
        Err(format!("expected a rate above 0 and at most {RATE_MAX_PER_SEC} per second"))
    }
}

/// Intended send times at a fixed rate from an origin.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Schedule {
    origin: Instant,
    rate_per_sec: f64,
}

impl Schedule {
    /// A schedule of `rate_per_sec` slots per second, slot 0 due at `origin`.
    pub fn new(origin: Instant, rate_per_sec: f64) -> Self {
        assert!(rate_per_sec.is_finite() && rate_per_sec > 0.0, "rate must be positive, got {rate_per_sec}");
        Self { origin, rate_per_sec }
    }

    pub fn rate_per_sec(&self) -> f64 {
        self.rate_per_sec
    }

    /// How long after the origin slot `slot` is due. Computed from the slot number each time
    /// rather than by adding intervals, so rounding never accumulates.
    pub fn offset(&self, slot: u64) -> Duration {
        Duration::from_secs_f64(slot as f64 / self.rate_per_sec)
    }

    /// When slot `slot` is due.
    pub fn due(&self, slot: u64) -> Instant {
        self.origin + self.offset(slot)
    }

    /// How many slots are due strictly before `t`: the first slot due at or after `t`.
    pub fn slots_before(&self, t: Instant) -> u64 {
        let elapsed = t.saturating_duration_since(self.origin);
        if elapsed.is_zero() {
            return 0;
        }
        // The estimate can be one off either way from rounding; step to the exact boundary.
        let mut n = (elapsed.as_secs_f64() * self.rate_per_sec).ceil() as u64;
        while n > 0 && self.offset(n - 1) >= elapsed {
            n -= 1;
        }
        while self.offset(n) < elapsed {
            n += 1;
        }
        n
    }

    /// How many slots are due in `[from, to)`.
    pub fn slots_between(&self, from: Instant, to: Instant) -> u64 {
        self.slots_before(to).saturating_sub(self.slots_before(from))
    }
}

/// Whether a send at `sent` for a slot due at `due` counts as late.
pub(crate) fn is_late(due: Instant, sent: Instant) -> bool {
    sent.saturating_duration_since(due) > LATE_TOLERANCE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_evenly_spaced_from_the_origin() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, 200.0);
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), Duration::from_millis(5));
        assert_eq!(s.offset(200), Duration::from_secs(1));
        assert_eq!(s.due(1_000), t0 + Duration::from_secs(5));
        // Fractional rates: one slot every two seconds.
        let slow = Schedule::new(t0, 0.5);
        assert_eq!(slow.offset(3), Duration::from_secs(6));
    }

    #[test]
    fn offsets_do_not_drift_over_long_runs() {
        let s = Schedule::new(Instant::now(), 3.0);
        // 3 per second for a day: slot 259,200 is due exactly 86,400 s in.
        let off = s.offset(259_200);
        assert!(off.abs_diff(Duration::from_secs(86_400)) < Duration::from_micros(1), "{off:?}");
    }

    #[test]
    fn slots_before_counts_exactly_at_boundaries() {
        let t0 = Instant::now();
        for rate in [1.0, 3.0, 7.0, 200.0, 0.5, 12_345.6] {
            let s = Schedule::new(t0, rate);
            assert_eq!(s.slots_before(t0), 0, "rate {rate}");
            for slot in [0u64, 1, 2, 9, 10, 11, 999, 12_345] {
                let due = s.due(slot);
                // Slot `slot` itself is not before its own due time, but is just after it.
                assert_eq!(s.slots_before(due), slot, "rate {rate} slot {slot}");
                assert_eq!(s.slots_before(due + Duration::from_nanos(1)), slot + 1, "rate {rate} slot {slot}");
            }
        }
    }

    #[test]
    fn slots_between_is_the_window_count() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, 100.0);
        // A 1 s warmup then a 10 s window at 100/s: 1,000 measured slots.
        let from = t0 + Duration::from_secs(1);
        let to = from + Duration::from_secs(10);
        assert_eq!(s.slots_before(from), 100);
        assert_eq!(s.slots_between(from, to), 1_000);
        assert_eq!(s.slots_between(to, from), 0);
        // Before the origin nothing is due.
        assert_eq!(Schedule::new(to, 100.0).slots_before(from), 0);
    }

    #[test]
    fn lateness_has_a_tolerance() {
        let t0 = Instant::now();
        assert!(!is_late(t0, t0));
        assert!(!is_late(t0, t0 + LATE_TOLERANCE));
        assert!(is_late(t0, t0 + LATE_TOLERANCE + Duration::from_micros(1)));
        // Early (cannot happen, but must not panic or count).
        assert!(!is_late(t0 + Duration::from_secs(1), t0));
    }

    #[test]
    fn rates_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_rate("200"), Ok(200.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        assert_eq!(parse_rate(" 1e3 "), Ok(1_000.0));
        for bad in ["0", "-5", "nan", "inf", "fast", "", "1e12"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
