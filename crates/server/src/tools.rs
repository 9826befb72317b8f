//! Offline tools: `happn-rs import --nedb FILE` and `happn-rs export`, on a data directory or on
//! a cluster's PostgreSQL database (`--cluster URL [--schema S]`).
//!
//! On a cluster the records are read and written through [`PgStore`] opened *without* cluster
//! mode: no event log, no membership. That is what a migration wants (a happn 2.x database into
//! a new schema before the nodes start, or a copy out of it), but it means running nodes deliver
//! no events for imported records and keep the users and groups they cached until they restart,
//! so `import` names the live nodes it finds.

use crate::config::{ConfigError, DataConfig};
use crate::progress::Progress;
use happn_engine::nedb;
use happn_engine::storage::{Store, WriteBatch};
use happn_store_postgres::{PgOptions, PgStore};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

pub enum Tool {
    Import { nedb: PathBuf, target: Target },
    Export { out: Option<PathBuf>, target: Target },
}

/// Where the records are.
pub enum Target {
    /// A data directory (the config's `services.data.config`, with `--data-dir` on top).
    Data(Result<DataConfig, ConfigError>),
    /// A cluster's PostgreSQL database, in `schema`.
    Cluster { url: String, schema: String },
}

impl Target {
    /// The store, what to call it in messages, and (cluster) the database to look at nodes in.
    async fn open(self, tool: &str) -> Result<(Arc<dyn Store>, String, Option<Arc<PgStore>>), ToolError> {
        match self {
            Target::Data(data) => {
                let data = data?;
                let store = crate::open_store(&data).await.map_err(|e| ToolError::Failed(e.to_string()))?;
                Ok((store, data.path_of(&data.file).display().to_string(), None))
            }
            Target::Cluster { url, schema } => {
                let mut options = PgOptions::new(url);
                options.schema = schema.clone();
                options.pool_size = 2;
                options.application_name = format!("happn-rs {tool}");
                let pg = Arc::new(PgStore::open(options).await.map_err(|e| ToolError::Failed(e.to_string()))?);
                let name = format!("{} (schema {schema})", pg.target());
                Ok((pg.clone(), name, Some(pg)))
            }
        }
    }
}

/// Run a tool; exit code 0 on success, 1 on failure, 2 on a bad config.
pub fn run(tool: Tool) -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(async {
        match tool {
            Tool::Import { nedb, target } => import(&nedb, target).await,
            Tool::Export { out, target } => export(out.as_ref(), target).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(ToolError::Config(e)) => {
            eprintln!("happn-rs: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("happn-rs: {e}");
            ExitCode::from(1)
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ToolError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Failed(String),
}

async fn import(file: &PathBuf, target: Target) -> Result<(), ToolError> {
    let start = std::time::Instant::now();
    let text = std::fs::read_to_string(file).map_err(|e| ToolError::Failed(format!("cannot read {}: {e}", file.display())))?;
    let mut reading = Progress::new("import: reading", "lines", Some(bytecount_lines(&text)));
    let loaded = nedb::parse_with_progress(&text, |n| reading.add(n)).map_err(|e| ToolError::Failed(format!("{}: {e}", file.display())))?;
    let read = reading.finish();
    drop(text);
    let (store, dest, cluster) = target.open("import").await?;
    if let Some(pg) = cluster {
        let live: Vec<String> = pg
            .members()
            .await
            .map_err(|e| ToolError::Failed(e.to_string()))?
            .into_iter()
            .filter(|m| m.alive)
            .map(|m| m.name)
            .collect();
        if !live.is_empty() {
            eprintln!(
                "happn-rs: warning: nodes are running on this cluster ({}): they read the imported records, but deliver \
                 no events for them and keep the users and groups they cached until they restart",
                live.join(", ")
            );
        }
    }
    let count = loaded.records.len();
    let users = loaded
        .records
        .iter()
        .filter(|r| r.path.starts_with(happn_engine::security::USER_PREFIX) && !r.path.contains("/_USER_GROUP/"))
        .count();
    let groups = loaded
        .records
        .iter()
        .filter(|r| r.path.starts_with(happn_engine::security::GROUP_PREFIX))
        .count();
    let mut progress = Progress::new("import", "records", Some(count as u64));
    let mut records = loaded.records;
    while !records.is_empty() {
        let rest = records.split_off(records.len().min(1000));
        let n = records.len() as u64;
        store
            .write(WriteBatch {
                puts: records,
                removes: vec![],
            })
            .await
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        progress.add(n);
        records = rest;
    }
    eprintln!(
        "imported {count} records ({users} users, {groups} groups) from {} into {} in {:.1} s (reading {read}; writing {}){}",
        file.display(),
        dest,
        start.elapsed().as_secs_f64(),
        progress.finish(),
        if loaded.skipped > 0 {
            format!("; skipped {} unreadable lines", loaded.skipped)
        } else {
            String::new()
        }
    );
    Ok(())
}

async fn export(out: Option<&PathBuf>, target: Target) -> Result<(), ToolError> {
    let (store, _, _) = target.open("export").await?;
    // Every datastore's records (a `*` scan would read the default one only).
    let records = store.snapshot().await.map_err(|e| ToolError::Failed(e.to_string()))?;
    let mut sink: Box<dyn Write> = match out {
        Some(p) => Box::new(std::fs::File::create(p).map_err(|e| ToolError::Failed(format!("cannot write {}: {e}", p.display())))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut w = std::io::BufWriter::new(&mut sink);
    let mut progress = Progress::new("export", "records", Some(records.len() as u64));
    for r in &records {
        writeln!(w, "{}", nedb::line(r)).map_err(|e| ToolError::Failed(e.to_string()))?;
        progress.add(1);
    }
    w.flush().map_err(|e| ToolError::Failed(e.to_string()))?;
    eprintln!("exported {} records {}", records.len(), progress.finish());
    Ok(())
}

/// Lines in `text`, for the reading bar's length: a byte count the compiler vectorises (a
/// `lines()` pass would decode every line's end twice over a file of a million records).
fn bytecount_lines(text: &str) -> u64 {
    let newlines = text.as_bytes().iter().filter(|&&b| b == b'\n').count() as u64;
    newlines + u64::from(!text.is_empty() && !text.ends_with('\n'))
}
