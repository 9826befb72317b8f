//! The outbound half of a connection: moves frames from the connection's queue into the socket,
//! encrypting and framing them, and the socket's buffer onto the wire.

use crate::encryption::{self, FrameCipher};
use crate::outbox::{Outbound, OutboxReceiver};
use crate::websocket::{frame::close_payload, Kind, WsSocket};
use happn_protocol::escape_line_separators;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};

/// How much queued output is framed before it is written: big enough to batch a burst of
/// replies into few system calls, small enough that a stalled client's backlog stays in the
/// byte-bounded queue (where it counts towards the overflow limit) rather than here.
const BATCH_BYTES: usize = 64 * 1024;

/// Where the sender stands after a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Everything queued is written; the task is registered for more.
    Idle,
    /// The socket cannot take more now; the task is registered for writability.
    Blocked,
    /// Writing failed: the connection is gone.
    Failed,
}

pub struct Sender {
    rx: OutboxReceiver,
    /// Payload encryption of this connection's frames, switched on by an encrypted login.
    cipher: Option<Arc<FrameCipher>>,
    /// A close frame has been framed: nothing may follow it.
    close_sent: bool,
    failed: bool,
}

impl Sender {
    pub fn new(rx: OutboxReceiver) -> Sender {
        Sender {
            rx,
            cipher: None,
            close_sent: false,
            failed: false,
        }
    }

    /// No wake-ups for queued output while the task runs (it writes it out before sleeping).
    pub fn unregister(&self) {
        self.rx.unregister();
    }

    /// A close has been queued or sent: the connection is ending.
    pub fn closing(&self) -> bool {
        self.close_sent || self.rx.close_queued()
    }

    pub fn overflowed(&self) -> bool {
        self.rx.overflowed()
    }

    /// Write what is queued, as far as the socket takes it.
    pub fn poll<S: AsyncRead + AsyncWrite + Unpin>(&mut self, cx: &mut Context<'_>, ws: &mut WsSocket<S>) -> Flow {
        if self.failed {
            return Flow::Failed;
        }
        // Always registered, even while the socket is blocked: an overflow must wake the task.
        self.rx.register(cx.waker());
        loop {
            while ws.unwritten() < BATCH_BYTES && !self.close_sent {
                match self.rx.try_recv() {
                    Some(item) => self.frame(item, ws),
                    None => break,
                }
            }
            if ws.unwritten() == 0 {
                return Flow::Idle;
            }
            match ws.poll_write_out(cx) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => {
                    tracing::debug!(error = %e, "websocket write failed");
                    self.failed = true;
                    return Flow::Failed;
                }
                Poll::Pending => return Flow::Blocked,
            }
        }
    }

    fn frame<S: AsyncRead + AsyncWrite + Unpin>(&mut self, item: Outbound, ws: &mut WsSocket<S>) {
        match item {
            Outbound::Text(t) => {
                let t = escape_line_separators(encryption::outgoing(self.cipher.as_deref(), t));
                ws.send(Kind::Text, t.as_bytes());
            }
            Outbound::Clear(t) => ws.send(Kind::Text, escape_line_separators(t).as_bytes()),
            Outbound::Encrypt(c) => self.cipher = c,
            Outbound::Close { preface, code, reason } => {
                for p in preface {
                    ws.send(Kind::Text, encryption::outgoing(self.cipher.as_deref(), p).as_bytes());
                }
                // 1005 ("no status") is never sent: it stands for a close frame without a body.
                let body = if code == 1005 { Vec::new() } else { close_payload(code, &reason) };
                ws.send(Kind::Close, &body);
                self.close_sent = true;
            }
        }
    }

    /// Give back the queue's buffer when the connection goes idle.
    pub fn release_idle(&mut self) {
        self.rx.release_idle();
    }

    /// Report the connection's input buffers to the server-wide budget.
    pub fn set_inbound(&self, bytes: usize) {
        self.rx.set_inbound(bytes);
    }
}
