//! A connection's outbound queue, bounded by bytes. Replies and events are queued by whoever
//! produces them (the socket's own handler, or another connection publishing); the connection's
//! task drains it into the socket. A client that stops reading cannot make the server buffer
//! without limit: once its queue holds more than the limit, the queue is marked overflowed and
//! the connection is closed.

use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Waker;

#[derive(Debug)]
pub enum Outbound {
    /// A frame; encrypted on its way out once the connection's payload encryption is on.
    Text(String),
    /// A frame that always goes out as it is (describe and login replies, errors about frames
    /// that could not be decrypted).
    Clear(String),
    /// From here on, encrypt `Text` frames with this session cipher (`None`: stop). Queued in
    /// order, so frames queued before an encrypted login still leave in clear.
    Encrypt(Option<std::sync::Arc<crate::encryption::FrameCipher>>),
    /// Close the socket: optional text frames first (system message, `primus::server::close`),
    /// then a close frame with `code` (1005, "no status", sends a close frame without a body).
    Close { preface: Vec<String>, code: u16, reason: String },
}

/// The queue itself is a plain `VecDeque` behind a mutex: it allocates nothing while a
/// connection is idle (a channel would keep a block of slots per connection), and hands the
/// connection everything queued in one lock.
struct Queue {
    items: VecDeque<Outbound>,
    receiver_gone: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// The connection task, woken when the queue goes from empty to non-empty and on overflow.
    waker: AtomicWaker,
    queued: AtomicUsize,
    limit: usize,
    overflowed: AtomicBool,
    /// A close is queued: the connection gives the client a grace period from now on, even if
    /// the close frame itself cannot be written yet (a client that stopped reading).
    close_queued: AtomicBool,
}

#[derive(Clone)]
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
        waker: AtomicWaker::new(),
        queued: AtomicUsize::new(0),
        limit: limit_bytes,
        overflowed: AtomicBool::new(false),
        close_queued: AtomicBool::new(false),
    });
    (Outbox { shared: shared.clone() }, OutboxReceiver { shared })
}

impl Outbox {
    fn push(&self, item: Outbound) -> bool {
        let was_empty = {
            let mut q = self.shared.queue.lock();
            if q.receiver_gone {
                return false;
            }
            q.items.push_back(item);
            q.items.len() == 1
        };
        // A non-empty queue is drained completely before the task sleeps on it again, so only
        // the first item needs a wake-up.
        if was_empty {
            self.shared.waker.wake();
        }
        true
    }

    /// Queue a text frame. Returns false (and drops it) when the queue is over its limit; the
    /// connection then sees [`OutboxReceiver::overflowed`] and closes.
    pub fn text(&self, frame: String) -> bool {
        self.queue_frame(frame, false)
    }

    /// Queue a frame that is never encrypted (see [`Outbound::Clear`]).
    pub fn clear(&self, frame: String) -> bool {
        self.queue_frame(frame, true)
    }

    /// Switch payload encryption, after everything queued so far.
    pub fn encrypt_with(&self, cipher: Option<std::sync::Arc<crate::encryption::FrameCipher>>) {
        self.push(Outbound::Encrypt(cipher));
    }

    fn queue_frame(&self, frame: String, clear: bool) -> bool {
        let len = frame.len();
        let before = self.shared.queued.fetch_add(len, Ordering::AcqRel);
        if before + len > self.shared.limit && before > 0 {
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            if !self.shared.overflowed.swap(true, Ordering::AcqRel) {
                self.shared.waker.wake();
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

    /// Mark the queue overflowed without queueing anything: output the connection owes outside
    /// the queue (pongs to pings the client sends without reading) went past the limit, and the
    /// connection closes as it would on a full queue.
    pub fn overflow(&self) {
        if !self.shared.overflowed.swap(true, Ordering::AcqRel) {
            self.shared.waker.wake();
        }
    }

    pub fn close(&self, preface: Vec<String>, code: u16, reason: String) {
        if self.push(Outbound::Close { preface, code, reason }) {
            self.shared.close_queued.store(true, Ordering::Release);
            // Always wake: the queue may be non-empty and the task blocked on a full socket.
            self.shared.waker.wake();
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
    /// Wake this task when something is queued (or the queue overflows). Register before
    /// checking the queue, so nothing queued in between is missed.
    pub fn register(&self, waker: &Waker) {
        self.shared.waker.register(waker);
    }

    pub fn overflowed(&self) -> bool {
        self.shared.overflowed.load(Ordering::Acquire)
    }

    pub fn close_queued(&self) -> bool {
        self.shared.close_queued.load(Ordering::Acquire)
    }

    /// Free the queue's buffer if nothing is waiting: called when the connection goes idle, so
    /// an idle connection holds no queue memory (a busy one reallocates once per burst).
    pub fn release_idle(&mut self) {
        let mut q = self.shared.queue.lock();
        if q.items.is_empty() && q.items.capacity() > 0 {
            q.items = VecDeque::new();
        }
    }

    pub fn try_recv(&mut self) -> Option<Outbound> {
        let item = self.shared.queue.lock().items.pop_front();
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
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn bounded_by_bytes() {
        let (tx, mut rx) = outbox(10);
        assert!(tx.text("12345".into()));
        assert!(tx.text("12345".into()));
        assert!(!rx.overflowed());
        assert!(!tx.text("1".into()), "over the limit");
        assert!(rx.overflowed());
        assert!(matches!(rx.try_recv(), Some(Outbound::Text(_))));
        assert_eq!(tx.queued_bytes(), 5);
        // A single frame larger than the limit still goes through on an empty queue.
        let (tx, _rx) = outbox(4);
        assert!(tx.text("123456".into()));
    }

    #[test]
    fn wakes_on_the_first_item_and_on_overflow() {
        let (tx, mut rx) = outbox(10);
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        rx.register(&Waker::from(counter.clone()));
        tx.text("a".into());
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        rx.register(&Waker::from(counter.clone()));
        tx.text("b".into());
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "queue was not empty: no second wake");
        tx.text("0123456789".into());
        assert_eq!(counter.0.load(Ordering::SeqCst), 2, "overflow wakes");
        assert!(matches!(rx.try_recv(), Some(Outbound::Text(t)) if t == "a"));
        assert!(matches!(rx.try_recv(), Some(Outbound::Text(t)) if t == "b"));
        assert!(rx.try_recv().is_none());
        rx.release_idle();
    }

    #[test]
    fn nothing_is_queued_once_the_receiver_is_gone() {
        let (tx, rx) = outbox(100);
        drop(rx);
        assert!(!tx.text("a".into()));
        assert_eq!(tx.queued_bytes(), 0);
    }
}
