//! Progress of the long offline commands (`import`, `export`) on standard error: a bar with the
//! rate and the time left when it is a terminal (indicatif), plain lines otherwise
//! (`import: 300000 records, 85000/s`), so a log file or a CI job shows the command is moving
//! without the bar's control characters.
//!
//! The callers count in steps of a batch (or of [`STEP`] records): [`Progress::add`] is an
//! addition and a comparison until the next step is reached, so the loop it sits in costs the
//! same with or without it.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Records between two looks at the clock (and two updates of the bar).
pub const STEP: u64 = 10_000;
/// A plain line at least this often while records flow...
const LINE_EVERY: Duration = Duration::from_secs(2);
/// ...and at least every this many records.
const LINE_RECORDS: u64 = 100_000;

pub struct Progress {
    /// What the lines start with (`import`, `export`, `import: reading`).
    label: &'static str,
    /// What is counted (`records`, `lines`).
    unit: &'static str,
    start: Instant,
    count: u64,
    next_check: u64,
    last_line: Instant,
    last_line_count: u64,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Progress of `total` (when known) `unit`s; a bar when standard error is a terminal.
    pub fn new(label: &'static str, unit: &'static str, total: Option<u64>) -> Progress {
        Progress::with_bar(label, unit, total, std::io::stderr().is_terminal())
    }

    fn with_bar(label: &'static str, unit: &'static str, total: Option<u64>, bar: bool) -> Progress {
        let bar = bar.then(|| {
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
            let template = if total.is_some() {
                "{prefix} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} {msg} ({rate}/s, {eta} left)"
            } else {
                "{prefix} [{elapsed_precise}] {spinner} {human_pos} {msg} ({rate}/s)"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                // A whole number (indicatif's `per_sec` shows four decimals).
                let rate = |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0}", state.per_sec());
                };
                bar.set_style(style.with_key("rate", rate));
            }
            bar.set_prefix(label);
            bar.set_message(unit);
            bar
        });
        let now = Instant::now();
        Progress {
            label,
            unit,
            start: now,
            count: 0,
            next_check: STEP,
            last_line: now,
            last_line_count: 0,
            bar,
        }
    }

    /// `n` more done.
    #[inline]
    pub fn add(&mut self, n: u64) {
        self.count += n;
        if self.count >= self.next_check {
            self.step();
        }
    }

    #[cold]
    fn step(&mut self) {
        self.next_check = self.count + STEP;
        if let Some(bar) = &self.bar {
            bar.set_position(self.count);
            return;
        }
        let now = Instant::now();
        if now.duration_since(self.last_line) >= LINE_EVERY || self.count - self.last_line_count >= LINE_RECORDS {
            self.last_line = now;
            self.last_line_count = self.count;
            eprintln!("{}", self.line());
        }
    }

    /// `import: 300000 records, 85000/s`.
    fn line(&self) -> String {
        format!("{}: {} {}, {}/s", self.label, self.count, self.unit, self.rate())
    }

    /// Per second since the start, rounded.
    pub fn rate(&self) -> u64 {
        let secs = self.start.elapsed().as_secs_f64();
        if secs > 0.0 {
            (self.count as f64 / secs).round() as u64
        } else {
            self.count
        }
    }

    /// Take the bar off the terminal; the time it took and the rate, for the caller's summary
    /// line (`in 11.8 s, 84700 records/s`).
    pub fn finish(self) -> String {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        format!("in {:.1} s, {} {}/s", self.start.elapsed().as_secs_f64(), self.rate(), self.unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_in_steps_and_summarises() {
        let mut p = Progress::with_bar("import", "records", Some(25_000), false);
        for _ in 0..25 {
            p.add(1000);
        }
        assert_eq!(p.count, 25_000);
        assert_eq!(p.next_check, 30_000, "the clock is looked at once a step");
        assert!(p.line().starts_with("import: 25000 records, "), "{}", p.line());
        let summary = p.finish();
        assert!(summary.starts_with("in ") && summary.ends_with(" records/s"), "{summary}");
    }

    #[test]
    fn a_line_every_hundred_thousand_records() {
        let mut p = Progress::with_bar("export", "records", None, false);
        p.add(LINE_RECORDS - 1);
        assert_eq!(p.last_line_count, 0);
        p.add(STEP);
        assert_eq!(p.last_line_count, LINE_RECORDS - 1 + STEP);
    }
}
