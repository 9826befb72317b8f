//! `happn-rs`: start a happn 2.x-compatible server.

use clap::{Parser, Subcommand};
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
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
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
    /// Data directory of the durable store [default: ./happn-data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Keep everything in memory: nothing survives a restart
    #[arg(long)]
    memory: bool,
    /// Start a new database in a data file of 0 bytes (refused by default: its data may be lost)
    #[arg(long)]
    accept_empty_data_file: bool,
    /// Serve the files of this folder over HTTP (guarded by /@HTTP permissions in secure mode)
    #[arg(long = "static", value_name = "DIR")]
    static_dir: Option<PathBuf>,
    /// Run as one node of a cluster on this PostgreSQL database (postgres://user@host/db);
    /// the same as `cluster.url` in the config. See docs/CLUSTER.md
    #[arg(long, value_name = "URL", env = "HAPPN_CLUSTER")]
    cluster: Option<String>,
    /// Log filter (error, warn, info, debug, trace, or a tracing filter); RUST_LOG also works
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Log lines as text, or as one JSON object per line for log shippers
    #[arg(long, value_enum, default_value = "text", env = "HAPPN_LOG_FORMAT")]
    log_format: LogFormat,
    /// Serve /metrics on this address (host:port), or `off`; config key metricsAddr [default: the
    /// main port when insecure, 127.0.0.1:9100 when secure]
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<String>,
    /// Threads serving connections: 0 = one per core; 1 = a single-threaded runtime (less CPU
    /// per request on small machines, but one slow request delays every connection); config key
    /// threads [default: 0]
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Load a database file written by a happn 2.x server (nedb JSON lines) into the data
    /// directory, or into a cluster's PostgreSQL database
    Import {
        /// The happn 2.x database file (services.data.config.filename of the old server)
        #[arg(long, value_name = "FILE")]
        nedb: PathBuf,
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Config file (for services.data.config: file name, datastores)
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        cluster: ClusterTarget,
    },
    /// Manage users: add, passwd, rm, list, link, unlink (in a data directory, or a running server with --url)
    User {
        #[command(subcommand)]
        command: happn_rs::admin::UserCommand,
        #[command(flatten)]
        target: happn_rs::admin::Target,
    },
    /// Manage groups: add, grant, revoke, rm, list (in a data directory, or a running server with --url)
    Group {
        #[command(subcommand)]
        command: happn_rs::admin::GroupCommand,
        #[command(flatten)]
        target: happn_rs::admin::Target,
    },
    /// The nodes of a cluster, as their heartbeats in the database show them
    Cluster {
        #[command(subcommand)]
        command: happn_rs::cluster::ClusterCommand,
    },
    #[command(flatten)]
    Client(happn_rs::cli::ClientCommand),
    /// Write the data directory's records (or a cluster's) as a happn 2.x database file (nedb
    /// JSON lines)
    Export {
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Output file [default: standard output]
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        cluster: ClusterTarget,
    },
}

/// `--cluster URL [--schema S]` of the offline tools: a cluster's database instead of a data
/// directory.
#[derive(clap::Args, Debug)]
struct ClusterTarget {
    /// The cluster's PostgreSQL database (postgres://user@host/db) instead of a data directory
    #[arg(long, value_name = "URL", conflicts_with_all = ["data_dir", "config"])]
    cluster: Option<String>,
    /// The schema the cluster's tables are in (created if missing)
    #[arg(long, default_value = "public", requires = "cluster")]
    schema: String,
}

impl ClusterTarget {
    /// The cluster when `--cluster` is given, else the data directory.
    fn or_data(self, file: Option<&PathBuf>, dir: Option<PathBuf>) -> happn_rs::tools::Target {
        match self.cluster {
            Some(url) => happn_rs::tools::Target::Cluster { url, schema: self.schema },
            None => happn_rs::tools::Target::Data(data_config(file, dir)),
        }
    }
}

fn load_doc(file: Option<&PathBuf>) -> Result<serde_json::Value, config::ConfigError> {
    let mut doc = match file {
        Some(path) => config::read_file(path)?,
        None => serde_json::json!({}),
    };
    // HAPPN_SERVER_CONFIG (JSON) is merged over the file, as the wire recorder passes it.
    if let Ok(text) = std::env::var("HAPPN_SERVER_CONFIG") {
        if !text.trim().is_empty() {
            config::merge(&mut doc, config::parse_json("HAPPN_SERVER_CONFIG", &text)?);
        }
    }
    Ok(doc)
}

fn load(cli: &Cli) -> Result<config::Loaded, config::ConfigError> {
    let mut loaded = config::from_value(&load_doc(cli.config.as_ref())?)?;
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
    if let Some(d) = &cli.data_dir {
        c.data.dir = d.clone();
    }
    if cli.memory {
        c.data.memory = true;
    }
    if cli.accept_empty_data_file {
        c.data.accept_empty_file = true;
    }
    if let Some(d) = &cli.static_dir {
        c.static_dir = Some(d.clone());
    }
    if let Some(url) = &cli.cluster {
        match &mut c.cluster {
            Some(cluster) => cluster.url = url.clone(),
            None => c.cluster = Some(config::ClusterConfig::new(url.clone())),
        }
    }
    if let Some(a) = &cli.metrics_addr {
        c.metrics = config::MetricsListen::from_flag(a);
    }
    if let Some(n) = cli.threads {
        c.threads = n;
    }
    Ok(loaded)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(command) = cli.command {
        use happn_rs::admin::{self, Admin};
        return happn_rs::tools::run(match command {
            Command::User { command, target } => return admin::run(Admin::User(command), target),
            Command::Group { command, target } => return admin::run(Admin::Group(command), target),
            Command::Cluster { command } => return happn_rs::cluster::run(command),
            Command::Client(command) => return happn_rs::cli::run(command),
            Command::Import {
                nedb,
                data_dir,
                config,
                cluster,
            } => happn_rs::tools::Tool::Import {
                nedb,
                target: cluster.or_data(config.as_ref(), data_dir),
            },
            Command::Export {
                data_dir,
                out,
                config,
                cluster,
            } => happn_rs::tools::Tool::Export {
                out,
                target: cluster.or_data(config.as_ref(), data_dir),
            },
        });
    }
    let loaded = match load(&cli) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("happn-rs: {e}");
            return ExitCode::from(2);
        }
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log_level));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        // Fields flattened into the line, the connection's span (session, user) beside them.
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(true).with_span_list(false).init(),
    }
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    // Before the runtime and the listener: the default connection limit follows this value.
    happn_rs::admission::raise_open_file_limit();
    // `threads: 1`: every connection on this one thread (the store's writer, password hashing
    // and file work keep threads of their own), docs/CONFIG.md.
    let rt = match loaded.config.threads {
        1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        0 => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build(),
    }
    .expect("tokio runtime");
    rt.block_on(async move {
        let server = match happn_rs::start(loaded.config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("happn-rs: {e}");
                return ExitCode::from(e.exit_code());
            }
        };
        println!(
            "happn-rs listening on {} ({}, name {}, secure {})",
            server.local_addr,
            server.state.config.transport.scheme(),
            server.state.name,
            server.state.config.secure
        );
        let mode = wait_for_signal().await;
        tracing::info!(?mode, "shutting down");
        server.stop(mode).await;
        ExitCode::SUCCESS
    })
}

/// The data settings for the offline tools: the config file's, with `--data-dir` on top.
fn data_config(file: Option<&PathBuf>, dir: Option<PathBuf>) -> Result<config::DataConfig, config::ConfigError> {
    let mut data = config::from_value(&load_doc(file)?)?.config.data;
    if let Some(d) = dir {
        data.dir = d;
    }
    Ok(data)
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
