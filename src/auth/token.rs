//! Finding the token in a request and taking it apart, before any key is looked at.
//!
//! Everything here is bounded and pure: a token that cannot be a valid one is refused without
//! a single I/O. The header and payload are parsed by hand-chosen structs rather than
//! jsonwebtoken's `Header`, because that one has no place for Cryptr's `iss` header or `crit`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::AuthFailure;

/// Where a route looks for the token besides `Authorization: Bearer`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenSources {
    /// A cookie of this name. Off by default.
    pub cookie: Option<String>,
    /// A query parameter of this name. Off by default.
    pub query: Option<String>,
}

/// A token as found in the request, not yet known to be text and one token: that is checked
/// by [`Found::text`], after the token cache is asked. A token found by its bytes is one that
/// passed that check when it was first verified, so a remembered token skips it (a UTF-8 and
/// a separator scan of some 800 bytes, about 2% of a cached request's instructions).
#[derive(Debug)]
pub(crate) enum Found<'r> {
    /// After `Authorization: Bearer`, spaces trimmed.
    Bearer(&'r [u8]),
    /// From a cookie or the query string.
    Text(std::borrow::Cow<'r, str>),
}

impl Found<'_> {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Found::Bearer(b) => b,
            Found::Text(t) => t.as_bytes(),
        }
    }

    /// The token as text: for `Authorization`, exactly one token (no space, tab or comma).
    pub fn text(&self) -> Result<&str, AuthFailure> {
        match self {
            Found::Bearer(b) => one_token(b),
            Found::Text(t) => Ok(t),
        }
    }
}

/// The token, as found, or `None` when the request carries none.
pub(crate) fn extract<'r>(
    headers: &'r HeaderMap,
    query: Option<&'r str>,
    sources: &TokenSources,
) -> Result<Option<Found<'r>>, AuthFailure> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    if let Some(value) = values.next() {
        if values.next().is_some() {
            return Err(AuthFailure::invalid_header(
                "more than one Authorization header",
            ));
        }
        return bearer(value.as_bytes()).map(|t| Some(Found::Bearer(t)));
    }
    if let Some(name) = &sources.cookie {
        for header in headers.get_all(COOKIE) {
            let Ok(header) = header.to_str() else {
                continue;
            };
            for pair in header.split(';') {
                if let Some((k, v)) = pair.trim().split_once('=') {
                    if k == name && !v.is_empty() {
                        return Ok(Some(Found::Text(std::borrow::Cow::Borrowed(v))));
                    }
                }
            }
        }
    }
    if let (Some(name), Some(query)) = (&sources.query, query) {
        for pair in query.split('&') {
            if let Some((k, v)) = pair.split_once('=') {
                if k == name && !v.is_empty() {
                    return Ok(Some(Found::Text(
                        percent_encoding::percent_decode_str(v).decode_utf8_lossy(),
                    )));
                }
            }
        }
    }
    Ok(None)
}

/// `Bearer <token>`: the scheme in any case (RFC 9110 section 11.1), one space or more, then
/// something; that it is exactly one token of text is [`one_token`]'s to say.
fn bearer(value: &[u8]) -> Result<&[u8], AuthFailure> {
    let space = memchr::memchr(b' ', value).ok_or_else(|| {
        AuthFailure::invalid_header("the Authorization header must be `Bearer <token>`")
    })?;
    let (scheme, rest) = (&value[..space], &value[space + 1..]);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(AuthFailure::invalid_header(
            "the Authorization header must use the Bearer scheme",
        ));
    }
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    let end = rest
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(start, |i| i + 1);
    match rest.get(start..end) {
        Some(token) if !token.is_empty() => Ok(token),
        _ => Err(AuthFailure::invalid_header(
            "the Authorization header must carry exactly one token",
        )),
    }
}

/// The bytes after `Bearer ` as one token of text.
fn one_token(token: &[u8]) -> Result<&str, AuthFailure> {
    let token = std::str::from_utf8(token)
        .map_err(|_| AuthFailure::invalid_header("the Authorization header is not text"))?;
    if has_separator(token.as_bytes()) {
        return Err(AuthFailure::invalid_header(
            "the Authorization header must carry exactly one token",
        ));
    }
    Ok(token)
}

/// Whether a space, tab or comma sits in the token: several tokens, or auth-params.
/// `memchr3` compares a vector at a time; `str::contains` with a set of chars decodes each
/// UTF-8 char first, and was 2% of a request's CPU under load (9k instructions a request).
fn has_separator(token: &[u8]) -> bool {
    memchr::memchr3(b' ', b'\t', b',', token).is_some()
}

/// The protected header, as far as we read it. Members we do not know are ignored; `jku`,
/// `x5u`, `jwk` and `x5c` are never read at all, so they can never point us at a key.
#[derive(Debug, Deserialize)]
pub(crate) struct Header {
    pub alg: String,
    pub kid: Option<String>,
    /// Cryptr repeats the issuer here; v3 access tokens carry it only here.
    pub iss: Option<String>,
    pub crit: Option<Value>,
}

/// A token split and decoded, not yet verified.
#[derive(Debug)]
pub(crate) struct Parsed<'t> {
    pub header: Header,
    pub claims: Map<String, Value>,
    /// `header.payload`: what the signature covers.
    pub signing_input: &'t str,
    pub signature: &'t str,
}

/// Splits a compact JWS into its three parts and decodes header and payload.
pub(crate) fn parse(token: &str, max_size: usize) -> Result<Parsed<'_>, AuthFailure> {
    if token.len() > max_size {
        return Err(AuthFailure::invalid_token(
            "the token is larger than accepted",
        ));
    }
    // `memchr` compares a vector at a time; `str::split('.')` went a word at a time and, with
    // `Identity`'s own search for the payload, was 2,000 instructions of a verified request.
    let mut dots = memchr::memchr_iter(b'.', token.as_bytes());
    let (Some(first), Some(second), None) = (dots.next(), dots.next(), dots.next()) else {
        return Err(AuthFailure::invalid_token(
            "the token is not a JWT: expected three dot-separated parts",
        ));
    };
    // The dots are ASCII: each slice starts and ends on a character boundary.
    let (h, p, s) = (
        &token[..first],
        &token[first + 1..second],
        &token[second + 1..],
    );
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(AuthFailure::invalid_token("the token has an empty part"));
    }
    let header: Header = decode_json(h).map_err(|_| AuthFailure::invalid_header_token())?;
    if header.alg.eq_ignore_ascii_case("none") {
        return Err(AuthFailure::invalid_token(
            "unsigned tokens are not accepted",
        ));
    }
    // RFC 7515 section 4.1.11: an extension we do not understand must reject the token, and we
    // understand none.
    if header.crit.is_some() {
        return Err(AuthFailure::invalid_token(
            "the token requires extensions (crit) that are not supported",
        ));
    }
    let claims: Map<String, Value> = decode_json(p)
        .map_err(|_| AuthFailure::invalid_token("the token's payload is not a JSON object"))?;
    Ok(Parsed {
        header,
        claims,
        signing_input: &token[..second],
        signature: s,
    })
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, ()> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| ())?;
    serde_json::from_slice(&bytes).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(payload))
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_takes_one_token() {
        let none = TokenSources::default();
        let text = |h: &HeaderMap| {
            extract(h, None, &none).and_then(|f| f.map(|f| f.text().map(str::to_owned)).transpose())
        };
        for v in ["Bearer abc", "bearer abc", "BEARER  abc "] {
            let h = headers(&[("authorization", v)]);
            assert_eq!(text(&h).unwrap().as_deref(), Some("abc"), "{v}");
        }
        for v in [
            "Basic abc",
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearerabc",
            "Bearer a,b",
            "Bearer a\tb",
        ] {
            let h = headers(&[("authorization", v)]);
            assert_eq!(
                text(&h).unwrap_err().code,
                super::super::AuthCode::InvalidHeader,
                "{v}"
            );
        }
    }

    #[test]
    fn two_authorization_headers_are_refused() {
        let h = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert!(extract(&h, None, &TokenSources::default()).is_err());
    }

    #[test]
    fn cookie_and_query_are_read_only_when_configured() {
        let h = headers(&[("cookie", "a=1; session=tok; b=2")]);
        assert!(
            extract(&h, Some("access_token=q"), &TokenSources::default())
                .unwrap()
                .is_none()
        );
        let sources = TokenSources {
            cookie: Some("session".into()),
            query: Some("access_token".into()),
        };
        let text = |h: &HeaderMap, q| {
            extract(h, q, &sources)
                .unwrap()
                .map(|f| f.text().unwrap().to_owned())
        };
        assert_eq!(text(&h, None).as_deref(), Some("tok"));
        let empty = HeaderMap::new();
        assert_eq!(
            text(&empty, Some("x=1&access_token=q%2Eq")).as_deref(),
            Some("q.q")
        );
    }

    #[test]
    fn structure_is_checked_before_anything_else() {
        assert!(parse("a.b", 8192).is_err());
        assert!(parse("a.b.c.d", 8192).is_err());
        assert!(parse("..", 8192).is_err());
        assert!(parse("!!!.b.c", 8192).is_err());
        assert!(parse(&token(r#"{"alg":"RS256"}"#, "[1]"), 8192).is_err());
        assert!(parse(&token(r#"{"alg":"RS256"}"#, "{}"), 10).is_err());
        assert!(parse(&token(r#"{"alg":"RS256"}"#, "{}"), 8192).is_ok());
    }

    #[test]
    fn alg_none_is_refused_in_any_casing() {
        for alg in ["none", "None", "NONE", "nOnE"] {
            let t = token(&format!(r#"{{"alg":"{alg}"}}"#), "{}");
            assert!(parse(&t, 8192).is_err(), "{alg}");
        }
    }

    #[test]
    fn crit_is_refused() {
        let t = token(r#"{"alg":"RS256","crit":["exp"],"exp":1}"#, "{}");
        assert!(parse(&t, 8192).is_err());
    }

    #[test]
    fn cryptr_header_iss_is_read() {
        let t = token(
            r#"{"alg":"RS256","kid":"k","typ":"JWT","iss":"https://x/t/a","jku":"http://evil"}"#,
            r#"{"sub":"u"}"#,
        );
        let p = parse(&t, 8192).unwrap();
        assert_eq!(p.header.iss.as_deref(), Some("https://x/t/a"));
        assert_eq!(p.header.kid.as_deref(), Some("k"));
        assert_eq!(p.claims["sub"], "u");
        assert_eq!(p.signature, "c2ln");
    }
}
