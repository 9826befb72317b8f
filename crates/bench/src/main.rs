//! `happn-bench`: drive any happn 2.x-protocol server over websockets and report throughput,
//! latency and (with `--pid`) the server's CPU and memory. One readable table and one JSON line
//! per run. Every run is bounded in time; errors are counted and reported, never hidden.

mod cluster;
mod conn;
mod devices;
mod floor;
mod measure;
mod report;
mod scenarios;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "happn-bench", version, about)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Server websocket URL (the /primus path is added)
    #[arg(long, global = true, default_value = "ws://127.0.0.1:55000")]
    pub url: String,
    #[arg(long, global = true, default_value = "_ADMIN")]
    pub username: String,
    #[arg(long, global = true, default_value = "happn")]
    pub password: String,
    /// Log in without credentials (insecure servers)
    #[arg(long, global = true)]
    pub anonymous: bool,
    /// Measured seconds per run (after warm-up)
    #[arg(long, global = true, default_value_t = 5.0)]
    pub duration: f64,
    /// Warm-up seconds before measuring
    #[arg(long, global = true, default_value_t = 1.0)]
    pub warmup: f64,
    /// Server process id: report its CPU seconds and RSS from /proc
    #[arg(long, global = true)]
    pub pid: Option<u32>,
    /// Label for the server in the output (e.g. happn-rs, happn-2.21)
    #[arg(long, global = true, default_value = "server")]
    pub label: String,
    /// Protocol string put in every request. A value starting with `happn_` (happn-3 uses
    /// `happn_4`) also sends `configure-session` with it before describe/login, as the happn-3
    /// client does; happn 2.x servers and happn-rs take the default and know no configure-session
    #[arg(long, global = true, default_value = "1.1.0")]
    pub protocol: String,
    /// How requests are written: `frame` puts every websocket frame in a write syscall of its
    /// own, as the npm happn client does (so the server gets one wake-up per request); `batched`
    /// feeds every frame that is ready and flushes once (up to `--inflight` frames per write)
    #[arg(long, global = true, value_enum, default_value_t = WriteMode::Frame)]
    pub write_mode: WriteMode,
}

/// See `Common::write_mode`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    Frame,
    Batched,
}

impl WriteMode {
    pub fn name(self) -> &'static str {
        match self {
            WriteMode::Frame => "frame",
            WriteMode::Batched => "batched",
        }
    }
}

impl Common {
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration.max(0.1))
    }
    pub fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup.max(0.0))
    }
}

#[derive(Args, Debug, Clone)]
pub struct Load {
    /// Concurrent connections
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Requests in flight per connection
    #[arg(long, default_value_t = 32)]
    pub inflight: usize,
    /// Distinct keys
    #[arg(long, default_value_t = 1000)]
    pub keys: usize,
    /// Payload bytes per document
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// set throughput and latency
    Set(Load),
    /// get (exact path) throughput and latency, over pre-set keys
    Get(Load),
    /// P publishers set on /bench/fan/*, S subscribers on a wildcard: delivered events/s, latency
    Fanout {
        #[arg(long, default_value_t = 1)]
        publishers: usize,
        #[arg(long, default_value_t = 100)]
        subscribers: usize,
        #[arg(long, default_value_t = 32)]
        inflight: usize,
        #[arg(long, default_value_t = 64)]
        payload: usize,
    },
    /// set throughput with M = 0 … N non-matching wildcard subscriptions on the server
    SubsScale {
        /// Comma-separated subscription counts
        #[arg(long, default_value = "0,1000,10000,100000", value_delimiter = ',')]
        subs: Vec<usize>,
        #[command(flatten)]
        load: Load,
    },
    /// C idle logged-in connections; server memory per connection (needs --pid)
    Conns {
        #[arg(long, default_value_t = 1000)]
        count: usize,
    },
    /// password and token logins per second
    Login {
        #[arg(long, default_value_t = 8)]
        clients: usize,
    },
    /// get latency alone, then while N other connections log in with a password non-stop
    LoginIsolation {
        /// Connections doing gets (one in flight each)
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Connections logging in with a password, one login in flight each
        #[arg(long, default_value_t = 100)]
        logins: usize,
    },
    /// request/response against a raw websocket echo server inside this tool: the transport
    /// ceiling of this machine for the same load shape
    Echo {
        #[command(flatten)]
        load: Load,
        /// Drive the echo server at --url (one started with `echo-server`, in its own process)
        /// instead of one inside this process: the ceiling for a server that, like a real one,
        /// is another process, with the kernel's cross-process wake-ups and scheduling
        #[arg(long)]
        external: bool,
    },
    /// Run the websocket echo server alone (for `echo --external`) until killed; prints the
    /// address it listens on
    EchoServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Run the floor server until killed: a minimal websocket server (HTTP upgrade, framing, one
    /// write per read batch) that answers describe, login, set, get and anything else with canned
    /// happn-shaped replies (the request's eventId and path copied in). Every load, the npm
    /// client included, runs against it unchanged: the cost of the kernel, the wake-ups and the
    /// framing with no happn work at all. Prints the address it listens on
    FloorServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// 0: a thread per core; 1: a single-threaded runtime (to compare with `happn-rs --threads 1`)
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// A device fleet, open loop: N logged-in connections each send one request (set, or get)
    /// every interval whether or not the last reply came; offered vs achieved rate, latency from
    /// each request's scheduled send time, server CPU per request and RSS
    Devices(devices::Fleet),
    /// Writers spread over the nodes of a happn-rs cluster and subscribers on every node:
    /// acknowledged sets/s, whether every event reached every node, cross-node delivery latency
    /// (see bench/cluster.sh)
    Cluster(cluster::ClusterLoad),
}

fn main() {
    let cli = Cli::parse();
    raise_fd_limit();
    let rt = match cli.scenario {
        Scenario::FloorServer { threads: 1, .. } => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        _ => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    }
    .expect("tokio runtime");
    let result = rt.block_on(async {
        match cli.scenario {
            Scenario::Set(load) => scenarios::set(&cli.common, &load).await,
            Scenario::Get(load) => scenarios::get(&cli.common, &load).await,
            Scenario::Fanout {
                publishers,
                subscribers,
                inflight,
                payload,
            } => scenarios::fanout(&cli.common, publishers, subscribers, inflight, payload).await,
            Scenario::SubsScale { subs, load } => scenarios::subs_scale(&cli.common, &subs, &load).await,
            Scenario::Conns { count } => scenarios::conns(&cli.common, count).await,
            Scenario::Login { clients } => scenarios::login(&cli.common, clients).await,
            Scenario::LoginIsolation { clients, logins } => scenarios::login_isolation(&cli.common, clients, logins).await,
            Scenario::Echo { load, external } => scenarios::echo(&cli.common, &load, external).await,
            Scenario::EchoServer { listen } => scenarios::echo_serve(&listen).await,
            Scenario::FloorServer { listen, .. } => floor::serve(&listen).await,
            Scenario::Devices(fleet) => devices::run(&cli.common, &fleet).await,
            Scenario::Cluster(load) => cluster::run(&cli.common, &load).await,
        }
    });
    if let Err(e) = result {
        eprintln!("happn-bench: {e}");
        std::process::exit(1);
    }
}

/// Many connections need many file descriptors: raise the soft limit to the hard one.
fn raise_fd_limit() {
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
