//! Verified tokens, remembered: a request that carries a token seen before skips the
//! signature check (the dominant cost), and a flood of one forged token costs one check.
//!
//! Keyed by the SHA-256 of the whole token, so a hit is the very same bytes. An entry lives no
//! longer than the token's `exp` (and at most five minutes), and is ignored once its issuer's
//! key set was fetched again (a rotation or a revocation must not be outlived). What a hit
//! skips is only what does not depend on the route or the clock: the route's issuers, scopes
//! and claim rules are checked on every request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;

use super::Identity;

/// The longest an entry lives, whatever the token's `exp`.
const MAX_ENTRY_LIFE: Duration = Duration::from_secs(300);
/// How long a token whose signature failed is remembered as bad.
const BAD_TOKEN_LIFE: Duration = Duration::from_secs(60);

pub type TokenKey = [u8; 32];

#[derive(Clone)]
struct Entry {
    identity: Arc<Identity>,
    /// The generation of the key set it was verified with.
    generation: u64,
    expires: Instant,
}

struct UntilExp;

impl Expiry<TokenKey, Entry> for UntilExp {
    fn expire_after_create(&self, _: &TokenKey, e: &Entry, now: Instant) -> Option<Duration> {
        Some(e.expires.saturating_duration_since(now))
    }
}

/// Bounded caches of good and bad tokens, with hit counters.
pub struct TokenCache {
    valid: Cache<TokenKey, Entry>,
    invalid: Cache<TokenKey, ()>,
    hits: AtomicU64,
    misses: AtomicU64,
    bad_hits: AtomicU64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.valid.entry_count())
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// At most about `max_bytes` of verified tokens (each weighed by its claims), and 10,000
    /// bad ones (32 bytes each).
    pub fn new(max_bytes: u64) -> TokenCache {
        TokenCache {
            valid: Cache::builder()
                .max_capacity(max_bytes)
                // The payload text, its parsed claims (about twice that), and the entry itself.
                .weigher(|_, e: &Entry| {
                    u32::try_from(e.identity.payload_b64.len() * 3 + 256).unwrap_or(u32::MAX)
                })
                .expire_after(UntilExp)
                .build(),
            invalid: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(BAD_TOKEN_LIFE)
                .build(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            bad_hits: AtomicU64::new(0),
        }
    }

    pub fn key(token: &str) -> TokenKey {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        key
    }

    /// The identity verified for this token, if still good: same key-set generation, not past
    /// `exp` at `now` (Unix seconds, the verifier's clock).
    pub fn get(&self, key: &TokenKey, now: u64) -> Option<Arc<Identity>> {
        let found = self.valid.get(key).filter(|e| {
            e.generation == e.identity.issuer.keys.generation()
                && e.identity.exp.saturating_add(e.identity.issuer.leeway) > now
        });
        match found {
            Some(e) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(e.identity)
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Remembers a verified token until its `exp` (seen at `now`), at most five minutes.
    pub fn insert(&self, key: TokenKey, identity: Arc<Identity>, generation: u64, now: u64) {
        let left = identity
            .exp
            .saturating_add(identity.issuer.leeway)
            .saturating_sub(now);
        let life = Duration::from_secs(left).min(MAX_ENTRY_LIFE);
        if life.is_zero() {
            return;
        }
        self.valid.insert(
            key,
            Entry {
                identity,
                generation,
                expires: Instant::now() + life,
            },
        );
    }

    pub fn is_known_bad(&self, key: &TokenKey) -> bool {
        let bad = self.invalid.contains_key(key);
        if bad {
            self.bad_hits.fetch_add(1, Ordering::Relaxed);
        }
        bad
    }

    pub fn insert_bad(&self, key: TokenKey) {
        self.invalid.insert(key, ());
    }

    /// Counters so far, for tests and metrics.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bad_hits: self.bad_hits.load(Ordering::Relaxed),
        }
    }
}

/// How the token cache has done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Requests whose token was verified before.
    pub hits: u64,
    pub misses: u64,
    /// Requests refused as a token whose signature failed moments ago.
    pub bad_hits: u64,
}
