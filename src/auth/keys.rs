//! A JWKS parsed once into ready decoding keys, and which algorithm may be used with which key.

use std::collections::HashMap;

use aws_lc_rs::signature::{
    ParsedPublicKey, RsaParameters, RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256,
    RSA_PKCS1_2048_8192_SHA384, RSA_PKCS1_2048_8192_SHA512, RSA_PSS_2048_8192_SHA256,
    RSA_PSS_2048_8192_SHA384, RSA_PSS_2048_8192_SHA512,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// The kind of a key, as far as choosing an algorithm goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

/// The key-type to algorithm table (RFC 7518 section 3.1, RFC 8037): an algorithm is only
/// ever used with a key of its own kind. HMAC fits no key from a JWKS: a public key set never
/// supplies a shared secret, and an `HS256` token "signed with the public key" must not pass.
pub fn fits(alg: Algorithm, kind: KeyKind) -> bool {
    use Algorithm::*;
    matches!(
        (alg, kind),
        (RS256 | RS384 | RS512 | PS256 | PS384 | PS512, KeyKind::Rsa)
            | (ES256, KeyKind::EcP256)
            | (ES384, KeyKind::EcP384)
            | (EdDSA, KeyKind::Ed25519)
    )
}

fn signature_algorithm(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// One verification key.
pub struct Key {
    pub kind: KeyKind,
    /// The key's own `alg`, when the JWKS says it: the token's must then be the same.
    pub alg: Option<Algorithm>,
    pub decoding: DecodingKey,
    /// RSA keys, parsed once per algorithm they may verify: jsonwebtoken would rebuild the key
    /// from `n` and `e` for every signature, a cost paid on every uncached request.
    rsa: Vec<(Algorithm, ParsedPublicKey)>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish()
    }
}

impl Key {
    /// May a token signed with `alg` be checked with this key?
    pub fn accepts(&self, alg: Algorithm) -> bool {
        fits(alg, self.kind) && self.alg.is_none_or(|own| own == alg)
    }

    /// Checks `signature` (base64url, as in the token) over `signing_input` with `alg`, which
    /// the caller has checked with [`Key::accepts`].
    pub fn verify(&self, alg: Algorithm, signing_input: &[u8], signature: &str) -> bool {
        if let Some((_, parsed)) = self.rsa.iter().find(|(a, _)| *a == alg) {
            let mut buf = [0u8; RSA_MAX_SIGNATURE];
            return rsa_signature(signature, &mut buf)
                .is_some_and(|sig| parsed.verify_sig(signing_input, sig).is_ok());
        }
        jsonwebtoken::crypto::verify(signature, signing_input, &self.decoding, alg).unwrap_or(false)
    }
}

/// The longest RSA signature that can verify: that of an 8192-bit key, the largest aws-lc's
/// parameters accept (an RSA signature is the size of the key's modulus).
const RSA_MAX_SIGNATURE: usize = 8192 / 8;

/// An RSA signature decoded into `buf`, on the stack rather than in a fresh allocation;
/// `None` when it is not base64url or longer than any RSA signature that can verify.
fn rsa_signature<'b>(signature: &str, buf: &'b mut [u8; RSA_MAX_SIGNATURE]) -> Option<&'b [u8]> {
    let n = URL_SAFE_NO_PAD.decode_slice(signature, buf).ok()?;
    buf.get(..n)
}

/// aws-lc-rs's parameters for each RSA JWS algorithm (the ones jsonwebtoken's backend uses).
fn rsa_params(alg: Algorithm) -> Option<&'static RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

/// The key parsed for each RSA algorithm it may verify (only its own `alg` when it has one).
fn parse_rsa(
    n: &str,
    e: &str,
    own: Option<Algorithm>,
) -> Result<Vec<(Algorithm, ParsedPublicKey)>, String> {
    let n = URL_SAFE_NO_PAD
        .decode(n.trim_end_matches('='))
        .map_err(|_| "RSA modulus is not base64url")?;
    let e = URL_SAFE_NO_PAD
        .decode(e.trim_end_matches('='))
        .map_err(|_| "RSA exponent is not base64url")?;
    let components = RsaPublicKeyComponents {
        n: &n[..],
        e: &e[..],
    };
    let algs = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ];
    algs.into_iter()
        .filter(|a| own.is_none_or(|o| o == *a))
        .filter_map(|a| rsa_params(a).map(|p| (a, p)))
        .map(|(a, p)| {
            components
                .to_parsed_public_key(p)
                .map(|k| (a, k))
                .map_err(|e| format!("unusable RSA key: {e}"))
        })
        .collect()
}

/// An issuer's verification keys by `kid`.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: HashMap<String, Key>,
    /// Which fetch of its issuer this set came from (0: a `jwks_file:` set).
    pub generation: u64,
    /// The keys taken, each as its JWK's JSON, in `kid` order: two sets with the same
    /// contents verify the same tokens, whatever the order of the document or the keys it
    /// left out.
    contents: String,
}

impl KeySet {
    pub fn get(&self, kid: &str) -> Option<&Key> {
        self.keys.get(kid)
    }

    /// True when both hold the very same keys (same `kid`s, material and parameters).
    pub fn same_keys(&self, other: &KeySet) -> bool {
        self.contents == other.contents
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Parses a JWKS document. Keys that cannot serve (symmetric, for encryption, without `kid`,
/// of an unsupported type or too weak) are left out, each with a reason for the log; members
/// we do not know (Cryptr's `x5t_sha256`) are ignored.
pub fn parse_jwks(body: &[u8]) -> Result<(KeySet, Vec<String>), String> {
    #[derive(serde::Deserialize)]
    struct Doc {
        keys: Vec<serde_json::Value>,
    }
    // An object, as RFC 7517 §5 says: serde would also build `Doc` from an array.
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
        .map_err(|e| format!("not a JWKS document (expected {{\"keys\": [...]}}): {e}"))?;
    let doc: Doc = serde_json::from_value(serde_json::Value::Object(object))
        .map_err(|e| format!("not a JWKS document (expected {{\"keys\": [...]}}): {e}"))?;
    let mut set = KeySet::default();
    let mut skipped = Vec::new();
    let mut contents = Vec::new();
    for (i, value) in doc.keys.into_iter().enumerate() {
        let label = value
            .get("kid")
            .and_then(|k| k.as_str())
            .map_or_else(|| format!("key #{i}"), |k| format!("key `{k}`"));
        if value.get("kty").and_then(|k| k.as_str()) == Some("oct") {
            skipped.push(format!(
                "{label}: symmetric (oct) keys are never taken from a JWKS"
            ));
            continue;
        }
        // serde_json's maps are sorted: the same key written in another member order reads
        // the same.
        let json = value.to_string();
        match key_from(value) {
            Ok((kid, key)) => {
                contents.push((kid.clone(), json));
                set.keys.insert(kid, key);
            }
            Err(reason) => skipped.push(format!("{label}: {reason}")),
        }
    }
    // A `kid` given twice keeps its last key, as `keys` does.
    contents.reverse();
    contents.sort_by(|a, b| a.0.cmp(&b.0));
    contents.dedup_by(|later, first| later.0 == first.0);
    set.contents = contents
        .into_iter()
        .map(|(_, json)| json)
        .collect::<Vec<_>>()
        .join("\n");
    Ok((set, skipped))
}

fn key_from(value: serde_json::Value) -> Result<(String, Key), String> {
    let jwk: Jwk = serde_json::from_value(value).map_err(|e| format!("unsupported key: {e}"))?;
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return Err("not a signature key (`use` is not `sig`)".into());
    }
    let kid = jwk
        .common
        .key_id
        .clone()
        .filter(|k| !k.is_empty())
        .ok_or("no `kid`")?;
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let bits = URL_SAFE_NO_PAD
                .decode(rsa.n.trim_end_matches('='))
                .map(|n| n.iter().skip_while(|b| **b == 0).count() * 8)
                .map_err(|_| "RSA modulus is not base64url")?;
            // RFC 7518 section 3.3: 2048 bits or more.
            if bits < 2048 {
                return Err(format!(
                    "RSA key of {bits} bits is too weak (2048 at least)"
                ));
            }
            KeyKind::Rsa
        }
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => KeyKind::EcP256,
            EllipticCurve::P384 => KeyKind::EcP384,
            _ => return Err("unsupported elliptic curve".into()),
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => KeyKind::Ed25519,
            _ => return Err("unsupported OKP curve".into()),
        },
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric (oct) keys are never taken from a JWKS".into())
        }
        _ => return Err("unsupported key type".into()),
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(
            signature_algorithm(a)
                .ok_or_else(|| format!("`alg` {a:?} is not a signature algorithm"))?,
        ),
    };
    if let Some(alg) = alg {
        if !fits(alg, kind) {
            return Err(format!("`alg` {alg:?} does not fit a {kind:?} key"));
        }
    }
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable key: {e}"))?;
    let rsa = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => parse_rsa(&p.n, &p.e, alg)?,
        _ => Vec::new(),
    };
    Ok((
        kid,
        Key {
            kind,
            alg,
            decoding,
            rsa,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Algorithm::*;

    #[test]
    fn rsa_signatures_decode_up_to_the_largest_key_and_no_further() {
        let mut buf = [0u8; RSA_MAX_SIGNATURE];
        // RSA 2048 and 8192: 256 and 1,024 bytes.
        for len in [256, RSA_MAX_SIGNATURE] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let b64 = URL_SAFE_NO_PAD.encode(&bytes);
            assert_eq!(
                rsa_signature(&b64, &mut buf),
                Some(&bytes[..]),
                "{len} bytes"
            );
        }
        let too_long = URL_SAFE_NO_PAD.encode(vec![1u8; RSA_MAX_SIGNATURE + 1]);
        assert_eq!(rsa_signature(&too_long, &mut buf), None);
        assert_eq!(rsa_signature("not base64!", &mut buf), None);
        // Padded (base64, not base64url without padding) is refused, as before.
        assert_eq!(rsa_signature("AAAA==", &mut buf), None);
    }

    #[test]
    fn algorithm_table_pairs_each_algorithm_with_its_key_kind_only() {
        let kinds = [
            KeyKind::Rsa,
            KeyKind::EcP256,
            KeyKind::EcP384,
            KeyKind::Ed25519,
        ];
        let table: [(Algorithm, Option<KeyKind>); 12] = [
            (HS256, None),
            (HS384, None),
            (HS512, None),
            (RS256, Some(KeyKind::Rsa)),
            (RS384, Some(KeyKind::Rsa)),
            (RS512, Some(KeyKind::Rsa)),
            (PS256, Some(KeyKind::Rsa)),
            (PS384, Some(KeyKind::Rsa)),
            (PS512, Some(KeyKind::Rsa)),
            (ES256, Some(KeyKind::EcP256)),
            (ES384, Some(KeyKind::EcP384)),
            (EdDSA, Some(KeyKind::Ed25519)),
        ];
        for (alg, only) in table {
            for kind in kinds {
                assert_eq!(fits(alg, kind), only == Some(kind), "{alg:?} with {kind:?}");
            }
        }
    }

    const CRYPTR_JWKS: &str =
        include_str!("../../../shared/fixtures/cryptr/drag-n-survey.jwks.json");

    #[test]
    fn cryptrs_real_key_set_parses_with_its_extra_members() {
        let (set, skipped) = parse_jwks(CRYPTR_JWKS.as_bytes()).unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        let key = set.get("4888c448-8628-424f-b632-aa7723aabf1d").unwrap();
        assert_eq!(key.kind, KeyKind::Rsa);
        assert_eq!(key.alg, Some(RS256));
        assert!(key.accepts(RS256));
        assert!(!key.accepts(PS256), "the key's own alg binds");
        assert!(!key.accepts(HS256));
    }

    #[test]
    fn sets_are_the_same_when_their_keys_are_whatever_the_document_order() {
        // Two P-256 public keys, as JWKs with a given kid.
        let p1 = |kid: &str| {
            format!(
                r#"{{"kty":"EC","kid":"{kid}","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}}"#
            )
        };
        let p2 = |kid: &str| {
            format!(
                r#"{{"kty":"EC","kid":"{kid}","crv":"P-256","x":"gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0","y":"SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps"}}"#
            )
        };
        let set = |keys: &[String]| {
            let (set, _) =
                parse_jwks(format!(r#"{{"keys":[{}]}}"#, keys.join(",")).as_bytes()).unwrap();
            assert_eq!(
                set.len(),
                keys.iter().filter(|k| !k.contains("oct")).count()
            );
            set
        };
        let ab = set(&[p1("a"), p1("b")]);
        // Another key order, another member order, a key left out: the same.
        let reordered = r#"{"y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","crv":"P-256","kid":"a","kty":"EC"}"#;
        let left_out = r#"{"kty":"oct","kid":"h","k":"c2VjcmV0"}"#;
        assert!(ab.same_keys(&set(&[p1("b"), left_out.into(), reordered.into()])));
        // A key added, withdrawn or changed: not the same.
        assert!(!ab.same_keys(&set(&[p1("a")])));
        assert!(!ab.same_keys(&set(&[p1("a"), p1("b"), p1("c")])));
        assert!(!ab.same_keys(&set(&[p1("a"), p2("b")])));
        assert!(!ab.same_keys(&set(&[p1("a"), p1("c")])));
        // A kid given twice: its last key is the one that verifies, and the one compared.
        let twice = parse_jwks(format!(r#"{{"keys":[{},{}]}}"#, p2("a"), p1("a")).as_bytes())
            .unwrap()
            .0;
        assert!(twice.same_keys(&set(&[p1("a")])));
        assert!(!twice.same_keys(&set(&[p2("a")])));
    }

    #[test]
    fn symmetric_encryption_weak_and_kidless_keys_are_left_out() {
        let doc = r#"{"keys":[
            {"kty":"oct","kid":"h","k":"c2VjcmV0"},
            {"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"},
            {"kty":"RSA","kid":"small","n":"AQAB","e":"AQAB"},
            {"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"EC","kid":"ec","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"RSA","kid":"oaep","alg":"RSA-OAEP","n":"AQAB","e":"AQAB"}
        ]}"#;
        let (set, skipped) = parse_jwks(doc.as_bytes()).unwrap();
        assert_eq!(set.len(), 1, "{skipped:?}");
        assert!(set.get("ec").is_some());
        assert_eq!(skipped.len(), 5, "{skipped:?}");
        assert!(skipped[0].contains("symmetric"));
    }

    #[test]
    fn pre_parsed_rsa_keys_verify_what_jsonwebtoken_verifies() {
        for alg in [RS256, RS384, RS512, PS256, PS384, PS512] {
            let (mut signer, _) = crate::mint::SigningKey::generate(RS256).unwrap();
            signer.alg = alg;
            let mut jwk = signer.jwk().unwrap();
            jwk.as_object_mut().unwrap().remove("alg");
            let (set, _) =
                parse_jwks(serde_json::json!({ "keys": [jwk] }).to_string().as_bytes()).unwrap();
            let key = set.get(&signer.kid).unwrap();
            let token = signer
                .sign("https://i", &serde_json::json!({"sub": "u"}))
                .unwrap();
            let (input, sig) = token.rsplit_once('.').unwrap();
            assert!(key.verify(alg, input.as_bytes(), sig), "{alg:?}");
            assert!(
                jsonwebtoken::crypto::verify(sig, input.as_bytes(), &key.decoding, alg).unwrap()
            );
            let tampered = format!("{input}x");
            assert!(
                !key.verify(alg, tampered.as_bytes(), sig),
                "{alg:?} tampered"
            );
            assert!(!key.verify(alg, input.as_bytes(), "%%%"), "{alg:?} garbage");
        }
    }

    #[test]
    fn a_document_without_keys_is_an_error() {
        assert!(parse_jwks(b"<html>").is_err());
        assert!(parse_jwks(br#"{"issuer":"x"}"#).is_err());
        // Found by fuzzing (fuzz/regressions/parse_jwks/jwks-as-array): an array is not a
        // JWK Set, though serde would read one as the struct.
        assert!(parse_jwks(b"[[]]").is_err());
        let (set, _) = parse_jwks(br#"{"keys":[]}"#).unwrap();
        assert!(set.is_empty());
    }
}
