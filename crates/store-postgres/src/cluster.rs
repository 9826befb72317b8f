//! Cluster mode: the node's reader of the event log, its heartbeat in `happn_members`, and the
//! log's trimming. (The writer logs events: `writer.rs`.)
//!
//! # The reader
//! One dedicated connection per node `LISTEN`s on the schema's channel; a notification (they
//! coalesce: one wake-up may cover many commits) or, failing one, a poll every
//! [`ClusterOptions::poll_interval`] makes it read `id > last ORDER BY id` in batches and hand
//! them on in order. Ids become visible in id order (the writer's ordering lock), so remembering
//! the last id read is enough: nothing is skipped, nothing read twice. When the connection fails
//! the reader reconnects with back-off and goes on from the last id it read: events committed
//! meanwhile are still in the log. Only a reader that fell behind the trim horizon (events it had
//! not read were trimmed) misses events, and it says so with [`TailItem::Gap`].
//!
//! The reader waits for the server to take each batch (a bounded channel), so a slow node
//! falls behind in the log, not in memory.
//!
//! # The writer's shortcut
//! The events of this node's own writes need not make the round trip through the log: at
//! commit the writer knows them and their ids. When they follow the last id handed on directly
//! (nothing committed before them is unread) and the channel has room, the writer hands them on
//! itself ([`Tail::offer`]), and the reader skips the notification of that commit. Otherwise
//! (another node's events came between, or the channel is full) the reader reads them from the
//! log as any other. One lock over "the last id handed on" keeps the two in id order, so the
//! server sees exactly the sequence the log holds; the shortcut saves a notification and a read
//! on the way from a write to its reply (event before reply, docs/CLUSTER.md).

use crate::errors;
use crate::schema::TRIM_LOCK;
use crate::writer::Connector;
use deadpool_postgres::Pool;
use happn_engine::pubsub::EventKind;
use happn_engine::storage::events::{Event, EventId, LoggedEvent, TailItem};
use happn_engine::StoreError;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio_postgres::{AsyncMessage, Client, Row};

/// Settings of a node in cluster mode.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The node's name: unique among live nodes, the `origin` of its events.
    pub node: String,
    /// Where clients reach this node (shown in `cluster status`).
    pub url: String,
    /// Events older than this are trimmed.
    pub retention: Duration,
    /// At most this many events are kept (the oldest go first).
    pub max_events: i64,
    /// How often the node writes its heartbeat (and trims the log, if no other node does).
    pub heartbeat: Duration,
    /// A node whose heartbeat is older than this is shown as down; ten times older, it is removed.
    pub member_ttl: Duration,
    /// How often the reader looks at the log without a notification.
    pub poll_interval: Duration,
    /// Events read per statement.
    pub read_batch: i64,
}

impl ClusterOptions {
    pub fn new(node: impl Into<String>, url: impl Into<String>) -> ClusterOptions {
        ClusterOptions {
            node: node.into(),
            url: url.into(),
            retention: Duration::from_secs(600),
            max_events: 2_000_000,
            heartbeat: Duration::from_secs(1),
            member_ttl: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            read_batch: 1000,
        }
    }
}

/// A node as `happn_members` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub name: String,
    pub url: String,
    /// Seconds since the Unix epoch.
    pub started_at: f64,
    /// Seconds since its last heartbeat.
    pub heartbeat_age: f64,
    /// Its heartbeat is younger than the member TTL.
    pub alive: bool,
}

/// Batches of events the server may hold before the reader waits for it.
const TAIL_CHANNEL: usize = 64;

/// The reader's reconnect back-off.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(2);

/// Where this node's events go on their way to its subscribers (see the module docs).
pub(crate) struct Tail {
    tx: mpsc::Sender<TailItem>,
    /// The last id handed on; held while handing on, so batches leave in id order.
    last: tokio::sync::Mutex<EventId>,
    /// A copy of `last` that needs no lock: the reader's next `id > …`, and the notifications
    /// it need not act on.
    handed: AtomicI64,
}

impl Tail {
    fn new(tx: mpsc::Sender<TailItem>, after: EventId) -> Tail {
        Tail {
            tx,
            last: tokio::sync::Mutex::new(after),
            handed: AtomicI64::new(after),
        }
    }

    fn handed(&self) -> EventId {
        self.handed.load(Ordering::Acquire)
    }

    /// The writer's events of one commit, ids ascending: handed on at once if they directly
    /// follow the last id handed on, without waiting for the lock or for room in the channel.
    /// `false`: not handed on, the reader will read them from the log.
    pub(crate) fn offer(&self, events: Vec<LoggedEvent>) -> bool {
        let (Some(first), Some(newest)) = (events.first().map(|e| e.id), events.last().map(|e| e.id)) else {
            return false;
        };
        // Ids taken under the ordering lock are consecutive; a hole means a rolled-back id.
        if events.windows(2).any(|w| w[1].id != w[0].id + 1) {
            return false;
        }
        let Ok(mut last) = self.last.try_lock() else {
            return false;
        };
        if *last + 1 != first || self.tx.try_send(TailItem::Events(events)).is_err() {
            return false;
        }
        *last = newest;
        self.handed.store(newest, Ordering::Release);
        true
    }
}

/// A node's cluster machinery.
pub(crate) struct Node {
    options: ClusterOptions,
    connector: Arc<Connector>,
    /// The id the reader starts after: the log's last id when the node started.
    start_after: EventId,
    tail_taken: AtomicBool,
    _heartbeat: AbortOnDrop,
}

/// A task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Node {
    /// Join the cluster: refuse a name a live node has, write the first heartbeat, note where
    /// the log stands, and start heartbeating and trimming.
    pub(crate) async fn start(options: ClusterOptions, connector: Arc<Connector>, pool: Pool) -> Result<Node, StoreError> {
        let target = connector.target.clone();
        // Tells this process from another of the same name (a restart, a clash).
        let instance = happn_engine::data::unique_id();
        let client = pool.get().await.map_err(|e| errors::pool(e, &target))?;
        let sql = &connector.sql;
        let map = |e: tokio_postgres::Error| errors::map(&e, &target);
        let members = client.query(&sql.members, &[]).await.map_err(map)?;
        if let Some(clash) = members
            .iter()
            .map(|r| member(r, options.member_ttl))
            .find(|m| m.name == options.node && m.alive)
        {
            return Err(StoreError::Io(format!(
                "cluster store: a live node is already named {:?} (at {}, heartbeat {:.1} s ago); give this one another name",
                clash.name, clash.url, clash.heartbeat_age
            )));
        }
        client
            .execute(&sql.heartbeat, &[&options.node, &instance, &options.url])
            .await
            .map_err(map)?;
        let row = client.query_one(&sql.last_event, &[]).await.map_err(map)?;
        let start_after: i64 = row.get::<_, i64>(0).max(row.get::<_, i64>(1));
        drop(client);
        connector.saw_event(start_after);
        let heartbeat = tokio::spawn(heartbeat_and_trim(options.clone(), instance, connector.clone(), pool.clone()));
        tracing::info!(node = %options.node, after = start_after, "joined the cluster");
        Ok(Node {
            options,
            connector,
            start_after,
            tail_taken: AtomicBool::new(false),
            _heartbeat: AbortOnDrop(heartbeat),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.options.node
    }

    /// Start the reader and hand over what it reads (once).
    pub(crate) fn take_tail(&self) -> Option<mpsc::Receiver<TailItem>> {
        if self.tail_taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        let (tx, rx) = mpsc::channel(TAIL_CHANNEL);
        let tail = Arc::new(Tail::new(tx, self.start_after));
        // Only here is the tail made, and only once (`tail_taken`).
        let _ = self.connector.tail.set(tail.clone());
        let reader = Reader {
            connector: self.connector.clone(),
            options: self.options.clone(),
            tail,
        };
        tokio::spawn(reader.run());
        Some(rx)
    }

    pub(crate) fn member_ttl(&self) -> Duration {
        self.options.member_ttl
    }
}

/// A row of `members`, alive when its heartbeat is younger than `ttl`.
pub(crate) fn member(row: &Row, ttl: Duration) -> Member {
    let heartbeat_age: f64 = row.get(4);
    Member {
        name: row.get(0),
        url: row.get(1),
        started_at: row.get(3),
        heartbeat_age,
        alive: heartbeat_age < ttl.as_secs_f64(),
    }
}

/// Heartbeat every `options.heartbeat`, and note where the log ends (the lag metric); every fifth
/// beat, trim the log and drop long-dead members (one node at a time: whoever gets the trim lock).
async fn heartbeat_and_trim(options: ClusterOptions, instance: String, connector: Arc<Connector>, pool: Pool) {
    let sql = &connector.sql;
    let mut beat = tokio::time::interval(options.heartbeat);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        beat.tick().await;
        n += 1;
        let Ok(mut client) = pool.get().await else {
            continue;
        };
        if let Err(e) = client.execute(&sql.heartbeat, &[&options.node, &instance, &options.url]).await {
            tracing::debug!("cluster heartbeat failed: {}", errors::describe(&e));
            continue;
        }
        if let Ok(row) = client.query_one(&sql.newest_event, &[]).await {
            connector.saw_event(row.get::<_, i64>(0));
        }
        if n % 5 != 0 {
            continue;
        }
        let trim = async {
            let txn = client.transaction().await?;
            let locked: bool = txn.query_one("SELECT pg_try_advisory_xact_lock($1)", &[&TRIM_LOCK]).await?.get(0);
            if !locked {
                return Ok(None);
            }
            let retention = options.retention.as_secs_f64();
            let trimmed = txn.query_opt(&sql.trim, &[&retention, &options.max_events]).await?;
            let expire = (options.member_ttl * 10).as_secs_f64();
            txn.execute(&sql.expire_members, &[&expire]).await?;
            txn.commit().await?;
            Ok::<_, tokio_postgres::Error>(trimmed.map(|r| r.get::<_, i64>(0)))
        };
        match trim.await {
            Ok(Some(through)) => tracing::debug!(through, "cluster event log trimmed"),
            Ok(None) => {}
            Err(e) => tracing::debug!("cluster event log trim failed: {}", errors::describe(&e)),
        }
    }
}

struct Reader {
    connector: Arc<Connector>,
    options: ClusterOptions,
    tail: Arc<Tail>,
}

/// Why the reader stopped reading.
enum Stop {
    /// The server dropped the tail: the node is stopping.
    Closed,
    /// The connection failed; reconnect and go on from the last id.
    Lost(String),
}

impl Reader {
    async fn run(mut self) {
        let mut backoff = FIRST_RETRY / 2;
        loop {
            match self.session().await {
                Stop::Closed => return,
                Stop::Lost(cause) => {
                    tracing::warn!(after = self.tail.handed(), retry_in = ?backoff, "cluster event reader lost its connection (it resumes from the last event it read): {cause}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).clamp(FIRST_RETRY, MAX_RETRY);
                }
            }
            if self.tail.tx.is_closed() {
                return;
            }
        }
    }

    /// One connection's worth of reading: listen, then read whenever told (or polled).
    async fn session(&mut self) -> Stop {
        let c = &self.connector;
        let (client, mut connection) = match c.config.connect(c.tls.clone()).await {
            Ok(pair) => pair,
            Err(e) => return Stop::Lost(format!("cannot connect to {}: {}", c.target, errors::describe(&e))),
        };
        let wake = Arc::new(Notify::new());
        let gone = Arc::new(AtomicBool::new(false));
        let _pump = {
            let (wake, gone, tail) = (wake.clone(), gone.clone(), self.tail.clone());
            AbortOnDrop(tokio::spawn(async move {
                loop {
                    match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        // The payload is the newest id of the commit; the writer may have handed
                        // it on already (a payload that does not parse wakes the reader).
                        Some(Ok(AsyncMessage::Notification(n))) => {
                            if n.payload().parse::<EventId>().map_or(true, |id| id > tail.handed()) {
                                wake.notify_one();
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break,
                    }
                }
                gone.store(true, Ordering::Release);
                wake.notify_one();
            }))
        };
        let listen = format!("LISTEN {}", crate::schema::quote_ident(&c.sql.channel));
        if let Err(e) = client.batch_execute(&listen).await {
            return Stop::Lost(errors::describe(&e));
        }
        let statement = match client.prepare(&c.sql.read_events).await {
            Ok(s) => s,
            Err(e) => return Stop::Lost(errors::describe(&e)),
        };
        tracing::debug!(after = self.tail.handed(), "cluster event reader listening");
        loop {
            // Read first: what committed while the node was not listening is in the log.
            if let Err(stop) = self.read_all(&client, &statement).await {
                return stop;
            }
            if gone.load(Ordering::Acquire) || client.is_closed() {
                return Stop::Lost("the connection closed".into());
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(self.options.poll_interval) => {}
                _ = self.tail.tx.closed() => return Stop::Closed,
            }
        }
    }

    /// Read and hand on everything after the last id handed on.
    async fn read_all(&mut self, client: &Client, statement: &tokio_postgres::Statement) -> Result<(), Stop> {
        loop {
            let after = self.tail.handed();
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&after, &self.options.read_batch];
            let read = client.query(statement, &params);
            let rows = match tokio::time::timeout(self.connector.op_timeout, read).await {
                Ok(Ok(rows)) => rows,
                Ok(Err(e)) => return Err(Stop::Lost(errors::describe(&e))),
                Err(_) => return Err(Stop::Lost(format!("no answer within {:?}", self.connector.op_timeout))),
            };
            let horizon: i64 = rows.first().map_or(0, |r| r.get(0));
            // The writer may have handed on some of these meanwhile: what follows `last` is new.
            let mut last = self.tail.last.lock().await;
            if horizon > *last {
                // Events after `last` were trimmed before this node read them.
                let gap = TailItem::Gap {
                    after: *last,
                    resumed_at: horizon,
                };
                tracing::error!(
                    after = *last,
                    resumed_at = horizon,
                    "this node fell behind the cluster event log's trim horizon: events were lost for its subscribers"
                );
                if self.tail.tx.send(gap).await.is_err() {
                    return Err(Stop::Closed);
                }
                *last = horizon;
                self.tail.handed.store(horizon, Ordering::Release);
                continue;
            }
            let read: Vec<LoggedEvent> = rows.iter().filter_map(logged_event).collect();
            let full = read.len() as i64 >= self.options.read_batch;
            let events: Vec<LoggedEvent> = read.into_iter().filter(|e| e.id > *last).collect();
            if let Some(newest) = events.last().map(|e| e.id) {
                self.connector.saw_event(newest);
                if self.tail.tx.send(TailItem::Events(events)).await.is_err() {
                    return Err(Stop::Closed);
                }
                *last = newest;
                self.tail.handed.store(newest, Ordering::Release);
            }
            drop(last);
            if !full {
                return Ok(());
            }
        }
    }
}

/// An event row of `read_events` (`None` for the horizon-only row of an empty read).
fn logged_event(row: &Row) -> Option<LoggedEvent> {
    let id: Option<i64> = row.get(1);
    let kind = match row.get::<_, Option<i16>>(3)? {
        0 => EventKind::Set,
        1 => EventKind::Remove,
        _ => EventKind::All,
    };
    let data: Option<crate::JsonText> = row.get(5);
    Some(LoggedEvent {
        id: id?,
        origin: row.get(2),
        event: Event {
            kind,
            path: row.get(4),
            moved_to: row.get(10),
            data: data.map(|d| d.0.to_string()),
            created: row.get(6),
            modified: row.get(7),
            tag: row.get(8),
            publish: row.get(9),
        },
    })
}
