//! The writer task: group commit on one dedicated connection.
//!
//! Every mutation is a [`Job`] sent over a channel. The task waits for the first, takes whatever
//! else is already queued (up to [`MAX_GROUP`] operations), applies all of it in ONE transaction,
//! and answers each waiter only after `COMMIT` returned (so an `Ok` is as durable as the server's
//! `synchronous_commit` makes commits; PostgreSQL's default: flushed to its WAL). Writers that
//! arrive during a commit form the next group, so 32 concurrent writers share each commit
//! instead of paying one each.
//!
//! A group becomes few statements, not one per operation: consecutive operations on distinct
//! paths form a *segment*, run as at most three array statements (a `DELETE … = ANY`, an
//! `INSERT … SELECT FROM unnest(…) ON CONFLICT DO UPDATE` for puts, the same with a
//! `created`-keeping update for plain sets). Operations inside a segment touch different rows, so
//! their order does not matter; an operation on a path the segment already touched starts a new
//! segment, and so does a `remove_matching` (which locks its prefix range, matches in Rust and
//! deletes what matched). A group that is a single statement (the usual case: concurrent plain
//! sets) runs without `BEGIN`/`COMMIT`, as one implicit transaction.
//!
//! In cluster mode a group also logs its events (see `cluster.rs` and `schema::EVENT_LOCK`). A
//! group of plain sets, each with its event (the usual case there), is one call of `happn_set`
//! (migration 3): the ordering lock, the rows and the events in one statement. Any other group is
//! pipelined: `BEGIN`, the ordering lock and the first statement go out together, and `COMMIT`
//! goes with the `happn_log` call, so the lock is taken first and held for no more than the
//! group's own statements, one round trip apart at most.
//!
//! # Failures
//! * A statement PostgreSQL refuses (a NUL in a path, say) rolls the group back, which is then
//!   retried one operation per transaction, so each waiter gets its own operation's outcome and
//!   one bad operation cannot fail its neighbours.
//! * A connection failure (refused, lost, server shutdown, no answer within the statement
//!   timeout plus a margin) fails the group with `cluster store unavailable: …` — a commit whose
//!   answer was lost may have landed, so the error says the outcome is unknown only by being an
//!   error: no write is acknowledged that did not commit. The task drops the connection, marks
//!   the store [`Unwritable`](happn_engine::storage::StoreHealth::Unwritable), and reconnects by
//!   itself with back-off ([`FIRST_RETRY`] doubling to [`MAX_RETRY`]); meanwhile writes fail at
//!   once with the same error. When idle it checks the connection every [`PROBE_INTERVAL`], so
//!   `health()` notices an outage without writes, and a read that finds the database gone asks
//!   for a check at once.

use crate::errors;
use crate::schema::{prefix_end, Sql};
use crate::Counters;
use happn_engine::pubsub::EventKind;
use happn_engine::storage::events::{Event, EventId, Filled, LoggedEvent, Update};
use happn_engine::{Body, Millis, Pattern, Record, StoreError};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, GenericClient, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

/// Upper bound on the operations in one transaction: bounds a group's memory and the wait of its
/// first writer; far above what 32–1000 concurrent writers queue.
pub const MAX_GROUP: usize = 4096;

/// Longest a group waits for the previous group's writers to come back (see `Writer::gather`).
const MAX_GATHER_WAIT: Duration = Duration::from_millis(2);

/// Tries of an update on a path that other nodes keep creating and removing under it.
const MAX_UPDATE_ATTEMPTS: u32 = 5;

/// Reconnect back-off after a connection failure and a first attempt at once: first wait,
/// doubling up to the second.
pub const FIRST_RETRY: Duration = Duration::from_millis(100);
pub const MAX_RETRY: Duration = Duration::from_secs(2);

/// How often an idle writer checks its connection.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) enum Op {
    /// Removes first, then puts.
    Write {
        puts: Vec<Record>,
        removes: Vec<String>,
    },
    /// A plain set (`Store::replace`).
    Replace {
        path: String,
        body: Body,
        now: Millis,
    },
    RemoveMatching(Pattern),
    /// Only an event (cluster mode): a write that changes no record.
    Append,
    /// A read-modify-write of one path (merge, tag), the row locked for the transaction.
    Update {
        path: String,
        update: Update,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    Done,
    Stamps(Millis, Millis),
    Removed(Vec<String>),
    /// What an update put last.
    Updated(Box<Record>),
}

pub(crate) struct Job {
    pub op: Op,
    /// The event logged with the operation (cluster mode), filled in from its outcome.
    pub event: Option<Event>,
    pub reply: oneshot::Sender<Result<Answer, StoreError>>,
}

/// What a committed operation tells its waiter: its outcome, and the id of its event when one
/// was logged with it.
pub(crate) type Answer = (Outcome, Option<EventId>);

pub(crate) enum Msg {
    Job(Job),
    /// Check the connection now (a reader met a connection error).
    Probe,
}

/// Why the store takes no writes, if it does not: set by the writer, read by `health()` and by
/// every write before it is queued (one atomic load while healthy).
pub(crate) use happn_engine::storage::HealthFlag as Health;

/// The writer's connection and its prepared statements.
pub(crate) struct Conn {
    client: Client,
    statements: Statements,
}

/// The writer's prepared statements (see `schema::Sql`).
struct Statements {
    upsert: Statement,
    replace: Statement,
    delete_many: Statement,
    delete_one: Statement,
    lock_range: Statement,
    lock_range_open: Statement,
    log: Statement,
    order_lock: Statement,
    set_logged: Statement,
    lock_one: Statement,
    insert_new: Statement,
}

/// How the writer (re)connects: the settings it needs, shared with the store.
pub(crate) struct Connector {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    pub sql: Arc<Sql>,
    /// `user@host:port/db`, for messages.
    pub target: String,
    /// Cluster mode: the node's name, written as the `origin` of its events; every write to a
    /// system record (`/_SYSTEM/…`) is then logged with a change note for the other nodes.
    pub origin: Option<Arc<str>>,
    /// Client-side bound on any one round of statements (the statement timeout plus a margin):
    /// a server that stopped answering without closing the connection is given up on.
    pub op_timeout: Duration,
    /// Cluster mode: the newest event id this node has seen in the log (its writer's own, its
    /// reader's, the heartbeat's look at the log's end), for the event-log lag metric.
    pub newest_event: std::sync::atomic::AtomicI64,
    /// Cluster mode, once the server took the tail: where the writer hands on its own events
    /// (see `cluster.rs`, "The writer's shortcut").
    pub(crate) tail: std::sync::OnceLock<Arc<crate::cluster::Tail>>,
}

impl Connector {
    /// The log holds an event `id` (at least).
    pub(crate) fn saw_event(&self, id: EventId) {
        self.newest_event.fetch_max(id, Ordering::Relaxed);
    }

    pub(crate) async fn connect(&self) -> Result<Conn, StoreError> {
        let fail = |e: tokio_postgres::Error| errors::unavailable(&format!("cannot connect to {}: {}", self.target, errors::describe(&e)));
        let connect = async {
            let (client, connection) = self.config.connect(self.tls.clone()).await.map_err(fail)?;
            let target = self.target.clone();
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(target = %target, "cluster store writer connection ended: {}", errors::describe(&e));
                }
            });
            let sql = &self.sql;
            let statements = async {
                Ok::<_, tokio_postgres::Error>(Statements {
                    upsert: client.prepare(&sql.upsert).await?,
                    replace: client.prepare(&sql.replace).await?,
                    delete_many: client.prepare(&sql.delete_many).await?,
                    delete_one: client.prepare(&sql.delete_one).await?,
                    lock_range: client.prepare(&sql.lock_range).await?,
                    lock_range_open: client.prepare(&sql.lock_range_open).await?,
                    log: client.prepare(&sql.log).await?,
                    order_lock: client.prepare(&sql.order_lock).await?,
                    set_logged: client.prepare(&sql.set_logged).await?,
                    lock_one: client.prepare(&sql.lock_one).await?,
                    insert_new: client.prepare(&sql.insert_new).await?,
                })
            }
            .await
            .map_err(|e| errors::map(&e, &self.target))?;
            Ok(Conn { client, statements })
        };
        match tokio::time::timeout(self.op_timeout, connect).await {
            Ok(result) => result,
            Err(_) => Err(errors::unavailable(&format!(
                "cannot connect to {}: no answer within {:?}",
                self.target, self.op_timeout
            ))),
        }
    }
}

/// The writer after a connection failure, until it has reconnected.
struct Broken {
    cause: String,
    since: Instant,
    attempts: u32,
    next_attempt: Instant,
    backoff: Duration,
}

pub(crate) struct Writer {
    conn: Option<Conn>,
    connector: Arc<Connector>,
    broken: Option<Broken>,
    health: Arc<Health>,
    rx: mpsc::UnboundedReceiver<Msg>,
    counters: Arc<Counters>,
    last_group: usize,
    last_commit: Duration,
    last_answered: Instant,
}

impl Writer {
    pub(crate) fn new(
        conn: Conn,
        connector: Arc<Connector>,
        health: Arc<Health>,
        rx: mpsc::UnboundedReceiver<Msg>,
        counters: Arc<Counters>,
    ) -> Writer {
        Writer {
            conn: Some(conn),
            connector,
            broken: None,
            health,
            rx,
            counters,
            last_group: 0,
            last_commit: Duration::ZERO,
            last_answered: Instant::now(),
        }
    }

    pub(crate) async fn run(mut self) {
        while let Some(first) = self.next_job().await {
            let group = self.gather(first).await;
            let size = group.len();
            let started = Instant::now();
            self.process(group).await;
            self.last_answered = Instant::now();
            self.last_commit = self.last_answered - started;
            self.last_group = size;
        }
    }

    /// The next job, meanwhile probing an idle connection and reconnecting a broken one when due.
    async fn next_job(&mut self) -> Option<Job> {
        loop {
            let deadline = match &self.broken {
                Some(b) => b.next_attempt,
                None => Instant::now() + PROBE_INTERVAL,
            };
            let wait = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(wait, self.rx.recv()).await {
                Ok(None) => return None,
                Ok(Some(Msg::Job(job))) => return Some(job),
                Ok(Some(Msg::Probe)) if self.broken.is_none() => self.probe().await,
                Ok(Some(Msg::Probe)) => {}
                Err(_) if self.broken.is_some() => self.reconnect().await,
                Err(_) => self.probe().await,
            }
        }
    }

    /// The group to commit: `first`, everything queued behind it, and (briefly) the writers of
    /// the previous group coming back. Without the pause the writers answered by one commit
    /// resubmit just after the next one started with whatever was queued then, and a steady set
    /// of N writers shares each commit about N/2 ways; so when fewer jobs are queued than the
    /// previous group had, wait for that many, but never longer than twice the previous commit
    /// took nor [`MAX_GATHER_WAIT`]. A lone sequential writer (groups of one) never waits.
    /// Twice, not half as the embedded store waits: a commit here is cheap to wait for and
    /// costly to repeat (the ordering lock, a notification to every node, a read on each), so
    /// fewer, larger groups leave the CPU to delivery (measured with 3 nodes at 10k/20k/30k sets/s:
    /// cross-node p99 15/57/60 ms waiting half a commit, 9/13/22 ms waiting two).
    async fn gather(&mut self, first: Job) -> Vec<Job> {
        let mut group = vec![first];
        let target = self.last_group.min(MAX_GROUP);
        let deadline = self.last_answered + (self.last_commit * 2).min(MAX_GATHER_WAIT);
        while group.len() < MAX_GROUP {
            let next = match self.rx.try_recv() {
                Ok(m) => Some(m),
                Err(_) if group.len() >= target => None,
                Err(_) => {
                    let now = Instant::now();
                    if now >= deadline {
                        None
                    } else {
                        tokio::time::timeout(deadline - now, self.rx.recv()).await.ok().flatten()
                    }
                }
            };
            match next {
                Some(Msg::Job(job)) => group.push(job),
                // The group itself will tell whether the connection works.
                Some(Msg::Probe) => {}
                None => break,
            }
        }
        group
    }

    async fn probe(&mut self) {
        let Some(conn) = &self.conn else { return };
        let probe = tokio::time::timeout(self.connector.op_timeout, conn.client.simple_query("")).await;
        let error = match probe {
            Ok(Ok(_)) => return,
            Ok(Err(e)) if errors::is_connection_error(&e) || conn.client.is_closed() => {
                errors::unavailable(&format!("{}: {}", self.connector.target, errors::describe(&e)))
            }
            Ok(Err(_)) => return,
            Err(_) => errors::unavailable(&format!(
                "{}: no answer to a check within {:?}",
                self.connector.target, self.connector.op_timeout
            )),
        };
        self.break_down(&error);
    }

    /// The connection failed: drop it, fail writes fast, and reconnect at once (a connection
    /// killed on a live server, as a failover or an operator does, costs one reconnect), then
    /// with back-off.
    fn break_down(&mut self, error: &StoreError) {
        let cause = errors::message(error).to_string();
        tracing::error!("the cluster store takes no writes until it reconnects (it retries by itself): {cause}");
        self.conn = None;
        self.health.set(Some(cause.clone()));
        let now = Instant::now();
        self.broken = Some(Broken {
            cause,
            since: now,
            attempts: 0,
            next_attempt: now,
            backoff: FIRST_RETRY / 2,
        });
    }

    async fn reconnect(&mut self) {
        let Some(broken) = self.broken.as_mut() else { return };
        broken.attempts += 1;
        match self.connector.connect().await {
            Ok(conn) => {
                tracing::info!(after = ?broken.since.elapsed(), attempts = broken.attempts, "the cluster store reconnected and takes writes again");
                self.conn = Some(conn);
                self.broken = None;
                self.health.set(None);
            }
            Err(e) => {
                broken.backoff = (broken.backoff * 2).min(MAX_RETRY);
                broken.next_attempt = Instant::now() + broken.backoff;
                broken.cause = errors::message(&e).to_string();
                tracing::warn!(attempt = broken.attempts, retry_in = ?broken.backoff, "the cluster store still cannot reconnect: {}", broken.cause);
                self.health.set(Some(broken.cause.clone()));
            }
        }
    }

    async fn process(&mut self, jobs: Vec<Job>) {
        if let Some(broken) = &self.broken {
            let e = StoreError::Io(broken.cause.clone());
            for job in jobs {
                let _ = job.reply.send(Err(e.clone()));
            }
            return;
        }
        match self.commit(&jobs).await {
            Ok(answers) => {
                for (job, answer) in jobs.into_iter().zip(answers) {
                    let _ = job.reply.send(Ok(answer));
                }
            }
            Err(e) if jobs.len() > 1 && self.broken.is_none() => {
                // One refused operation must not fail its neighbours: each alone.
                tracing::warn!(ops = jobs.len(), "cluster store group commit refused, retrying one by one: {e}");
                self.counters.group_failed();
                for job in jobs {
                    let result = match &self.broken {
                        Some(b) => Err(StoreError::Io(b.cause.clone())),
                        None => self
                            .commit(std::slice::from_ref(&job))
                            .await
                            .map(|mut o| o.pop().unwrap_or((Outcome::Done, None))),
                    };
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// Apply `jobs` in order in one transaction and commit it; a connection failure breaks the
    /// writer (see the module docs).
    async fn commit(&mut self, jobs: &[Job]) -> Result<Vec<Answer>, StoreError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(errors::writer_gone());
        };
        let origin = self.connector.origin.as_deref();
        let started = Instant::now();
        let result = tokio::time::timeout(self.connector.op_timeout, apply_group(conn, &self.connector.sql, jobs, origin)).await;
        let error = match result {
            Ok(Ok((outcomes, logged))) => {
                self.counters.committed(jobs.len() as u64, started.elapsed());
                if let Some(newest) = logged.last().map(|e| e.id) {
                    self.connector.saw_event(newest);
                    // Before any waiter hears of its commit, so its event is on its way first.
                    if let Some(tail) = self.connector.tail.get() {
                        tail.offer(logged);
                    }
                }
                return Ok(outcomes);
            }
            Ok(Err(e)) if errors::is_connection_error(&e) || conn.client.is_closed() => {
                errors::unavailable(&format!("{}: {}", self.connector.target, errors::describe(&e)))
            }
            Ok(Err(e)) => return Err(errors::refused(&e)),
            Err(_) => errors::unavailable(&format!(
                "{}: no answer within {:?} (the outcome of the writes in flight is unknown)",
                self.connector.target, self.connector.op_timeout
            )),
        };
        self.break_down(&error);
        Err(error)
    }
}

/// Operations on distinct paths, run as at most three statements (see the module docs).
#[derive(Default)]
struct Segment<'a> {
    deletes: Vec<&'a str>,
    puts: Vec<&'a Record>,
    /// (job index, path, body text, now)
    replaces: Vec<(usize, &'a str, &'a str, Millis)>,
    touched: HashSet<&'a str>,
}

impl Segment<'_> {
    fn statements(&self) -> usize {
        usize::from(!self.deletes.is_empty()) + usize::from(!self.puts.is_empty()) + usize::from(!self.replaces.is_empty())
    }
}

enum Step<'a> {
    Segment(Segment<'a>),
    Remove(usize, &'a Pattern),
    Update(usize, &'a str, &'a Update),
}

fn plan(jobs: &[Job]) -> Vec<Step<'_>> {
    let mut steps = Vec::new();
    let mut seg = Segment::default();
    for (i, job) in jobs.iter().enumerate() {
        match &job.op {
            Op::Write { puts, removes } => {
                // Within one batch removes come first and a later put of a path wins: what is
                // left is at most one put or one delete per path.
                let mut put_paths = HashSet::new();
                let mut last_puts = Vec::new();
                for r in puts.iter().rev() {
                    if put_paths.insert(r.path.as_str()) {
                        last_puts.push(r);
                    }
                }
                let mut deletes = Vec::new();
                for p in removes {
                    if !put_paths.contains(p.as_str()) && !deletes.contains(&p.as_str()) {
                        deletes.push(p.as_str());
                    }
                }
                if put_paths.iter().chain(deletes.iter()).any(|p| seg.touched.contains(p)) {
                    steps.push(Step::Segment(std::mem::take(&mut seg)));
                }
                seg.touched.extend(put_paths);
                seg.touched.extend(deletes.iter().copied());
                seg.deletes.extend(deletes);
                seg.puts.extend(last_puts);
            }
            Op::Replace { path, body, now } => {
                if seg.touched.contains(path.as_str()) {
                    steps.push(Step::Segment(std::mem::take(&mut seg)));
                }
                seg.touched.insert(path);
                seg.replaces.push((i, path, body.json(), *now));
            }
            Op::RemoveMatching(pattern) => {
                if seg.statements() > 0 {
                    steps.push(Step::Segment(std::mem::take(&mut seg)));
                }
                steps.push(Step::Remove(i, pattern));
            }
            Op::Append => {}
            Op::Update { path, update } => {
                if seg.statements() > 0 {
                    steps.push(Step::Segment(std::mem::take(&mut seg)));
                }
                steps.push(Step::Update(i, path, update));
            }
        }
    }
    if seg.statements() > 0 {
        steps.push(Step::Segment(seg));
    }
    steps
}

/// Apply a group: its answers, and the events it logged with their ids, in id order.
async fn apply_group(
    conn: &mut Conn,
    sql: &Sql,
    jobs: &[Job],
    origin: Option<&str>,
) -> Result<(Vec<Answer>, Vec<LoggedEvent>), tokio_postgres::Error> {
    let steps = plan(jobs);
    let mut outcomes = vec![Outcome::Done; jobs.len()];
    let logs = origin.is_some() && jobs.iter().any(|j| j.event.is_some() || touches_system_records(&j.op));
    if let (true, Some(origin)) = (logs, origin) {
        if let Some(sets) = PlainSets::of(jobs) {
            return sets.apply(conn, sql, origin, jobs).await;
        }
    }
    let single = match steps.as_slice() {
        _ if logs => false,
        [] => return Ok((outcomes.into_iter().map(|o| (o, None)).collect(), Vec::new())),
        [Step::Segment(seg)] => seg.statements() == 1,
        [Step::Remove(_, pattern)] => !pattern.is_wildcard(),
        _ => false,
    };
    if single {
        // One statement is its own transaction: no BEGIN/COMMIT round trips.
        run_steps(&conn.client, &conn.statements, &steps, &mut outcomes).await?;
        return Ok((outcomes.into_iter().map(|o| (o, None)).collect(), Vec::new()));
    }
    let client = &conn.client;
    let s = &conn.statements;
    let mut ids = vec![None; jobs.len()];
    let mut logged = Vec::new();
    // Pipelined: BEGIN (and the log's ordering lock, when the group logs: see
    // `schema::EVENT_LOCK`) go out with the first statement, and COMMIT with the logging call,
    // so a group costs two round trips.
    let transaction = async {
        let lock = async {
            match logs {
                true => client.execute(&s.order_lock, &[]).await.map(drop),
                false => Ok(()),
            }
        };
        let (begun, locked, ran) = tokio::join!(client.batch_execute("BEGIN"), lock, run_steps(client, s, &steps, &mut outcomes));
        begun?;
        locked?;
        ran?;
        let (events, origin) = match (logs, origin) {
            (true, Some(origin)) => (events_of(jobs, &outcomes), origin),
            _ => (Vec::new(), ""),
        };
        if events.is_empty() {
            return client.batch_execute("COMMIT").await;
        }
        // Should the call fail, PostgreSQL answers the COMMIT behind it with a rollback.
        let (taken, committed) = tokio::join!(log_events(client, s, sql, origin, &events), client.batch_execute("COMMIT"));
        let taken = taken?;
        committed?;
        for ((job, event), id) in events.into_iter().zip(taken) {
            ids[job] = Some(id);
            logged.push(LoggedEvent {
                id,
                origin: origin.to_string(),
                event,
            });
        }
        Ok(())
    };
    if let Err(e) = transaction.await {
        // A refused statement left the transaction aborted (or it was rolled back already, and
        // this only draws a warning): end it, so the connection takes the one-by-one retry.
        if !client.is_closed() {
            let _ = client.batch_execute("ROLLBACK").await;
        }
        return Err(e);
    }
    Ok((outcomes.into_iter().zip(ids).collect(), logged))
}

/// A group of plain sets, each logging its own event as `DataService::set_logged` makes it:
/// applied with one call of `happn_set` (migration 3), one statement and one round trip.
#[derive(Default)]
struct PlainSets<'a> {
    /// One row per path: its last body, its first write's time, its last write's time.
    row_paths: Vec<&'a str>,
    row_bodies: Vec<&'a str>,
    row_created: Vec<Millis>,
    row_modified: Vec<Millis>,
    /// One event per write, in order.
    event_paths: Vec<&'a str>,
    event_data: Vec<&'a str>,
    event_times: Vec<Millis>,
    event_publish: Vec<&'a str>,
}

impl<'a> PlainSets<'a> {
    /// `None` unless every job is a plain set of a client record whose event is the one a
    /// plain set logs (its data the body, no tag, no move, stamps left to the store).
    fn of(jobs: &'a [Job]) -> Option<PlainSets<'a>> {
        let mut sets = PlainSets::default();
        let mut rows: HashMap<&str, usize> = HashMap::new();
        for job in jobs {
            let (Op::Replace { path, body, now }, Some(event)) = (&job.op, &job.event) else {
                return None;
            };
            let plain = event.kind == EventKind::Set
                && event.path == *path
                && event.moved_to.is_none()
                && event.tag.is_none()
                && event.created.is_none()
                && event.modified.is_none()
                && event.data.as_deref() == Some(body.json())
                && !is_system(path);
            if !plain {
                return None;
            }
            match rows.get(path.as_str()) {
                Some(&row) => {
                    sets.row_bodies[row] = body.json();
                    sets.row_modified[row] = sets.row_modified[row].max(*now);
                }
                None => {
                    rows.insert(path, sets.row_paths.len());
                    sets.row_paths.push(path);
                    sets.row_bodies.push(body.json());
                    sets.row_created.push(*now);
                    sets.row_modified.push(*now);
                }
            }
            sets.event_paths.push(path);
            sets.event_data.push(body.json());
            sets.event_times.push(*now);
            sets.event_publish.push(&event.publish);
        }
        Some(sets)
    }

    async fn apply(
        self,
        conn: &Conn,
        sql: &Sql,
        origin: &str,
        jobs: &[Job],
    ) -> Result<(Vec<Answer>, Vec<LoggedEvent>), tokio_postgres::Error> {
        let row = conn
            .client
            .query_one(
                &conn.statements.set_logged,
                &[
                    &sql.sequence,
                    &sql.channel,
                    &origin,
                    &self.row_paths,
                    &self.row_bodies,
                    &self.row_created,
                    &self.row_modified,
                    &self.event_paths,
                    &self.event_data,
                    &self.event_times,
                    &self.event_publish,
                ],
            )
            .await?;
        let (created, modified, ids): (Vec<Millis>, Vec<Millis>, Vec<EventId>) = (row.get(0), row.get(1), row.get(2));
        let mut answers = Vec::with_capacity(jobs.len());
        let mut logged = Vec::with_capacity(jobs.len());
        for (i, job) in jobs.iter().enumerate() {
            // One of each per write, by the function's construction; were one missing, the
            // write's waiter is told its outcome is unknown rather than given another's.
            let (Some(&c), Some(&m), Some(&id), Some(event)) = (created.get(i), modified.get(i), ids.get(i), &job.event) else {
                answers.push((Outcome::Done, None));
                continue;
            };
            answers.push((Outcome::Stamps(c, m), Some(id)));
            let mut event = event.clone();
            event.fill(Filled::Stamps(c, m));
            logged.push(LoggedEvent {
                id,
                origin: origin.to_string(),
                event,
            });
        }
        Ok((answers, logged))
    }
}

/// Whether an operation writes a system record, whose change the other nodes must hear of even
/// when no client event goes with it.
fn touches_system_records(op: &Op) -> bool {
    match op {
        Op::Write { puts, removes } => puts.iter().any(|r| is_system(&r.path)) || removes.iter().any(|p| is_system(p)),
        Op::Replace { path, .. } => is_system(path),
        Op::RemoveMatching(pattern) => is_system(pattern.literal_prefix()) || pattern.literal_prefix().len() < SYSTEM.len(),
        Op::Append => false,
        Op::Update { path, .. } => is_system(path),
    }
}

const SYSTEM: &str = "/_SYSTEM/";

fn is_system(path: &str) -> bool {
    path.starts_with(SYSTEM)
}

/// The events of a group in order, each with its job: a job's own event (filled in from its
/// outcome) after the change notes of the system records it wrote.
fn events_of(jobs: &[Job], outcomes: &[Outcome]) -> Vec<(usize, Event)> {
    let mut events = Vec::new();
    for (i, (job, outcome)) in jobs.iter().zip(outcomes).enumerate() {
        let mut system: Vec<&str> = match (&job.op, outcome) {
            (Op::Write { puts, removes }, _) => removes
                .iter()
                .map(String::as_str)
                .chain(puts.iter().map(|r| r.path.as_str()))
                .collect(),
            (Op::Replace { path, .. }, _) => vec![path.as_str()],
            (Op::Update { .. }, Outcome::Updated(r)) => vec![r.path.as_str()],
            (Op::RemoveMatching(_), Outcome::Removed(paths)) => paths.iter().map(String::as_str).collect(),
            _ => Vec::new(),
        };
        system.retain(|p| is_system(p));
        system.dedup();
        events.extend(system.into_iter().map(|p| (i, Event::change(p))));
        if let Some(event) = &job.event {
            let mut event = event.clone();
            match outcome {
                Outcome::Stamps(created, modified) => event.fill(Filled::Stamps(*created, *modified)),
                Outcome::Removed(paths) => event.fill(Filled::Removed(paths.len())),
                Outcome::Updated(record) => event.fill(Filled::Record(record)),
                Outcome::Done => {}
            }
            events.push((i, event));
        }
    }
    events
}

/// The log's code for an event's kind.
pub(crate) fn kind_code(kind: EventKind) -> i16 {
    match kind {
        EventKind::Set => 0,
        EventKind::Remove => 1,
        EventKind::All => 2,
    }
}

/// Log `events` (each with its job) in the open transaction with one call of
/// `happn_log` (migration 2): under the ordering lock (held to the commit) it takes their ids
/// from the sequence in order, inserts them, and notifies the readers (delivered at the
/// commit). Their ids, in order.
async fn log_events(
    client: &Client,
    s: &Statements,
    sql: &Sql,
    origin: &str,
    events: &[(usize, Event)],
) -> Result<Vec<EventId>, tokio_postgres::Error> {
    let kinds: Vec<i16> = events.iter().map(|(_, e)| kind_code(e.kind)).collect();
    let paths: Vec<&str> = events.iter().map(|(_, e)| e.path.as_str()).collect();
    let moved: Vec<Option<&str>> = events.iter().map(|(_, e)| e.moved_to.as_deref()).collect();
    let data: Vec<Option<&str>> = events.iter().map(|(_, e)| e.data.as_deref()).collect();
    let created: Vec<Option<i64>> = events.iter().map(|(_, e)| e.created).collect();
    let modified: Vec<Option<i64>> = events.iter().map(|(_, e)| e.modified).collect();
    let tags: Vec<Option<&str>> = events.iter().map(|(_, e)| e.tag.as_deref()).collect();
    let publish: Vec<&str> = events.iter().map(|(_, e)| e.publish.as_str()).collect();
    let row = client
        .query_one(
            &s.log,
            &[
                &sql.sequence,
                &sql.channel,
                &origin,
                &kinds,
                &paths,
                &moved,
                &data,
                &created,
                &modified,
                &tags,
                &publish,
            ],
        )
        .await?;
    Ok(row.get(0))
}

async fn run_steps<C: GenericClient + Sync>(
    client: &C,
    s: &Statements,
    steps: &[Step<'_>],
    outcomes: &mut [Outcome],
) -> Result<(), tokio_postgres::Error> {
    for step in steps {
        match step {
            Step::Segment(seg) => {
                if !seg.deletes.is_empty() {
                    client.execute(&s.delete_many, &[&seg.deletes]).await?;
                }
                if !seg.puts.is_empty() {
                    let paths: Vec<&str> = seg.puts.iter().map(|r| r.path.as_str()).collect();
                    let bodies: Vec<&str> = seg.puts.iter().map(|r| r.data.json()).collect();
                    let created: Vec<i64> = seg.puts.iter().map(|r| r.created).collect();
                    let modified: Vec<i64> = seg.puts.iter().map(|r| r.modified).collect();
                    let tags: Vec<Option<&str>> = seg.puts.iter().map(|r| r.tag.as_deref()).collect();
                    client.execute(&s.upsert, &[&paths, &bodies, &created, &modified, &tags]).await?;
                }
                if !seg.replaces.is_empty() {
                    let paths: Vec<&str> = seg.replaces.iter().map(|r| r.1).collect();
                    let bodies: Vec<&str> = seg.replaces.iter().map(|r| r.2).collect();
                    let nows: Vec<i64> = seg.replaces.iter().map(|r| r.3).collect();
                    let rows = client.query(&s.replace, &[&paths, &bodies, &nows]).await?;
                    // Paths are distinct within a segment: one row each.
                    let job_of: HashMap<&str, usize> = seg.replaces.iter().map(|r| (r.1, r.0)).collect();
                    for row in &rows {
                        if let Some(i) = job_of.get(row.get::<_, &str>(0)) {
                            outcomes[*i] = Outcome::Stamps(row.get(1), row.get(2));
                        }
                    }
                }
            }
            Step::Remove(i, pattern) if !pattern.is_wildcard() => {
                let rows = client.query(&s.delete_one, &[&pattern.as_str()]).await?;
                outcomes[*i] = Outcome::Removed(rows.iter().map(|r| r.get::<_, String>(0)).collect());
            }
            Step::Update(i, path, update) => {
                // The record is locked for the transaction, so another node's write to it waits
                // for the commit. When there is none, there is nothing to lock: the new record is
                // inserted only if the path is still free, and if another transaction took it
                // meanwhile (the insert waits for that one to commit), it is read and locked again.
                let mut claimed = None;
                let mut attempts = 0;
                let puts = loop {
                    attempts += 1;
                    let row = client.query_opt(&s.lock_one, &[path]).await?;
                    let old = match row.as_ref().map(crate::record) {
                        Some(Ok(r)) => Some(r),
                        // An unreadable record is replaced, as a plain set would.
                        Some(Err(_)) => Some(Record::new(*path, Body::empty(), 0)),
                        None => None,
                    };
                    let puts = update(old.as_ref());
                    if old.is_some() || attempts >= MAX_UPDATE_ATTEMPTS {
                        break puts;
                    }
                    let Some(at) = puts.iter().position(|r| r.path == *path) else {
                        break puts;
                    };
                    let r = &puts[at];
                    let inserted = client
                        .execute(&s.insert_new, &[&r.path, &r.data.json(), &r.created, &r.modified, &r.tag])
                        .await?;
                    if inserted == 1 {
                        claimed = Some(at);
                        break puts;
                    }
                };
                let rest: Vec<&Record> = puts
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| Some(*k) != claimed)
                    .map(|(_, r)| r)
                    .collect();
                if !rest.is_empty() {
                    let paths: Vec<&str> = rest.iter().map(|r| r.path.as_str()).collect();
                    let bodies: Vec<&str> = rest.iter().map(|r| r.data.json()).collect();
                    let created: Vec<i64> = rest.iter().map(|r| r.created).collect();
                    let modified: Vec<i64> = rest.iter().map(|r| r.modified).collect();
                    let tags: Vec<Option<&str>> = rest.iter().map(|r| r.tag.as_deref()).collect();
                    client.execute(&s.upsert, &[&paths, &bodies, &created, &modified, &tags]).await?;
                }
                if let Some(last) = puts.into_iter().last() {
                    outcomes[*i] = Outcome::Updated(Box::new(last));
                }
            }
            Step::Remove(i, pattern) => {
                let prefix = pattern.literal_prefix();
                let rows = match prefix_end(prefix) {
                    Some(end) => client.query(&s.lock_range, &[&prefix, &end]).await?,
                    None => client.query(&s.lock_range_open, &[&prefix]).await?,
                };
                let matched: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).filter(|p| pattern.matches(p)).collect();
                if !matched.is_empty() {
                    client.execute(&s.delete_many, &[&matched]).await?;
                }
                outcomes[*i] = Outcome::Removed(matched);
            }
        }
    }
    Ok(())
}
