//! A connection's outbound queue, bounded by bytes. Replies and events are queued by whoever
//! produces them (the socket's own handler, or another connection publishing); the writer task
//! drains it. A client that stops reading cannot make the server buffer without limit: once its
//! queue holds more than the limit, the queue is marked overflowed and the connection is closed.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

#[derive(Debug)]
pub enum Outbound {
    /// A frame; encrypted by the writer once the connection's payload encryption is on.
    Text(String),
    /// A frame that always goes out as it is (describe and login replies, errors about frames
    /// that could not be decrypted).
    Clear(String),
    /// From here on, encrypt `Text` frames with this session cipher (`None`: stop). Queued in
    /// order, so frames queued before an encrypted login still leave in clear.
    Encrypt(Option<std::sync::Arc<crate::encryption::FrameCipher>>),
    /// Close the socket: optional text frames first (system message, `primus::server::close`),
    /// then a close frame with `code`.
    Close { preface: Vec<String>, code: u16, reason: String },
}

/// The queue itself is a plain `VecDeque` behind a mutex: it allocates nothing while a
/// connection is idle (a channel would keep a block of slots per connection), and hands the
/// writer everything queued in one lock.
struct Queue {
    items: VecDeque<Outbound>,
    receiver_gone: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the writer; `notify_one` keeps a permit when the writer is not waiting yet.
    ready: Notify,
    overflow: Notify,
    queued: AtomicUsize,
    limit: usize,
    overflowed: AtomicBool,
    senders: AtomicUsize,
}

pub struct Outbox {
    shared: Arc<Shared>,
}

pub struct OutboxReceiver {
    shared: Arc<Shared>,
}

pub fn outbox(limit_bytes: usize) -> (Outbox, OutboxReceiver) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            items: VecDeque::new(),
            receiver_gone: false,
        }),
        ready: Notify::new(),
        overflow: Notify::new(),
        queued: AtomicUsize::new(0),
        limit: limit_bytes,
        overflowed: AtomicBool::new(false),
        senders: AtomicUsize::new(1),
    });
    (Outbox { shared: shared.clone() }, OutboxReceiver { shared })
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::AcqRel);
        Outbox {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.ready.notify_one();
        }
    }
}

impl Outbox {
    fn push(&self, item: Outbound) -> bool {
        {
            let mut q = self.shared.queue.lock();
            if q.receiver_gone {
                return false;
            }
            q.items.push_back(item);
        }
        self.shared.ready.notify_one();
        true
    }

    /// Queue a text frame. Returns false (and drops it) when the queue is over its limit; the
    /// connection is then told to close through [`Outbox::overflowed`].
    pub fn text(&self, frame: String) -> bool {
        self.queue_frame(frame, false)
    }

    /// Queue a frame that is never encrypted (see [`Outbound::Clear`]).
    pub fn clear(&self, frame: String) -> bool {
        self.queue_frame(frame, true)
    }

    /// Switch the writer's payload encryption, after everything queued so far.
    pub fn encrypt_with(&self, cipher: Option<std::sync::Arc<crate::encryption::FrameCipher>>) {
        self.push(Outbound::Encrypt(cipher));
    }

    fn queue_frame(&self, frame: String, clear: bool) -> bool {
        let len = frame.len();
        let before = self.shared.queued.fetch_add(len, Ordering::AcqRel);
        if before + len > self.shared.limit && before > 0 {
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            if !self.shared.overflowed.swap(true, Ordering::AcqRel) {
                self.shared.overflow.notify_one();
            }
            return false;
        }
        let item = if clear { Outbound::Clear(frame) } else { Outbound::Text(frame) };
        if !self.push(item) {
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        true
    }

    pub fn close(&self, preface: Vec<String>, code: u16, reason: String) {
        self.push(Outbound::Close { preface, code, reason });
    }

    /// Resolves once the queue has overflowed.
    pub async fn overflowed(&self) {
        loop {
            let notified = self.shared.overflow.notified();
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
    /// The next item; `None` once every [`Outbox`] is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<Outbound> {
        loop {
            if let Some(item) = self.try_recv() {
                return Some(item);
            }
            if self.shared.senders.load(Ordering::Acquire) == 0 {
                return self.try_recv();
            }
            self.shared.ready.notified().await;
        }
    }

    /// Free the queue's buffer if nothing is waiting: called when the writer has flushed, so
    /// an idle connection holds no queue memory (a busy one reallocates once per batch).
    pub fn release_idle(&mut self) {
        let mut q = self.shared.queue.lock();
        if q.items.is_empty() && q.items.capacity() > 0 {
            q.items = VecDeque::new();
        }
    }

    pub fn try_recv(&mut self) -> Option<Outbound> {
        let item = {
            let mut q = self.shared.queue.lock();
            let item = q.items.pop_front();
            // Give back what a burst made the queue grow to.
            if q.items.is_empty() && q.items.capacity() > 64 {
                q.items = VecDeque::new();
            }
            item
        };
        if let Some(Outbound::Text(t) | Outbound::Clear(t)) = &item {
            self.shared.queued.fetch_sub(t.len(), Ordering::AcqRel);
        }
        item
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        let mut q = self.shared.queue.lock();
        q.receiver_gone = true;
        q.items.clear();
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

    #[tokio::test]
    async fn ends_when_every_sender_is_gone() {
        let (tx, mut rx) = outbox(100);
        let tx2 = tx.clone();
        tx.text("a".into());
        drop(tx);
        tx2.close(vec![], 1000, String::new());
        drop(tx2);
        assert!(matches!(rx.recv().await, Some(Outbound::Text(_))));
        assert!(matches!(rx.recv().await, Some(Outbound::Close { .. })));
        assert!(rx.recv().await.is_none());
    }
}
