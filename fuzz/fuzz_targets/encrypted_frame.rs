//! The decoders of `encryptPayloads` (`crates/server/src/encryption.rs` over
//! `crates/engine/src/security/crypto.rs`): the AES-256-CTR hex frames every request arrives in
//! after an encrypted login, and the ECIES login blob and key texts. Any input is refused or read
//! without a panic; what the server seals opens again; an ECIES blob with any byte changed is
//! refused.
//!
//! Input: byte 0 picks the check, the rest is its input.
#![no_main]

use happn_engine::security::crypto::{self, PassphraseCipher};
use happn_protocol::{decode_frame, Frame};
use happn_rs::fuzzing::FrameCipher;
use k256::SecretKey;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// The server's key pair (fixed, so runs are reproducible).
fn server_key() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| SecretKey::from_bytes(&[7u8; 32].into()).expect("a valid scalar"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match which % 6 {
        // A client frame's `encrypted` text, opened with a session secret.
        0 => {
            let (secret, hex_text) = text.split_once('\n').unwrap_or(("s3cr3t", &text));
            let _ = FrameCipher::new(secret).open(hex_text);
        }
        // Seal then open: the frame comes back as the request it was.
        1 => {
            let (secret, frame) = text.split_once('\n').unwrap_or(("s3cr3t", &text));
            let cipher = FrameCipher::new(secret);
            let sealed: serde_json::Value = serde_json::from_str(&cipher.seal(frame)).expect("sealed frames are JSON");
            assert_eq!(sealed["protocol"], "1.1.0");
            let hex_text = sealed["encrypted"].as_str().expect("hex text");
            let opened = cipher.open(hex_text);
            match decode_frame(frame) {
                Frame::Message(v) => assert_eq!(opened.ok(), Some(v), "{frame:?}"),
                Frame::Control(_) | Frame::Invalid(_) => assert!(opened.is_err(), "{frame:?}"),
            }
            // The cipher itself on any bytes.
            let raw = PassphraseCipher::new(secret);
            assert_eq!(raw.decrypt_hex(&raw.encrypt_hex(rest)).as_deref(), Ok(rest));
        }
        // A login's ECIES blob, as bytes from the client.
        2 => {
            let _ = crypto::ecies_sender(rest);
            let _ = crypto::ecies_decrypt(server_key(), rest);
        }
        // ECIES round trip from a client key the input chooses, and tampering.
        3 => {
            if rest.len() < 33 {
                return;
            }
            let (key, message) = rest.split_at(32);
            let (flip, message) = message.split_first().unwrap();
            let Ok(client) = SecretKey::from_bytes(key.into()) else {
                return;
            };
            let sealed = crypto::ecies_encrypt(&client, &server_key().public_key(), message);
            assert_eq!(crypto::ecies_sender(&sealed).as_ref(), Ok(&client.public_key()));
            assert_eq!(crypto::ecies_decrypt(server_key(), &sealed).as_deref(), Ok(message));
            // The reply direction: sealed by the server to the client's key.
            let reply = crypto::ecies_encrypt(server_key(), &client.public_key(), message);
            assert_eq!(crypto::ecies_decrypt(&client, &reply).as_deref(), Ok(message));
            // Byte 0 is left alone: 0x02 <-> 0x03 names the negated point, whose shared x
            // coordinate is the same (ECIES's known malleability; the login also checks the
            // sender key against the presented publicKey, and a reply sealed to the negated key
            // is readable only with the negated private key).
            let mut tampered = sealed.clone();
            let at = 1 + (*flip as usize * 7) % (tampered.len() - 1);
            tampered[at] ^= 1 << (flip % 8);
            assert!(crypto::ecies_decrypt(server_key(), &tampered).is_err(), "byte {at} changed");
            // Cut short anywhere: refused.
            let cut = (*flip as usize) % sealed.len();
            assert!(crypto::ecies_decrypt(server_key(), &sealed[..cut]).is_err());
        }
        // Key texts from config files and logins.
        4 => {
            if let Ok(public) = crypto::parse_public_key(&text) {
                let again = crypto::public_key_b64(&public);
                assert_eq!(crypto::parse_public_key(&again), Ok(public));
            }
            if let Ok(secret) = crypto::parse_secret_key(&text) {
                assert!(crypto::parse_public_key(&crypto::public_key_b64(&secret.public_key())).is_ok());
            }
        }
        // A key-pair login's digest and nonce.
        _ => {
            let (nonce, digest) = text.split_once('\n').unwrap_or((&text, ""));
            let _ = crypto::verify_digest(nonce, digest, &server_key().public_key());
        }
    }
});
