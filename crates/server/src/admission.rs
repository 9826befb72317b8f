//! Admission: which sockets the server takes, and how it behaves when it cannot take more.
//!
//! Every accepted socket holds a [`Slot`] until it closes — first as an HTTP connection, then as a
//! websocket after the upgrade — counted in all and per client address. Over either limit a new
//! socket is closed at once (plain HTTP gets a 503 first), so a flood of silent sockets costs the
//! server one descriptor for a moment each instead of one for as long as the attacker likes, and
//! one address cannot take the slots every other client needs. The global limit defaults to the
//! open-file limit minus a reserve, so the server refuses before the kernel does: the reserve
//! keeps descriptors for the data files, static files and the accept that refuses.
//!
//! When `accept` itself fails for want of descriptors or memory anyway, the loop backs off
//! (10 ms doubling to 1 s) with one warning per burst instead of retrying at full speed.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connections one client address may hold by default: room for a site of devices behind one
/// NAT, far below what a server with a normal open-file limit can hold in all.
pub const DEFAULT_MAX_PER_IP: usize = 1000;
/// A request head (the first, or the next on a kept-alive connection) must be complete within
/// this time of the connection being ready for it.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// At most one "connection refused" warning per this interval; it counts the refusals between.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);
const BACKOFF_FIRST: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What a limit counts by: an IPv4 address, or the /64 an IPv6 address is in (one subscriber's
/// network gets a /64; counting single addresses there would count nothing). IPv4-mapped IPv6
/// addresses count as the IPv4 address they are. Loopback is an address like any other.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Source {
    V4(u32),
    V6(u64),
}

impl Source {
    fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.into()),
                None => Source::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerIp,
}

/// The open connections, in all and per source. The map only holds sources with a connection
/// open (a slot that takes a count to zero removes the entry), so it is bounded by the global
/// limit.
struct Counts {
    total: usize,
    by_source: HashMap<Source, u32>,
}

struct Refusals {
    since_log: u64,
    last_log: Option<Instant>,
}

pub struct Limiter {
    max: usize,
    /// 0: no per-address limit.
    max_per_ip: usize,
    counts: Mutex<Counts>,
    refusals: Mutex<Refusals>,
    /// Connections refused by the global and the per-address limit, since the start (metrics).
    refused_total: AtomicU64,
    refused_per_ip: AtomicU64,
    /// Woken when the last slot is given back (a stopping server waits for it).
    drained: tokio::sync::Notify,
}

/// One admitted connection's place; released when dropped (shared with `Arc` between the HTTP
/// connection and the websocket it becomes).
pub struct Slot {
    limiter: Arc<Limiter>,
    source: Option<Source>,
    /// The peer's address (routes open to loopback only, such as an insecure server's export).
    peer: IpAddr,
}

impl Slot {
    /// The address the connection comes from.
    pub fn peer_ip(&self) -> IpAddr {
        self.peer
    }
}

impl Limiter {
    pub fn new(max: usize, max_per_ip: usize) -> Arc<Limiter> {
        Arc::new(Limiter {
            max,
            max_per_ip,
            counts: Mutex::new(Counts {
                total: 0,
                by_source: HashMap::new(),
            }),
            refusals: Mutex::new(Refusals {
                since_log: 0,
                last_log: None,
            }),
            refused_total: AtomicU64::new(0),
            refused_per_ip: AtomicU64::new(0),
            drained: tokio::sync::Notify::new(),
        })
    }

    /// A slot for a connection from `ip`, or which limit it is over.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        let mut counts = self.counts.lock();
        if counts.total >= self.max {
            return Err(Refused::Total);
        }
        let source = if self.max_per_ip > 0 {
            let source = Source::of(ip);
            let open = counts.by_source.entry(source).or_insert(0);
            if *open as usize >= self.max_per_ip {
                return Err(Refused::PerIp);
            }
            *open += 1;
            Some(source)
        } else {
            None
        };
        counts.total += 1;
        Ok(Slot {
            limiter: self.clone(),
            source,
            peer: ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts.lock().total
    }

    /// Connections refused so far by the global and by the per-address limit.
    pub fn refusals(&self) -> (u64, u64) {
        (
            self.refused_total.load(Ordering::Relaxed),
            self.refused_per_ip.load(Ordering::Relaxed),
        )
    }

    /// Until every admitted connection — HTTP or websocket — has closed.
    pub async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            // Registered before the count is read, so a release in between is not missed.
            notified.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Note a refusal: a warning at most once a second, with how many were refused since.
    pub fn log_refusal(&self, ip: IpAddr, why: Refused) {
        match why {
            Refused::Total => &self.refused_total,
            Refused::PerIp => &self.refused_per_ip,
        }
        .fetch_add(1, Ordering::Relaxed);
        let mut r = self.refusals.lock();
        r.since_log += 1;
        let now = Instant::now();
        if r.last_log.is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_INTERVAL) {
            return;
        }
        let refused = std::mem::take(&mut r.since_log);
        r.last_log = Some(now);
        drop(r);
        match why {
            Refused::Total => tracing::warn!(
                client = %ip, limit = self.max, refused,
                "connection limit reached (connections.max): new connections are closed at once"
            ),
            Refused::PerIp => tracing::warn!(
                client = %ip, limit = self.max_per_ip, refused,
                "per-address connection limit reached (connections.maxPerIp): this address's new connections are closed at once"
            ),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.limiter.counts.lock();
        counts.total -= 1;
        if counts.total == 0 {
            self.limiter.drained.notify_waiters();
        }
        if let Some(source) = self.source {
            if let Some(open) = counts.by_source.get_mut(&source) {
                *open -= 1;
                if *open == 0 {
                    counts.by_source.remove(&source);
                }
            }
        }
    }
}

/// The soft open-file limit (`None` when unlimited or unknown).
pub fn open_file_limit() -> Option<u64> {
    let (soft, _) = rlimit_nofile()?;
    (soft != libc::RLIM_INFINITY).then_some(soft)
}

fn rlimit_nofile() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct it is given and nothing else.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some((lim.rlim_cur, lim.rlim_max))
}

/// Raise the soft open-file limit to the hard one. The soft default (often 1,024) is meant for
/// programs that open a few files; the hard limit is what the administrator allows this process,
/// and a server's sockets are descriptors. Logs the limit in force; returns it.
pub fn raise_open_file_limit() -> Option<u64> {
    let (soft, hard) = rlimit_nofile()?;
    if soft < hard {
        let lim = libc::rlimit {
            rlim_cur: hard,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            let e = io::Error::last_os_error();
            tracing::warn!(soft, hard, error = %e, "could not raise the open-file limit to the hard limit");
        }
    }
    let limit = open_file_limit();
    match limit {
        Some(n) => tracing::info!(open_files = n, "open-file limit"),
        None => tracing::info!("open-file limit: unlimited"),
    }
    limit
}

/// The default global limit: the open-file limit less a reserve of one eighth (at least 64, at
/// most 4,096 descriptors) for everything else the server opens.
pub fn default_max_connections(open_files: Option<u64>) -> usize {
    let limit = open_files.unwrap_or(1 << 20).min(1 << 20) as usize;
    let reserve = (limit / 8).clamp(64, 4096);
    limit.saturating_sub(reserve).max(16)
}

/// The default per-address limit: [`DEFAULT_MAX_PER_IP`], but never more than half the global
/// limit, so under a low open-file limit one address still cannot take every slot.
pub fn default_max_per_ip(max: usize) -> usize {
    DEFAULT_MAX_PER_IP.min(max / 2).max(1)
}

/// Close a refused plain-HTTP socket, with a 503 if the socket takes it at once (it never waits:
/// the point is to give the descriptor back).
/// The body names the limit, so a client's operator can tell which one it ran into.
pub fn refuse_plain(stream: tokio::net::TcpStream, why: Refused) {
    use std::io::Write;
    let body = match why {
        Refused::Total => "too many connections (connections.max)",
        Refused::PerIp => "too many connections from this address (connections.maxPerIp)",
    };
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if let Ok(mut s) = stream.into_std() {
        let _ = s.write(reply.as_bytes());
    }
}

/// An accept error that concerns one connection that died in the queue: accept the next at once.
pub fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// The accept loop's back-off while accepting fails: 10 ms doubling to 1 s, one warning for the
/// whole burst, and a line when accepting works again.
#[derive(Default)]
pub struct Backoff {
    delay: Option<Duration>,
    failures: u64,
}

impl Backoff {
    /// How long to wait after this failure.
    pub fn failed(&mut self, e: &io::Error, open_connections: usize) -> Duration {
        self.failures += 1;
        let delay = self.delay.map_or(BACKOFF_FIRST, |d| (d * 2).min(BACKOFF_MAX));
        if self.delay.is_none() {
            let limit = open_file_limit().map_or("unlimited".to_string(), |n| n.to_string());
            let cause = match e.raw_os_error() {
                Some(libc::EMFILE) => format!(
                    "the process has no file descriptor left (open-file limit {limit}): raise it (ulimit -n, LimitNOFILE=) or lower connections.max"
                ),
                Some(libc::ENFILE) => "the system has no file descriptor left (fs.file-max reached)".to_string(),
                Some(libc::ENOBUFS) | Some(libc::ENOMEM) => "the system is out of memory for sockets".to_string(),
                _ => "accepting connections fails".to_string(),
            };
            tracing::warn!(
                error = %e, open_connections,
                "accept failed: {cause}; backing off (up to 1 s between tries) until it works again"
            );
        }
        self.delay = Some(delay);
        delay
    }

    /// Accepting works (again).
    pub fn succeeded(&mut self) {
        if self.delay.take().is_some() {
            tracing::info!(failures = self.failures, "accepting connections again");
            self.failures = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn limits_in_all_and_per_source_and_releases_on_drop() {
        let l = Limiter::new(5, 2);
        let a1 = l.admit(ip("10.0.0.1")).unwrap();
        let a2 = l.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(l.admit(ip("10.0.0.1")).err(), Some(Refused::PerIp));
        // The same address written as IPv4-mapped IPv6 is the same source.
        assert_eq!(l.admit(ip("::ffff:10.0.0.1")).err(), Some(Refused::PerIp));
        let _b = l.admit(ip("10.0.0.2")).unwrap();
        // One IPv6 /64 is one source.
        let _c1 = l.admit(ip("2001:db8::1")).unwrap();
        let _c2 = l.admit(ip("2001:db8::2")).unwrap();
        assert_eq!(l.admit(ip("2001:db8::3")).err(), Some(Refused::Total));
        drop(a1);
        assert_eq!(l.admit(ip("2001:db8::3")).err(), Some(Refused::PerIp));
        let a3 = l.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(l.open(), 5);
        drop((a2, a3));
        assert_eq!(l.open(), 3);
        // Sources with nothing open leave the map: it stays bounded by what is open.
        assert_eq!(l.counts.lock().by_source.len(), 2);
    }

    #[test]
    fn no_per_source_limit_at_zero() {
        let l = Limiter::new(3, 0);
        let slots: Vec<_> = (0..3).map(|_| l.admit(ip("127.0.0.1")).unwrap()).collect();
        assert_eq!(l.admit(ip("127.0.0.1")).err(), Some(Refused::Total));
        assert!(l.counts.lock().by_source.is_empty());
        drop(slots);
        assert_eq!(l.open(), 0);
    }

    #[test]
    fn defaults_follow_the_open_file_limit() {
        assert_eq!(default_max_connections(Some(1024)), 1024 - 128);
        assert_eq!(default_max_connections(Some(256)), 256 - 64);
        assert_eq!(default_max_connections(Some(1 << 20)), (1 << 20) - 4096);
        assert_eq!(default_max_connections(None), (1 << 20) - 4096);
        assert_eq!(default_max_per_ip(896), 448);
        assert_eq!(default_max_per_ip(1_000_000), DEFAULT_MAX_PER_IP);
    }

    #[test]
    fn backoff_doubles_to_a_second_and_resets() {
        let mut b = Backoff::default();
        let e = io::Error::from_raw_os_error(libc::EMFILE);
        let delays: Vec<_> = (0..10).map(|_| b.failed(&e, 0)).collect();
        assert_eq!(delays[0], Duration::from_millis(10));
        assert_eq!(delays[1], Duration::from_millis(20));
        assert_eq!(*delays.last().unwrap(), Duration::from_secs(1));
        b.succeeded();
        assert_eq!(b.failed(&e, 0), Duration::from_millis(10));
    }
}
