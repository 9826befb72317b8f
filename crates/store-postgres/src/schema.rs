//! The tables, created and upgraded by versioned migrations when a store opens, and the SQL of
//! every statement the store runs.
//!
//! # Migrations
//! `happn_migrations(version, description, applied_at)` lists the migrations applied to a schema.
//! Opening a store runs, in ONE transaction: `pg_advisory_xact_lock(MIGRATION_LOCK)`, then
//! `CREATE SCHEMA/TABLE IF NOT EXISTS` for the schema and that table, then every migration whose
//! version is not listed, in order, each recording itself. PostgreSQL's DDL is transactional, so
//! a failed migration leaves nothing half-done, and the lock makes nodes that start at once take
//! turns: the first migrates, the others find the versions listed and do nothing. (Without the
//! lock two concurrent `CREATE TABLE IF NOT EXISTS` can both pass the check and one fails on the
//! catalog's unique index.) The lock is a transaction lock, so a node that dies mid-migration
//! releases it with its connection.
//!
//! A schema with versions this build does not know was migrated by a newer happn-rs; migrations
//! are additive (new tables, columns with defaults, indexes), so an older node keeps working and
//! logs a warning, which is what a rolling upgrade needs.

use tokio_postgres::Client;

/// The advisory lock key taken around migrations ("happn_mg" in ASCII). One key for every
/// schema: migrations are short, and rare.
pub const MIGRATION_LOCK: i64 = 0x6861_7070_6e5f_6d67;

/// Every migration, in order. A released migration is never edited: a change is a new one.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "happn_data: one row per record",
        // `path COLLATE "C"`: compared and ordered by bytes (UTF-8 byte order is code point order),
        // the order every store keeps, whatever the database's locale; its primary-key index serves
        // the prefix-range scans. `data json`: the body's exact text (see the crate docs).
        "CREATE TABLE {schema}.happn_data (
        path text COLLATE \"C\" PRIMARY KEY,
        data json NOT NULL,
        created bigint NOT NULL,
        modified bigint NOT NULL,
        modified_by text,
        tag text
    )",
    ),
    (
        2,
        "happn_events: the ordered event log; happn_log_state: its trim horizon; happn_members: the nodes",
        // Ids come from the sequence, taken under the log's ordering lock (see the crate docs), so
        // they ascend in commit order; a rolled-back transaction leaves a hole, never a late id.
        // `kind`: 0 set, 1 remove, 2 a change note (a system record changed without a client event).
        "CREATE SEQUENCE {schema}.happn_event_ids;
     CREATE TABLE {schema}.happn_events (
        id bigint PRIMARY KEY,
        origin text NOT NULL,
        at timestamptz NOT NULL DEFAULT now(),
        kind smallint NOT NULL,
        path text COLLATE \"C\" NOT NULL,
        moved_to text,
        data json,
        created bigint,
        modified bigint,
        tag text,
        publish text NOT NULL
     );
     CREATE TABLE {schema}.happn_log_state (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        trimmed_through bigint NOT NULL DEFAULT 0
     );
     INSERT INTO {schema}.happn_log_state DEFAULT VALUES;
     CREATE TABLE {schema}.happn_members (
        name text PRIMARY KEY,
        instance text NOT NULL,
        url text NOT NULL,
        started_at timestamptz NOT NULL,
        heartbeat_at timestamptz NOT NULL
     );
     -- One call logs a group's events: the ordering lock, the ids (in array order), the rows and
     -- the notification, in one round trip instead of four. `seq` and `channel` are parameters so
     -- no schema name is spliced into a string.
     CREATE FUNCTION {schema}.happn_log(lock_key bigint, seq regclass, channel text, origin text,
            kinds int2[], paths text[], moved text[], data text[], created int8[], modified int8[],
            tags text[], publish text[]) RETURNS int8[] LANGUAGE plpgsql AS $log$
     DECLARE
        n int := cardinality(kinds);
        ids int8[] := '{}';
     BEGIN
        PERFORM pg_advisory_xact_lock(lock_key);
        FOR i IN 1..n LOOP
            ids := ids || nextval(seq);
        END LOOP;
        INSERT INTO {schema}.happn_events (id, origin, kind, path, moved_to, data, created, modified, tag, publish)
            SELECT ids[i], origin, kinds[i], paths[i], moved[i], data[i]::json, created[i], modified[i], tags[i], publish[i]
            FROM generate_subscripts(kinds, 1) AS i;
        IF n > 0 THEN
            PERFORM pg_notify(channel, ids[n]::text);
        END IF;
        RETURN ids;
     END
     $log$",
    ),
    (
        3,
        "happn_set: a group of plain sets and their events in one call",
        // The usual group under load is plain sets, each publishing its event. One call does all
        // of it inside PostgreSQL, in one statement (its own transaction, no BEGIN/COMMIT): the
        // ordering lock first, then the rows (in path order), then the events through
        // `happn_log` with the stamps the rows got. One round trip per group, and the lock is
        // never held across a round trip to a node.
        //
        // The rows arrive deduplicated (one per path: its last body, its first write's time as
        // `created` should the row be new, its last as `modified`); the events, one per write,
        // each with its own time: a write's stamps are the row's `created` and the later of its
        // time and that, as a plain set's are one at a time.
        "CREATE FUNCTION {schema}.happn_set(lock_key bigint, seq regclass, channel text, origin text,
            row_paths text[], row_bodies text[], row_created int8[], row_modified int8[],
            event_paths text[], event_data text[], event_times int8[], event_publish text[],
            OUT set_created int8[], OUT set_modified int8[], OUT event_ids int8[])
        LANGUAGE plpgsql AS $set$
     DECLARE
        n int := cardinality(event_paths);
     BEGIN
        PERFORM pg_advisory_xact_lock(lock_key);
        WITH done AS (
            INSERT INTO {schema}.happn_data AS r (path, data, created, modified, tag)
            SELECT u.p, u.d::json, u.c, u.m, NULL
            FROM unnest(row_paths, row_bodies, row_created, row_modified) AS u(p, d, c, m)
            ORDER BY u.p COLLATE \"C\"
            ON CONFLICT (path) DO UPDATE SET data = excluded.data, modified = GREATEST(excluded.modified, r.created), tag = NULL
            RETURNING r.path AS p, r.created AS c
        )
        SELECT array_agg(done.c ORDER BY i), array_agg(GREATEST(event_times[i], done.c) ORDER BY i)
            INTO set_created, set_modified
            FROM generate_subscripts(event_paths, 1) AS i JOIN done ON done.p = event_paths[i] COLLATE \"C\";
        event_ids := {schema}.happn_log(lock_key, seq, channel, origin, array_fill(0::int2, ARRAY[n]), event_paths,
            array_fill(NULL::text, ARRAY[n]), event_data, set_created, set_modified, array_fill(NULL::text, ARRAY[n]),
            event_publish);
     END
     $set$",
    ),
];

/// The advisory lock that orders the event log ("happn_ev"): a transaction takes it before it
/// takes its event ids and holds it to its commit, so ids become visible in id order and a
/// reader that remembers the last id it read never skips one (cluster.md §4). The writer takes
/// it first thing in a transaction that logs (`order_lock`), so such transactions never wait
/// for each other's row locks: two nodes' groups sharing paths deadlocked otherwise (measured:
/// about one a second at peak, each costing PostgreSQL's `deadlock_timeout`, 1 s).
pub const EVENT_LOCK: i64 = 0x6861_7070_6e5f_6576;

/// The advisory lock held while a node creates the records all nodes share ("happn_st").
pub const STARTUP_LOCK: i64 = 0x6861_7070_6e5f_7374;

/// The advisory lock a node takes to trim the log ("happn_tr"): one trimmer at a time.
pub const TRIM_LOCK: i64 = 0x6861_7070_6e5f_7472;

/// An SQL identifier, quoted.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Bring `schema` up to date; returns the versions applied now.
pub async fn migrate(client: &mut Client, schema: &str) -> Result<Vec<i32>, tokio_postgres::Error> {
    let q = quote_ident(schema);
    let txn = client.transaction().await?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    txn.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {q};
         CREATE TABLE IF NOT EXISTS {q}.happn_migrations (
             version integer PRIMARY KEY,
             description text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    ))
    .await?;
    let done: Vec<i32> = txn
        .query(&format!("SELECT version FROM {q}.happn_migrations ORDER BY version"), &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut applied = Vec::new();
    for (version, description, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        txn.batch_execute(&sql.replace("{schema}", &q)).await?;
        txn.execute(
            &format!("INSERT INTO {q}.happn_migrations (version, description) VALUES ($1, $2)"),
            &[version, description],
        )
        .await?;
        applied.push(*version);
    }
    txn.commit().await?;
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    if let Some(unknown) = done.iter().find(|v| **v > newest) {
        tracing::warn!(
            schema,
            version = unknown,
            "the cluster schema was migrated by a newer happn-rs (version {unknown} > {newest}); using it as it is"
        );
    }
    Ok(applied)
}

/// The SQL of every statement, for one schema.
pub struct Sql {
    pub get: String,
    pub created_at: String,
    pub scan: String,
    pub scan_open: String,
    pub count: String,
    pub upsert: String,
    pub replace: String,
    pub delete_many: String,
    pub delete_one: String,
    pub lock_range: String,
    pub lock_range_open: String,
    pub log: String,
    pub order_lock: String,
    pub set_logged: String,
    pub read_events: String,
    pub last_event: String,
    /// The log's newest id (the primary key's last entry: one index probe).
    pub newest_event: String,
    pub trim: String,
    pub heartbeat: String,
    pub members: String,
    pub expire_members: String,
    /// The `LISTEN`/`pg_notify` channel of this schema's log.
    pub channel: String,
    /// The event id sequence, as `regclass` text for `happn_log`.
    pub sequence: String,
    pub lock_one: String,
    pub insert_new: String,
}

impl Sql {
    pub fn new(schema: &str) -> Sql {
        let q = quote_ident(schema);
        let t = format!("{q}.happn_data");
        let e = format!("{q}.happn_events");
        let cols = "path, data, created, modified, tag";
        Sql {
            get: format!("SELECT {cols} FROM {t} WHERE path = $1"),
            created_at: format!("SELECT created FROM {t} WHERE path = $1"),
            // The literal prefix bounds the scan (`[prefix, prefix_end)`), the Rust matcher
            // finishes it. `COLLATE "C"` on the parameters too, so the comparison is by bytes
            // whatever the database's default collation.
            scan: format!("SELECT {cols} FROM {t} WHERE path >= $1 COLLATE \"C\" AND path < $2 COLLATE \"C\" ORDER BY path"),
            scan_open: format!("SELECT {cols} FROM {t} WHERE path >= $1 COLLATE \"C\" ORDER BY path"),
            count: format!("SELECT count(*) FROM {t}"),
            // Puts carry whole records: every column is overwritten. The body arrives as text
            // and is cast to `json`, which checks it and keeps the text as it is.
            // Multi-row writes take their row locks in path order (`ORDER BY p`), which
            // narrows the ways two transactions can deadlock (logging ones cannot: `EVENT_LOCK`).
            upsert: format!(
                "INSERT INTO {t} ({cols}) SELECT p, d::json, c, m, g FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::text[]) AS u(p, d, c, m, g) ORDER BY p COLLATE \"C\"
                 ON CONFLICT (path) DO UPDATE SET data = excluded.data, created = excluded.created, modified = excluded.modified, tag = excluded.tag"
            ),
            // A plain set: keeps the row's `created`, never sets `modified` before it, clears the
            // tag (as `Store::replace` does), and says what it stored.
            replace: format!(
                "INSERT INTO {t} AS r ({cols}) SELECT p, d::json, n, n, NULL FROM unnest($1::text[], $2::text[], $3::int8[]) AS u(p, d, n) ORDER BY p COLLATE \"C\"
                 ON CONFLICT (path) DO UPDATE SET data = excluded.data, modified = GREATEST(excluded.modified, r.created), tag = NULL
                 RETURNING path, created, modified"
            ),
            // Row locks in path order too (see `upsert`).
            delete_many: format!(
                "DELETE FROM {t} WHERE path IN (SELECT path FROM {t} WHERE path = ANY($1::text[]) ORDER BY path COLLATE \"C\" FOR UPDATE)"
            ),
            delete_one: format!("DELETE FROM {t} WHERE path = $1 RETURNING path"),
            // A wildcard remove: the prefix range's rows, locked for the transaction, matched in
            // Rust, then deleted by path.
            lock_range: format!("SELECT path FROM {t} WHERE path >= $1 COLLATE \"C\" AND path < $2 COLLATE \"C\" ORDER BY path FOR UPDATE"),
            lock_range_open: format!("SELECT path FROM {t} WHERE path >= $1 COLLATE \"C\" ORDER BY path FOR UPDATE"),
            order_lock: format!("SELECT pg_advisory_xact_lock({EVENT_LOCK})"),
            set_logged: format!(
                "SELECT * FROM {q}.happn_set({EVENT_LOCK}, $1::text::regclass, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ),
            log: format!(
                "SELECT {q}.happn_log({EVENT_LOCK}, $1::text::regclass, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ),
            // The horizon and the events after `$1` in one statement, so in one snapshot: a trim
            // that removed events the reader had not read shows in the horizon it reads with them.
            read_events: format!(
                "SELECT h.trimmed_through, e.id, e.origin, e.kind, e.path, e.data, e.created, e.modified, e.tag, e.publish, e.moved_to
                 FROM {q}.happn_log_state h LEFT JOIN LATERAL (SELECT * FROM {e} WHERE id > $1 ORDER BY id LIMIT $2) e ON true"
            ),
            newest_event: format!("SELECT COALESCE(max(id), 0) FROM {e}"),
            last_event: format!("SELECT COALESCE(max(id), 0), (SELECT trimmed_through FROM {q}.happn_log_state) FROM {e}"),
            // Everything older than the age limit, and everything beyond the row limit, in one
            // transaction with the horizon it moves.
            trim: format!(
                "WITH cut AS (
                    SELECT GREATEST(
                        (SELECT id FROM {e} WHERE at < now() - make_interval(secs => $1::float8) ORDER BY id DESC LIMIT 1),
                        (SELECT max(id) - $2::int8 FROM {e})) AS through
                 ), gone AS (
                    DELETE FROM {e} WHERE id <= (SELECT through FROM cut) RETURNING id
                 )
                 UPDATE {q}.happn_log_state SET trimmed_through = GREATEST(trimmed_through, (SELECT max(id) FROM gone))
                 WHERE EXISTS (SELECT 1 FROM gone) RETURNING trimmed_through"
            ),
            heartbeat: format!(
                "INSERT INTO {q}.happn_members AS m (name, instance, url, started_at, heartbeat_at) VALUES ($1, $2, $3, now(), now())
                 ON CONFLICT (name) DO UPDATE SET heartbeat_at = now(), url = excluded.url,
                   instance = excluded.instance, started_at = CASE WHEN m.instance = excluded.instance THEN m.started_at ELSE now() END"
            ),
            members: format!(
                "SELECT name, url, instance, extract(epoch FROM started_at)::float8, extract(epoch FROM now() - heartbeat_at)::float8
                 FROM {q}.happn_members ORDER BY name"
            ),
            expire_members: format!("DELETE FROM {q}.happn_members WHERE heartbeat_at < now() - make_interval(secs => $1::float8)"),
            lock_one: format!("SELECT {cols} FROM {t} WHERE path = $1 FOR UPDATE"),
            insert_new: format!("INSERT INTO {t} ({cols}) VALUES ($1, $2::text::json, $3, $4, $5) ON CONFLICT (path) DO NOTHING"),
            channel: format!("happn_events:{schema}"),
            sequence: format!("{q}.happn_event_ids"),
        }
    }
}

pub use happn_engine::path::prefix_end;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("public"), "\"public\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert!(Sql::new("x\"y").get.contains("\"x\"\"y\".happn_data"));
    }
}
