//! System records the server keeps in its own store: the system name and the server keypair
//! (secp256k1, as the original; `describe` announces the public key).

use base64::Engine as _;
use happn_engine::data::DataService;
use happn_engine::record::{now_millis, Record};
use happn_engine::DataError;
use rand::seq::SliceRandom;
use serde_json::{json, Map, Value};

pub const NAME_PATH: &str = "/_SYSTEM/_NETWORK/_SETTINGS/NAME";
pub use happn_engine::security::KEYPAIR_PATH;

const WORDS: &[&str] = &[
    "amber", "breeze", "cedar", "delta", "ember", "falcon", "glacier", "harbor", "indigo", "juniper", "kestrel", "lumen", "meadow",
    "nebula", "onyx", "prairie", "quartz", "raven", "sierra", "tundra", "umber", "violet", "willow", "zephyr",
];

fn value_record(path: &str, value: Value) -> Record {
    let mut data = Map::new();
    data.insert("value".into(), value);
    Record::new(path, data, now_millis())
}

/// A new `<word>_<id>` name, as the original makes.
pub fn random_name() -> String {
    let mut rng = rand::thread_rng();
    let word = WORDS.choose(&mut rng).copied().unwrap_or("happn");
    let id: String = uuid::Uuid::new_v4().simple().to_string()[..9].to_string();
    format!("{word}_{id}")
}

/// The configured name wins (and is persisted); otherwise the persisted one; otherwise a new
/// `<word>_<id>` name is generated and persisted.
pub async fn system_name(data: &DataService, configured: Option<&str>) -> Result<String, DataError> {
    let stored = data
        .get_record(NAME_PATH)
        .await?
        .and_then(|r| r.data.get("value").and_then(Value::as_str).map(str::to_string));
    let name = match (configured, stored) {
        (Some(c), Some(s)) if c == s => return Ok(s),
        (Some(c), _) => c.to_string(),
        (None, Some(s)) => return Ok(s),
        (None, None) => random_name(),
    };
    data.put_record(value_record(NAME_PATH, Value::String(name.clone()))).await?;
    Ok(name)
}

/// The server's secp256k1 keypair: `describe` announces the public half; the private half opens
/// encrypted logins and seals their replies (`encryptPayloads`). Never served over the wire.
#[derive(Clone)]
pub struct ServerKeyPair {
    /// base64 of the 33-byte compressed point.
    pub public_key: String,
    pub secret: k256::SecretKey,
}

/// The persisted server keypair (`{"value":"{\"privateKey\":b64,\"publicKey\":b64}"}` at the
/// original's path, so a database from the original keeps its key), generated and persisted on
/// first start. A record whose private key cannot be read is replaced, with a warning.
pub async fn server_keypair(data: &DataService) -> Result<ServerKeyPair, DataError> {
    use happn_engine::security::crypto;
    if let Some(rec) = data.get_record(KEYPAIR_PATH).await? {
        let stored = rec
            .data
            .get("value")
            .and_then(Value::as_str)
            .and_then(|s| serde_json::from_str::<Value>(s).ok());
        let secret = stored
            .as_ref()
            .and_then(|v| v.get("privateKey").and_then(Value::as_str))
            .and_then(|pk| crypto::parse_secret_key(pk).ok());
        if let Some(secret) = secret {
            // The public half is derived, not trusted from the record.
            let public_key = crypto::public_key_b64(&secret.public_key());
            return Ok(ServerKeyPair { public_key, secret });
        }
        tracing::warn!(path = KEYPAIR_PATH, "the stored server keypair is unreadable; generating a new one");
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let secret = k256::SecretKey::random(&mut rand::thread_rng());
    let public_key = happn_engine::security::crypto::public_key_b64(&secret.public_key());
    let private_b64 = b64.encode(secret.to_bytes());
    let value = json!({"privateKey": private_b64, "publicKey": public_key}).to_string();
    data.put_record(value_record(KEYPAIR_PATH, Value::String(value))).await?;
    Ok(ServerKeyPair { public_key, secret })
}
