//! happn-store-postgres: the engine's [`Store`] on PostgreSQL, the storage of cluster mode
//! (docs/CLUSTER.md): several happn-rs nodes sharing one database.
//!
//! # Layout
//! One table per schema (default `public`), created by versioned migrations when a store opens
//! (`schema` module; safe with several nodes starting at once):
//!
//! ```sql
//! happn_data(path text COLLATE "C" PRIMARY KEY, data json NOT NULL, created bigint NOT NULL,
//!            modified bigint NOT NULL, modified_by text, tag text)
//! ```
//!
//! an image of the original's Mongo document (`{path, data, created, modified, modifiedBy,
//! _tag}`), so its exports map straight in. `COLLATE "C"` makes paths compare as UTF-8 bytes,
//! the order every store keeps, whatever the database's locale. `find(pattern)` and
//! `remove_matching(pattern)` read only the primary-key range of the pattern's literal prefix
//! (`path >= prefix AND path < prefix_end`, `prefix_end` bumping the last code point that can be
//! bumped) and the engine's one matcher ([`Pattern::matches`]) decides: SQL only narrows.
//!
//! # Why `data` is `json`, not `jsonb`
//! A record must come back exactly as written: key order, `18446744073709551615`, `0.1`, the
//! client's own spacing (the conformance suite checks it; happn clients see key order). `jsonb`
//! reorders keys, drops duplicates and normalises numbers into `numeric`, so it would change
//! documents. `json` keeps the text byte for byte while PostgreSQL still checks it is JSON and
//! still offers every JSON operator (`data->>'field'`), and an operator who wants indexed
//! queries can add an expression index on `(data::jsonb -> …)` without this crate knowing.
//! Criteria are evaluated by the engine's query code anyway (the one truth for every backend),
//! so a second `jsonb` column would double every row's write cost for nothing the engine uses.
//! `json` also accepts `\u0000` escapes, which `jsonb` refuses.
//!
//! # Writes: group commit
//! Every mutation goes to one writer task with its own connection (`writer` module): it takes
//! everything queued (up to [`MAX_GROUP`] operations) into ONE transaction, a handful of
//! array statements rather than one per operation, and answers each waiter only after `COMMIT`.
//! A refused group is rolled back and retried one operation per transaction. Each
//! `write(batch)`, `replace` and `remove_matching` is atomic because its group is. In cluster
//! mode the group's events are logged in the same transaction, under the log's ordering lock
//! taken first (docs/CLUSTER.md).
//!
//! # Reads
//! Through a bounded pool ([`PgOptions::pool_size`] connections, deadpool-postgres), one
//! statement each, so a read sees whole transactions only: never half a batch or half a group.
//! Read-your-writes holds because a write is answered after its commit and every read is a new
//! statement. No mirror is kept in memory: other nodes write the same table.
//!
//! # Failures
//! While the database cannot be reached every write fails at once and every read that needs the
//! database fails with `cluster store unavailable: <cause>` (`StoreError::Io`), and
//! [`Store::health`] says `Unwritable` with that reason; the writer reconnects by itself
//! (100 ms back-off doubling to 2 s) and the pool replaces dead connections, so nothing needs a
//! restart. An acknowledged write is committed; a write in flight when the connection dropped
//! gets the error (it may or may not have landed: PostgreSQL cannot say once the connection is
//! gone). Every statement runs under `statement_timeout` ([`PgOptions::statement_timeout`]) and
//! the client gives up a few seconds after it, so a database that stops answering without
//! closing connections is noticed too.
//!
//! # Durability
//! `ok` means committed with the server's `synchronous_commit` (default `on`: flushed to its
//! write-ahead log; with synchronous standbys configured, also there). The store does not
//! override it, so an operator's choice (`remote_apply`, or `off` for speed) holds.
//!
//! # TLS
//! `sslmode=require` (or `verify-ca` / `verify-full`) in the URL connects through rustls and
//! checks the server certificate against the Mozilla roots plus `sslrootcert`; see `config`.

mod cluster;
mod config;
mod errors;
mod schema;
mod writer;

pub use cluster::{ClusterOptions, Member};
pub use errors::UNAVAILABLE;
pub use schema::{MIGRATIONS, MIGRATION_LOCK};
pub use writer::{FIRST_RETRY, MAX_GROUP, MAX_RETRY, PROBE_INTERVAL};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use happn_engine::storage::events::{Event, EventId, EventLog, TailItem, Update};
use happn_engine::storage::{Store, StoreHealth, WriteBatch};
use happn_engine::{Body, Millis, Pattern, Record, StoreError};
use schema::{prefix_end, Sql};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::Row;
use writer::{Connector, Health, Job, Msg, Op, Outcome, Writer};

/// For tests that need the database `scripts/pg.sh` starts (this crate's, the server's); not an
/// API.
#[doc(hidden)]
pub mod testing {
    /// The URL of the test database (`HAPPN_PG_URL`), or `None` when `HAPPN_PG_SKIP=1` says to
    /// skip. Without either it panics with `how`, the command to run the test through
    /// `scripts/pg.sh`: a missing database must not pass for a green run.
    pub fn url(how: &str) -> Option<String> {
        match std::env::var("HAPPN_PG_URL") {
            Ok(url) if !url.is_empty() => Some(url),
            _ if std::env::var("HAPPN_PG_SKIP").as_deref() == Ok("1") => {
                eprintln!("HAPPN_PG_SKIP=1: PostgreSQL test skipped");
                None
            }
            _ => panic!(
                "HAPPN_PG_URL is not set: run the PostgreSQL tests through scripts/pg.sh, which starts a private \
                 PostgreSQL and sets it: `{how}` (or set HAPPN_PG_SKIP=1 to skip them)"
            ),
        }
    }
}

/// Rows a snapshot ([`Store::snapshot`]) reads per round trip.
const SNAPSHOT_BATCH: i32 = 1000;

/// How to reach the database and how to use it.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// A `postgres://` URL or libpq key=value string (see the crate docs on TLS).
    pub url: String,
    /// The schema holding the tables (created if missing). Several happn clusters can share a
    /// database, one schema each.
    pub schema: String,
    /// Connections the readers may hold at once (the writer has one more of its own).
    pub pool_size: usize,
    /// The server aborts any statement running longer (`statement_timeout`).
    pub statement_timeout: Duration,
    /// Longest wait for a new connection, and for a pooled one when all are busy.
    pub connect_timeout: Duration,
    /// `application_name` of the store's connections (seen in `pg_stat_activity`), unless the
    /// URL sets one.
    pub application_name: String,
    /// Cluster mode: the event log, membership and trimming (see [`ClusterOptions`]). `None`:
    /// the store keeps records only.
    pub cluster: Option<ClusterOptions>,
}

impl PgOptions {
    pub fn new(url: impl Into<String>) -> PgOptions {
        PgOptions {
            url: url.into(),
            schema: "public".into(),
            pool_size: 8,
            statement_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            application_name: "happn-rs".into(),
            cluster: None,
        }
    }
}

/// Counters of the writer (diagnostics, and the tests' proof of group commit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Transactions committed by the writer (a group, or one operation of a refused group).
    pub commits: u64,
    /// Operations (`write`, `replace`, `remove_matching` calls) committed.
    pub operations: u64,
    /// Groups that were refused and retried one operation at a time.
    pub group_failures: u64,
}

/// The writer's commits, operations, failed groups, durations and group sizes.
pub(crate) type Counters = happn_engine::storage::stats::CommitCounters;

/// The PostgreSQL store: see the crate docs.
pub struct PgStore {
    pool: Pool,
    sql: Arc<Sql>,
    target: String,
    op_timeout: Duration,
    health: Arc<Health>,
    tx: mpsc::UnboundedSender<Msg>,
    counters: Arc<Counters>,
    cluster: Option<cluster::Node>,
    connector: Arc<Connector>,
}

/// The cluster's start-up lock (see [`PgStore::startup_lock`]); released when dropped.
pub struct StartupLock {
    _client: tokio_postgres::Client,
    driver: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
}

impl Drop for StartupLock {
    fn drop(&mut self) {
        // Closing the connection releases the lock.
        self.driver.abort();
    }
}

impl PgStore {
    /// Connect, create or migrate the schema, and start the writer. Fails with
    /// `StoreError::Io("cluster store unavailable: …")` when the database cannot be reached, and
    /// with `StoreError::Io("cluster store: …")` when the URL is invalid or a migration fails.
    pub async fn open(options: PgOptions) -> Result<PgStore, StoreError> {
        let mut target = config::Target::parse(&options.url).map_err(|e| StoreError::Io(format!("cluster store: {e}")))?;
        let tls = target.connector().map_err(|e| StoreError::Io(format!("cluster store: {e}")))?;
        let described = target.describe();
        let config = &mut target.config;
        let timeout_ms = options.statement_timeout.as_millis().max(1);
        let mut server_options = config.get_options().map(str::to_string).unwrap_or_default();
        // NOTICEs ("schema already exists, skipping" at every start) are not worth a log line.
        server_options.push_str(&format!(" -c statement_timeout={timeout_ms} -c client_min_messages=warning"));
        config.options(server_options.trim());
        if config.get_application_name().is_none() {
            config.application_name(&options.application_name);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        // A peer that vanished without closing (a partition, a dead host) is noticed in about
        // 10 s + 3 × 5 s rather than the system's two hours.
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3);
        let config = target.config.clone();
        let sql = Arc::new(Sql::new(&options.schema));
        let op_timeout = options.statement_timeout + Duration::from_secs(5);
        let connector = Arc::new(Connector {
            config: config.clone(),
            tls: tls.clone(),
            sql: sql.clone(),
            target: described.clone(),
            origin: options.cluster.as_ref().map(|c| Arc::from(c.node.as_str())),
            op_timeout: op_timeout.max(options.connect_timeout),
            newest_event: Default::default(),
            tail: Default::default(),
        });

        // Migrate on a connection of its own, then let the writer prepare against the tables.
        {
            let (mut client, connection) = config
                .connect(tls.clone())
                .await
                .map_err(|e| errors::unavailable(&format!("cannot connect to {described}: {}", errors::describe(&e))))?;
            let driver = tokio::spawn(connection);
            let applied = schema::migrate(&mut client, &options.schema).await.map_err(|e| {
                if errors::is_connection_error(&e) {
                    errors::unavailable(&format!("{described}: {}", errors::describe(&e)))
                } else {
                    StoreError::Io(format!(
                        "cluster store: migrating schema {:?} failed: {}",
                        options.schema,
                        errors::describe(&e)
                    ))
                }
            })?;
            if !applied.is_empty() {
                tracing::info!(schema = %options.schema, ?applied, "cluster store schema migrated");
            }
            drop(client);
            let _ = driver.await;
        }
        let conn = connector.connect().await?;

        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Io(format!("cluster store: connection pool: {e}")))?;

        let health = Arc::new(Health::default());
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let cluster = match &options.cluster {
            Some(c) => Some(cluster::Node::start(c.clone(), connector.clone(), pool.clone()).await?),
            None => None,
        };
        tokio::spawn(Writer::new(conn, connector.clone(), health.clone(), rx, counters.clone()).run());
        Ok(PgStore {
            cluster,
            connector,
            pool,
            sql,
            target: described,
            op_timeout,
            health,
            tx,
            counters,
        })
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> CommitStats {
        CommitStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            operations: self.counters.operations.load(Ordering::Relaxed),
            group_failures: self.counters.group_failures.load(Ordering::Relaxed),
        }
    }

    /// Cluster mode: the newest event id this node has seen in the log — its writer's own events,
    /// what its reader read, and the log's end as the heartbeat (every second) finds it. Compared
    /// with the last id delivered, it is how far behind the node's delivery is.
    pub fn newest_event_seen(&self) -> EventId {
        self.connector.newest_event.load(Ordering::Relaxed)
    }

    /// `user@host:port/db` of the database (no password).
    pub fn target(&self) -> &str {
        &self.target
    }

    async fn submit(&self, op: Op) -> Result<Outcome, StoreError> {
        Ok(self.submit_logged(op, None).await?.0)
    }

    /// Queue `op` (with its event, in cluster mode) for the writer and wait for the commit.
    async fn submit_logged(&self, op: Op, event: Option<Event>) -> Result<writer::Answer, StoreError> {
        self.health.check(|reason| StoreError::Io(reason.to_string()))?;
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Msg::Job(Job { op, event, reply }))
            .map_err(|_| errors::writer_gone())?;
        answer.await.map_err(|_| errors::writer_gone())?
    }

    /// An operation with its event; the id the log gave the event.
    async fn logged(&self, op: Op, event: Event) -> Result<(Outcome, EventId), StoreError> {
        if self.cluster.is_none() {
            return Err(StoreError::Io(
                "cluster store: opened without cluster mode, it keeps no event log".into(),
            ));
        }
        match self.submit_logged(op, Some(event)).await? {
            (outcome, Some(id)) => Ok((outcome, id)),
            (_, None) => Err(StoreError::Io("cluster store: the event was not logged".into())),
        }
    }

    /// Hold the cluster's start-up lock until the guard is dropped: nodes starting at once
    /// create the records they share (the token secret, the keypair, `_ADMIN`) one at a time,
    /// so they all use the first node's. A connection of its own, so the lock (a session lock)
    /// goes with it whatever happens to this process.
    pub async fn startup_lock(&self) -> Result<StartupLock, StoreError> {
        let c = &self.connector;
        let (client, connection) = c
            .config
            .connect(c.tls.clone())
            .await
            .map_err(|e| errors::unavailable(&format!("cannot connect to {}: {}", c.target, errors::describe(&e))))?;
        let driver = tokio::spawn(connection);
        client
            .execute("SELECT pg_advisory_lock($1)", &[&schema::STARTUP_LOCK])
            .await
            .map_err(|e| errors::map(&e, &c.target))?;
        Ok(StartupLock { _client: client, driver })
    }

    /// The nodes of the cluster as their heartbeats show them (cluster mode; empty otherwise).
    /// Works on a store opened without cluster mode too (`happn-rs cluster status`), with the
    /// default member TTL.
    pub async fn members(&self) -> Result<Vec<Member>, StoreError> {
        let ttl = self
            .cluster
            .as_ref()
            .map_or_else(|| ClusterOptions::new("", "").member_ttl, |c| c.member_ttl());
        self.read(&self.sql.members, &[], |r| Ok(cluster::member(r, ttl))).await
    }

    /// Run one read on a pooled connection, bounded in time; a connection failure also asks the
    /// writer to check its own, so `health()` follows promptly.
    async fn read<T>(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        each: impl Fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let run = async {
            let client = self.pool.get().await.map_err(|e| errors::pool(e, &self.target))?;
            let statement = client.prepare_cached(sql).await.map_err(|e| errors::map(&e, &self.target))?;
            let rows = client.query(&statement, params).await.map_err(|e| errors::map(&e, &self.target))?;
            rows.iter().map(each).collect()
        };
        let result = match tokio::time::timeout(self.op_timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(errors::unavailable(&format!(
                "{}: no answer within {:?}",
                self.target, self.op_timeout
            ))),
        };
        if let Err(StoreError::Io(m)) = &result {
            if m.starts_with(UNAVAILABLE) && !self.health.is_broken() {
                let _ = self.tx.send(Msg::Probe);
            }
        }
        result
    }
}

/// A `json` column's text (its binary wire format is the text itself).
pub(crate) struct JsonText<'a>(pub(crate) &'a str);

impl<'a> FromSql<'a> for JsonText<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(JsonText(std::str::from_utf8(raw)?))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON
    }
}

/// A row of `SELECT path, data, created, modified, tag`.
pub(crate) fn record(row: &Row) -> Result<Record, StoreError> {
    let path: String = row.get(0);
    let text: JsonText = row
        .try_get(1)
        .map_err(|e| StoreError::Corrupt(format!("record at {path:?}: {e}")))?;
    let data = Body::from_json(text.0).map_err(|e| StoreError::Corrupt(format!("record at {path:?}: body is not a JSON object: {e}")))?;
    Ok(Record {
        created: row.get(2),
        modified: row.get(3),
        tag: row.get(4),
        data,
        path,
    })
}

#[async_trait]
impl Store for PgStore {
    async fn get(&self, path: &str) -> Result<Option<Record>, StoreError> {
        Ok(self.read(&self.sql.get, &[&path], record).await?.pop())
    }

    async fn created_at(&self, path: &str) -> Result<Option<Millis>, StoreError> {
        Ok(self.read(&self.sql.created_at, &[&path], |r| Ok(r.get::<_, i64>(0))).await?.pop())
    }

    async fn replace(&self, path: &str, mut body: Body, now: Millis) -> Result<(Millis, Millis), StoreError> {
        body.forget_parsed();
        match self
            .submit(Op::Replace {
                path: path.to_string(),
                body,
                now,
            })
            .await?
        {
            Outcome::Stamps(created, modified) => Ok((created, modified)),
            other => Err(StoreError::Io(format!("cluster store: a set of {path:?} got {other:?}"))),
        }
    }

    async fn find(&self, pattern: &Pattern) -> Result<Vec<Record>, StoreError> {
        if !pattern.is_wildcard() {
            return Ok(self.get(pattern.as_str()).await?.into_iter().collect());
        }
        let prefix = pattern.literal_prefix();
        let keep = |row: &Row| -> Result<Option<Record>, StoreError> {
            // Decode only what the matcher keeps.
            if pattern.matches(row.get::<_, &str>(0)) {
                record(row).map(Some)
            } else {
                Ok(None)
            }
        };
        let found = match prefix_end(prefix) {
            Some(end) => self.read(&self.sql.scan, &[&prefix, &end], keep).await?,
            None => self.read(&self.sql.scan_open, &[&prefix], keep).await?,
        };
        Ok(found.into_iter().flatten().collect())
    }

    /// One `REPEATABLE READ, READ ONLY` transaction: every row as of its first read, whatever
    /// commits meanwhile (no locks taken, so writers are never held up). Read through a portal
    /// [`SNAPSHOT_BATCH`] rows at a time, so no single statement runs long, however large the
    /// table.
    async fn snapshot(&self) -> Result<Vec<Record>, StoreError> {
        use tokio_postgres::IsolationLevel;
        let map = |e: tokio_postgres::Error| errors::map(&e, &self.target);
        let bounded = |what: &'static str| {
            let target = self.target.clone();
            let limit = self.op_timeout;
            move |_| errors::unavailable(&format!("{target}: no answer within {limit:?} ({what})"))
        };
        let mut client = tokio::time::timeout(self.op_timeout, self.pool.get())
            .await
            .map_err(bounded("connect"))?
            .map_err(|e| errors::pool(e, &self.target))?;
        let begin = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start();
        let txn = tokio::time::timeout(self.op_timeout, begin)
            .await
            .map_err(bounded("begin"))?
            .map_err(map)?;
        let everything = "";
        let portal = tokio::time::timeout(self.op_timeout, txn.bind(&self.sql.scan_open, &[&everything]))
            .await
            .map_err(bounded("scan"))?
            .map_err(map)?;
        let mut out = Vec::new();
        loop {
            let rows = tokio::time::timeout(self.op_timeout, txn.query_portal(&portal, SNAPSHOT_BATCH))
                .await
                .map_err(bounded("scan"))?
                .map_err(map)?;
            for row in &rows {
                out.push(record(row)?);
            }
            if rows.len() < SNAPSHOT_BATCH as usize {
                break;
            }
        }
        // Read only: nothing to keep, so the end of the transaction cannot lose anything.
        let _ = tokio::time::timeout(self.op_timeout, txn.commit()).await;
        Ok(out)
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if batch.puts.is_empty() && batch.removes.is_empty() {
            return Ok(());
        }
        self.submit(Op::Write {
            puts: batch.puts,
            removes: batch.removes,
        })
        .await
        .map(drop)
    }

    async fn remove_matching(&self, pattern: &Pattern) -> Result<Vec<String>, StoreError> {
        match self.submit(Op::RemoveMatching(pattern.clone())).await? {
            Outcome::Removed(paths) => Ok(paths),
            other => Err(StoreError::Io(format!("cluster store: a remove of {pattern} got {other:?}"))),
        }
    }

    async fn len(&self) -> Result<usize, StoreError> {
        let n = self.read(&self.sql.count, &[], |r| Ok(r.get::<_, i64>(0))).await?;
        Ok(n.first().copied().unwrap_or(0) as usize)
    }

    fn health(&self) -> StoreHealth {
        self.health.get()
    }

    fn commit_metrics(&self) -> Option<happn_engine::storage::CommitMetrics> {
        Some(self.counters.metrics())
    }

    fn event_log(&self) -> Option<&dyn EventLog> {
        self.cluster.as_ref().map(|_| self as &dyn EventLog)
    }
}

#[async_trait]
impl EventLog for PgStore {
    fn node_name(&self) -> &str {
        self.cluster.as_ref().map_or("", |c| c.name())
    }

    async fn replace_logged(
        &self,
        path: &str,
        mut body: Body,
        now: Millis,
        event: Event,
    ) -> Result<((Millis, Millis), EventId), StoreError> {
        body.forget_parsed();
        let op = Op::Replace {
            path: path.to_string(),
            body,
            now,
        };
        match self.logged(op, event).await? {
            (Outcome::Stamps(created, modified), id) => Ok(((created, modified), id)),
            (other, _) => Err(StoreError::Io(format!("cluster store: a set of {path:?} got {other:?}"))),
        }
    }

    async fn write_logged(&self, batch: WriteBatch, event: Event) -> Result<EventId, StoreError> {
        let op = Op::Write {
            puts: batch.puts,
            removes: batch.removes,
        };
        Ok(self.logged(op, event).await?.1)
    }

    async fn remove_matching_logged(&self, pattern: &Pattern, event: Event) -> Result<(Vec<String>, EventId), StoreError> {
        match self.logged(Op::RemoveMatching(pattern.clone()), event).await? {
            (Outcome::Removed(paths), id) => Ok((paths, id)),
            (other, _) => Err(StoreError::Io(format!("cluster store: a remove of {pattern} got {other:?}"))),
        }
    }

    async fn update_logged(&self, path: &str, update: Update, event: Event) -> Result<(Record, EventId), StoreError> {
        let op = Op::Update {
            path: path.to_string(),
            update,
        };
        match self.logged(op, event).await? {
            (Outcome::Updated(record), id) => Ok((*record, id)),
            (other, _) => Err(StoreError::Io(format!("cluster store: an update of {path:?} got {other:?}"))),
        }
    }

    async fn append(&self, event: Event) -> Result<EventId, StoreError> {
        Ok(self.logged(Op::Append, event).await?.1)
    }

    fn tail(&self) -> Option<mpsc::Receiver<TailItem>> {
        self.cluster.as_ref().and_then(|c| c.take_tail())
    }
}
