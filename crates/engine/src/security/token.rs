//! Session tokens: JWT (HS256). Clients treat the token as opaque; happn-rs signs its own claims
//! and verifies signature and algorithm strictly (no `alg: none`).

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// The session the token was issued to.
    pub id: String,
    pub username: String,
    /// Login time of that session, epoch ms.
    pub timestamp: i64,
    /// The stateless profile the session matched at login: its policy governs the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl TokenSigner {
    pub fn new(secret: &[u8]) -> Self {
        TokenSigner {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    pub fn sign(&self, claims: &TokenClaims) -> String {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding).expect("HS256 signing of plain claims cannot fail")
    }

    pub fn verify(&self, token: &str) -> Option<TokenClaims> {
        let mut v = Validation::new(Algorithm::HS256);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        decode::<TokenClaims>(token, &self.decoding, &v).ok().map(|d| d.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let s = TokenSigner::new(b"secret");
        let c = TokenClaims {
            id: "s1".into(),
            username: "u".into(),
            timestamp: 5,
            profile: Some("p".into()),
        };
        let t = s.sign(&c);
        assert_eq!(s.verify(&t), Some(c));
        assert_eq!(TokenSigner::new(b"other").verify(&t), None);
        assert_eq!(s.verify("not-a-valid-token"), None);
        // alg:none with the same claims is refused.
        let parts: Vec<&str> = t.split('.').collect();
        let none = format!("eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.{}.", parts[1]);
        assert_eq!(s.verify(&none), None);
    }
}
