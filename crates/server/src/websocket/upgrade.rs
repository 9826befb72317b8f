//! The websocket handshake (RFC 6455 section 4.2) on top of hyper's HTTP/1.1 upgrade: check the
//! request, answer 101 with the accept key, and hand the upgraded stream to the connection task.

use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use bytes::Bytes;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A request that asked for a websocket and may have one.
pub struct Upgrade {
    accept: String,
    on_upgrade: OnUpgrade,
}

/// What the upgraded connection is: a plain socket or a TLS one (taken out of hyper's box, so
/// reads and writes are direct calls), or hyper's wrapper for anything else. The rarer kinds are
/// boxed so that a plain connection's state is not sized for them.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Other(Box<TokioIo<Upgraded>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Other(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Other(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
            Stream::Other(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Other(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl Upgrade {
    /// `Some` when the request is a valid websocket upgrade (GET, `Connection: upgrade`,
    /// `Upgrade: websocket`, version 13, a key); anything else is ordinary HTTP.
    pub fn from_request<B>(req: &mut Request<B>) -> Option<Upgrade> {
        let h = req.headers();
        let valid = req.method() == Method::GET
            && header_has_token(h, header::CONNECTION, "upgrade")
            && header_has_token(h, header::UPGRADE, "websocket")
            && h.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13");
        if !valid {
            return None;
        }
        let accept = tungstenite::handshake::derive_accept_key(h.get(header::SEC_WEBSOCKET_KEY)?.as_bytes());
        let on_upgrade = req.extensions_mut().remove::<OnUpgrade>()?;
        Some(Upgrade { accept, on_upgrade })
    }

    /// Answer 101 and spawn `serve` on the upgraded stream once hyper hands it over.
    pub fn respond<F, Fut>(self, serve: F) -> Response<axum::body::Body>
    where
        F: FnOnce(Stream, Bytes) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                // A task of its own: the connection lives long, and this one's state need not.
                Ok(upgraded) => {
                    let (stream, preread) = unwrap_stream(upgraded);
                    tokio::spawn(serve(stream, preread));
                }
                Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
            }
        });
        let mut resp = Response::new(axum::body::Body::empty());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(v) = HeaderValue::from_str(&self.accept) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        resp
    }
}

fn unwrap_stream(upgraded: Upgraded) -> (Stream, Bytes) {
    let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => return (Stream::Plain(parts.io.into_inner()), parts.read_buf),
        Err(u) => u,
    };
    match upgraded.downcast::<TokioIo<tokio_rustls::server::TlsStream<TcpStream>>>() {
        Ok(parts) => (Stream::Tls(Box::new(parts.io.into_inner())), parts.read_buf),
        Err(u) => (Stream::Other(Box::new(TokioIo::new(u))), Bytes::new()),
    }
}

/// Whether a comma-separated header lists `token` (case-insensitively).
fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::get("/primus");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let mut req = b.body(()).unwrap();
        // hyper adds an upgrade handle to every request it serves with upgrades on; a request
        // built here gets one that never completes.
        let on_upgrade = hyper::upgrade::on(&mut req);
        req.extensions_mut().insert(on_upgrade);
        req
    }

    const GOOD: [(&str, &str); 4] = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn accepts_a_valid_handshake_with_the_rfc_accept_key() {
        let up = Upgrade::from_request(&mut request(&GOOD)).expect("valid");
        // The example of RFC 6455 section 1.3.
        assert_eq!(up.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn anything_else_is_plain_http() {
        for (missing, header) in GOOD.iter().enumerate() {
            let headers: Vec<_> = GOOD.iter().enumerate().filter(|(i, _)| *i != missing).map(|(_, h)| *h).collect();
            assert!(Upgrade::from_request(&mut request(&headers)).is_none(), "without {header:?}");
        }
        let mut wrong_version = GOOD;
        wrong_version[2] = ("sec-websocket-version", "8");
        assert!(Upgrade::from_request(&mut request(&wrong_version)).is_none());
    }
}
