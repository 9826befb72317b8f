//! The cryptography the happn 2.21 client speaks, byte for byte: secp256k1 keys in happn's base64
//! form, bitcore-ecies 1.0.3 (the encrypted login and its reply), Node's legacy passphrase cipher
//! `createCipher("aes-256-ctr", secret)` (every later frame), request nonces and the ECDSA digest
//! of key-pair login. Pure functions and values: no I/O, no state.
//!
//! Checked against vectors produced by the client's own modules (`testdata/crypto-vectors.json`,
//! made by `tests/compat/tools/crypto-vectors.js`).

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, StreamCipher};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use k256::elliptic_curve::sec1::ToEncodedPoint;
use k256::{PublicKey, SecretKey};
use sha2::{Digest, Sha256, Sha512};

type HmacSha256 = Hmac<Sha256>;
type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;
type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("not valid base64")]
    Base64,
    #[error("not valid hex")]
    Hex,
    #[error("not a secp256k1 public key")]
    PublicKey,
    #[error("not a secp256k1 private key")]
    PrivateKey,
    #[error("ciphertext is malformed ({0})")]
    Malformed(&'static str),
    /// The ECIES tag did not match: wrong key, or the ciphertext was altered.
    #[error("ciphertext failed its integrity check")]
    Checksum,
}

/// Node's `Buffer.from(s, "base64")` tolerates missing padding; clients always pad, but a key typed
/// into a config file may not be.
const B64_IN: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new().with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);
const B64_OUT: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn b64_decode(s: &str) -> Result<Vec<u8>, CryptoError> {
    B64_IN.decode(s.trim()).map_err(|_| CryptoError::Base64)
}

/// A public key as happn sends it: base64 of the SEC1 point (33 bytes compressed, or 65).
pub fn parse_public_key(b64: &str) -> Result<PublicKey, CryptoError> {
    PublicKey::from_sec1_bytes(&b64_decode(b64)?).map_err(|_| CryptoError::PublicKey)
}

/// A private key as happn stores it: base64 of the scalar, big-endian. bitcore drops leading zero
/// bytes (a key can be 31 bytes or shorter), so shorter inputs are left-padded.
pub fn parse_secret_key(b64: &str) -> Result<SecretKey, CryptoError> {
    let raw = b64_decode(b64)?;
    if raw.is_empty() || raw.len() > 32 {
        return Err(CryptoError::PrivateKey);
    }
    let mut bytes = [0u8; 32];
    bytes[32 - raw.len()..].copy_from_slice(&raw);
    SecretKey::from_bytes(&bytes.into()).map_err(|_| CryptoError::PrivateKey)
}

/// base64 of the 33-byte compressed point (what `describe` announces).
pub fn public_key_b64(key: &PublicKey) -> String {
    B64_OUT.encode(key.to_encoded_point(true).as_bytes())
}

/// ECIES as bitcore-ecies 1.0.3 does it with default options:
/// `S = x(recipient · sender)`, `kE‖kM = SHA-512(S)`, `IV = HMAC-SHA256(sender scalar, msg)[..16]`,
/// output `R (sender's compressed key) ‖ IV ‖ AES-256-CBC(kE, PKCS7)(msg) ‖ HMAC-SHA256(kM, IV ‖ ct)`.
/// The IV is deterministic, as in bitcore, so the output matches its test vectors exactly.
pub fn ecies_encrypt(sender: &SecretKey, recipient: &PublicKey, message: &[u8]) -> Vec<u8> {
    let (ke, km) = ecies_keys(sender, recipient);
    // bitcore keys the IV HMAC with its minimal big-endian encoding of the scalar (no leading zeros).
    let scalar = sender.to_bytes();
    let first = scalar.iter().position(|b| *b != 0).unwrap_or(scalar.len() - 1);
    let mut iv_mac = <HmacSha256 as Mac>::new_from_slice(&scalar[first..]).expect("HMAC takes any key length");
    iv_mac.update(message);
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&iv_mac.finalize().into_bytes()[..16]);

    let r = sender.public_key().to_encoded_point(true);
    let ct = Aes256CbcEnc::new(&ke.into(), &iv.into()).encrypt_padded_vec_mut::<cbc::cipher::block_padding::Pkcs7>(message);
    let mut out = Vec::with_capacity(r.len() + 16 + ct.len() + 32);
    out.extend_from_slice(r.as_bytes());
    out.extend_from_slice(&iv);
    out.extend_from_slice(&ct);
    let mut tag = <HmacSha256 as Mac>::new_from_slice(&km).expect("HMAC takes any key length");
    tag.update(&out[r.len()..]);
    out.extend_from_slice(&tag.finalize().into_bytes());
    out
}

/// Undo [`ecies_encrypt`]: the sender's key is taken from the ciphertext itself (33 bytes with a
/// 0x02/0x03 prefix, 65 with 0x04), as bitcore does. The tag is checked before anything is
/// decrypted, in constant time.
pub fn ecies_decrypt(recipient: &SecretKey, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let sender = ecies_sender(data)?;
    let key_len = if data[0] == 4 { 65 } else { 33 };
    // key, IV, at least one block, tag.
    if data.len() < key_len + 16 + 16 + 32 {
        return Err(CryptoError::Malformed("too short"));
    }
    let (ke, km) = ecies_keys(recipient, &sender);
    let (c, tag) = data[key_len..].split_at(data.len() - key_len - 32);
    let mut mac = <HmacSha256 as Mac>::new_from_slice(&km).expect("HMAC takes any key length");
    mac.update(c);
    mac.verify_slice(tag).map_err(|_| CryptoError::Checksum)?;
    let (iv, ct) = c.split_at(16);
    if ct.len() % 16 != 0 {
        return Err(CryptoError::Malformed("not whole AES blocks"));
    }
    let iv: [u8; 16] = iv.try_into().expect("split at 16");
    Aes256CbcDec::new(&ke.into(), &iv.into())
        .decrypt_padded_vec_mut::<cbc::cipher::block_padding::Pkcs7>(ct)
        .map_err(|_| CryptoError::Malformed("bad padding"))
}

/// The sender's public key carried at the front of an ECIES ciphertext (`R`).
pub fn ecies_sender(data: &[u8]) -> Result<PublicKey, CryptoError> {
    let key_len = match data.first() {
        Some(2 | 3) => 33,
        Some(4) => 65,
        _ => return Err(CryptoError::Malformed("no sender key")),
    };
    let key = data.get(..key_len).ok_or(CryptoError::Malformed("too short"))?;
    PublicKey::from_sec1_bytes(key).map_err(|_| CryptoError::PublicKey)
}

fn ecies_keys(own: &SecretKey, other: &PublicKey) -> ([u8; 32], [u8; 32]) {
    let shared = k256::ecdh::diffie_hellman(own.to_nonzero_scalar(), other.as_affine());
    let k = Sha512::digest(shared.raw_secret_bytes());
    let mut ke = [0u8; 32];
    let mut km = [0u8; 32];
    ke.copy_from_slice(&k[..32]);
    km.copy_from_slice(&k[32..]);
    (ke, km)
}

/// Node's legacy `crypto.createCipher("aes-256-ctr", passphrase)`, which the client uses for every
/// frame after an encrypted login. Key and IV come from OpenSSL's `EVP_BytesToKey` (MD5, no salt,
/// one round) over the passphrase, and each message starts a fresh counter at that IV, so every
/// message is encrypted with the same keystream. That is the protocol (the client decrypts each
/// frame on its own); the weakness is noted in COMPATIBILITY.md.
#[derive(Clone)]
pub struct PassphraseCipher {
    key: [u8; 32],
    iv: [u8; 16],
}

impl std::fmt::Debug for PassphraseCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PassphraseCipher(..)")
    }
}

impl PassphraseCipher {
    pub fn new(passphrase: &str) -> PassphraseCipher {
        // EVP_BytesToKey: D1 = MD5(pass), Di = MD5(Di-1 ‖ pass); key = D1‖D2, iv = D3.
        let mut material = [0u8; 48];
        let mut prev: Option<[u8; 16]> = None;
        for chunk in material.chunks_mut(16) {
            let mut h = md5::Md5::new();
            if let Some(p) = prev {
                h.update(p);
            }
            h.update(passphrase.as_bytes());
            let d: [u8; 16] = h.finalize().into();
            chunk.copy_from_slice(&d);
            prev = Some(d);
        }
        let mut key = [0u8; 32];
        let mut iv = [0u8; 16];
        key.copy_from_slice(&material[..32]);
        iv.copy_from_slice(&material[32..]);
        PassphraseCipher { key, iv }
    }

    fn apply(&self, buf: &mut [u8]) {
        Aes256Ctr::new(&self.key.into(), &self.iv.into()).apply_keystream(buf);
    }

    /// Encrypt and append the lower-case hex of the ciphertext to `out` (what `cipher.update(data,
    /// "utf8", "hex")` produces).
    pub fn encrypt_hex_into(&self, plaintext: &[u8], out: &mut String) {
        let mut buf = plaintext.to_vec();
        self.apply(&mut buf);
        out.reserve(buf.len() * 2);
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for b in buf {
            out.push(DIGITS[(b >> 4) as usize] as char);
            out.push(DIGITS[(b & 15) as usize] as char);
        }
    }

    pub fn encrypt_hex(&self, plaintext: &[u8]) -> String {
        let mut out = String::new();
        self.encrypt_hex_into(plaintext, &mut out);
        out
    }

    /// Decrypt hex text. CTR has no integrity check: a wrong secret or altered ciphertext gives
    /// garbage, which the caller notices when the result is not UTF-8 JSON.
    pub fn decrypt_hex(&self, hex_text: &str) -> Result<Vec<u8>, CryptoError> {
        let mut buf = hex::decode(hex_text).map_err(|_| CryptoError::Hex)?;
        self.apply(&mut buf);
        Ok(buf)
    }
}

/// A fresh login nonce: base64(SHA-256(two random uuids)), as the original's `generateNonce`.
pub fn new_nonce() -> String {
    let seed = format!("{}{}", uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    nonce_from_seed(&seed)
}

/// base64(SHA-256(seed)): the nonce for a given random text.
pub fn nonce_from_seed(seed: &str) -> String {
    B64_OUT.encode(Sha256::digest(seed.as_bytes()))
}

/// Check a key-pair login digest: `digest` is base64 DER of an ECDSA-secp256k1 signature whose
/// message hash is the 32 decoded nonce bytes themselves (bitcore's `ECDSA.sign(hashbuf, key)`).
/// bitcore signs with low S but verifies either form, so high-S signatures are accepted too.
/// Anything malformed is simply not a valid digest.
pub fn verify_digest(nonce_b64: &str, digest_b64: &str, public_key: &PublicKey) -> bool {
    use k256::ecdsa::signature::hazmat::PrehashVerifier;
    let (Ok(hash), Ok(der)) = (b64_decode(nonce_b64), b64_decode(digest_b64)) else {
        return false;
    };
    if hash.len() != 32 {
        return false;
    }
    let Ok(sig) = k256::ecdsa::Signature::from_der(&der) else {
        return false;
    };
    let sig = sig.normalize_s().unwrap_or(sig);
    k256::ecdsa::VerifyingKey::from(public_key).verify_prehash(&hash, &sig).is_ok()
}

/// The per-session passphrase for payload encryption, sent to the client inside the ECIES-sealed
/// login reply. The original uses a shortid (~60 bits); clients treat it as an opaque string, so
/// this draws 16 characters of the same alphabet (96 bits).
pub fn session_secret() -> String {
    use rand::Rng;
    const ALPHABET: &[u8; 64] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-";
    let mut rng = rand::rngs::OsRng;
    (0..16).map(|_| ALPHABET[rng.gen_range(0..64)] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vectors() -> Value {
        serde_json::from_str(include_str!("testdata/crypto-vectors.json")).expect("vector file is JSON")
    }

    fn key(v: &Value, who: &str) -> (SecretKey, PublicKey) {
        let k = &v["keys"][who];
        let secret = parse_secret_key(k["privateKey"].as_str().unwrap()).unwrap();
        let public = parse_public_key(k["publicKey"].as_str().unwrap()).unwrap();
        assert_eq!(secret.public_key(), public, "{who}: the public key belongs to the private key");
        assert_eq!(public_key_b64(&public), k["publicKey"].as_str().unwrap());
        (secret, public)
    }

    #[test]
    fn short_private_keys_are_left_padded() {
        let v = vectors();
        // bitcore wrote the client's key without its leading zero byte (31 bytes).
        let raw = B64_IN.decode(v["keys"]["client"]["privateKey"].as_str().unwrap()).unwrap();
        assert_eq!(raw.len(), 31);
        key(&v, "client");
        assert_eq!(parse_secret_key("").unwrap_err(), CryptoError::PrivateKey);
        assert_eq!(parse_public_key("AAAA").unwrap_err(), CryptoError::PublicKey);
        assert_eq!(parse_public_key("***").unwrap_err(), CryptoError::Base64);
    }

    #[test]
    fn ecies_matches_bitcore_both_ways() {
        let v = vectors();
        let cases = v["ecies"].as_array().unwrap();
        assert!(cases.len() >= 10);
        for case in cases {
            let (sender, _) = key(&v, case["from"].as_str().unwrap());
            let (recipient, recipient_pub) = key(&v, case["to"].as_str().unwrap());
            let plaintext = case["plaintext"].as_str().unwrap().as_bytes();
            let expected = B64_IN.decode(case["ciphertext"].as_str().unwrap()).unwrap();
            assert_eq!(ecies_encrypt(&sender, &recipient_pub, plaintext), expected, "encrypt {case}");
            assert_eq!(ecies_decrypt(&recipient, &expected).unwrap(), plaintext, "decrypt {case}");
        }
    }

    #[test]
    fn ecies_refuses_tampering_and_wrong_keys() {
        let v = vectors();
        let (client, _) = key(&v, "client");
        let (server, _) = key(&v, "server");
        let (other, _) = key(&v, "other");
        let sealed = ecies_encrypt(&client, &server.public_key(), b"{\"username\":\"_ADMIN\"}");
        assert!(ecies_decrypt(&server, &sealed).is_ok());
        assert_eq!(ecies_decrypt(&other, &sealed).unwrap_err(), CryptoError::Checksum);
        for i in [40, sealed.len() / 2, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(ecies_decrypt(&server, &bad).unwrap_err(), CryptoError::Checksum, "byte {i}");
        }
        assert!(matches!(ecies_decrypt(&server, &sealed[..60]), Err(CryptoError::Malformed(_))));
        assert!(matches!(ecies_decrypt(&server, b""), Err(CryptoError::Malformed(_))));
        assert!(matches!(ecies_decrypt(&server, &[7; 200]), Err(CryptoError::Malformed(_))));
        assert_eq!(ecies_sender(&sealed).unwrap(), client.public_key());
    }

    #[test]
    fn passphrase_cipher_matches_node() {
        let v = vectors();
        let cases = v["symmetric"].as_array().unwrap();
        assert!(cases.len() >= 20);
        for case in cases {
            let cipher = PassphraseCipher::new(case["passphrase"].as_str().unwrap());
            let plaintext = case["plaintext"].as_str().unwrap();
            let hex_text = case["hex"].as_str().unwrap();
            assert_eq!(cipher.encrypt_hex(plaintext.as_bytes()), hex_text, "encrypt {case}");
            assert_eq!(cipher.decrypt_hex(hex_text).unwrap(), plaintext.as_bytes(), "decrypt {case}");
        }
        let c = PassphraseCipher::new("x");
        assert_eq!(c.decrypt_hex("zz").unwrap_err(), CryptoError::Hex);
        assert_eq!(c.decrypt_hex("abc").unwrap_err(), CryptoError::Hex);
    }

    #[test]
    fn nonces() {
        let v = vectors();
        for case in v["nonces"].as_array().unwrap() {
            assert_eq!(nonce_from_seed(case["seed"].as_str().unwrap()), case["nonce"].as_str().unwrap());
        }
        let a = new_nonce();
        assert_eq!(B64_IN.decode(&a).unwrap().len(), 32);
        assert_ne!(a, new_nonce());
    }

    #[test]
    fn digests_verify_as_bitcore_does() {
        let v = vectors();
        let cases = v["signatures"].as_array().unwrap();
        assert!(cases
            .iter()
            .any(|c| c["valid"] == true && c["note"].as_str().unwrap().contains("flipped")));
        for case in cases {
            let public = parse_public_key(case["publicKey"].as_str().unwrap()).unwrap();
            let ok = verify_digest(case["nonce"].as_str().unwrap(), case["digest"].as_str().unwrap(), &public);
            assert_eq!(ok, case["valid"].as_bool().unwrap(), "{case}");
        }
        let case = &cases[0];
        let public = parse_public_key(case["publicKey"].as_str().unwrap()).unwrap();
        let nonce = case["nonce"].as_str().unwrap();
        assert!(!verify_digest(nonce, "not base64!", &public));
        assert!(!verify_digest(nonce, "MEUCIQ==", &public), "truncated DER");
        assert!(
            !verify_digest("YWJj", case["digest"].as_str().unwrap(), &public),
            "nonce must be 32 bytes"
        );
    }

    #[test]
    fn session_secrets_are_random_text() {
        let a = session_secret();
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
        assert_ne!(a, session_secret());
    }
}
