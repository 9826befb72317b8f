//! One websocket: opening it (ws:// or wss://), a writer task that drains an unbounded queue so
//! the connection task never blocks on a slow socket, and a polite close.

use crate::config::ClientConfig;
use crate::error::{Error, Result};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a close handshake may take before the socket is simply dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

pub(crate) struct Socket {
    out: mpsc::UnboundedSender<Message>,
    /// Incoming frames; read by the connection task only.
    pub stream: SplitStream<WsStream>,
    writer: JoinHandle<()>,
}

impl Socket {
    /// Connect to the Primus endpoint with a fresh cache-buster.
    pub async fn open(config: &ClientConfig) -> Result<Socket> {
        let url = config.socket_url()?;
        let connect = connect(config, url);
        let ws = tokio::time::timeout(config.connect_timeout, connect)
            .await
            .map_err(|_| Error::Timeout)??;
        let (sink, stream) = ws.split();
        let (out, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_loop(sink, rx));
        Ok(Socket { out, stream, writer })
    }

    /// Queue a text frame. A failure means the writer has stopped, which the reader will
    /// notice as the end of the stream.
    pub fn send_text(&self, text: String) {
        let _ = self.out.send(Message::Text(text.into()));
    }

    /// Close 1000 and wait (briefly) for the server's close, as the JS client does on
    /// `disconnect()`.
    pub async fn close(mut self) {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        if self.out.send(Message::Close(Some(frame))).is_ok() {
            let _ = tokio::time::timeout(CLOSE_GRACE, async { while let Some(Ok(_)) = self.stream.next().await {} }).await;
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // A lost or abandoned socket: stop writing and let the TCP stream drop.
        self.writer.abort();
    }
}

/// Write queued frames, batching whatever is queued into one flush.
async fn write_loop(mut sink: SplitSink<WsStream, Message>, mut rx: mpsc::UnboundedReceiver<Message>) {
    while let Some(msg) = rx.recv().await {
        let closing = matches!(msg, Message::Close(_));
        if sink.feed(msg).await.is_err() {
            return;
        }
        while let Ok(more) = rx.try_recv() {
            if sink.feed(more).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() || closing {
            return;
        }
    }
}

#[cfg(feature = "tls")]
async fn connect(config: &ClientConfig, url: String) -> Result<WsStream> {
    let connector = if url.starts_with("wss:") {
        let tls = match &config.tls_config {
            Some(c) => c.clone(),
            None => default_tls_config()?,
        };
        Some(tokio_tungstenite::Connector::Rustls(tls))
    } else {
        None
    };
    let (ws, _response) = tokio_tungstenite::connect_async_tls_with_config(url, None, true, connector).await?;
    Ok(ws)
}

#[cfg(not(feature = "tls"))]
async fn connect(_config: &ClientConfig, url: String) -> Result<WsStream> {
    if url.starts_with("wss:") {
        return Err(Error::InvalidUrl("wss:// needs happn-client's `tls` feature".into()));
    }
    let (ws, _response) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
    Ok(ws)
}

/// rustls with the ring provider chosen explicitly (so that another crate enabling a second
/// provider cannot make rustls' process-wide default ambiguous) and the webpki roots. Public
/// for programs that also speak HTTPS to the server (`happn-rs backup`).
#[cfg(feature = "tls")]
pub fn default_tls_config() -> Result<std::sync::Arc<rustls::ClientConfig>> {
    use std::sync::{Arc, OnceLock};
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    if let Some(c) = CONFIG.get() {
        return Ok(c.clone());
    }
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::WebSocket(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(CONFIG.get_or_init(|| Arc::new(config)).clone())
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    #[test]
    fn builds_the_default_tls_config() {
        let c = super::default_tls_config().unwrap();
        assert!(std::sync::Arc::ptr_eq(&c, &super::default_tls_config().unwrap()));
    }
}
