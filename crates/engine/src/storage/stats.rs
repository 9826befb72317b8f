//! What a durable store's writer reports about its commits ([`super::Store::commit_metrics`]):
//! counts, and two histograms kept as fixed buckets of atomic counters — the commit's duration
//! and the number of operations it carried (its group). The writer records after each commit
//! (an atomic add per number, on its own thread or task, never a request's); a metrics scrape
//! reads them.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the commit duration buckets, in nanoseconds: 50 µs to 5 s (a relaxed commit
/// to a fsync on a struggling disk or a remote database).
pub const COMMIT_NANOS_BUCKETS: [u64; 14] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
    5_000_000_000,
];

/// Upper bounds of the group size buckets, in operations per commit.
pub const GROUP_SIZE_BUCKETS: [u64; 12] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];

/// A histogram of whole numbers over fixed bucket bounds: one atomic count per bucket (the last
/// one above every bound) and an atomic sum.
pub struct Histogram {
    bounds: &'static [u64],
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [u64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    pub fn record(&self, value: u64) {
        let bucket = self.bounds.partition_point(|b| *b < value);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            counts: self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

/// A histogram as read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub bounds: &'static [u64],
    /// Per bucket (not cumulative); one more than `bounds`, the last above every bound.
    pub counts: Vec<u64>,
    pub sum: u64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Add `other`'s samples (the same bounds) to these.
    fn add(&mut self, other: &HistogramSnapshot) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum += other.sum;
    }
}

/// A writer's commits so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitMetrics {
    /// Transactions committed.
    pub commits: u64,
    /// Operations (batches, removes) they carried.
    pub operations: u64,
    /// Groups that failed whole and were retried one operation per transaction.
    pub group_failures: u64,
    /// Time each commit took (the transaction from its start to its durable end), nanoseconds.
    pub duration_nanos: HistogramSnapshot,
    /// Operations per commit (commits that carried none, such as a relaxed store's flush, are
    /// not counted here).
    pub group_size: HistogramSnapshot,
}

impl CommitMetrics {
    /// Several stores' commits together (a routed store's).
    pub fn merge(mut self, other: &CommitMetrics) -> CommitMetrics {
        self.commits += other.commits;
        self.operations += other.operations;
        self.group_failures += other.group_failures;
        self.duration_nanos.add(&other.duration_nanos);
        self.group_size.add(&other.group_size);
        self
    }
}

/// What a writer keeps of its commits: counts and the two histograms, each an atomic add.
pub struct CommitCounters {
    pub commits: AtomicU64,
    pub operations: AtomicU64,
    pub group_failures: AtomicU64,
    duration_nanos: Histogram,
    group_size: Histogram,
}

impl Default for CommitCounters {
    fn default() -> Self {
        CommitCounters {
            commits: AtomicU64::new(0),
            operations: AtomicU64::new(0),
            group_failures: AtomicU64::new(0),
            duration_nanos: Histogram::new(&COMMIT_NANOS_BUCKETS),
            group_size: Histogram::new(&GROUP_SIZE_BUCKETS),
        }
    }
}

impl CommitCounters {
    /// A commit of `operations` that took `took`.
    pub fn committed(&self, operations: u64, took: std::time::Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.operations.fetch_add(operations, Ordering::Relaxed);
        self.duration_nanos.record(took.as_nanos().min(u64::MAX as u128) as u64);
        if operations > 0 {
            self.group_size.record(operations);
        }
    }

    /// A group failed whole (and is retried one operation at a time).
    pub fn group_failed(&self) {
        self.group_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn metrics(&self) -> CommitMetrics {
        CommitMetrics {
            commits: self.commits.load(Ordering::Relaxed),
            operations: self.operations.load(Ordering::Relaxed),
            group_failures: self.group_failures.load(Ordering::Relaxed),
            duration_nanos: self.duration_nanos.snapshot(),
            group_size: self.group_size.snapshot(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn samples_land_in_their_buckets() {
        let h = CommitCounters::default();
        h.committed(1, Duration::from_micros(40));
        h.committed(3, Duration::from_micros(50));
        h.committed(4096, Duration::from_millis(2));
        h.committed(5000, Duration::from_secs(9));
        h.committed(0, Duration::from_micros(60));
        h.group_failed();
        let m = h.metrics();
        assert_eq!((m.commits, m.operations, m.group_failures), (5, 9100, 1));
        assert_eq!(m.duration_nanos.count(), 5);
        assert_eq!(m.duration_nanos.counts[0], 2, "50 µs is within the first bound");
        assert_eq!(m.duration_nanos.counts[1], 1);
        assert_eq!(m.duration_nanos.counts[5], 1, "2 ms: the 2.5 ms bucket");
        assert_eq!(m.duration_nanos.counts[14], 1, "above every bound");
        assert_eq!(m.group_size.count(), 4, "a commit of no operations is no group");
        assert_eq!(m.group_size.counts[..3], [1, 0, 1]);
        assert_eq!(m.group_size.counts[11], 1, "4096 is the last bound");
        assert_eq!(m.group_size.counts[12], 1);
        assert_eq!(m.group_size.sum, 1 + 3 + 4096 + 5000);
        let both = m.clone().merge(&m);
        assert_eq!((both.commits, both.group_size.sum), (10, 2 * m.group_size.sum));
        assert_eq!(both.duration_nanos.count(), 10);
    }
}
