//! Attacks on the HTTP front door, against the release binary on loopback: sockets that never
//! send a request, request heads dribbled a byte at a time (slowloris), floods over the global and
//! the per-address connection limit, and running the process out of file descriptors. Each test
//! checks that the attack fails and that a well-behaved client is unaffected while it runs.
//!
//! The tests run one at a time (each starts its own server and opens hundreds of sockets; run
//! together they would measure each other's load, not the server's).

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{free_port, server_command, Ws};

/// The bound on a well-behaved client's request latency (p99) while an attack runs.
const P99_BOUND: Duration = Duration::from_millis(200);

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The test process opens hundreds of sockets: its own soft limit goes up to the hard one.
fn raise_own_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

fn hard_fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the local struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    lim.rlim_max
}

struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The binary in memory with `config`, its log in a file; `nofile` (soft, hard) is set in the
/// child before it runs.
fn start(config: Value, nofile: Option<(u64, u64)>) -> Server {
    let port = free_port();
    let log = std::env::temp_dir().join(format!("happn-adversarial-http-{}-{port}.log", std::process::id()));
    let mut cmd: Command = server_command(port);
    cmd.arg("--memory")
        .env("HAPPN_SERVER_CONFIG", config.to_string())
        .stderr(std::fs::File::create(&log).unwrap());
    if let Some((soft, hard)) = nofile {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    Server {
        child: cmd.spawn().unwrap(),
        port,
        log,
    }
}

impl Server {
    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// CPU time used so far (user + system), in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name (which is in parentheses): utime and stime are 14 and 15.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }
}

/// A TCP connection from loopback address `from` (127.0.0.x).
async fn tcp_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::from((from, 0)))?;
    s.connect(to).await
}

/// A logged-in websocket client from `from`, or the error that kept it out.
async fn client_from(from: [u8; 4], to: SocketAddr) -> Result<Ws, String> {
    let tcp = tcp_from(from, to).await.map_err(|e| e.to_string())?;
    let url = format!("ws://{to}/primus?_primuscb=t");
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp)),
    )
    .await
    .map_err(|_| "handshake timed out".to_string())?
    .map_err(|e| e.to_string())?;
    let r = request(&mut ws, json!({"action":"login","eventId":0,"data":{}})).await;
    assert_eq!(r["_meta"]["status"], "ok", "{r}");
    Ok(ws)
}

/// Wait for the server to listen, then connect a well-behaved client.
async fn first_client(s: &Server) -> Ws {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client_from([127, 0, 0, 1], s.addr()).await {
            Ok(ws) => return ws,
            Err(e) if Instant::now() > deadline => panic!("server did not come up: {e}\n{}", s.log()),
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

async fn request(ws: &mut Ws, v: Value) -> Value {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a reply within 5 s")
            .expect("connection open")
            .unwrap();
        if let Message::Text(t) = m {
            let r: Value = serde_json::from_str(&t).unwrap();
            if r["_meta"]["type"] == "response" {
                return r;
            }
        }
    }
}

/// Set and read back a value every 10 ms for `time`; every reply must be right. Returns the
/// round trips' latencies.
async fn round_trips(ws: &mut Ws, tag: &str, time: Duration) -> Vec<Duration> {
    let end = Instant::now() + time;
    let mut latencies = Vec::new();
    let mut i = 1u64;
    while Instant::now() < end && latencies.len() < 2000 {
        let path = format!("/good/{tag}");
        let t = Instant::now();
        let r = request(ws, json!({"action":"set","eventId":i,"path":path,"data":{"v":i}})).await;
        assert_eq!(r["_meta"]["status"], "ok", "{r}");
        let r = request(ws, json!({"action":"get","eventId":i + 1,"path":path})).await;
        assert_eq!(r["data"]["v"], i, "{r}");
        latencies.push(t.elapsed() / 2);
        i += 2;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    latencies
}

fn assert_p99(mut latencies: Vec<Duration>, what: &str) {
    assert!(latencies.len() >= 10, "{what}: only {} round trips", latencies.len());
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    assert!(p99 < P99_BOUND, "{what}: p99 {p99:?} over {} requests", latencies.len());
}

/// Drive a well-behaved client for `time` in the background; join it for its latencies.
fn spawn_round_trips(mut ws: Ws, tag: &'static str, time: Duration) -> tokio::task::JoinHandle<(Ws, Vec<Duration>)> {
    tokio::spawn(async move {
        let l = round_trips(&mut ws, tag, time).await;
        (ws, l)
    })
}

/// How a socket that sent nothing (or a partial head) fares: the server closed it (EOF or reset,
/// or after a 503), or it is still open when `wait` runs out.
#[derive(Debug, PartialEq)]
enum Fate {
    Closed { after: Duration, refused_503: bool },
    Open,
}

async fn fate(s: &mut TcpStream, since: Instant, wait: Duration) -> Fate {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return Fate::Open,
            Ok(Ok(n)) if n > 0 && got.len() < 4096 => got.extend_from_slice(&buf[..n]),
            Ok(_) => {
                return Fate::Closed {
                    after: since.elapsed(),
                    refused_503: got.starts_with(b"HTTP/1.1 503"),
                }
            }
        }
    }
}

/// The fates of many sockets, watched together.
async fn fates(sockets: &mut [TcpStream], since: Instant, wait: Duration) -> Vec<Fate> {
    futures_util::future::join_all(sockets.iter_mut().map(|s| fate(s, since, wait))).await
}

fn closed_by(f: &Fate, bound: Duration) -> bool {
    matches!(f, Fate::Closed { after, .. } if *after <= bound)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_slowloris_and_idle_connections_are_closed_after_the_header_timeout() {
    let _serial = SERIAL.lock().await;
    raise_own_fd_limit();
    let s = start(json!({"connections": {"headerTimeout": 1000}}), None);
    let good = first_client(&s).await;
    let addr = s.addr();

    let start = Instant::now();
    // 200 sockets that never send a byte, and 200 that send a request head one byte every
    // 200 ms: a head that never ends.
    let silent: Vec<_> = futures_util::future::join_all((0..200).map(|_| TcpStream::connect(addr))).await;
    let dribblers: Vec<_> = (0..200)
        .map(|_| {
            tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                let since = Instant::now();
                s.write_all(b"GET /ping HTTP/1.1\r\n").await.unwrap();
                let end = since + Duration::from_secs(6);
                while Instant::now() < end {
                    if s.write_all(b"X").await.is_err() {
                        break;
                    }
                    if let Ok(f) = tokio::time::timeout(Duration::from_millis(200), fate(&mut s, since, Duration::from_secs(6))).await {
                        return f;
                    }
                }
                fate(&mut s, since, Duration::from_millis(10)).await
            })
        })
        .collect();
    // A kept-alive HTTP client that asks every 300 ms stays open; one that goes quiet after a
    // request is closed like the silent ones.
    let keep_alive = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut buf = vec![0u8; 1024];
        for _ in 0..10 {
            s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
            let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let mut quiet = TcpStream::connect(addr).await.unwrap();
    quiet.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let quiet_since = Instant::now();

    let work = spawn_round_trips(good, "loris", Duration::from_secs(3));

    let mut silent: Vec<TcpStream> = silent.into_iter().map(Result::unwrap).collect();
    let fates = fates(&mut silent, start, Duration::from_secs(6)).await;
    let bound = Duration::from_secs(4);
    let still_open = fates.iter().filter(|f| !closed_by(f, bound)).count();
    assert_eq!(still_open, 0, "silent connections not closed within {bound:?}: {fates:?}");
    assert!(
        fates
            .iter()
            .all(|f| matches!(f, Fate::Closed { after, .. } if *after >= Duration::from_millis(900))),
        "closed before the header timeout: {fates:?}"
    );
    let mut loris = Vec::new();
    for d in dribblers {
        loris.push(d.await.unwrap());
    }
    assert!(
        loris.iter().all(|f| closed_by(f, bound)),
        "slowloris connections not closed within {bound:?}: {loris:?}"
    );
    match fate(&mut quiet, quiet_since, Duration::from_secs(4)).await {
        Fate::Closed { after, .. } => assert!(after >= Duration::from_millis(900), "idle connection closed early: {after:?}"),
        Fate::Open => panic!("an idle kept-alive connection stayed open"),
    }
    keep_alive.await.unwrap();
    let (mut good, latencies) = work.await.unwrap();
    assert_p99(latencies, "websocket client during slowloris");
    // The header timer ends with the upgrade: an established websocket stays open while quiet.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_p99(
        round_trips(&mut good, "after", Duration::from_millis(300)).await,
        "websocket client after a quiet spell",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_over_the_global_limit_is_refused_and_a_client_gets_in_once_slots_free() {
    let _serial = SERIAL.lock().await;
    raise_own_fd_limit();
    const MAX: usize = 60;
    let s = start(json!({"connections": {"max": MAX, "maxPerIp": 0, "headerTimeout": 3000}}), None);
    let good = first_client(&s).await;
    let addr = s.addr();
    let work = spawn_round_trips(good, "global", Duration::from_secs(1));

    let start = Instant::now();
    let mut flood = Vec::new();
    for _ in 0..MAX + 50 {
        flood.push(TcpStream::connect(addr).await.unwrap());
    }
    // Refused sockets are closed at once, with a 503; admitted ones stay until the header timeout.
    let fates = fates(&mut flood, start, Duration::from_millis(500)).await;
    let refused = fates.iter().filter(|f| matches!(f, Fate::Closed { .. })).count();
    let open = fates.iter().filter(|f| **f == Fate::Open).count();
    assert_eq!(open, MAX - 1, "the well-behaved client holds one slot: {fates:?}");
    assert_eq!(refused, 51, "{fates:?}");
    assert!(
        fates.iter().any(|f| matches!(f, Fate::Closed { refused_503: true, .. })),
        "refused plain-HTTP sockets get a 503 when they can take it: {fates:?}"
    );
    // While the flood holds every slot a newcomer is refused too...
    assert!(client_from([127, 0, 0, 1], addr).await.is_err(), "the limit holds");
    let (_good, latencies) = work.await.unwrap();
    assert_p99(latencies, "connected client during the flood");

    // ...and gets in once the header timeout has closed the flood.
    let admitted: Vec<_> = flood
        .into_iter()
        .zip(&fates)
        .filter(|(_, f)| **f == Fate::Open)
        .map(|(s, _)| s)
        .collect();
    let closed = self::fates(&mut { admitted }, start, Duration::from_secs(8)).await;
    assert!(closed.iter().all(|f| closed_by(f, Duration::from_secs(8))), "{closed:?}");
    let mut newcomer = client_from([127, 0, 0, 1], addr)
        .await
        .expect("a client gets in once slots are free");
    assert_p99(round_trips(&mut newcomer, "newcomer", Duration::from_millis(300)).await, "newcomer");
    let log = s.log();
    let warnings = log.matches("connection limit reached").count();
    assert!((1..=5).contains(&warnings), "one rate-limited warning per second:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_over_its_limit_does_not_block_another() {
    let _serial = SERIAL.lock().await;
    raise_own_fd_limit();
    const PER_IP: usize = 20;
    let s = start(json!({"connections": {"max": 1000, "maxPerIp": PER_IP}}), None);
    let good = first_client(&s).await;
    let addr = s.addr();
    let work = spawn_round_trips(good, "per-ip", Duration::from_secs(1));

    // 127.0.0.2 opens twice its share of silent sockets: the excess is closed at once.
    let start = Instant::now();
    let mut greedy = Vec::new();
    for _ in 0..2 * PER_IP {
        greedy.push(tcp_from([127, 0, 0, 2], addr).await.unwrap());
    }
    let fates = fates(&mut greedy, start, Duration::from_millis(500)).await;
    assert_eq!(fates.iter().filter(|f| **f == Fate::Open).count(), PER_IP, "{fates:?}");
    assert!(client_from([127, 0, 0, 2], addr).await.is_err(), "127.0.0.2 is at its limit");

    // Other addresses are not affected.
    let mut other = client_from([127, 0, 0, 3], addr).await.expect("127.0.0.3 gets in");
    assert_p99(
        round_trips(&mut other, "other", Duration::from_millis(300)).await,
        "client from 127.0.0.3",
    );
    let (_good, latencies) = work.await.unwrap();
    assert_p99(latencies, "client from 127.0.0.1 during the per-address flood");

    // Websockets hold their slot too: 127.0.0.4's 21st connection is refused.
    let mut sockets = Vec::new();
    for _ in 0..PER_IP {
        sockets.push(client_from([127, 0, 0, 4], addr).await.expect("within the limit"));
    }
    assert!(client_from([127, 0, 0, 4], addr).await.is_err(), "websockets count");
    drop(sockets);

    // Closing the sockets gives the slots back.
    drop(greedy);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut back = loop {
        match client_from([127, 0, 0, 2], addr).await {
            Ok(ws) => break ws,
            Err(e) if Instant::now() > deadline => panic!("127.0.0.2 still refused after its sockets closed: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert_p99(round_trips(&mut back, "back", Duration::from_millis(300)).await, "127.0.0.2 again");
    assert!(s.log().contains("per-address connection limit reached"), "{}", s.log());
}

/// The `Max open files` soft and hard limits of a process.
fn proc_nofile(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let f: Vec<&str> = line["Max open files".len()..].split_whitespace().collect();
    (f[0].parse().unwrap(), f[1].parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soft_file_limit_is_raised_to_the_hard_limit() {
    let _serial = SERIAL.lock().await;
    let hard = hard_fd_limit().min(4096);
    assert!(hard > 256, "this test needs a hard open-file limit above 256");
    let s = start(json!({}), Some((256, hard)));
    let _ws = first_client(&s).await;
    assert_eq!(proc_nofile(s.child.id()), (hard, hard));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_backs_off_without_spinning_and_recovers() {
    let _serial = SERIAL.lock().await;
    raise_own_fd_limit();
    // A hard limit of 256 and no connection limit to speak of: the flood exhausts the process's
    // descriptors, and accept fails with EMFILE.
    let s = start(
        json!({"connections": {"max": 100000, "maxPerIp": 0, "headerTimeout": 30000}}),
        Some((256, 256)),
    );
    let good = first_client(&s).await;
    let addr = s.addr();
    let mut flood = Vec::new();
    for _ in 0..400 {
        // The kernel completes connections into the listen queue even while the server cannot
        // accept them.
        flood.push(TcpStream::connect(addr).await.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !s.log().contains("accept failed") {
        assert!(Instant::now() < deadline, "no accept warning:\n{}", s.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Out of descriptors, with connections waiting: the accept loop sleeps, it does not spin.
    let ticks = s.cpu_ticks();
    let work = spawn_round_trips(good, "emfile", Duration::from_secs(2));
    let (_good, latencies) = work.await.unwrap();
    let used = s.cpu_ticks() - ticks;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    assert!(
        used * 1000 / hz < 400,
        "the server used {} ms of CPU in 2 s while out of descriptors",
        used * 1000 / hz
    );
    assert_p99(latencies, "connected client while the server is out of descriptors");

    // The flood goes away: new clients get in.
    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut newcomer = loop {
        match client_from([127, 0, 0, 1], addr).await {
            Ok(ws) => break ws,
            Err(e) if Instant::now() > deadline => panic!("no client got in after the flood: {e}\n{}", s.log()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert_p99(
        round_trips(&mut newcomer, "recovered", Duration::from_millis(300)).await,
        "client after the flood",
    );
    let log = s.log();
    let warnings = log.matches("accept failed").count();
    assert!((1..=3).contains(&warnings), "one warning per burst, not one per try:\n{log}");
    assert!(log.contains("open-file limit 256"), "the warning names the limit:\n{log}");
}
