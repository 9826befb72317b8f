//! Progress of `happn-rs import` and `export` when standard error is not a terminal: plain
//! periodic lines (`import: 100000 records, 85000/s`) and a summary line with the time and rate.

mod common;

use common::run_to_end;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Enough records for the every-100,000-records lines to appear twice in each phase.
const RECORDS: usize = 250_000;

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("happn-progress-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tool(args: &[&str]) -> String {
    let mut c = Command::new(env!("CARGO_BIN_EXE_happn-rs"));
    c.args(args);
    let out = run_to_end(c, "", Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?}: {stderr}");
    assert!(
        !stderr.contains('\r') && !stderr.contains('\u{1b}'),
        "no bar off a terminal: {stderr:?}"
    );
    stderr
}

/// The `(count, rate)` of each `label: N unit, R/s` line.
fn periodic(stderr: &str, label: &str, unit: &str) -> Vec<(u64, u64)> {
    stderr
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(label)?.strip_prefix(": ")?;
            let (count, rest) = rest.split_once(&format!(" {unit}, "))?;
            Some((count.parse().ok()?, rest.strip_suffix("/s")?.parse().ok()?))
        })
        .collect()
}

#[test]
fn import_and_export_report_progress_in_plain_lines() {
    let dir = scratch();
    let file = dir.join("happn2.nedb");
    let mut text = String::from("{\"$$indexCreated\":{\"fieldName\":\"path\",\"unique\":true}}\n");
    for i in 0..RECORDS {
        text.push_str(&format!(
            "{{\"_id\":\"/p/{i}\",\"data\":{{\"n\":{i}}},\"path\":\"/p/{i}\",\"created\":{{\"$$date\":1}},\"modified\":{{\"$$date\":2}}}}\n"
        ));
    }
    std::fs::write(&file, text).unwrap();
    let data = dir.join("data");
    let stderr = tool(&["import", "--nedb", file.to_str().unwrap(), "--data-dir", data.to_str().unwrap()]);

    let reading = periodic(&stderr, "import: reading", "lines");
    let writing = periodic(&stderr, "import", "records");
    for (what, lines) in [("reading", &reading), ("writing", &writing)] {
        assert!(lines.len() >= 2, "{what}: a line every 100,000 at the most: {stderr}");
        assert!(lines.windows(2).all(|w| w[0].0 < w[1].0), "{what}: counts grow: {stderr}");
        assert!(lines.iter().all(|&(n, rate)| n <= RECORDS as u64 + 1 && rate > 0), "{stderr}");
    }
    let summary = stderr.lines().last().unwrap();
    assert!(
        summary.starts_with(&format!("imported {RECORDS} records (0 users, 0 groups) from "))
            && summary.contains(" s (reading in ")
            && summary.ends_with(" records/s)"),
        "{summary}"
    );

    let out = dir.join("out.nedb");
    let stderr = tool(&["export", "--data-dir", data.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let exporting = periodic(&stderr, "export", "records");
    assert!(exporting.len() >= 2, "{stderr}");
    let summary = stderr.lines().last().unwrap();
    assert!(
        summary.starts_with(&format!("exported {RECORDS} records in ")) && summary.ends_with(" records/s"),
        "{summary}"
    );
    let exported = std::fs::read_to_string(&out).unwrap();
    assert_eq!(exported.lines().count(), RECORDS);
    let _ = std::fs::remove_dir_all(&dir);
}
