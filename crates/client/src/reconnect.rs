//! Getting back after a lost socket: Primus' backoff, a new socket, describe and login again
//! (password, or the last session's token when the password is refused), then the connection
//! task resumes with re-subscriptions. Requests made meanwhile are queued, not failed.

use crate::config::{Credentials, ReconnectPolicy};
use crate::driver::{Command, Driver};
use crate::handshake::establish;
use crate::socket::Socket;
use crate::types::{ClientEvent, EndReason};
use rand::Rng;
use std::time::Duration;
use tokio::sync::oneshot;

/// How the reconnect loop ended.
pub(crate) enum Outcome {
    Connected(Socket),
    End(EndReason),
    Close(oneshot::Sender<()>),
}

/// The delay before attempt `attempt` (1-based): exactly `min_delay` first, then
/// `min_delay · factor^(attempt−1) · (1 + random)`, capped at `max_delay`.
pub(crate) fn backoff(policy: &ReconnectPolicy, attempt: u32) -> Duration {
    let min = policy.min_delay.as_secs_f64();
    let max = policy.max_delay.as_secs_f64();
    let secs = if attempt <= 1 {
        min
    } else {
        let jitter = 1.0 + rand::thread_rng().gen::<f64>();
        // Capping the exponent keeps the cast in range; the result is capped at `max` anyway.
        min * policy.factor.powi((attempt - 1).min(1024) as i32) * jitter
    };
    // Round to whole milliseconds as Primus does; `min` also guards against NaN and infinity.
    Duration::from_millis((secs.min(max).max(0.0) * 1000.0).round() as u64)
}

/// Credentials to try, in order. A password login is retried as configured and, should the
/// server refuse it now, with the token of the last session (valid as long as the server keeps
/// its token secret). A token login prefers the newest session's token.
pub(crate) fn login_candidates(configured: &Credentials, last_token: Option<String>) -> Vec<Credentials> {
    let mut out = Vec::new();
    match configured {
        Credentials::Password { .. } => {
            out.push(configured.clone());
            out.extend(last_token.map(Credentials::Token));
        }
        Credentials::Token(t) => {
            out.extend(last_token.filter(|l| l != t).map(Credentials::Token));
            out.push(configured.clone());
        }
        Credentials::Anonymous => out.push(Credentials::Anonymous),
    }
    out
}

impl Driver {
    /// Try until a session is established, the policy gives up, or the client is closed.
    pub(crate) async fn reconnect(&mut self) -> Outcome {
        let policy = self.shared.config.reconnect.clone();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if policy.max_attempts.is_some_and(|max| attempt > max) {
                return Outcome::End(EndReason::ReconnectGaveUp);
            }
            let delay = backoff(&policy, attempt);
            let _ = self.shared.events.send(ClientEvent::Reconnecting { attempt, delay });
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    command = self.commands.recv() => if let Some(out) = self.while_down(command) { return out },
                }
            }
            // Callers that gave up while we were away need not be written later.
            let pending = &self.shared.pending;
            self.queue.retain(|o| pending.contains(o.event_id));

            let last_token = self.shared.session.read().as_ref().and_then(|s| s.token.clone());
            let candidates = login_candidates(&self.shared.config.credentials, last_token);
            let attempt_fut = establish(self.shared.clone(), candidates);
            tokio::pin!(attempt_fut);
            let result = loop {
                tokio::select! {
                    r = &mut attempt_fut => break r,
                    command = self.commands.recv() => if let Some(out) = self.while_down(command) { return out },
                }
            };
            match result {
                Ok(est) => {
                    let session = est.session.clone();
                    self.start_session(&est.socket, est.session, est.server);
                    let _ = self.shared.events.send(ClientEvent::Reconnected { session });
                    return Outcome::Connected(est.socket);
                }
                // The same credentials will be refused again: stop rather than hammer the
                // server (and its lockout) forever.
                Err(e) if e.is_access_denied() => return Outcome::End(EndReason::LoginRejected(e)),
                Err(error) => {
                    tracing::debug!(attempt, %error, "reconnect attempt failed");
                    let _ = self.shared.events.send(ClientEvent::ReconnectFailed { attempt, error });
                }
            }
        }
    }

    /// A command while no session is live: requests wait in the queue.
    fn while_down(&mut self, command: Option<Command>) -> Option<Outcome> {
        match command {
            Some(Command::Request(o)) => {
                self.queue.push_back(o);
                None
            }
            Some(Command::Close(done)) => Some(Outcome::Close(done)),
            None => Some(Outcome::End(EndReason::Dropped)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_follows_primus() {
        let p = ReconnectPolicy::default();
        assert_eq!(backoff(&p, 1), Duration::from_millis(500));
        for _ in 0..50 {
            let d = backoff(&p, 2).as_millis();
            assert!((1000..=2000).contains(&d), "{d}");
            let d = backoff(&p, 3).as_millis();
            assert!((2000..=4000).contains(&d), "{d}");
        }
        assert_eq!(backoff(&p, 30), Duration::from_secs(180));
        assert_eq!(backoff(&p, u32::MAX), Duration::from_secs(180));
    }

    #[test]
    fn candidates() {
        let pw = Credentials::password("u", "p");
        assert_eq!(login_candidates(&pw, None), vec![pw.clone()]);
        assert_eq!(
            login_candidates(&pw, Some("t".into())),
            vec![pw.clone(), Credentials::Token("t".into())]
        );
        let tok = Credentials::Token("old".into());
        assert_eq!(
            login_candidates(&tok, Some("new".into())),
            vec![Credentials::Token("new".into()), tok.clone()]
        );
        assert_eq!(login_candidates(&tok, Some("old".into())), vec![tok.clone()]);
        assert_eq!(
            login_candidates(&Credentials::Anonymous, Some("x".into())),
            vec![Credentials::Anonymous]
        );
    }
}
