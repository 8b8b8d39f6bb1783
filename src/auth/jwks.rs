//! Issuers' key sets: fetched over HTTPS, parsed once, kept in a moka cache.
//!
//! - One background task per issuer fetches the keys at start (retrying with backoff when the
//!   JWKS is down) and again before they go stale, so requests read a warm cache and never
//!   wait on a refresh.
//! - Every fetch of one issuer goes through moka's per-key `and_try_compute_with`, so
//!   concurrent misses share one fetch and no lock of ours is held across I/O.
//! - A failed fetch keeps the last good set, which moka keeps for at most `max_stale` after
//!   it was fetched.
//! - A token whose `kid` is unknown may trigger one refetch per `min_refresh_interval`: a
//!   stream of random kids cannot become a stream of JWKS requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::ops::compute::Op;
use moka::Expiry;

use super::keys::{parse_jwks, KeySet};

/// Bounds and timings of one issuer's key fetching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSettings {
    /// Per fetch, body included. Default 5s.
    pub timeout: Duration,
    /// How long a set is fresh when the response has no `Cache-Control: max-age`. Default 10m.
    pub ttl: Duration,
    /// Bounds applied to `max-age`. Defaults 1m and 1h.
    pub min_ttl: Duration,
    pub max_ttl: Duration,
    /// At most one refetch per this interval for unknown kids. Default 30s.
    pub min_refresh_interval: Duration,
    /// How long the last good set serves when fetches fail. Default 24h.
    pub max_stale: Duration,
    /// Largest JWKS response read. Default 1MiB.
    pub max_size: usize,
}

impl Default for JwksSettings {
    fn default() -> Self {
        JwksSettings {
            timeout: Duration::from_secs(5),
            ttl: Duration::from_secs(600),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(3600),
            min_refresh_interval: Duration::from_secs(30),
            max_stale: Duration::from_secs(24 * 3600),
            max_size: 1 << 20,
        }
    }
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// `jwks_file:` read once at startup.
    Static(Arc<KeySet>),
    /// A JWKS URL; `fallback` is tried when the first answers without keys (Cryptr's
    /// `/.well-known` then `/.well-known/jwks`).
    Url {
        url: String,
        fallback: Option<String>,
    },
    /// `<issuer>/.well-known/openid-configuration` names the JWKS URL.
    Discovery { issuer: String },
}

/// One issuer's keys: where they come from, and the state of fetching them.
#[derive(Debug)]
pub struct IssuerKeys {
    /// The issuer identifier: the cache key and the log label.
    pub issuer: Arc<str>,
    pub source: KeySource,
    pub settings: JwksSettings,
    state: Mutex<FetchState>,
    /// Fetches attempted, for tests and metrics.
    fetches: AtomicU64,
    /// Fetches that failed, for metrics.
    failures: AtomicU64,
    /// The generation of the latest fetched key set: tokens verified under an older set are
    /// checked again. A fetch that brings the same keys keeps it (`number`).
    generation: AtomicU64,
}

#[derive(Debug, Default)]
struct FetchState {
    discovered_uri: Option<String>,
    last_forced: Option<Instant>,
    consecutive_failures: u32,
    retry_at: Option<Instant>,
    last_good: Option<Instant>,
    last_error: Option<String>,
    /// Keys in the latest fetched set.
    key_count: usize,
    /// The latest fetched set (shared with the key cache), to tell whether the next fetch
    /// brought anything new.
    latest: Option<Arc<KeySet>>,
}

/// What an issuer's keys look like now: for readiness and metrics.
#[derive(Debug, Clone)]
pub struct KeyStatus {
    /// Keys held (0: none usable yet, or the last set went past `max_stale`).
    pub keys: usize,
    pub fetches: u64,
    pub failures: u64,
    /// Since the last successful fetch (`None`: never, or a `jwks_file:` set).
    pub since_last_good: Option<Duration>,
    /// Why the latest fetch failed, while it is the latest outcome.
    pub last_error: Option<String>,
}

/// Why keys could not be had: the gateway's fault, never the caller's.
#[derive(Debug, Clone)]
pub struct KeysUnavailable {
    pub retry_after: Duration,
}

#[derive(Clone)]
struct Cached {
    keys: Arc<KeySet>,
    fetched_at: Instant,
    fresh_for: Duration,
    max_stale: Duration,
}

impl Cached {
    fn held(&self) -> Held {
        Held {
            keys: self.keys.clone(),
            until: self.fetched_at.checked_add(self.max_stale),
        }
    }
}

/// A key set, and until when the cache keeps it: what a token verified with it may be
/// remembered for, at most.
#[derive(Debug)]
pub struct Held {
    pub keys: Arc<KeySet>,
    /// `max_stale` after the fetch that brought it (the cache drops it then, or a moment
    /// after, unless a later fetch succeeds); `None` for a `jwks_file:` set, held for good.
    pub until: Option<Instant>,
}

struct StaleBound;

impl Expiry<Arc<str>, Cached> for StaleBound {
    fn expire_after_create(&self, _: &Arc<str>, v: &Cached, _: Instant) -> Option<Duration> {
        Some(v.max_stale)
    }
    fn expire_after_update(
        &self,
        _: &Arc<str>,
        v: &Cached,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.max_stale)
    }
}

impl KeySource {
    /// True when both fetch the same remote document (a reload keeps such an issuer's keys).
    pub fn same_remote(&self, other: &KeySource) -> bool {
        match (self, other) {
            (
                KeySource::Url { url, fallback },
                KeySource::Url {
                    url: u2,
                    fallback: f2,
                },
            ) => url == u2 && fallback == f2,
            (KeySource::Discovery { issuer }, KeySource::Discovery { issuer: i2 }) => issuer == i2,
            _ => false,
        }
    }
}

impl IssuerKeys {
    pub fn new(issuer: &str, source: KeySource, settings: JwksSettings) -> IssuerKeys {
        IssuerKeys {
            issuer: Arc::from(issuer),
            source,
            settings,
            state: Mutex::new(FetchState::default()),
            fetches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        }
    }

    /// Which key set tokens are checked against now (0 for a `jwks_file:` set, which never
    /// changes while the plan lives).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// JWKS fetches attempted so far.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FetchState> {
        // A poisoned lock only means a panic elsewhere mid-update of plain data: keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Numbers a fetched set before it is cached: a token verified under a set is trusted again
    /// only while the issuer's latest set has that set's number. A set with the very keys of
    /// the latest keeps its number (and is that set, shared): a refresh that brings nothing new
    /// must not send every remembered token back to a signature check, all at once, every few
    /// minutes. Any change, a key added, withdrawn or altered, numbers a new generation.
    fn number(&self, mut keys: KeySet) -> Arc<KeySet> {
        let mut state = self.state();
        if let Some(latest) = state.latest.as_ref().filter(|l| l.same_keys(&keys)) {
            return latest.clone();
        }
        keys.generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let keys = Arc::new(keys);
        state.latest = Some(keys.clone());
        keys
    }

    /// Backoff after `n` consecutive failures: 1s, 2s, 4s ... at most 60s.
    fn backoff(n: u32) -> Duration {
        Duration::from_secs(1u64 << n.saturating_sub(1).min(6)).min(Duration::from_secs(60))
    }
}

/// The key sets of every issuer of a plan, and the one HTTP client that fetches them.
pub struct KeyCache {
    /// Keyed by issuer, which the config names: looked up on every request (`has_keys`), and
    /// with no need of SipHash (moka's default) against chosen keys.
    cache: Cache<Arc<str>, Cached, foldhash::fast::RandomState>,
    http: reqwest::Client,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache").finish_non_exhaustive()
    }
}

impl KeyCache {
    pub fn new() -> Result<KeyCache, String> {
        let tls = crate::tls::client_config(&crate::tls::UpstreamTls::default())?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::limited(3))
            .no_proxy()
            .user_agent(concat!("cryptr-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("JWKS client setup failed: {e}"))?;
        Ok(KeyCache {
            cache: Cache::builder()
                .expire_after(StaleBound)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            http,
        })
    }

    /// The issuer's keys as they stand, without fetching.
    pub fn status(&self, issuer: &IssuerKeys) -> KeyStatus {
        let keys = match &issuer.source {
            KeySource::Static(set) => set.len(),
            _ if self.cache.contains_key(&issuer.issuer) => issuer.state().key_count,
            _ => 0,
        };
        let state = issuer.state();
        KeyStatus {
            keys,
            fetches: issuer.fetches.load(Ordering::Relaxed),
            failures: issuer.failures.load(Ordering::Relaxed),
            since_last_good: state.last_good.map(|t| t.elapsed()),
            last_error: state.last_error.clone(),
        }
    }

    /// The keys to check a token with `kid` against. A set that lacks the kid may be
    /// refetched once (rate-limited); the caller then looks again and gives up.
    pub async fn keys_for(&self, issuer: &IssuerKeys, kid: &str) -> Result<Held, KeysUnavailable> {
        if let KeySource::Static(keys) = &issuer.source {
            return Ok(Held {
                keys: keys.clone(),
                until: None,
            });
        }
        // The fetches are boxed: their futures (an HTTP client's) are large and rare, and
        // inline they would grow every request's future, which is moved as a whole.
        match self.cache.get(&issuer.issuer).await {
            Some(c) if c.keys.get(kid).is_some() => Ok(c.held()),
            Some(c) => Ok(Box::pin(self.refetch_for_unknown_kid(issuer, kid))
                .await
                .unwrap_or_else(|| c.held())),
            None => Box::pin(self.first_fetch(issuer)).await,
        }
    }

    /// No set yet (start, or `max_stale` passed): fetch, sharing the fetch with every other
    /// request that waits, unless the last attempt failed too recently.
    async fn first_fetch(&self, issuer: &IssuerKeys) -> Result<Held, KeysUnavailable> {
        if let Some(retry_at) = issuer.state().retry_at {
            let now = Instant::now();
            if retry_at > now {
                return Err(KeysUnavailable {
                    retry_after: retry_at - now,
                });
            }
        }
        let result = self
            .cache
            .entry_by_ref(&issuer.issuer)
            .and_try_compute_with(|current| async move {
                if current.is_some() {
                    return Ok(Op::Nop);
                }
                self.fetch(issuer).await.map(Op::Put)
            })
            .await;
        match result {
            Ok(r) => match r.into_entry() {
                Some(entry) => Ok(entry.into_value().held()),
                None => Err(self.unavailable(issuer)),
            },
            Err(()) => Err(self.unavailable(issuer)),
        }
    }

    fn unavailable(&self, issuer: &IssuerKeys) -> KeysUnavailable {
        let state = issuer.state();
        let retry_after = state
            .retry_at
            .map(|at| at.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(1));
        KeysUnavailable {
            retry_after: retry_after.max(Duration::from_secs(1)),
        }
    }

    async fn refetch_for_unknown_kid(&self, issuer: &IssuerKeys, kid: &str) -> Option<Held> {
        let result = self
            .cache
            .entry_by_ref(&issuer.issuer)
            .and_try_compute_with(|current| async move {
                // Calls are serialised per issuer: whoever waited behind a refetch sees its
                // result here and does not fetch again.
                if current
                    .as_ref()
                    .is_some_and(|c| c.value().keys.get(kid).is_some())
                {
                    return Ok(Op::Nop);
                }
                {
                    let mut state = issuer.state();
                    let now = Instant::now();
                    if state.last_forced.is_some_and(|at| {
                        now.duration_since(at) < issuer.settings.min_refresh_interval
                    }) {
                        return Ok(Op::Nop);
                    }
                    state.last_forced = Some(now);
                }
                tracing::info!(issuer = %issuer.issuer, kid, "unknown key id: refetching the JWKS");
                self.fetch(issuer).await.map(Op::Put)
            })
            .await;
        result.ok()?.into_entry().map(|e| e.into_value().held())
    }

    /// Keeps one issuer's keys fresh until the task is dropped: fetches at once, then again
    /// when four fifths of the set's freshness has passed; after a failure, with backoff.
    pub async fn refresh_loop(self: Arc<Self>, issuer: Arc<IssuerKeys>) {
        if let KeySource::Static(_) = issuer.source {
            return;
        }
        loop {
            let result = self
                .cache
                .entry_by_ref(&issuer.issuer)
                .and_try_compute_with(|current| {
                    let this = &self;
                    let issuer = &issuer;
                    async move {
                        // Someone (a request at start) fetched a moment ago: nothing to do.
                        if current.as_ref().is_some_and(|c| !due(c.value())) {
                            return Ok(Op::Nop);
                        }
                        this.fetch(issuer).await.map(Op::Put)
                    }
                })
                .await;
            let wait = match result.ok().and_then(|r| r.into_entry()) {
                Some(entry) if !due(entry.value()) => {
                    let c = entry.value();
                    (c.fresh_for * 4 / 5).saturating_sub(c.fetched_at.elapsed())
                }
                _ => {
                    let state = issuer.state();
                    state.retry_at.map_or(Duration::from_secs(1), |at| {
                        at.saturating_duration_since(Instant::now())
                    })
                }
            };
            tokio::time::sleep(wait.max(Duration::from_millis(100))).await;
        }
    }

    /// One fetch, its outcome recorded in the issuer's state.
    async fn fetch(&self, issuer: &IssuerKeys) -> Result<Cached, ()> {
        issuer.fetches.fetch_add(1, Ordering::Relaxed);
        let result = self.fetch_inner(issuer).await;
        let mut state = issuer.state();
        match result {
            Ok(cached) => {
                if state.consecutive_failures > 0 {
                    tracing::info!(issuer = %issuer.issuer, keys = cached.keys.len(), "JWKS fetched again after failures");
                } else {
                    tracing::debug!(issuer = %issuer.issuer, keys = cached.keys.len(), "JWKS fetched");
                }
                state.consecutive_failures = 0;
                state.retry_at = None;
                state.last_good = Some(Instant::now());
                state.key_count = cached.keys.len();
                state.last_error = None;
                Ok(cached)
            }
            Err(reason) => {
                issuer.failures.fetch_add(1, Ordering::Relaxed);
                state.last_error = Some(reason.clone());
                state.consecutive_failures += 1;
                let backoff = IssuerKeys::backoff(state.consecutive_failures);
                state.retry_at = Some(Instant::now() + backoff);
                tracing::warn!(
                    issuer = %issuer.issuer, error = %reason, retry_in = ?backoff,
                    "JWKS fetch failed; the last good keys, if any, keep serving"
                );
                Err(())
            }
        }
    }

    async fn fetch_inner(&self, issuer: &IssuerKeys) -> Result<Cached, String> {
        let (url, fallback) = match &issuer.source {
            KeySource::Static(_) => return Err("static key sets are not fetched".into()),
            KeySource::Url { url, fallback } => (url.clone(), fallback.clone()),
            KeySource::Discovery { issuer: iss } => (self.discover(issuer, iss).await?, None),
        };
        let first = self.get_jwks(issuer, &url).await;
        let (keys, max_age) = match (first, fallback) {
            (Ok((keys, max_age)), _) if !keys.is_empty() => (keys, max_age),
            (first, Some(fallback)) => {
                let why = match first {
                    Ok(_) => "no usable keys".to_string(),
                    Err(e) => e,
                };
                tracing::debug!(issuer = %issuer.issuer, url, why, "trying the fallback JWKS path");
                self.get_jwks(issuer, &fallback).await?
            }
            (Ok((keys, max_age)), None) => (keys, max_age),
            (Err(e), None) => return Err(e),
        };
        if keys.is_empty() {
            return Err("the JWKS holds no usable signing key".into());
        }
        let s = &issuer.settings;
        let fresh_for = max_age.map_or(s.ttl, |age| age.clamp(s.min_ttl, s.max_ttl));
        Ok(Cached {
            keys: issuer.number(keys),
            fetched_at: Instant::now(),
            fresh_for,
            max_stale: s.max_stale.max(fresh_for),
        })
    }

    async fn discover(&self, keys: &IssuerKeys, iss: &str) -> Result<String, String> {
        if let Some(uri) = keys.state().discovered_uri.clone() {
            return Ok(uri);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            iss.trim_end_matches('/')
        );
        let body = self.get_bounded(keys, &url).await?.0;
        #[derive(serde::Deserialize)]
        struct Discovery {
            issuer: Option<String>,
            jwks_uri: String,
        }
        let doc: Discovery = serde_json::from_slice(&body)
            .map_err(|e| format!("{url}: not an OpenID configuration: {e}"))?;
        if doc.issuer.as_deref().is_some_and(|i| i != iss) {
            return Err(format!("{url}: names another issuer"));
        }
        keys.state().discovered_uri = Some(doc.jwks_uri.clone());
        Ok(doc.jwks_uri)
    }

    async fn get_jwks(
        &self,
        keys: &IssuerKeys,
        url: &str,
    ) -> Result<(KeySet, Option<Duration>), String> {
        let (body, max_age) = self.get_bounded(keys, url).await?;
        let (set, skipped) = parse_jwks(&body).map_err(|e| format!("{url}: {e}"))?;
        for reason in skipped {
            tracing::warn!(issuer = %keys.issuer, url, %reason, "JWKS key ignored");
        }
        Ok((set, max_age))
    }

    /// GET with the issuer's timeout and size bound; returns the body and `max-age`.
    async fn get_bounded(
        &self,
        keys: &IssuerKeys,
        url: &str,
    ) -> Result<(Vec<u8>, Option<Duration>), String> {
        let limit = keys.settings.max_size;
        let work = async {
            let mut res = self
                .http
                .get(url)
                .header(http::header::ACCEPT, "application/json")
                .send()
                .await
                .map_err(|e| format!("{url}: {}", error_chain(&e)))?;
            if !res.status().is_success() {
                return Err(format!("{url}: HTTP {}", res.status()));
            }
            if res.content_length().is_some_and(|len| len > limit as u64) {
                return Err(format!("{url}: the response is larger than {limit} bytes"));
            }
            let max_age = res
                .headers()
                .get_all(http::header::CACHE_CONTROL)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .find_map(|d| {
                    d.trim()
                        .strip_prefix("max-age=")?
                        .trim_matches('"')
                        .parse()
                        .ok()
                })
                .map(Duration::from_secs);
            let mut body = Vec::new();
            while let Some(chunk) = res
                .chunk()
                .await
                .map_err(|e| format!("{url}: {}", error_chain(&e)))?
            {
                if body.len() + chunk.len() > limit {
                    return Err(format!("{url}: the response is larger than {limit} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok((body, max_age))
        };
        tokio::time::timeout(keys.settings.timeout, work)
            .await
            .map_err(|_| {
                format!(
                    "{url}: no complete answer within {:?}",
                    keys.settings.timeout
                )
            })?
    }
}

/// True once four fifths of a set's freshness has passed.
fn due(c: &Cached) -> bool {
    c.fetched_at.elapsed() >= c.fresh_for * 4 / 5
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let secs: Vec<u64> = (1..=9).map(|n| IssuerKeys::backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
