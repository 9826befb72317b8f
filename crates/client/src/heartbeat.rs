//! The Primus heartbeat of this happn fork: the client pings, the server pongs. A ping goes out
//! `ping` after the socket opened or after the last pong (other traffic does not count); a ping
//! unanswered for `pong` means the socket is dead.

use std::time::Duration;
use tokio::time::Instant;

pub(crate) struct Heartbeat {
    ping: Option<Duration>,
    pong: Duration,
    next_ping: Option<Instant>,
    pong_deadline: Option<Instant>,
}

impl Heartbeat {
    /// Armed from now. A zero or absent interval turns pinging off.
    pub fn new(ping: Option<Duration>, pong: Duration) -> Self {
        let ping = ping.filter(|p| !p.is_zero());
        Heartbeat {
            ping,
            pong,
            next_ping: ping.map(|p| Instant::now() + p),
            pong_deadline: None,
        }
    }

    /// When the next ping is due (none while a pong is awaited).
    pub fn ping_at(&self) -> Option<Instant> {
        self.next_ping
    }

    /// When an unanswered ping declares the socket dead.
    pub fn pong_deadline(&self) -> Option<Instant> {
        self.pong_deadline
    }

    pub fn ping_sent(&mut self) {
        self.next_ping = None;
        self.pong_deadline = Some(Instant::now() + self.pong);
    }

    /// Any pong (solicited or not) clears the deadline and re-arms the ping timer.
    pub fn pong_received(&mut self) {
        self.pong_deadline = None;
        self.next_ping = self.ping.map(|p| Instant::now() + p);
    }
}

/// Sleep until `at`, or forever when there is nothing to wait for (a disarmed timer in a
/// `select!`).
pub(crate) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_pong_cycle() {
        let mut h = Heartbeat::new(Some(Duration::from_secs(25)), Duration::from_secs(10));
        assert!(h.ping_at().is_some() && h.pong_deadline().is_none());
        h.ping_sent();
        assert!(h.ping_at().is_none() && h.pong_deadline().is_some());
        h.pong_received();
        assert!(h.ping_at().is_some() && h.pong_deadline().is_none());
        let h = Heartbeat::new(Some(Duration::ZERO), Duration::from_secs(1));
        assert!(h.ping_at().is_none());
    }
}
