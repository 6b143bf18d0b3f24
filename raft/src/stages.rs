//! Where a write's time goes, stage by stage: lock-free latency histograms that the store, the
//! log, the state machine and the network fill in, and that the node exports as Prometheus
//! histograms (`stage_duration_seconds{stage=...}`).
//!
//! Recording is a few relaxed atomic adds, cheap enough to leave on in production. The stages
//! nest (a leader's `raft_write` contains its `log_append` and the `apply`), so they are read as
//! "how long is spent inside", not as parts that add up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Upper bounds of the buckets, in microseconds (a last, unbounded bucket follows).
pub const BUCKET_BOUNDS_US: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000,
];

/// One latency histogram: counts per bucket, a count and a sum.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKET_BOUNDS_US.len() + 1],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

/// What a [`Histogram`] held at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Observations in each bucket of [`BUCKET_BOUNDS_US`], then those above the last bound
    /// (not cumulative).
    pub buckets: Vec<u64>,
    /// Observations.
    pub count: u64,
    /// Their sum, in nanoseconds.
    pub sum_ns: u64,
}

impl Histogram {
    /// Records one observation.
    pub fn record(&self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = BUCKET_BOUNDS_US.partition_point(|&b| b < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(d.as_nanos().min(u128::from(u64::MAX)) as u64, Ordering::Relaxed);
    }

    /// Records the time since `started`.
    pub fn since(&self, started: Instant) {
        self.record(started.elapsed());
    }

    /// The current counts.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect(),
            count: self.count.load(Ordering::Relaxed),
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
        }
    }
}

/// The write path's stages on this node. On a follower, a write is `propose` =
/// `propose_queue` + `forward`; on the leader, `propose` = `propose_queue` + `raft_write`, and a
/// follower's forwarded batch spends `propose_queue` + `raft_write` there too.
#[derive(Debug, Default)]
pub struct Stages {
    /// A proposal, from the caller's `propose` to its response (one per command).
    pub propose: Histogram,
    /// From joining this node's proposal queue to being cut into a batch: waiting for one of
    /// the pipeline slots (one per queued item: a command, or a follower's forwarded batch).
    pub propose_queue: Histogram,
    /// A follower's batch sent to the leader and answered: the network both ways plus the
    /// leader's queue and write (one per forwarded batch).
    pub forward: Histogram,
    /// The leader's `client_write` of one batch: append, replicate to a quorum, commit, apply.
    pub raft_write: Histogram,
    /// One log append: encoding, the blocking-pool hop and the redb commit (on every node).
    pub log_append: Histogram,
    /// The log append's redb commit alone: the write and its fsync.
    pub log_fsync: Histogram,
    /// One `append` RPC from the leader to a follower, sent and answered (replication).
    pub replicate_rpc: Histogram,
    /// Applying a run of entries to the state machine, commit included (on every node).
    pub apply: Histogram,
    /// The apply's redb commit alone.
    pub apply_commit: Histogram,
    /// Reading the applied state: one read transaction and the caller's reads in it (every
    /// read; a LINEARIZABLE one after its `read_index` barrier). No Raft round.
    pub read_local: Histogram,
    /// A linearizable barrier: one shared read-index round, then waiting to apply up to it.
    pub read_index: Histogram,
    /// Waiting until this node has applied an index a client has already seen: its own write's
    /// entry before the write is answered (near zero on the leader, which applied it before
    /// `client_write` returned), or a request's `atLeastIndex`.
    pub apply_wait: Histogram,
}

impl Stages {
    /// Every stage with its name, in a stable order.
    pub fn all(&self) -> [(&'static str, &Histogram); 12] {
        [
            ("propose", &self.propose),
            ("propose_queue", &self.propose_queue),
            ("forward", &self.forward),
            ("raft_write", &self.raft_write),
            ("log_append", &self.log_append),
            ("log_fsync", &self.log_fsync),
            ("replicate_rpc", &self.replicate_rpc),
            ("apply", &self.apply),
            ("apply_commit", &self.apply_commit),
            ("read_local", &self.read_local),
            ("read_index", &self.read_index),
            ("apply_wait", &self.apply_wait),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each observation lands in the first bucket whose bound is not below it, and the sum and
    /// count follow: the exported histogram is only as true as this.
    #[test]
    fn observations_land_in_their_buckets() {
        let h = Histogram::default();
        h.record(Duration::from_micros(10));
        h.record(Duration::from_micros(50));
        h.record(Duration::from_micros(51));
        h.record(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.sum_ns, 10_000 + 50_000 + 51_000 + 60_000_000_000);
        assert_eq!(s.buckets[0], 2, "10 us and 50 us are within the first bound");
        assert_eq!(s.buckets[1], 1, "51 us is in the second");
        assert_eq!(s.buckets[BUCKET_BOUNDS_US.len()], 1, "60 s is past every bound");
        assert_eq!(s.buckets.iter().sum::<u64>(), 4);
    }
}
