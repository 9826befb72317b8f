//! `happn-rs`: start a happn 2.x-compatible server.

use clap::Parser;
use happn_rs::config::{self, Config};
use happn_rs::StopMode;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc: request handling allocates many small, short-lived buffers; it is markedly faster
/// than the system allocator for that and returns memory of idle connections better.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "happn-rs",
    version,
    about = "A happn 2.x compatible server (mini database + pub/sub over websockets)"
)]
struct Cli {
    /// Port to listen on [default: 55000]
    #[arg(short, long, env = "HAPPN_PORT")]
    port: Option<u16>,
    /// Address to listen on [default: 0.0.0.0]
    #[arg(long)]
    host: Option<String>,
    /// JSON config file with the original's keys (port, host, name, secure, adminUser.password, ...)
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Require login (users, groups, permissions); same as "secure": true
    #[arg(long)]
    secure: bool,
    /// System name announced to clients
    #[arg(long)]
    name: Option<String>,
    /// Log filter (error, warn, info, debug, trace, or a tracing filter); RUST_LOG also works
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn load(cli: &Cli) -> Result<config::Loaded, config::ConfigError> {
    let mut doc = match &cli.config {
        Some(path) => config::read_file(path)?,
        None => serde_json::json!({}),
    };
    // HAPPN_SERVER_CONFIG (JSON) is merged over the file, as the wire recorder passes it.
    if let Ok(text) = std::env::var("HAPPN_SERVER_CONFIG") {
        if !text.trim().is_empty() {
            config::merge(&mut doc, config::parse_json("HAPPN_SERVER_CONFIG", &text)?);
        }
    }
    let mut loaded = config::from_value(&doc)?;
    let c: &mut Config = &mut loaded.config;
    if let Some(p) = cli.port {
        c.port = p;
    }
    if let Some(h) = &cli.host {
        c.host = h.clone();
    }
    if cli.secure {
        c.secure = true;
    }
    if let Some(n) = &cli.name {
        c.name = Some(n.clone());
    }
    Ok(loaded)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let loaded = match load(&cli) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("happn-rs: {e}");
            return ExitCode::from(2);
        }
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let server = match happn_rs::start(loaded.config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("happn-rs: {e}");
                return ExitCode::from(1);
            }
        };
        println!(
            "happn-rs listening on {} (name {}, secure {})",
            server.local_addr, server.state.name, server.state.config.secure
        );
        let mode = wait_for_signal().await;
        tracing::info!(?mode, "shutting down");
        server.stop(mode).await;
        ExitCode::SUCCESS
    })
}

/// SIGTERM: clients reconnect later; SIGINT (Ctrl-C): clients are told not to reconnect.
async fn wait_for_signal() -> StopMode {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => StopMode::Reconnect,
        _ = int.recv() => StopMode::NoReconnect,
    }
}
