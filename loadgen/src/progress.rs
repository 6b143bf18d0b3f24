//! The progress line of long runs and setups, on stderr.
//!
//! On a terminal it is one line redrawn in place a few times per second, e.g.
//! `[#####.....] 6/10 s  3,210 ops/s  0 errors`; elsewhere (a log file, a pipe) it is a plain line
//! once per second for timed runs and every few seconds for setups, so logs stay short. Written
//! here rather than taken from a crate: it is a few lines, and the workspace has no progress-bar
//! crate.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::stats::per_sec;

/// How often the line is redrawn on a terminal.
const REDRAW_INTERVAL_MS: u64 = 200;

/// How often a timed run prints a line when stderr is not a terminal.
const LOG_INTERVAL_TIMED_MS: u64 = 1_000;

/// How often a setup phase prints a line when stderr is not a terminal.
const LOG_INTERVAL_SETUP_MS: u64 = 5_000;

/// Width of the bar between its brackets, in characters.
const BAR_WIDTH_CHARS: usize = 20;

/// How many redraws the shown rate averages over (one second at the redraw interval).
const RATE_WINDOW_SAMPLES: usize = 5;

/// What the line measures progress against.
pub(crate) enum Extent {
    /// A timed run from `started`: warmup until `measure_from`, measured until `end`.
    Time { started: Instant, measure_from: Instant, end: Instant },
    /// A setup phase of `total` steps of `unit` (e.g. "follows").
    Count { label: &'static str, total: u64, unit: &'static str },
}

/// The counters the line shows, read at each redraw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Reading {
    /// Operations completed so far, warmup included.
    pub done: u64,
    /// Failed operations so far.
    pub errors: u64,
    /// A further count with its label, such as deliveries of the subscribers scenario.
    pub extra: Option<(u64, &'static str)>,
}

/// A running progress line; [`Progress::finish`] (or dropping it) stops it.
pub(crate) struct Progress {
    task: Option<JoinHandle<()>>,
    tty: bool,
}

impl Progress {
    /// Starts redrawing the line for `extent`, reading the counters with `read`.
    pub fn start(extent: Extent, read: impl Fn() -> Reading + Send + 'static) -> Self {
        let tty = std::io::stderr().is_terminal();
        let task = tokio::spawn(draw_loop(extent, read, tty));
        Self { task: Some(task), tty }
    }

    /// Stops the line; on a terminal it is erased, so what follows starts on a clean line.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            if self.tty {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[K");
                let _ = err.flush();
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn draw_loop(extent: Extent, read: impl Fn() -> Reading, tty: bool) {
    let period = Duration::from_millis(match (&extent, tty) {
        (_, true) => REDRAW_INTERVAL_MS,
        (Extent::Time { .. }, false) => LOG_INTERVAL_TIMED_MS,
        (Extent::Count { .. }, false) => LOG_INTERVAL_SETUP_MS,
    });
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut window = std::collections::VecDeque::with_capacity(RATE_WINDOW_SAMPLES + 1);
    window.push_back((Instant::now(), 0u64));
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let reading = read();
        window.push_back((now, reading.done));
        // A terminal averages over the last second; a log line over its own interval.
        let keep = if tty { RATE_WINDOW_SAMPLES } else { 1 };
        while window.len() > keep + 1 {
            window.pop_front();
        }
        let (then, done_then) = window[0];
        let rate = per_sec(reading.done.saturating_sub(done_then), (now - then).as_secs_f64());
        let line = match &extent {
            Extent::Time { started, measure_from, end } => {
                let elapsed = now.saturating_duration_since(*started).as_secs_f64();
                let total = end.saturating_duration_since(*started).as_secs_f64();
                let warmup = now < *measure_from;
                if tty {
                    timed_line(elapsed, total, rate, reading, warmup)
                } else {
                    timed_log_line(elapsed, rate, reading, warmup)
                }
            }
            Extent::Count { label, total, unit } => count_line(label, reading.done, *total, unit, rate, reading, tty),
        };
        let mut err = std::io::stderr().lock();
        if tty {
            let _ = write!(err, "\r{line}\x1b[K");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }
}

/// `[#####.....]` for `fraction` of the way (clamped to 0..=1).
pub(crate) fn bar(fraction: f64) -> String {
    let fraction = if fraction.is_finite() { fraction.clamp(0.0, 1.0) } else { 0.0 };
    let filled = ((fraction * BAR_WIDTH_CHARS as f64).floor() as usize).min(BAR_WIDTH_CHARS);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(BAR_WIDTH_CHARS - filled))
}

/// `n` with commas between groups of three digits, e.g. `3,210`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let groups: Vec<&str> =
        digits.as_bytes().rchunks(3).rev().map(|group| std::str::from_utf8(group).unwrap_or("?")).collect();
    groups.join(",")
}

fn extra_part(reading: Reading) -> String {
    reading.extra.map(|(n, label)| format!("  {} {label}", thousands(n))).unwrap_or_default()
}

fn errors_part(errors: u64) -> String {
    format!("{} error{}", thousands(errors), if errors == 1 { "" } else { "s" })
}

/// The terminal line of a timed run: `[#####.....] 6/10 s  3,210 ops/s  0 errors`.
pub(crate) fn timed_line(elapsed_secs: f64, total_secs: f64, rate: f64, reading: Reading, warmup: bool) -> String {
    let fraction = if total_secs > 0.0 { elapsed_secs / total_secs } else { 1.0 };
    format!(
        "{} {}/{} s  {} ops/s  {}{}{}",
        bar(fraction),
        elapsed_secs.floor() as u64,
        total_secs.ceil() as u64,
        thousands(rate.round() as u64),
        errors_part(reading.errors),
        extra_part(reading),
        if warmup { "  (warmup)" } else { "" }
    )
}

/// The log line of a timed run: `[   6.0s] 19,260 ops, 3,210/s, 0 errors`.
fn timed_log_line(elapsed_secs: f64, rate: f64, reading: Reading, warmup: bool) -> String {
    format!(
        "[{elapsed_secs:>6.1}s] {} ops, {}/s, {}{}{}",
        thousands(reading.done),
        thousands(rate.round() as u64),
        errors_part(reading.errors),
        extra_part(reading),
        if warmup { " (warmup)" } else { "" }
    )
}

/// The line of a setup phase: `registering [#####.....] 120/250 accounts  35/s  0 errors`.
fn count_line(label: &str, done: u64, total: u64, unit: &str, rate: f64, reading: Reading, tty: bool) -> String {
    let fraction = if total > 0 { done as f64 / total as f64 } else { 1.0 };
    let bar = if tty { format!("{} ", bar(fraction)) } else { String::new() };
    format!(
        "  {label} {bar}{}/{} {unit}  {}/s  {}",
        thousands(done),
        thousands(total),
        thousands(rate.round() as u64),
        errors_part(reading.errors)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_fills_in_proportion_and_clamps() {
        assert_eq!(bar(0.0), format!("[{}]", ".".repeat(20)));
        assert_eq!(bar(0.5), format!("[{}{}]", "#".repeat(10), ".".repeat(10)));
        assert_eq!(bar(1.0), format!("[{}]", "#".repeat(20)));
        assert_eq!(bar(7.0), bar(1.0));
        assert_eq!(bar(-1.0), bar(0.0));
        assert_eq!(bar(f64::NAN), bar(0.0));
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(3_210), "3,210");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
    }

    #[test]
    fn timed_line_matches_the_documented_shape() {
        let reading = Reading { done: 19_260, errors: 0, extra: None };
        let line = timed_line(6.2, 10.0, 3_210.4, reading, false);
        assert_eq!(line, "[############........] 6/10 s  3,210 ops/s  0 errors");
        let line = timed_line(0.4, 11.0, 12.0, Reading { errors: 1, extra: Some((5, "delivered")), ..reading }, true);
        assert!(line.ends_with("0/11 s  12 ops/s  1 error  5 delivered  (warmup)"), "{line}");
    }

    #[test]
    fn count_line_shows_done_of_total() {
        let line = count_line("following", 1_500, 5_000, "follows", 812.0, Reading::default(), true);
        assert_eq!(line, "  following [######..............] 1,500/5,000 follows  812/s  0 errors");
        let log = count_line("following", 1_500, 5_000, "follows", 812.0, Reading::default(), false);
        assert_eq!(log, "  following 1,500/5,000 follows  812/s  0 errors");
    }
}
