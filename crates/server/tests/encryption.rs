//! encryptPayloads and key-pair login end to end over a real socket, with the client side done by
//! hand with the engine's crypto (the same primitives the 2.21 client's modules use).

use base64::Engine as _;
use happn_engine::security::crypto::{self, PassphraseCipher};
use happn_engine::security::UserSpec;
use happn_rs::config::Config;
use happn_rs::{start, Server};
use k256::ecdsa::signature::hazmat::PrehashSigner;
use serde_json::{json, Value};

mod common;
use common::{recv_json as recv, send_json as send, Ws};
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

async fn server(tweak: impl FnOnce(&mut Config)) -> Server {
    let mut c = Config {
        port: 0,
        host: "127.0.0.1".into(),
        secure: true,
        ..Config::default()
    };
    tweak(&mut c);
    start(c).await.expect("server starts")
}

async fn connect(s: &Server) -> Ws {
    let url = format!("ws://{}/primus?ping=25000&pong=10000", s.local_addr);
    tokio_tungstenite::connect_async(url).await.expect("upgrade").0
}

/// A logged-in encrypted session, as the 2.21 client holds it.
struct Session {
    ws: Ws,
    id: String,
    cipher: PassphraseCipher,
}

impl Session {
    fn seal(&self, msg: &Value) -> Value {
        json!({"sessionId": self.id, "encrypted": self.cipher.encrypt_hex(msg.to_string().as_bytes())})
    }

    fn open(&self, frame: &Value) -> Value {
        let keys: Vec<&str> = frame.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["protocol", "encrypted"], "encrypted frame shape: {frame}");
        let plain = self.cipher.decrypt_hex(frame["encrypted"].as_str().unwrap()).unwrap();
        serde_json::from_slice(&plain).unwrap()
    }

    async fn request(&mut self, msg: Value) -> Value {
        let sealed = self.seal(&msg);
        send(&mut self.ws, sealed).await;
        let frame = recv(&mut self.ws).await;
        self.open(&frame)
    }
}

async fn encrypted_login(s: &Server, username: &str, password: &str) -> Session {
    let mut ws = connect(s).await;
    send(&mut ws, json!({"action":"describe","eventId":1})).await;
    let d = recv(&mut ws).await;
    assert_eq!(d["data"]["encryptPayloads"], true);
    let server_key = crypto::parse_public_key(d["data"]["publicKey"].as_str().unwrap()).unwrap();
    let client = k256::SecretKey::random(&mut rand::rngs::OsRng);
    let client_pub = crypto::public_key_b64(&client.public_key());
    let creds = json!({"username": username, "password": password, "info": {}, "publicKey": client_pub});
    let sealed = crypto::ecies_encrypt(&client, &server_key, creds.to_string().as_bytes());
    send(
        &mut ws,
        json!({"action":"login","eventId":2,"data":{"encrypted":{"type":"Buffer","data":sealed},"publicKey":client_pub,"loginType":"password"},"protocol":"1.1.0"}),
    )
    .await;
    let reply = recv(&mut ws).await;
    assert_eq!(reply["_meta"], json!({"type": "login"}), "{reply}");
    assert_eq!(reply["publicKey"], d["data"]["publicKey"]);
    let bytes: Vec<u8> = reply["encrypted"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect();
    let inner: Value = serde_json::from_slice(&crypto::ecies_decrypt(&client, &bytes).unwrap()).unwrap();
    assert_eq!(inner["_meta"]["status"], "ok", "{inner}");
    assert_eq!(inner["data"]["user"]["publicKey"], client_pub);
    Session {
        ws,
        id: inner["data"]["id"].as_str().unwrap().to_string(),
        cipher: PassphraseCipher::new(inner["data"]["secret"].as_str().unwrap()),
    }
}

#[tokio::test]
async fn tampered_frames_are_refused_in_clear_and_the_session_survives() {
    let s = server(|c| c.encrypt_payloads = true).await;
    let mut a = encrypted_login(&s, "_ADMIN", "happn").await;
    let set = a
        .request(json!({"action":"set","eventId":3,"path":"/e/1","data":{"v":1},"sessionId":a.id,"protocol":"1.1.0"}))
        .await;
    assert_eq!(set["_meta"]["status"], "ok", "{set}");
    assert_eq!(set["data"]["v"], 1);

    // Flip the first ciphertext byte: the plaintext no longer starts with '{'.
    let get = json!({"action":"get","eventId":4,"path":"/e/1","sessionId":a.id,"protocol":"1.1.0"});
    let mut tampered = a.seal(&get);
    let hex_text = tampered["encrypted"].as_str().unwrap().to_string();
    let first = u8::from_str_radix(&hex_text[..2], 16).unwrap() ^ 0x5a;
    tampered["encrypted"] = Value::String(format!("{first:02x}{}", &hex_text[2..]));
    send(&mut a.ws, tampered).await;
    let err = recv(&mut a.ws).await;
    assert_eq!(err["_meta"]["status"], "error", "a clear error reply: {err}");
    assert!(err["_meta"]["error"]["name"]
        .as_str()
        .unwrap()
        .starts_with("Error: cannot decrypt the message"));

    // A request in clear after the encrypted login is refused in clear, with its eventId.
    send(&mut a.ws, get.clone()).await;
    let err = recv(&mut a.ws).await;
    assert_eq!(err["_meta"]["eventId"], 4);
    assert!(
        err["_meta"]["error"]["name"].as_str().unwrap().contains("encrypts payloads"),
        "{err}"
    );

    // The connection carries on, and so does everyone else.
    let got = a.request(get).await;
    assert_eq!(got["data"]["v"], 1, "{got}");
    let mut b = encrypted_login(&s, "_ADMIN", "happn").await;
    let list = b
        .request(json!({"action":"get","eventId":5,"path":"/e/*","sessionId":b.id,"protocol":"1.1.0"}))
        .await;
    assert!(list.is_array(), "array replies travel encrypted too: {list}");
    assert_eq!(list[0]["v"], 1);
    drop((a, b));
    s.stop(happn_rs::StopMode::NoReconnect).await;
}

#[tokio::test]
async fn events_are_encrypted_with_the_recipients_secret() {
    let s = server(|c| c.encrypt_payloads = true).await;
    let mut a = encrypted_login(&s, "_ADMIN", "happn").await;
    let mut b = encrypted_login(&s, "_ADMIN", "happn").await;
    let on = b
        .request(json!({"action":"on","eventId":3,"path":"/SET@/ev/*","sessionId":b.id,"options":{"event_type":"set","refCount":0},"protocol":"1.1.0"}))
        .await;
    assert_eq!(on["_meta"]["status"], "ok", "{on}");
    let set = a.seal(&json!({"action":"set","eventId":4,"path":"/ev/1","data":{"x":1},"sessionId":a.id,"protocol":"1.1.0"}));
    send(&mut a.ws, set).await;
    let event_frame = recv(&mut b.ws).await;
    let event = b.open(&event_frame);
    assert_eq!(event["_meta"]["type"], "data");
    assert_eq!(event["_meta"]["sessionId"], b.id.as_str());
    assert_eq!(event["data"]["x"], 1);
    let reply_frame = recv(&mut a.ws).await;
    let reply = a.open(&reply_frame);
    assert_eq!(reply["_meta"]["eventId"], 4);
    drop((a, b));
    s.stop(happn_rs::StopMode::NoReconnect).await;
}

#[tokio::test]
async fn digest_login_with_request_nonce() {
    let key = k256::SecretKey::random(&mut rand::rngs::OsRng);
    let public = crypto::public_key_b64(&key.public_key());
    let user_key = public.clone();
    let s = server(move |c| {
        c.security.users = vec![UserSpec {
            username: "d".into(),
            public_key: Some(user_key),
            ..Default::default()
        }]
    })
    .await;
    let mut ws = connect(&s).await;
    send(&mut ws, json!({"action":"request-nonce","eventId":1,"data":{}})).await;
    let missing = recv(&mut ws).await;
    assert_eq!(missing["_meta"]["error"], json!({"name": "Error: no public key with request"}));
    send(&mut ws, json!({"action":"request-nonce","eventId":2,"data":{"publicKey":public}})).await;
    let nonce = recv(&mut ws).await;
    let nonce = nonce["data"]["nonce"].as_str().unwrap().to_string();
    let signer = k256::ecdsa::SigningKey::from(&key);
    let sig: k256::ecdsa::Signature = signer.sign_prehash(&B64.decode(&nonce).unwrap()).unwrap();
    let digest = B64.encode(sig.to_der().as_bytes());
    send(
        &mut ws,
        json!({"action":"login","eventId":3,"data":{"username":"d","publicKey":public,"loginType":"digest","digest":digest}}),
    )
    .await;
    let login = recv(&mut ws).await;
    assert_eq!(login["_meta"]["status"], "ok", "{login}");
    assert_eq!(login["data"]["user"], json!({"username": "d", "publicKey": public}));
    assert!(login["data"]["secret"].is_string());
    drop(ws);
    s.stop(happn_rs::StopMode::NoReconnect).await;
}
