//! Pipelined durable writes: a `set` that passed its checks is started and the connection reads
//! its next frame while the store commits it, so a client with several writes in flight has them
//! share one group commit (fsync) instead of paying one each. They finish in the order they
//! started.

use crate::handler;
use crate::state::{AppState, Outbox};
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt;
use happn_engine::data::Written;
use happn_engine::DataError;
use happn_protocol::Request;
use std::collections::VecDeque;
use std::task::{Context, Poll};

/// Most writes one connection may have in flight at once.
pub const MAX_PIPELINED: usize = 64;

pub type WriteDone = (Box<Request>, String, Result<Written, DataError>);

/// A connection's pipelined writes, oldest first.
#[derive(Default)]
pub struct Pipeline {
    writes: FuturesOrdered<BoxFuture<'static, WriteDone>>,
    paths: VecDeque<String>,
}

impl Pipeline {
    pub fn start(&mut self, w: handler::PendingWrite) {
        let (req, path, write) = w.into_parts();
        self.paths.push_back(path.clone());
        self.writes.push_back(Box::pin(async move { (req, path, write.await) }));
    }

    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Whether `req` writes to a path a write in flight also writes to (it must wait for it).
    pub fn writes_to(&self, req: &Request) -> bool {
        req.path
            .as_ref()
            .and_then(|p| p.as_str())
            .is_some_and(|p| self.paths.iter().any(|q| q == p))
    }

    /// The oldest write, once it is done.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<WriteDone>> {
        if self.writes.is_empty() {
            return Poll::Ready(None);
        }
        self.writes.poll_next_unpin(cx)
    }

    /// Publish a finished write's events and queue its reply.
    pub fn finish(&mut self, state: &AppState, tx: &Outbox, (req, path, result): WriteDone) {
        self.paths.pop_front();
        handler::finish_write(state, tx, &req, &path, result);
    }

    /// Finish writes in order until at most `keep` are in flight.
    pub async fn drain_to(&mut self, keep: usize, state: &AppState, tx: &Outbox) {
        while self.writes.len() > keep {
            match self.writes.next().await {
                Some(done) => self.finish(state, tx, done),
                None => break,
            }
        }
    }
}
