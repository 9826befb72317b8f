//! A connection's outbound queue, bounded by bytes. Replies and events are queued by whoever
//! produces them (the socket's own handler, or another connection publishing); the writer task
//! drains it. A client that stops reading cannot make the server buffer without limit: once its
//! queue holds more than the limit, the queue is marked overflowed and the connection is closed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};

#[derive(Debug)]
pub enum Outbound {
    Text(String),
    /// Close the socket: optional text frames first (system message, `primus::server::close`),
    /// then a close frame with `code`.
    Close {
        preface: Vec<String>,
        code: u16,
        reason: String,
    },
}

struct Shared {
    queued: AtomicUsize,
    limit: usize,
    overflowed: AtomicBool,
    notify: Notify,
}

#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Outbound>,
    shared: Arc<Shared>,
}

pub struct OutboxReceiver {
    rx: mpsc::UnboundedReceiver<Outbound>,
    shared: Arc<Shared>,
}

pub fn outbox(limit_bytes: usize) -> (Outbox, OutboxReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        queued: AtomicUsize::new(0),
        limit: limit_bytes,
        overflowed: AtomicBool::new(false),
        notify: Notify::new(),
    });
    (
        Outbox {
            tx,
            shared: shared.clone(),
        },
        OutboxReceiver { rx, shared },
    )
}

impl Outbox {
    /// Queue a text frame. Returns false (and drops it) when the queue is over its limit; the
    /// connection is then told to close through [`Outbox::overflowed`].
    pub fn text(&self, frame: String) -> bool {
        let len = frame.len();
        let before = self.shared.queued.fetch_add(len, Ordering::AcqRel);
        if before + len > self.shared.limit && before > 0 {
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            if !self.shared.overflowed.swap(true, Ordering::AcqRel) {
                self.shared.notify.notify_one();
            }
            return false;
        }
        if self.tx.send(Outbound::Text(frame)).is_err() {
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        true
    }

    pub fn close(&self, preface: Vec<String>, code: u16, reason: String) {
        let _ = self.tx.send(Outbound::Close { preface, code, reason });
    }

    /// Resolves once the queue has overflowed.
    pub async fn overflowed(&self) {
        loop {
            let notified = self.shared.notify.notified();
            if self.shared.overflowed.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    pub fn queued_bytes(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }

    pub fn limit(&self) -> usize {
        self.shared.limit
    }
}

impl OutboxReceiver {
    pub async fn recv(&mut self) -> Option<Outbound> {
        let m = self.rx.recv().await;
        self.account(&m);
        m
    }

    pub fn try_recv(&mut self) -> Option<Outbound> {
        let m = self.rx.try_recv().ok();
        self.account(&m);
        m
    }

    fn account(&self, m: &Option<Outbound>) {
        if let Some(Outbound::Text(t)) = m {
            self.shared.queued.fetch_sub(t.len(), Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_by_bytes() {
        let (tx, mut rx) = outbox(10);
        assert!(tx.text("12345".into()));
        assert!(tx.text("12345".into()));
        assert!(!tx.text("1".into()), "over the limit");
        tokio::time::timeout(std::time::Duration::from_secs(1), tx.overflowed())
            .await
            .unwrap();
        assert!(matches!(rx.recv().await, Some(Outbound::Text(_))));
        assert_eq!(tx.queued_bytes(), 5);
        // A single frame larger than the limit still goes through on an empty queue.
        let (tx, _rx) = outbox(4);
        assert!(tx.text("123456".into()));
    }
}
