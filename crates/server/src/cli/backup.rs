//! `happn-rs backup --url URL --out FILE`: an online backup of a running server, through its
//! `GET /_admin/export` route (see `http/admin.rs`): the store's records as of one moment, as a
//! happn 2.x database file that `happn-rs import --nedb FILE` restores.
//!
//! With `--username` (and a password) it logs in over the websocket first, uses that session's
//! token for the download, and revokes the session when done; `--token` uses a token as it is;
//! with neither, it asks as nobody (an insecure server answers loopback clients only).
//!
//! The file is written under a temporary name beside `--out` (mode 0600: it holds password
//! hashes), checked against the record count the server announced, synced, and only then
//! renamed into place: a refused, interrupted or short download leaves no file at `--out`.

use super::{connect, Failed, Remote};
use axum::http::{header, Request, StatusCode};
use hyper::body::Body as _;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

const EXPORT_PATH: &str = "/_admin/export";
const RECORDS_HEADER: &str = "x-happn-records";

/// Longest wait to connect, and for the reply's head (the server reads its snapshot first).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const HEAD_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest silence between two pieces of the body.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// What is kept of a refusal's body for the message.
const REFUSAL_BYTES: usize = 4096;

/// Where the server's HTTP side is: TLS or not, `host:port`, and the host alone (for TLS).
#[derive(Debug, PartialEq)]
struct Endpoint {
    tls: bool,
    authority: String,
    host: String,
}

fn endpoint(url: &str) -> Result<Endpoint, Failed> {
    let (tls, rest) = [("ws://", false), ("http://", false), ("wss://", true), ("https://", true)]
        .iter()
        .find_map(|(scheme, tls)| url.strip_prefix(scheme).map(|rest| (*tls, rest)))
        .ok_or_else(|| Failed::Usage(format!("--url {url:?}: expected ws://, wss://, http:// or https://")))?;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.is_empty() {
        return Err(Failed::Usage(format!("--url {url:?}: no host")));
    }
    // `[v6]:port`, `[v6]`, `host:port`, `host`.
    let (host, has_port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| Failed::Usage(format!("--url {url:?}: bad IPv6 host")))?;
            (host.to_string(), after.starts_with(':'))
        }
        None => match authority.split_once(':') {
            Some((host, _)) => (host.to_string(), true),
            None => (authority.to_string(), false),
        },
    };
    let authority = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:{}", happn_client::DEFAULT_PORT)
    };
    Ok(Endpoint { tls, authority, host })
}

/// Download the export into `out`; what to print.
pub(super) async fn backup(remote: &Remote, out: &Path) -> Result<Value, Failed> {
    let endpoint = endpoint(&remote.url)?;
    let (token, session) = if let Some(token) = &remote.token {
        (Some(token.clone()), None)
    } else if remote.username.is_some() {
        let client = connect(remote).await?;
        let token = client.session().and_then(|s| s.token);
        (token, Some(client))
    } else {
        (None, None)
    };
    let result = download(&endpoint, token.as_deref(), out).await;
    if let Some(client) = session {
        // The token was only for this download.
        let revoke = happn_client::DisconnectOptions {
            revoke_session: true,
            ..Default::default()
        };
        let _ = client.disconnect_with(revoke).await;
    }
    let (records, bytes) = result?;
    Ok(json!({"out": out.display().to_string(), "records": records, "bytes": bytes}))
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

async fn open(endpoint: &Endpoint) -> Result<Box<dyn Io>, Failed> {
    let unreachable = |e: String| Failed::Connect(format!("cannot reach {}: {e}", endpoint.authority));
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&endpoint.authority))
        .await
        .map_err(|_| unreachable(format!("no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| unreachable(e.to_string()))?;
    if !endpoint.tls {
        return Ok(Box::new(tcp));
    }
    let config = happn_client::default_tls_config().map_err(|e| unreachable(e.to_string()))?;
    let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone()).map_err(|e| Failed::Usage(format!("--url: {e}")))?;
    let tls = tokio::time::timeout(CONNECT_TIMEOUT, tokio_rustls::TlsConnector::from(config).connect(name, tcp))
        .await
        .map_err(|_| unreachable("TLS handshake timed out".into()))?
        .map_err(|e| unreachable(format!("TLS: {e}")))?;
    Ok(Box::new(tls))
}

/// The next piece of `body`, within [`IDLE_TIMEOUT`].
async fn next_data(body: &mut hyper::body::Incoming) -> Result<Option<bytes::Bytes>, Failed> {
    loop {
        let frame = tokio::time::timeout(IDLE_TIMEOUT, std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)))
            .await
            .map_err(|_| Failed::Request(format!("the export stalled (nothing for {IDLE_TIMEOUT:?})")))?;
        match frame {
            None => return Ok(None),
            Some(Err(e)) => return Err(Failed::Request(format!("the export was cut off: {e}"))),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// `GET /_admin/export` into `out`: the records and bytes written.
async fn download(endpoint: &Endpoint, token: Option<&str>, out: &Path) -> Result<(u64, u64), Failed> {
    let io = open(endpoint).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| Failed::Connect(format!("{}: {e}", endpoint.authority)))?;
    tokio::spawn(conn);
    let mut request = Request::get(EXPORT_PATH).header(header::HOST, &endpoint.authority);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request.body(axum::body::Body::empty()).map_err(|e| Failed::Usage(e.to_string()))?;
    let resp = tokio::time::timeout(HEAD_TIMEOUT, sender.send_request(request))
        .await
        .map_err(|_| Failed::Request(format!("no answer within {HEAD_TIMEOUT:?}")))?
        .map_err(|e| Failed::Connect(format!("{}: {e}", endpoint.authority)))?;
    let status = resp.status();
    let expected: Option<u64> = resp
        .headers()
        .get(RECORDS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let mut body = resp.into_body();
    if status != StatusCode::OK {
        let mut text = Vec::new();
        while text.len() < REFUSAL_BYTES {
            match next_data(&mut body).await {
                Ok(Some(d)) => text.extend_from_slice(&d[..d.len().min(REFUSAL_BYTES - text.len())]),
                _ => break,
            }
        }
        return Err(Failed::Request(format!(
            "the server refused the export: {status}: {}",
            String::from_utf8_lossy(&text).trim()
        )));
    }
    let partial = partial_path(out);
    let written = receive(&mut body, &partial, expected).await;
    match written {
        Ok(counts) => {
            std::fs::rename(&partial, out).map_err(|e| {
                let _ = std::fs::remove_file(&partial);
                Failed::Request(format!("cannot write {}: {e}", out.display()))
            })?;
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
            Ok(counts)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// `.<name>.partial` beside `out`.
fn partial_path(out: &Path) -> PathBuf {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    out.with_file_name(format!(".{name}.partial"))
}

/// Write the body to `path` (0600), check its line count against `expected`, sync it.
async fn receive(body: &mut hyper::body::Incoming, path: &Path, expected: Option<u64>) -> Result<(u64, u64), Failed> {
    let cannot = |e: std::io::Error| Failed::Request(format!("cannot write {}: {e}", path.display()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path).map_err(cannot)?;
    let mut w = std::io::BufWriter::with_capacity(256 * 1024, file);
    let (mut lines, mut bytes) = (0u64, 0u64);
    while let Some(data) = next_data(body).await? {
        lines += data.iter().filter(|b| **b == b'\n').count() as u64;
        bytes += data.len() as u64;
        w.write_all(&data).map_err(cannot)?;
    }
    let file = w.into_inner().map_err(|e| cannot(e.into_error()))?;
    if let Some(expected) = expected {
        if lines != expected {
            return Err(Failed::Request(format!(
                "the export ended after {lines} of {expected} records; nothing was written"
            )));
        }
    }
    file.sync_all().map_err(cannot)?;
    Ok((lines, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_of_urls() {
        let e = |u| endpoint(u).ok().unwrap();
        assert_eq!(
            e("ws://h:1/primus"),
            Endpoint {
                tls: false,
                authority: "h:1".into(),
                host: "h".into()
            }
        );
        assert_eq!(e("https://h").authority, "h:55000");
        assert!(e("wss://h:2").tls);
        assert_eq!(e("http://[::1]:3").host, "::1");
        assert_eq!(e("http://[::1]").authority, "[::1]:55000");
        assert!(matches!(endpoint("ftp://h"), Err(Failed::Usage(_))));
        assert!(matches!(endpoint("ws://"), Err(Failed::Usage(_))));
        assert_eq!(partial_path(Path::new("/x/b.nedb")), Path::new("/x/.b.nedb.partial"));
    }
}
