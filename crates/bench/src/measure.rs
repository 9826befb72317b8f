//! Measurement: latency histograms, operation counters, and the server's CPU and RSS from /proc.

use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// The measured window: operations completing inside it count.
#[derive(Clone, Copy)]
pub struct Window {
    pub start: Instant,
    pub end: Instant,
}

impl Window {
    pub fn after(warmup: Duration, duration: Duration) -> Window {
        let start = Instant::now() + warmup;
        Window {
            start,
            end: start + duration,
        }
    }
    pub fn contains(&self, t: Instant) -> bool {
        t >= self.start && t < self.end
    }
}

/// Per-task results, merged at the end.
pub struct Tally {
    pub ops: u64,
    pub errors: u64,
    pub latency: Histogram<u64>,
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            ops: 0,
            errors: 0,
            latency: histogram(),
        }
    }
    pub fn merge(&mut self, other: &Tally) {
        self.ops += other.ops;
        self.errors += other.errors;
        let _ = self.latency.add(&other.latency);
    }
    pub fn record(&mut self, micros: u64) {
        self.ops += 1;
        let _ = self.latency.record(micros.max(1));
    }
}

/// CPU seconds (user + system) the process has used so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / if hz > 0.0 { hz } else { 100.0 })
}

/// Resident memory in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// On-CPU nanoseconds of each thread of a process, from `/proc/<pid>/task/*/schedstat`
/// (nanosecond resolution; `/proc/<pid>/stat` counts 10 ms ticks, too coarse for a fleet of
/// devices costing the server a few milliseconds per second).
fn thread_cpu_ns(pid: u32) -> Option<HashMap<u32, u64>> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(entry) = entry else { continue };
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue; // the thread has just exited
        };
        if let Some(ns) = stat.split_whitespace().next().and_then(|n| n.parse().ok()) {
            out.insert(tid, ns);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Server CPU over a window, when a pid was given: the sum over its threads of the on-CPU time
/// each spent in the window (a thread started in it counts from zero; one that exited in it
/// loses its share, which the `/proc/<pid>/stat` figure, kept as a cross-check, does not).
pub struct CpuMeter {
    pid: Option<u32>,
    start: Option<f64>,
    threads: Option<HashMap<u32, u64>>,
}

impl CpuMeter {
    pub fn start(pid: Option<u32>) -> CpuMeter {
        CpuMeter {
            pid,
            start: pid.and_then(cpu_seconds),
            threads: pid.and_then(thread_cpu_ns),
        }
    }
    pub fn seconds(&self) -> Option<f64> {
        let pid = self.pid?;
        if let (Some(before), Some(after)) = (&self.threads, thread_cpu_ns(pid)) {
            let ns: u64 = after
                .iter()
                .map(|(tid, now)| now.saturating_sub(before.get(tid).copied().unwrap_or(0)))
                .sum();
            return Some(ns as f64 / 1e9);
        }
        Some(cpu_seconds(pid)? - self.start?)
    }
}
