//! Operating metrics in the Prometheus text format (`/metrics`), and the numbers `/health` and
//! `/ready` report.
//!
//! Two kinds of numbers, recorded two ways:
//! - **Events on the data path** (requests, publishes, deliveries, logins, refusals) are counters
//!   and histograms of the `metrics` crate, registered once per server in its own Prometheus
//!   recorder (not the process-wide one, so servers started side by side in one process keep
//!   their own numbers) and kept here as handles: recording one is an atomic add (a histogram
//!   sample is a lock-free push the next drain folds into its buckets). Nothing on the data path
//!   looks a metric up by name, takes a lock or allocates for it.
//! - **Levels** (open connections, sessions, queued bytes, subscriptions, store size and health)
//!   are read from the server's own state when a scrape asks, so keeping them costs the data
//!   path nothing at all.
//!
//! Histogram samples wait in the recorder until drained; [`upkeep_task`] drains them every
//! second, so they are bounded by one second's requests even when nobody scrapes.

use crate::admission::Limiter;
use crate::state::AppState;
use happn_engine::security::Credentials;
use happn_engine::AccessError;
use happn_protocol::Action;
use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

/// Every action, in the order of the per-action handles.
const ACTIONS: [Action; 9] = [
    Action::Describe,
    Action::Login,
    Action::RequestNonce,
    Action::Get,
    Action::Set,
    Action::Remove,
    Action::On,
    Action::Off,
    Action::RevokeSession,
];

fn action_index(a: Action) -> usize {
    match a {
        Action::Describe => 0,
        Action::Login => 1,
        Action::RequestNonce => 2,
        Action::Get => 3,
        Action::Set => 4,
        Action::Remove => 5,
        Action::On => 6,
        Action::Off => 7,
        Action::RevokeSession => 8,
    }
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    Ok,
    /// Refused by security: not logged in, no permission, revoked session.
    Denied,
    /// Refused by a per-session limit (request rate, subscriptions).
    Limited,
    /// Any other failure (bad arguments, store errors).
    Error,
}

const OUTCOMES: [&str; 4] = ["ok", "denied", "limited", "error"];

/// How a login authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginKind {
    Password,
    Token,
    KeyPair,
    /// Insecure mode: no credentials are checked.
    Anonymous,
}

const LOGIN_KINDS: [&str; 4] = ["password", "token", "keypair", "anonymous"];

/// How a login ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginOutcome {
    Ok,
    /// Wrong credentials (or an unknown user).
    Denied,
    /// Refused because the account is locked out after failed attempts.
    LockedOut,
    Error,
}

const LOGIN_OUTCOMES: [&str; 4] = ["ok", "denied", "locked_out", "error"];

/// The limits whose refusals are counted (`happn_limit_refusals_total{limit}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Subscriptions,
    RequestRate,
}

const LIMITS: [&str; 2] = ["subscriptions", "request_rate"];

/// Latency buckets, in seconds: 50 µs to 5 s (a memory-store get to a slow fsync).
const LATENCY_BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

/// One server's metrics: the recorder that renders them and the handles the data path records to.
pub struct Telemetry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    started: Instant,
    requests: Vec<[Counter; 4]>,
    latency: Vec<Histogram>,
    publishes: Counter,
    deliveries: Counter,
    slow_consumers: Counter,
    logins: Vec<[Counter; 4]>,
    revocations: Counter,
    limits: Vec<Counter>,
    /// The main listener's admission limiter, once the server listens (connection counts and
    /// refusals are read from it at scrape time).
    limiter: OnceLock<Arc<Limiter>>,
}

const META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, None);

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    pub fn new() -> Telemetry {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
            .expect("non-empty buckets")
            .build_recorder();
        let handle = recorder.handle();
        let r = &recorder;
        let describe = |name: &'static str, help: &'static str| {
            // Every kind is described the same way in the text format; the counter call serves
            // for all of them. No unit: the names already end in theirs.
            r.describe_counter(name.into(), None, SharedString::const_str(help));
        };
        describe("happn_requests_total", "Requests handled, by action and outcome");
        describe(
            "happn_request_duration_seconds",
            "Time from a request's start to its reply being queued, by action",
        );
        describe("happn_publishes_total", "Sets and removes published to subscribers");
        describe("happn_deliveries_total", "Events queued to subscribers' connections");
        describe(
            "happn_slow_consumer_disconnects_total",
            "Connections closed because they did not read their output, by reason",
        );
        describe("happn_logins_total", "Logins over websockets and /auth/login, by kind and outcome");
        describe("happn_revoked_sessions_total", "Sessions revoked (revoke-session)");
        describe(
            "happn_limit_refusals_total",
            "Requests and connections refused by a limit, by limit",
        );
        describe("happn_connections", "Open websocket connections");
        describe("happn_sockets", "Open sockets (HTTP and websocket) holding an admission slot");
        describe("happn_sessions", "Logged-in websocket sessions, by type");
        describe("happn_outbound_queue_bytes", "Bytes queued for sending across all connections");
        describe("happn_subscriptions", "Subscriptions (a session on a channel) across all sessions");
        describe("happn_store_healthy", "1 when the store accepts writes, 0 when it refuses them");
        describe("happn_store_file_bytes", "Size of the durable store's data files");
        describe("happn_uptime_seconds", "Seconds since the server started");
        describe(
            "happn_cluster_events_delivered_id",
            "Cluster mode: the id of the last event of the log delivered on this node",
        );
        describe(
            "happn_cluster_events_newest_id",
            "Cluster mode: the newest event id this node has seen in the log (its writes, its reader, the log's end each second)",
        );
        describe(
            "happn_cluster_event_lag",
            "Cluster mode: newest id seen minus last id delivered (an upper bound on the events this node has still to deliver)",
        );
        describe(
            "happn_cluster_database_up",
            "Cluster mode: 1 while the node reaches the database (its writer is connected), 0 otherwise",
        );
        describe(
            "happn_cluster_members",
            "Cluster mode: nodes in the members table, by state (alive: heartbeat within the member TTL)",
        );
        let counter = |name: &'static str, labels: Vec<Label>| r.register_counter(&Key::from_parts(name, labels), &META);
        let label = |k: &'static str, v: &'static str| Label::from_static_parts(k, v);
        let requests = ACTIONS
            .iter()
            .map(|a| OUTCOMES.map(|o| counter("happn_requests_total", vec![label("action", a.as_str()), label("outcome", o)])))
            .collect();
        let latency = ACTIONS
            .iter()
            .map(|a| {
                r.register_histogram(
                    &Key::from_parts("happn_request_duration_seconds", vec![label("action", a.as_str())]),
                    &META,
                )
            })
            .collect();
        let logins = LOGIN_KINDS
            .iter()
            .map(|k| LOGIN_OUTCOMES.map(|o| counter("happn_logins_total", vec![label("kind", k), label("outcome", o)])))
            .collect();
        let limits = LIMITS
            .iter()
            .map(|l| counter("happn_limit_refusals_total", vec![label("limit", l)]))
            .collect();
        Telemetry {
            publishes: counter("happn_publishes_total", vec![]),
            deliveries: counter("happn_deliveries_total", vec![]),
            slow_consumers: counter("happn_slow_consumer_disconnects_total", vec![label("reason", "queue_full")]),
            revocations: counter("happn_revoked_sessions_total", vec![]),
            requests,
            latency,
            logins,
            limits,
            started: Instant::now(),
            limiter: OnceLock::new(),
            handle,
            recorder,
        }
    }

    /// A request finished.
    pub fn request(&self, action: Action, outcome: RequestOutcome, started: Instant) {
        let i = action_index(action);
        self.requests[i][outcome as usize].increment(1);
        self.latency[i].record(started.elapsed().as_secs_f64());
    }

    /// A publish reached `deliveries` connections.
    pub fn published(&self, deliveries: usize) {
        self.publishes.increment(1);
        if deliveries > 0 {
            self.deliveries.increment(deliveries as u64);
        }
    }

    /// A connection was closed for not reading its output (its own queue's limit).
    pub fn slow_consumer(&self) {
        self.slow_consumers.increment(1);
    }

    pub fn login(&self, kind: LoginKind, outcome: LoginOutcome) {
        self.logins[kind as usize][outcome as usize].increment(1);
    }

    /// A login with `creds` ended with `result` (over a socket or `/auth/login`; `None` for an
    /// insecure server's login, which checks nothing). A failure is logged at `warn` with the
    /// user and the reason, never the password, token or signature.
    pub fn login_result<T>(&self, creds: Option<&Credentials>, result: &Result<T, AccessError>, via: &str) {
        let kind = match creds {
            None => LoginKind::Anonymous,
            Some(c) if c.token.is_some() => LoginKind::Token,
            Some(c) if c.digest.is_some() || c.public_key.is_some() => LoginKind::KeyPair,
            Some(_) => LoginKind::Password,
        };
        let outcome = match result {
            Ok(_) => LoginOutcome::Ok,
            Err(AccessError::LockedOut) => LoginOutcome::LockedOut,
            Err(AccessError::InvalidCredentials | AccessError::Unauthorized { .. } | AccessError::NonceExpired) => LoginOutcome::Denied,
            Err(_) => LoginOutcome::Error,
        };
        self.login(kind, outcome);
        if let Err(e) = result {
            let user = creds.and_then(|c| c.username.as_deref()).unwrap_or("(none)");
            tracing::warn!(user, kind = LOGIN_KINDS[kind as usize], via, reason = %e, "login failed");
        }
    }

    pub fn revoked(&self) {
        self.revocations.increment(1);
    }

    pub fn refused(&self, limit: Limit) {
        self.limits[limit as usize].increment(1);
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Read connection counts and refusals from `limiter` from now on.
    pub(crate) fn watch_limiter(&self, limiter: Arc<Limiter>) {
        let _ = self.limiter.set(limiter);
    }

    fn gauge(&self, name: &'static str, labels: Vec<Label>) -> Gauge {
        self.recorder.register_gauge(&Key::from_parts(name, labels), &META)
    }

    /// The Prometheus text: the levels read now from `state` (and, in cluster mode, `members`,
    /// the members table as last read), then everything recorded, then the store's commits.
    pub(crate) fn render(&self, state: &AppState, members: Option<&crate::cluster::Members>) -> String {
        let gauge = |name, v: f64| self.gauge(name, vec![]).set(v);
        gauge("happn_uptime_seconds", self.uptime().as_secs_f64());
        let (mut connections, mut queued, mut sessions) = (0usize, 0usize, [0usize; 3]);
        state.with_peers(|peers| {
            for p in peers.values() {
                connections += 1;
                queued += p.tx.queued_bytes();
                if let Some(identity) = &p.identity {
                    let kind = if identity.cluster_member {
                        2
                    } else if identity.username.is_some() {
                        0
                    } else {
                        1
                    };
                    sessions[kind] += 1;
                }
            }
        });
        gauge("happn_connections", connections as f64);
        gauge("happn_outbound_queue_bytes", queued as f64);
        for (kind, n) in ["user", "anonymous", "cluster"].into_iter().zip(sessions) {
            self.gauge("happn_sessions", vec![Label::from_static_parts("type", kind)])
                .set(n as f64);
        }
        gauge("happn_subscriptions", state.subscriptions.subscription_count() as f64);
        gauge(
            "happn_store_healthy",
            if state.data.store().health().is_healthy() { 1.0 } else { 0.0 },
        );
        if let Some(bytes) = store_file_bytes(&state.config.data) {
            gauge("happn_store_file_bytes", bytes as f64);
        }
        let budget = &state.queue_budget;
        let evicted = self.recorder.register_counter(
            &Key::from_parts(
                "happn_slow_consumer_disconnects_total",
                vec![Label::from_static_parts("reason", "budget")],
            ),
            &META,
        );
        evicted.absolute(budget.evictions.load(std::sync::atomic::Ordering::Relaxed));
        if let Some(limiter) = self.limiter.get() {
            gauge("happn_sockets", limiter.open() as f64);
            let (total, per_ip) = limiter.refusals();
            for (limit, n) in [("connections", total), ("connections_per_ip", per_ip)] {
                self.recorder
                    .register_counter(
                        &Key::from_parts("happn_limit_refusals_total", vec![Label::from_static_parts("limit", limit)]),
                        &META,
                    )
                    .absolute(n);
            }
        }
        if let Some(cluster) = &state.cluster {
            let delivered = cluster.delivered_id();
            let newest = cluster.store.newest_event_seen().max(delivered);
            gauge("happn_cluster_events_delivered_id", delivered as f64);
            gauge("happn_cluster_events_newest_id", newest as f64);
            gauge("happn_cluster_event_lag", (newest - delivered) as f64);
            let up = happn_engine::storage::Store::health(&*cluster.store).is_healthy();
            gauge("happn_cluster_database_up", if up { 1.0 } else { 0.0 });
            if let Some(Ok(members)) = members {
                let alive = members.iter().filter(|m| m.alive).count();
                for (state, n) in [("alive", alive), ("down", members.len() - alive)] {
                    self.gauge("happn_cluster_members", vec![Label::from_static_parts("state", state)])
                        .set(n as f64);
                }
            }
        }
        let mut text = self.handle.render();
        if let Some(commits) = state.data.store().commit_metrics() {
            commit_text(&mut text, &commits);
        }
        text
    }

    /// Fold waiting histogram samples into their buckets.
    fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// The store's commits in the Prometheus text format. The histograms are the store's own fixed
/// buckets (`happn_engine::storage::stats`), read now, so they are written here rather than
/// through the recorder (which takes samples, not buckets).
fn commit_text(out: &mut String, m: &happn_engine::storage::CommitMetrics) {
    use std::fmt::Write;
    let mut counter = |name: &str, help: &str, v: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n");
    };
    counter("happn_store_commits_total", "Transactions the store's writer committed", m.commits);
    counter(
        "happn_store_commit_operations_total",
        "Write operations (batches, removes) those transactions carried",
        m.operations,
    );
    counter(
        "happn_store_commit_group_failures_total",
        "Groups that failed whole and were retried one operation per transaction",
        m.group_failures,
    );
    histogram(
        out,
        "happn_store_commit_duration_seconds",
        "Time each commit took, from its transaction's start to its durable end (the fsync, or the database's COMMIT)",
        &m.duration_nanos,
        1e-9,
    );
    histogram(
        out,
        "happn_store_commit_group_size",
        "Write operations per commit (group commit: the writers that share one fsync or COMMIT)",
        &m.group_size,
        1.0,
    );
}

/// One histogram of whole-number buckets, each bound and the sum scaled by `scale`.
fn histogram(out: &mut String, name: &str, help: &str, h: &happn_engine::storage::stats::HistogramSnapshot, scale: f64) {
    use std::fmt::Write;
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut below = 0;
    for (bound, n) in h.bounds.iter().zip(&h.counts) {
        below += n;
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {below}", *bound as f64 * scale);
    }
    let count = h.count();
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {}\n{name}_count {count}\n", h.sum as f64 * scale);
}

/// The durable store's data files, summed (`None` for a memory store).
fn store_file_bytes(data: &crate::config::DataConfig) -> Option<u64> {
    if data.memory {
        return None;
    }
    let mut files: Vec<&str> = data
        .datastores
        .iter()
        .filter(|d| !d.memory)
        .map(|d| d.file.as_deref().unwrap_or(&data.file))
        .collect();
    if data.datastores.is_empty() {
        files.push(&data.file);
    }
    files.sort_unstable();
    files.dedup();
    Some(
        files
            .iter()
            .filter_map(|f| std::fs::metadata(data.path_of(f)).ok())
            .map(|m| m.len())
            .sum(),
    )
}

/// Drain histogram samples every second for as long as the server lives.
pub(crate) async fn upkeep_task(state: Weak<AppState>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(state) = state.upgrade() else { return };
        state.telemetry.upkeep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_cover_every_label() {
        let t = Telemetry::new();
        for a in ACTIONS {
            assert_eq!(ACTIONS[action_index(a)], a);
            t.request(a, RequestOutcome::Ok, Instant::now());
        }
        t.request(Action::Set, RequestOutcome::Limited, Instant::now());
        t.login(LoginKind::KeyPair, LoginOutcome::LockedOut);
        t.refused(Limit::RequestRate);
        t.published(3);
        t.upkeep();
        let text = t.handle.render();
        assert!(text.contains(r#"happn_requests_total{action="set",outcome="limited"} 1"#), "{text}");
        assert!(
            text.contains(r#"happn_requests_total{action="revoke-session",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"happn_logins_total{kind="keypair",outcome="locked_out"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"happn_limit_refusals_total{limit="request_rate"} 1"#), "{text}");
        assert!(text.contains("happn_deliveries_total 3"), "{text}");
        assert!(
            text.contains(r#"happn_request_duration_seconds_bucket{action="get",le="5"} 1"#),
            "{text}"
        );
    }
}
