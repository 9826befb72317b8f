//! Offline tools on a data directory: `happn-rs import --nedb FILE` and `happn-rs export`.

use crate::config::{ConfigError, DataConfig};
use happn_engine::nedb;
use happn_engine::storage::WriteBatch;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

pub enum Tool {
    Import {
        nedb: PathBuf,
        data: Result<DataConfig, ConfigError>,
    },
    Export {
        out: Option<PathBuf>,
        data: Result<DataConfig, ConfigError>,
    },
}

/// Run a tool; exit code 0 on success, 1 on failure, 2 on a bad config.
pub fn run(tool: Tool) -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(async {
        match tool {
            Tool::Import { nedb, data } => import(&nedb, data?).await,
            Tool::Export { out, data } => export(out.as_ref(), data?).await,
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

async fn import(file: &PathBuf, data: DataConfig) -> Result<(), ToolError> {
    let text = std::fs::read_to_string(file).map_err(|e| ToolError::Failed(format!("cannot read {}: {e}", file.display())))?;
    let loaded = nedb::parse(&text).map_err(|e| ToolError::Failed(format!("{}: {e}", file.display())))?;
    let store = crate::open_store(&data).await.map_err(|e| ToolError::Failed(e.to_string()))?;
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
    let mut records = loaded.records;
    while !records.is_empty() {
        let rest = records.split_off(records.len().min(1000));
        store
            .write(WriteBatch {
                puts: records,
                removes: vec![],
            })
            .await
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        records = rest;
    }
    eprintln!(
        "imported {count} records ({users} users, {groups} groups) from {} into {}{}",
        file.display(),
        data.path_of(&data.file).display(),
        if loaded.skipped > 0 {
            format!("; skipped {} unreadable lines", loaded.skipped)
        } else {
            String::new()
        }
    );
    Ok(())
}

async fn export(out: Option<&PathBuf>, data: DataConfig) -> Result<(), ToolError> {
    let store = crate::open_store(&data).await.map_err(|e| ToolError::Failed(e.to_string()))?;
    // Every datastore's records (a `*` scan would read the default one only).
    let records = store.snapshot().await.map_err(|e| ToolError::Failed(e.to_string()))?;
    let mut sink: Box<dyn Write> = match out {
        Some(p) => Box::new(std::fs::File::create(p).map_err(|e| ToolError::Failed(format!("cannot write {}: {e}", p.display())))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut w = std::io::BufWriter::new(&mut sink);
    for r in &records {
        writeln!(w, "{}", nedb::line(r)).map_err(|e| ToolError::Failed(e.to_string()))?;
    }
    w.flush().map_err(|e| ToolError::Failed(e.to_string()))?;
    eprintln!("exported {} records", records.len());
    Ok(())
}
