//! Token authentication: which issuers a route accepts, how a token is found and verified,
//! and what the upstream learns of the caller.

pub mod cache;
mod claims;
pub mod jwks;
pub mod keys;
pub mod token;
mod verify;

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderName;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

pub use claims::{claim, header_value, scopes};
pub use jwks::{IssuerKeys, JwksSettings, KeyCache, KeySource, KeyStatus};
pub use token::TokenSources;
pub(crate) use verify::authenticate;
pub use verify::{verify, Check, Notes};

/// One accepted token issuer (a Cryptr tenant, or a generic OIDC issuer), compiled.
#[derive(Debug)]
pub struct Issuer {
    /// The `issuers:` entry it comes from (one entry may give several tenants).
    pub name: String,
    /// Exactly what `iss` must be: `<base_url>/t/<tenant>` for Cryptr.
    pub iss: String,
    /// A token passes when its `aud` holds one of these (none: `aud` is not checked).
    pub audiences: Vec<String>,
    /// A token passes when its `cid` / `client_id` is one of these (none: not checked).
    pub client_ids: Vec<String>,
    /// Default `[RS256]`.
    pub algorithms: Vec<Algorithm>,
    /// Allowed clock skew for `exp`, `nbf`, `iat`, in seconds. Default 60.
    pub leeway: u64,
    pub required_claims: Vec<String>,
    /// Default 8KiB.
    pub max_token_size: usize,
    pub claims_to_headers: Vec<(String, HeaderName)>,
    pub claims_header: Option<HeaderName>,
    pub keys: Arc<IssuerKeys>,
}

/// How a route's scopes are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeRule {
    All(Vec<String>),
    Any(Vec<String>),
}

/// A protected (or optionally protected) route's requirements.
#[derive(Debug)]
pub struct RouteAuth {
    pub issuers: Vec<Arc<Issuer>>,
    /// Anonymous requests pass; a token, when present, must still be valid.
    pub optional: bool,
    pub scopes: Option<ScopeRule>,
    /// Each claim must equal one of its listed values.
    pub claims: Vec<(String, Vec<Value>)>,
    /// Added to (and overriding) the issuer's mapping.
    pub claims_to_headers: Vec<(String, HeaderName)>,
    pub claims_header: Option<HeaderName>,
    /// Whether the upstream still sees the token. Default true.
    pub forward_authorization: bool,
    pub sources: TokenSources,
    /// The largest `max_token_size` of the route's issuers: checked before the issuer is known.
    pub max_token_size: usize,
}

impl RouteAuth {
    /// The headers a verified caller's request gets: the issuer's claim mapping, then the
    /// route's (which wins for a header both set), then the whole payload if asked. A claim
    /// that is absent, or cannot be a header value, sets no header.
    pub fn injected_headers(&self, identity: &Identity) -> Vec<(HeaderName, http::HeaderValue)> {
        let mut map = http::HeaderMap::new();
        self.inject(identity, &mut map);
        map.into_iter()
            .filter_map(|(name, value)| Some((name?, value)))
            .collect()
    }

    /// Sets [`RouteAuth::injected_headers`] on `headers`, replacing any of the same name. The
    /// issuer's part was made once, when the token was verified; only a route's own mapping
    /// reads claims here.
    pub fn inject(&self, identity: &Identity, headers: &mut http::HeaderMap) {
        for (header, value) in &identity.issuer_headers {
            headers.insert(header.clone(), value.clone());
        }
        for (name, header) in &self.claims_to_headers {
            if let Some(value) = claim(&identity.claims, name).and_then(header_value) {
                headers.insert(header.clone(), value);
            }
        }
        let whole = self
            .claims_header
            .as_ref()
            .or(identity.issuer.claims_header.as_ref());
        if let Some(header) = whole {
            if let Ok(value) = http::HeaderValue::from_str(identity.payload_b64()) {
                headers.insert(header.clone(), value);
            }
        }
    }
}

/// Who the caller is, once the token is verified.
#[derive(Debug)]
pub struct Identity {
    pub issuer: Arc<Issuer>,
    pub sub: String,
    /// The token's `exp` (Unix seconds).
    pub exp: u64,
    pub claims: Map<String, Value>,
    /// The whole token as sent: what the token cache compares, and (its payload part) what
    /// `claims_header` forwards.
    token: Box<str>,
    /// Where the payload (base64url JSON) sits in `token`.
    payload: std::ops::Range<usize>,
    /// The issuer's `claims_to_headers`, applied to these claims (see [`Identity::new`]).
    issuer_headers: Vec<(HeaderName, http::HeaderValue)>,
}

impl Identity {
    /// A verified caller; the issuer's claim headers are made here, once per token rather than
    /// once per request (a cached token is reused across requests).
    pub fn new(
        issuer: Arc<Issuer>,
        sub: String,
        exp: u64,
        claims: Map<String, Value>,
        token: &str,
    ) -> Identity {
        let mut issuer_headers: Vec<(HeaderName, http::HeaderValue)> = Vec::new();
        for (name, header) in &issuer.claims_to_headers {
            if let Some(value) = claim(&claims, name).and_then(header_value) {
                issuer_headers.retain(|(h, _)| h != header);
                issuer_headers.push((header.clone(), value));
            }
        }
        Identity {
            issuer,
            sub,
            exp,
            claims,
            payload: payload_range(token),
            token: token.into(),
            issuer_headers,
        }
    }

    /// The token this identity was verified from.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The token's payload as sent (base64url JSON).
    pub fn payload_b64(&self) -> &str {
        self.token.get(self.payload.clone()).unwrap_or_default()
    }
}

/// Where the payload sits in a compact JWS (`header.payload.signature`); empty when there
/// is no payload part.
fn payload_range(token: &str) -> std::ops::Range<usize> {
    let mut dots = memchr::memchr_iter(b'.', token.as_bytes());
    match (dots.next(), dots.next()) {
        (Some(a), Some(b)) => a + 1..b,
        _ => 0..0,
    }
}

/// The time verification judges tokens by: the system clock, or a fixed instant (tests,
/// and checking a recorded token).
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    fixed: Option<u64>,
}

impl Clock {
    pub fn system() -> Clock {
        Clock { fixed: None }
    }

    pub fn fixed(unix_seconds: u64) -> Clock {
        Clock {
            fixed: Some(unix_seconds),
        }
    }

    pub fn now(&self) -> u64 {
        self.fixed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        })
    }
}

/// The authentication part of a plan.
#[derive(Debug)]
pub struct AuthPlan {
    pub clock: Clock,
    pub cache: Arc<KeyCache>,
    /// Every issuer of the plan, for the key refreshers.
    pub issuers: Vec<Arc<Issuer>>,
    /// Every header any claim mapping names: removed from every client request, on every
    /// route.
    pub identity_headers: IdentityHeaders,
    /// Verified (and forged) tokens remembered; `None` with `token_cache: false`.
    pub token_cache: Option<cache::TokenCache>,
}

impl AuthPlan {
    /// Starts one key refresher per issuer with remote keys; they stop when the returned
    /// guard is dropped.
    pub fn start_refreshers(&self) -> Refreshers {
        let mut seen = HashSet::new();
        let tasks = self
            .issuers
            .iter()
            .filter(|i| seen.insert(i.iss.clone()))
            .filter(|i| !matches!(i.keys.source, KeySource::Static(_)))
            .map(|i| {
                tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
                    self.cache.clone().refresh_loop(i.keys.clone()),
                ))
            })
            .collect();
        Refreshers { _tasks: tasks }
    }

    /// True when a client-sent header with this name must be dropped.
    pub fn is_identity_header(&self, name: &HeaderName) -> bool {
        self.identity_headers.contains(name)
    }
}

/// The header names claim mappings target, lower-case with `_` as `-`. A handful at most: a
/// scan beats hashing each header name of each request, and most names are passed over on
/// their length alone (`X-User_Id` has the length of `x-user-id`).
#[derive(Debug, Default)]
pub struct IdentityHeaders {
    names: Vec<String>,
    /// Bit `n` set: some name is `n` bytes long (bit 63: 63 bytes or more).
    lengths: u64,
}

impl IdentityHeaders {
    pub fn new(names: Vec<String>) -> IdentityHeaders {
        let lengths = names
            .iter()
            .fold(0, |bits, n| bits | IdentityHeaders::bit(n.len()));
        IdentityHeaders { names, lengths }
    }

    fn bit(len: usize) -> u64 {
        1 << len.min(63)
    }

    /// True when `name`, with `_` read as `-`, is one of them.
    pub fn contains(&self, name: &HeaderName) -> bool {
        let name = name.as_str();
        if self.lengths & IdentityHeaders::bit(name.len()) == 0 {
            return false;
        }
        self.names
            .iter()
            .any(|h| crate::headers::same_name_reading_underscores(name.as_bytes(), h.as_bytes()))
    }
}

/// Aborts the key refreshers when dropped.
pub struct Refreshers {
    _tasks: Vec<tokio_util::task::AbortOnDropHandle<()>>,
}

/// The codes of a 401, as Cryptr's tutorial named them (plus `invalid_token`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthCode {
    HeaderMissing,
    InvalidHeader,
    TokenExpired,
    InvalidClaims,
    NoRsaKey,
    InvalidToken,
}

impl AuthCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthCode::HeaderMissing => "authorization_header_missing",
            AuthCode::InvalidHeader => "invalid_header",
            AuthCode::TokenExpired => "token_expired",
            AuthCode::InvalidClaims => "invalid_claims",
            AuthCode::NoRsaKey => "no_rsa_key",
            AuthCode::InvalidToken => "invalid_token",
        }
    }
}

/// Why a token was refused: a code and a sentence the caller can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    pub code: AuthCode,
    pub description: Cow<'static, str>,
}

impl AuthFailure {
    pub fn new(code: AuthCode, description: impl Into<Cow<'static, str>>) -> AuthFailure {
        AuthFailure {
            code,
            description: description.into(),
        }
    }

    pub fn invalid_header(description: &'static str) -> AuthFailure {
        AuthFailure::new(AuthCode::InvalidHeader, description)
    }

    pub fn invalid_header_token() -> AuthFailure {
        AuthFailure::new(
            AuthCode::InvalidHeader,
            "the token's header is not valid base64url JSON",
        )
    }

    pub fn invalid_token(description: &'static str) -> AuthFailure {
        AuthFailure::new(AuthCode::InvalidToken, description)
    }

    pub fn invalid_claims(description: impl Into<Cow<'static, str>>) -> AuthFailure {
        AuthFailure::new(AuthCode::InvalidClaims, description)
    }
}

#[cfg(test)]
mod tests {
    use super::IdentityHeaders;
    use http::HeaderName;

    #[test]
    fn identity_headers_match_whatever_the_spelling_and_only_those() {
        let long = format!("x-{}", "a".repeat(70));
        let headers = IdentityHeaders::new(vec!["x-user-id".into(), long.clone()]);
        let has = |n: &str| headers.contains(&HeaderName::from_bytes(n.as_bytes()).unwrap());
        for name in [
            "X-User-Id",
            "x_user_id",
            "X-USER_ID",
            &long,
            &long.replace('-', "_"),
        ] {
            assert!(has(name), "{name}");
        }
        // Same length as one of them, or as long as the long one, or standard headers.
        let other_long = format!("x-{}", "b".repeat(70));
        for name in [
            "x-user-ix",
            "x-user-i",
            &other_long,
            "host",
            "authorization",
        ] {
            assert!(!has(name), "{name}");
        }
        assert!(!IdentityHeaders::default().contains(&http::header::HOST));
    }
}
