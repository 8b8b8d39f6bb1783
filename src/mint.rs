//! Making keys and tokens for local work: the demo's dev issuer, `keygen` and `token`.
//!
//! Tokens are shaped like Cryptr's: header `typ: JWT`, `kid`, `alg` and the issuer again as
//! `iss`; hand-assembled because jsonwebtoken's `Header` has no place for that `iss`.

use aws_lc_rs::encoding::AsDer;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

/// A private key that signs tokens, with the `kid` its JWK is published under.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
}

impl SigningKey {
    /// Reads a PEM private key (PKCS#8, or PKCS#1 RSA / SEC1 EC): RSA signs RS256, P-256 ES256.
    pub fn from_pem(pem: &[u8], kid: Option<&str>) -> Result<SigningKey, String> {
        let (encoding, alg) = match EncodingKey::from_rsa_pem(pem) {
            Ok(k) => (k, Algorithm::RS256),
            Err(_) => match EncodingKey::from_ec_pem(pem) {
                Ok(k) => (k, Algorithm::ES256),
                Err(_) => return Err("not a PEM RSA or EC (P-256) private key".into()),
            },
        };
        let mut key = SigningKey {
            kid: String::new(),
            alg,
            encoding,
        };
        key.kid = match kid {
            Some(k) => k.to_string(),
            None => key.thumbprint()?,
        };
        Ok(key)
    }

    /// A fresh key: `RS256` (RSA 2048) or `ES256` (P-256), its `kid` derived from the key (so
    /// `token --key` finds the same one later). Returns the key and its PKCS#8 PEM.
    pub fn generate(alg: Algorithm) -> Result<(SigningKey, String), String> {
        let der = match alg {
            Algorithm::RS256 => aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .and_then(|k| k.as_der())
                .map(|d| d.as_ref().to_vec()),
            Algorithm::ES256 => aws_lc_rs::signature::EcdsaKeyPair::generate(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            )
            .and_then(|k| k.to_pkcs8v1())
            .map(|d| d.as_ref().to_vec()),
            other => {
                return Err(format!(
                    "{other:?} keys are not generated here; use RS256 or ES256"
                ))
            }
        }
        .map_err(|_| "key generation failed".to_string())?;
        let pem = pem("PRIVATE KEY", &der);
        let key = SigningKey::from_pem(pem.as_bytes(), None)?;
        Ok((key, pem))
    }

    /// The public JWK, as an issuer publishes it: `kty`, key material, `kid`, `use`, `alg`.
    pub fn jwk(&self) -> Result<Value, String> {
        let jwk = Jwk::from_encoding_key(&self.encoding, self.alg).map_err(|e| e.to_string())?;
        let mut v = serde_json::to_value(jwk).map_err(|e| e.to_string())?;
        v["kid"] = json!(self.kid);
        v["use"] = json!("sig");
        Ok(v)
    }

    /// `{"keys": [jwk]}`
    pub fn jwks(&self) -> Result<Value, String> {
        Ok(json!({ "keys": [self.jwk()?] }))
    }

    /// A stable `kid` for a key read from a file: the first 16 bytes of the SHA-256 of its
    /// public JWK, base64url.
    fn thumbprint(&self) -> Result<String, String> {
        let jwk = Jwk::from_encoding_key(&self.encoding, self.alg).map_err(|e| e.to_string())?;
        let text = serde_json::to_string(&jwk).map_err(|e| e.to_string())?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
        Ok(URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16]))
    }

    /// Signs `claims` under a Cryptr-shaped header naming `iss`.
    pub fn sign(&self, iss: &str, claims: &Value) -> Result<String, String> {
        let alg = format!("{:?}", self.alg);
        let header = json!({ "alg": alg, "typ": "JWT", "kid": self.kid, "iss": iss });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding, self.alg)
            .map_err(|e| e.to_string())?;
        Ok(format!("{input}.{signature}"))
    }
}

/// What goes into a minted token; the rest of a Cryptr v1 access token is filled in.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub email: Option<String>,
    pub tenant: Option<String>,
    pub scopes: Vec<String>,
    /// Extra claims, set last (they may replace the ones above).
    pub claims: Vec<(String, Value)>,
    pub ttl_secs: u64,
    pub now: u64,
}

impl TokenSpec {
    /// The claims of a Cryptr v1 access token.
    pub fn claims(&self) -> Value {
        let mut c = json!({
            "iss": self.iss,
            "aud": self.aud,
            "sub": self.sub,
            "scp": self.scopes,
            "jti": uuid(),
            "jtt": "access",
            "ver": 1,
            "iat": self.now,
            "exp": self.now + self.ttl_secs,
        });
        if let Some(email) = &self.email {
            c["email"] = json!(email);
        }
        if let Some(tenant) = &self.tenant {
            c["tnt"] = json!(tenant);
        }
        for (k, v) in &self.claims {
            c[k.as_str()] = v.clone();
        }
        c
    }
}

/// A random version-4 UUID.
pub fn uuid() -> String {
    let mut b = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        // Only uniqueness matters for a kid or jti; the clock gives enough of it.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b = t.to_be_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_tokens_their_jwks_verify() {
        for alg in [Algorithm::RS256, Algorithm::ES256] {
            let (key, pem) = SigningKey::generate(alg).unwrap();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
            let jwks = key.jwks().unwrap();
            let (set, skipped) =
                crate::auth::keys::parse_jwks(jwks.to_string().as_bytes()).unwrap();
            assert!(skipped.is_empty(), "{skipped:?}");
            let token = key.sign("https://issuer", &json!({"sub": "u"})).unwrap();
            let (input, sig) = token.rsplit_once('.').unwrap();
            let public = set.get(&key.kid).unwrap();
            assert!(public.accepts(alg));
            assert!(
                jsonwebtoken::crypto::verify(sig, input.as_bytes(), &public.decoding, alg).unwrap()
            );
            // Read back from its PEM, the key keeps working.
            let again = SigningKey::from_pem(pem.as_bytes(), Some("k")).unwrap();
            assert_eq!(again.alg, alg);
        }
    }

    #[test]
    fn uuids_are_version_4() {
        let u = uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(uuid(), u);
    }
}
