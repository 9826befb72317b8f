//! Key-pair (digest) login and request-nonce through [`Security`].

use super::*;
use crate::storage::MemoryStore;
use base64::Engine as _;
use k256::ecdsa::signature::hazmat::PrehashSigner;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

struct Key {
    signing: k256::ecdsa::SigningKey,
    public: String,
}

fn key() -> Key {
    let secret = k256::SecretKey::random(&mut rand::rngs::OsRng);
    let public = crypto::public_key_b64(&secret.public_key());
    Key {
        signing: k256::ecdsa::SigningKey::from(secret),
        public,
    }
}

/// What the client's `crypto.sign(nonce, privateKey)` sends: base64 DER over the decoded nonce.
fn sign(key: &Key, nonce: &str) -> String {
    let hash = B64.decode(nonce).unwrap();
    let sig: k256::ecdsa::Signature = key.signing.sign_prehash(&hash).unwrap();
    B64.encode(sig.to_der().as_bytes())
}

fn digest_creds(username: &str, key: &Key, digest: String) -> Credentials {
    Credentials {
        username: Some(username.into()),
        public_key: Some(key.public.clone()),
        digest: Some(digest),
        login_type: Some("digest".into()),
        ..Default::default()
    }
}

async fn security(users: Vec<UserSpec>, lockout_attempts: u32, nonce_ttl_ms: u64) -> Security {
    let cfg = SecurityConfig {
        users,
        groups: vec![GroupSpec {
            name: "g".into(),
            permissions: json!({"/digest/*": {"actions": ["*"]}}).as_object().unwrap().clone(),
            custom_data: None,
        }],
        lockout: LockoutConfig {
            enabled: true,
            attempts: lockout_attempts,
            retry_interval_ms: 60_000,
        },
        nonce_ttl: Some(std::time::Duration::from_millis(nonce_ttl_ms)),
        ..Default::default()
    };
    let data = Arc::new(DataService::new(Arc::new(MemoryStore::new())));
    let s = Security::new(data, &cfg);
    s.bootstrap(&cfg).await.unwrap();
    s
}

fn user(name: &str, key: &Key) -> UserSpec {
    UserSpec {
        username: name.into(),
        groups: vec!["g".into()],
        public_key: Some(key.public.clone()),
        ..Default::default()
    }
}

#[tokio::test]
async fn digest_login_with_a_signed_nonce() {
    let k = key();
    let s = security(vec![user("d", &k)], 4, 60_000).await;
    let nonce = s.request_nonce(&k.public).unwrap();
    let u = s.authenticate(&digest_creds("d", &k, sign(&k, &nonce))).await.unwrap();
    assert_eq!(u.username, "d");
    assert_eq!(u.public_key.as_deref(), Some(k.public.as_str()));
    assert!(u.permissions.allows("/digest/x", "set"));
    // The nonce is not consumed: a second login with it works until the TTL.
    assert!(s.authenticate(&digest_creds("d", &k, sign(&k, &nonce))).await.is_ok());
}

#[tokio::test]
async fn wrong_key_or_signature_is_invalid_credentials_and_counts() {
    let k = key();
    let intruder = key();
    let s = security(vec![user("d", &k)], 2, 60_000).await;
    let nonce = s.request_nonce(&k.public).unwrap();
    // Signed by someone else for the user's key.
    let bad = digest_creds("d", &k, sign(&intruder, &nonce));
    assert_eq!(s.authenticate(&bad).await.unwrap_err(), AccessError::InvalidCredentials);
    // The intruder's own key is not the user's key.
    let other_nonce = s.request_nonce(&intruder.public).unwrap();
    let wrong_key = digest_creds("d", &intruder, sign(&intruder, &other_nonce));
    assert_eq!(s.authenticate(&wrong_key).await.unwrap_err(), AccessError::InvalidCredentials);
    // Two counted failures lock the account, even for the right signature.
    let good = digest_creds("d", &k, sign(&k, &nonce));
    assert_eq!(s.authenticate(&good).await.unwrap_err(), AccessError::LockedOut);
}

#[tokio::test]
async fn missing_or_expired_nonce() {
    let k = key();
    let s = security(vec![user("d", &k)], 2, 100).await;
    let fake_nonce = crypto::nonce_from_seed("never issued");
    let creds = digest_creds("d", &k, sign(&k, &fake_nonce));
    assert_eq!(s.authenticate(&creds).await.unwrap_err(), AccessError::NonceExpired);
    assert_eq!(s.authenticate(&creds).await.unwrap_err(), AccessError::NonceExpired);
    let nonce = s.request_nonce(&k.public).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let late = digest_creds("d", &k, sign(&k, &nonce));
    assert_eq!(s.authenticate(&late).await.unwrap_err(), AccessError::NonceExpired);
    // Not counted by the lockout (two attempts would have locked the account).
    let nonce = s.request_nonce(&k.public).unwrap();
    assert!(s.authenticate(&digest_creds("d", &k, sign(&k, &nonce))).await.is_ok());
}

#[tokio::test]
async fn request_nonce_checks_the_key() {
    let s = security(vec![], 4, 60_000).await;
    assert_eq!(s.request_nonce("").unwrap_err(), NonceError::MissingPublicKey);
    assert!(matches!(s.request_nonce("bm90IGEga2V5"), Err(NonceError::InvalidPublicKey(_))));
    let k = key();
    let n = s.request_nonce(&k.public).unwrap();
    assert_eq!(B64.decode(&n).unwrap().len(), 32);
}

#[tokio::test]
async fn password_login_carries_the_presented_public_key() {
    let k = key();
    let s = security(
        vec![UserSpec {
            username: "p".into(),
            password: Some("pw".into()),
            ..Default::default()
        }],
        4,
        60_000,
    )
    .await;
    let plain = Credentials {
        username: Some("p".into()),
        password: Some("pw".into()),
        ..Default::default()
    };
    assert_eq!(s.authenticate(&plain).await.unwrap().public_key, None);
    let with_key = Credentials {
        public_key: Some(k.public.clone()),
        ..plain
    };
    assert_eq!(s.authenticate(&with_key).await.unwrap().public_key, Some(k.public.clone()));
    // A user without a stored key cannot log in by digest.
    let nonce = s.request_nonce(&k.public).unwrap();
    assert_eq!(
        s.authenticate(&digest_creds("p", &k, sign(&k, &nonce))).await.unwrap_err(),
        AccessError::InvalidCredentials
    );
}
