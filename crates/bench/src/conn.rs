//! A raw happn connection for load generation: the websocket, Primus heartbeat duty, and
//! describe/login. Replies are matched by scanning for `"eventId":` rather than parsing whole
//! documents, so the load generator spends its CPU on the load, not on JSON.

use crate::Common;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub fn primus_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let base = base.strip_suffix("/primus").unwrap_or(base);
    format!("{base}/primus?_primuscb=bench&ping=25000&pong=10000")
}

/// A websocket to `url`'s /primus with Nagle's algorithm off, as the npm client's `ws` has it:
/// with it on, a frame written while the previous one is unacknowledged waits, and frames
/// written one by one would leave the kernel merged into one segment after all.
pub async fn open_url(url: &str, config: Option<WebSocketConfig>) -> Result<Ws, BoxError> {
    let connect = tokio_tungstenite::connect_async_with_config(primus_url(url), config, true);
    let (ws, _) = tokio::time::timeout(Duration::from_secs(10), connect).await??;
    Ok(ws)
}

pub async fn open(common: &Common) -> Result<Ws, BoxError> {
    open_url(&common.url, None).await
}

/// The value after `"eventId":` in a reply (the last occurrence: array replies carry it in the
/// trailing `_meta`), when it is a number.
pub fn event_id(text: &str) -> Option<u64> {
    let at = text.rfind("\"eventId\":")? + "\"eventId\":".len();
    let digits: &str = &text[at..];
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}

pub fn is_error(text: &str) -> bool {
    text.contains("\"status\":\"error\"")
}

/// Wait for the reply with `id`, answering server pings on the way.
pub async fn reply(ws: &mut Ws, id: u64) -> Result<String, BoxError> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await?
            .ok_or("connection closed")??;
        let Message::Text(t) = msg else { continue };
        if let Some(n) = t.strip_prefix("\"primus::ping::") {
            ws.send(Message::Text(format!("\"primus::pong::{n}").into())).await?;
            continue;
        }
        if event_id(&t) == Some(id) && !t.contains("\"type\":\"data\"") {
            return Ok(t.to_string());
        }
    }
}

pub async fn request(ws: &mut Ws, frame: Value, id: u64) -> Result<String, BoxError> {
    ws.send(Message::Text(frame.to_string().into())).await?;
    reply(ws, id).await
}

pub struct Session {
    pub id: String,
    pub token: Option<String>,
}

/// The event id of the `configure-session` request (one no other request of a session uses).
const CONFIGURE_ID: u64 = 9;

/// [configure-session +] describe + login (password, or anonymous for insecure servers).
pub async fn login(ws: &mut Ws, common: &Common) -> Result<Session, BoxError> {
    login_as(ws, common, None).await
}

/// [configure-session +] describe + login: with `token` when given (a token login costs the
/// server no password hash, so thousands of connections open in seconds), else as `login`.
pub async fn login_as(ws: &mut Ws, common: &Common, token: Option<&str>) -> Result<Session, BoxError> {
    let protocol = common.protocol.as_str();
    if protocol.starts_with("happn_") {
        // happn-3 (v11+) takes the session's protocol from configure-session, not from each message.
        let frame = json!({"action":"configure-session","eventId":CONFIGURE_ID,"data":{"protocol":protocol,"version":"happn-bench","browser":false}});
        let r = request(ws, frame, CONFIGURE_ID).await?;
        if is_error(&r) {
            return Err(format!("configure-session failed: {r}").into());
        }
    }
    request(ws, json!({"action":"describe","eventId":1,"protocol":protocol}), 1).await?;
    let data = if let Some(token) = token {
        json!({"token":token,"info":{"_browser":false}})
    } else if common.anonymous {
        json!({"info":{"_browser":false}})
    } else {
        json!({"username":common.username,"password":common.password,"info":{"_browser":false}})
    };
    let r = request(ws, json!({"action":"login","eventId":2,"data":data,"protocol":protocol}), 2).await?;
    if is_error(&r) {
        return Err(format!("login failed: {r}").into());
    }
    let v: Value = serde_json::from_str(&r)?;
    Ok(Session {
        id: v["data"]["id"].as_str().unwrap_or_default().to_string(),
        token: v["data"]["token"].as_str().map(str::to_string),
    })
}

pub async fn connect_and_login(common: &Common) -> Result<(Ws, Session), BoxError> {
    let mut ws = open(common).await?;
    let s = login(&mut ws, common).await?;
    Ok((ws, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_event_ids() {
        assert_eq!(event_id(r#"{"data":{},"_meta":{"eventId":42,"x":1}}"#), Some(42));
        assert_eq!(event_id(r#"[{"a":1},{"eventId":7}]"#), Some(7));
        assert_eq!(event_id(r#"{"_meta":{"type":"data"}}"#), None);
        assert_eq!(primus_url("ws://h:1/"), "ws://h:1/primus?_primuscb=bench&ping=25000&pong=10000");
    }
}
