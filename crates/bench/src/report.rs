//! Output: a readable table on stdout, then one JSON line with every figure.

use crate::measure::Tally;
use serde_json::{json, Map, Value};

pub struct Report {
    pub scenario: &'static str,
    pub fields: Map<String, Value>,
}

impl Report {
    pub fn new(scenario: &'static str, label: &str) -> Report {
        let mut fields = Map::new();
        fields.insert("scenario".into(), json!(scenario));
        fields.insert("server".into(), json!(label));
        Report { scenario, fields }
    }

    pub fn set(&mut self, key: &str, v: impl Into<Value>) -> &mut Self {
        self.fields.insert(key.into(), v.into());
        self
    }

    /// ops/s, latency percentiles and errors of a tally over `seconds`; with server CPU seconds,
    /// also operations per CPU-second (the efficiency figure).
    pub fn tally(&mut self, prefix: &str, t: &Tally, seconds: f64, cpu: Option<f64>) -> &mut Self {
        let rate = t.ops as f64 / seconds;
        self.set(&format!("{prefix}ops"), t.ops);
        self.set(&format!("{prefix}ops_per_s"), round(rate));
        self.set(&format!("{prefix}errors"), t.errors);
        if !t.latency.is_empty() {
            self.set(&format!("{prefix}p50_us"), t.latency.value_at_quantile(0.5));
            self.set(&format!("{prefix}p99_us"), t.latency.value_at_quantile(0.99));
            self.set(&format!("{prefix}p999_us"), t.latency.value_at_quantile(0.999));
            self.set(&format!("{prefix}max_us"), t.latency.max());
        }
        if let Some(c) = cpu {
            self.set(&format!("{prefix}server_cpu_s"), round3(c));
            if c > 0.0 {
                self.set(&format!("{prefix}ops_per_cpu_s"), round(t.ops as f64 / c));
            }
            if t.ops > 0 {
                // The same figure the other way round: what one request costs the server.
                self.set(&format!("{prefix}server_cpu_us_per_op"), round3(c * 1e6 / t.ops as f64));
            }
        }
        self
    }

    pub fn print(&self) {
        println!("── {} against {}", self.scenario, self.fields["server"].as_str().unwrap_or(""));
        for (k, v) in &self.fields {
            if k == "scenario" || k == "server" {
                continue;
            }
            println!("  {k:<28} {v}");
        }
        println!("{}", Value::Object(self.fields.clone()));
    }
}

pub fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Three decimals: per-request CPU figures are a few microseconds.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
