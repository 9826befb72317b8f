//! A connection's outbound queue, bounded by bytes. Replies and events are queued by whoever
//! produces them (the socket's own handler, or another connection publishing); the connection's
//! task drains it into the socket. A client that stops reading cannot make the server buffer
//! without limit: once its queue holds more than the limit, the queue is marked overflowed and
//! the connection is closed.
//!
//! Every queue also counts towards a server-wide budget ([`QueueBudget`]): many connections each
//! under their own limit can still add up to more than the machine has, so once the total passes
//! the budget the connections holding the most are closed first (see `AppState::shed_queues`).

use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Waker;
use tokio::sync::Notify;

/// Queues count towards the server-wide total in steps of this many bytes (rounded down): the
/// total is shared by every core, and a connection that queues a reply and drains it again
/// (nearly all of them, nearly always) never crosses a step, so it never writes the shared
/// count. Queues under one step are not counted; the budget is about the ones that pile up.
pub const BUDGET_STEP: usize = 64 * 1024;

/// The server-wide budget for queued outbound bytes: a running total (in [`BUDGET_STEP`]s) over
/// every connection's queue, and a wake-up for the task that closes the largest queues once the
/// total passes the limit.
pub struct QueueBudget {
    /// Signed: a queue's steps are counted just after its own count changes, so a step taken
    /// off by the receiver can land here a moment before the push that added it.
    queued: AtomicI64,
    limit: i64,
    /// A wake-up is pending: set by the push that finds the total over the limit, cleared by the
    /// shedding task before it looks, so at most one wake-up is outstanding.
    over: AtomicBool,
    wake: Arc<Notify>,
    /// Connections closed for the budget, and the bytes they had queued (metrics).
    pub evictions: AtomicU64,
    pub evicted_bytes: AtomicU64,
}

impl QueueBudget {
    pub fn new(limit: usize) -> Arc<QueueBudget> {
        Arc::new(QueueBudget {
            queued: AtomicI64::new(0),
            limit: limit.min(i64::MAX as usize) as i64,
            over: AtomicBool::new(false),
            wake: Arc::new(Notify::new()),
            evictions: AtomicU64::new(0),
            evicted_bytes: AtomicU64::new(0),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit as usize
    }

    /// The total counted: every queue's bytes, each rounded down to a [`BUDGET_STEP`].
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire).max(0) as usize
    }

    /// Notified when the total passes the limit (and when the budget is dropped, so a waiting
    /// task can notice the server is gone). Take it once: the task holds it, not the budget.
    pub fn wake_handle(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Before looking at the queues: a later push over the limit wakes the task again.
    pub fn rearm(&self) {
        self.over.store(false, Ordering::Release);
    }

    /// A queue went from `before` to `after` bytes: count the steps it crossed.
    fn account(&self, before: usize, after: usize) {
        let (was, now) = (before / BUDGET_STEP, after / BUDGET_STEP);
        if now > was {
            let add = ((now - was) * BUDGET_STEP) as i64;
            let total = self.queued.fetch_add(add, Ordering::AcqRel) + add;
            if total > self.limit && !self.over.load(Ordering::Acquire) && !self.over.swap(true, Ordering::AcqRel) {
                self.wake.notify_one();
            }
        } else if now < was {
            self.queued.fetch_sub(((was - now) * BUDGET_STEP) as i64, Ordering::AcqRel);
        }
    }
}

impl Drop for QueueBudget {
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

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
    /// Closed to bring the server-wide total back under its budget.
    evicted: AtomicBool,
    budget: Arc<QueueBudget>,
    /// Heap bytes the connection holds for input (a large frame arriving), counted in the
    /// budget with the queue (see [`OutboxReceiver::set_inbound`]).
    inbound: AtomicUsize,
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

pub fn outbox(limit_bytes: usize, budget: &Arc<QueueBudget>) -> (Outbox, OutboxReceiver) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            items: VecDeque::new(),
            receiver_gone: false,
        }),
        waker: AtomicWaker::new(),
        queued: AtomicUsize::new(0),
        limit: limit_bytes,
        overflowed: AtomicBool::new(false),
        evicted: AtomicBool::new(false),
        budget: budget.clone(),
        inbound: AtomicUsize::new(0),
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
        if self.shared.evicted.load(Ordering::Acquire) {
            // Closing for the budget: what it holds is on its way out, nothing is added.
            return false;
        }
        let len = frame.len();
        let before = self.shared.queued.fetch_add(len, Ordering::AcqRel);
        if before + len > self.shared.limit && before > 0 {
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            if !self.shared.overflowed.swap(true, Ordering::AcqRel) {
                self.shared.waker.wake();
            }
            return false;
        }
        // Every byte counted here is uncounted exactly once: taken by the receiver, dropped
        // with the queue, or taken back just below.
        self.shared.budget.account(before, before + len);
        let item = if clear { Outbound::Clear(frame) } else { Outbound::Text(frame) };
        if !self.push(item) {
            let before = self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            self.shared.budget.account(before, before - len);
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

    /// What the connection holds against the server-wide budget: queued output plus input
    /// buffers.
    pub fn held_bytes(&self) -> usize {
        self.queued_bytes() + self.shared.inbound.load(Ordering::Acquire)
    }

    pub fn limit(&self) -> usize {
        self.shared.limit
    }

    /// Close this connection to bring the server-wide total under budget: it takes no more
    /// frames, and its task ends (dropping what is queued) as for an overflow. False when it
    /// was already closing for that.
    pub fn evict(&self) -> bool {
        if self.shared.evicted.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.shared.waker.wake();
        true
    }

    pub fn evicted(&self) -> bool {
        self.shared.evicted.load(Ordering::Acquire)
    }
}

impl OutboxReceiver {
    /// Wake this task when something is queued (or the queue overflows). Register before
    /// checking the queue, so nothing queued in between is missed.
    pub fn register(&self, waker: &Waker) {
        self.shared.waker.register(waker);
    }

    /// Stop waking the task for what is queued, while it runs: it writes out everything queued
    /// before it sleeps again, and registers (`register`) before it looks, so nothing queued
    /// meanwhile is missed. A wake-up now would only poll the task once more for nothing; when
    /// the push comes from a request the task itself is handling (every reply), it also costs a
    /// cross-thread wake-up of an idle worker (a `futex` call) per request under clients that
    /// send one frame per write.
    pub fn unregister(&self) {
        drop(self.shared.waker.take());
    }

    /// Over its own limit, or closed for the server-wide budget: either way the task ends.
    pub fn overflowed(&self) -> bool {
        self.shared.overflowed.load(Ordering::Acquire) || self.shared.evicted.load(Ordering::Acquire)
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
            self.uncount(t.len());
        }
        item
    }

    /// The connection's input buffers now hold `bytes`: counted in the server-wide budget, so
    /// many connections each holding a large half-received frame are shed like stalled readers.
    pub fn set_inbound(&self, bytes: usize) {
        let before = self.shared.inbound.swap(bytes, Ordering::AcqRel);
        if before != bytes {
            self.shared.budget.account(before, bytes);
        }
    }

    fn uncount(&self, len: usize) {
        let before = self.shared.queued.fetch_sub(len, Ordering::AcqRel);
        self.shared.budget.account(before, before - len);
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        let dropped: usize = {
            let mut q = self.shared.queue.lock();
            q.receiver_gone = true;
            q.items
                .drain(..)
                .map(|item| match item {
                    Outbound::Text(t) | Outbound::Clear(t) => t.len(),
                    _ => 0,
                })
                .sum()
        };
        // Exactly the bytes of the frames still queued: a push racing with this one either
        // queued its frame before (and is in `dropped`) or finds the receiver gone and takes its
        // own bytes back.
        self.uncount(dropped);
        self.set_inbound(0);
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
        let (tx, mut rx) = outbox(10, &QueueBudget::new(usize::MAX));
        assert!(tx.text("12345".into()));
        assert!(tx.text("12345".into()));
        assert!(!rx.overflowed());
        assert!(!tx.text("1".into()), "over the limit");
        assert!(rx.overflowed());
        assert!(matches!(rx.try_recv(), Some(Outbound::Text(_))));
        assert_eq!(tx.queued_bytes(), 5);
        // A single frame larger than the limit still goes through on an empty queue.
        let (tx, _rx) = outbox(4, &QueueBudget::new(usize::MAX));
        assert!(tx.text("123456".into()));
    }

    #[test]
    fn an_unregistered_task_is_not_woken_and_sees_the_queue_when_it_registers() {
        let (tx, mut rx) = outbox(1 << 16, &QueueBudget::new(usize::MAX));
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        rx.register(&waker);
        rx.unregister();
        assert!(tx.text("reply".into()));
        assert_eq!(counter.0.load(Ordering::SeqCst), 0, "no wake-up while the task runs");
        rx.register(&waker);
        assert!(matches!(rx.try_recv(), Some(Outbound::Text(t)) if t == "reply"));
        assert!(tx.text("event".into()));
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "registered again: the next item wakes");
    }

    #[test]
    fn wakes_on_the_first_item_and_on_overflow() {
        let (tx, mut rx) = outbox(10, &QueueBudget::new(usize::MAX));
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
    fn the_server_wide_total_counts_whole_steps() {
        let budget = QueueBudget::new(2 * BUDGET_STEP);
        let wake = budget.wake_handle();
        let (tx, mut rx) = outbox(usize::MAX, &budget);
        let (other, other_rx) = outbox(usize::MAX, &budget);
        let step = "x".repeat(BUDGET_STEP / 2);
        tx.text(step.clone());
        assert_eq!(budget.queued(), 0, "under one step: not counted");
        tx.text(step.clone());
        tx.text(step.clone());
        assert_eq!(budget.queued(), BUDGET_STEP);
        for _ in 0..3 {
            other.text(step.clone());
        }
        assert_eq!(budget.queued(), 2 * BUDGET_STEP, "at the limit, not over");
        assert!(!budget.over.load(Ordering::Acquire));
        tx.text(step.clone());
        assert_eq!(budget.queued(), 3 * BUDGET_STEP);
        assert!(budget.over.load(Ordering::Acquire), "over the limit: the shedding task is woken");
        // The notification is stored for the task even though nobody waited yet.
        futures_util::FutureExt::now_or_never(wake.notified()).expect("notified");
        // Taking frames off uncounts them; a dropped receiver uncounts all it held.
        rx.try_recv();
        assert_eq!(budget.queued(), 2 * BUDGET_STEP);
        rx.try_recv();
        assert_eq!(budget.queued(), 2 * BUDGET_STEP, "one step left on each");
        drop(other_rx);
        assert_eq!(budget.queued(), BUDGET_STEP);
        // Evicted: the queue takes nothing more and its task sees it as an overflow.
        assert!(tx.evict());
        assert!(!tx.evict(), "once");
        assert!(rx.overflowed());
        assert!(!tx.text("more".into()));
        drop(rx);
        assert_eq!(budget.queued(), 0);
        assert_eq!(tx.queued_bytes(), 0);
    }

    #[test]
    fn input_buffers_count_in_the_budget_too() {
        let budget = QueueBudget::new(2 * BUDGET_STEP);
        let (tx, rx) = outbox(usize::MAX, &budget);
        rx.set_inbound(3 * BUDGET_STEP + 10);
        assert_eq!(budget.queued(), 3 * BUDGET_STEP, "a large frame arriving counts");
        assert!(budget.over.load(Ordering::Acquire), "and can put the total over the limit");
        assert_eq!(tx.held_bytes(), 3 * BUDGET_STEP + 10);
        tx.text("x".repeat(BUDGET_STEP));
        assert_eq!(budget.queued(), 4 * BUDGET_STEP);
        assert_eq!(tx.held_bytes(), 4 * BUDGET_STEP + 10, "the shedder sees input and output together");
        rx.set_inbound(100);
        assert_eq!(budget.queued(), BUDGET_STEP, "the frame handled, its buffer given back");
        rx.set_inbound(2 * BUDGET_STEP);
        drop(rx);
        assert_eq!(budget.queued(), 0, "a closed connection holds nothing");
    }

    #[test]
    fn nothing_is_queued_once_the_receiver_is_gone() {
        let (tx, rx) = outbox(100, &QueueBudget::new(usize::MAX));
        drop(rx);
        assert!(!tx.text("a".into()));
        assert_eq!(tx.queued_bytes(), 0);
    }
}
