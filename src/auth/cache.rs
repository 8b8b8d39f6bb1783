//! Verified tokens, remembered: a request that carries a token seen before skips the
//! signature check (the dominant cost), and a flood of one forged token costs one check.
//!
//! Looked up by a keyed 64-bit hash of the token's last 64 bytes (its signature's end), and a
//! hit is only one whose stored token is the very same bytes: a hash collision, chance or
//! crafted, is a miss, never another caller's identity. (It replaced a SHA-256 of the token,
//! which was the largest single cost of a cached request; with the bytes compared, the hash
//! needs no collision resistance.) An entry lives no longer than the token's `exp` (and at
//! most five minutes), nor than the key set that verified it is kept (`max_stale` past its
//! fetch), and is ignored once its issuer's key set changed, a key added, withdrawn or
//! altered (a rotation or a revocation must not be outlived); a refresh that brings the same
//! keys keeps it. What a hit skips is only what does not depend on the route or the clock:
//! the route's issuers, scopes and claim rules are checked on every request.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;

use super::Identity;

/// The longest an entry lives, whatever the token's `exp`.
const MAX_ENTRY_LIFE: Duration = Duration::from_secs(300);
/// How much of a token's end its key hashes: within any signature (86 characters for ES256,
/// 342 for RS256 with a 2048-bit key).
const KEYED_TAIL: usize = 64;
/// How long a token whose signature failed is remembered as bad.
const BAD_TOKEN_LIFE: Duration = Duration::from_secs(60);
/// Memory for tokens whose signature failed: some 6,000 tokens of Cryptr's size.
const BAD_TOKEN_BYTES: u64 = 8 << 20;

/// What an entry costs in memory, for a token of `len` bytes: the token, its parsed claims,
/// the claim headers, the identity, and moka's own bookkeeping (with per-entry expiry), with
/// the allocator's overhead on each. Calibrated on the benchmark's tokens (RSS growth over
/// 10,000 entries of 780-byte Cryptr-like tokens: about 5.3 KB each); the bound on the cache
/// is only as honest as this.
fn entry_bytes(len: usize) -> usize {
    len * 4 + 2048
}

/// A token and its hash, as the caches look it up.
pub struct TokenKey<'t> {
    hash: u64,
    token: &'t [u8],
}

/// Kept by value: a hit clones it (one reference count, the identity's), with no allocation
/// of its own to reach through.
#[derive(Clone)]
struct Verified {
    /// Holds the whole token, compared on every hit.
    identity: Arc<Identity>,
    /// The generation of the key set it was verified with.
    generation: u64,
    expires: Instant,
}

struct UntilExp;

impl Expiry<u64, Verified> for UntilExp {
    fn expire_after_create(&self, _: &u64, e: &Verified, now: Instant) -> Option<Duration> {
        Some(e.expires.saturating_duration_since(now))
    }
}

/// Bounded caches of good and bad tokens, with hit counters.
pub struct TokenCache {
    /// A lookup clones what it finds: a `Verified` is an `Arc` and two numbers.
    // Keys are already keyed hashes of the token (`key`): moka's own hashing of them needs no
    // SipHash, its default.
    valid: Cache<u64, Verified, foldhash::fast::RandomState>,
    invalid: Cache<u64, Arc<[u8]>, foldhash::fast::RandomState>,
    /// Seeded at random for each cache, so nobody outside can aim two tokens at one slot.
    hasher: foldhash::quality::RandomState,
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
    /// At most about `max_bytes` of verified tokens (each weighed by its size and claims), and
    /// 8MiB of bad ones.
    pub fn new(max_bytes: u64) -> TokenCache {
        TokenCache {
            valid: Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_, e: &Verified| {
                    u32::try_from(entry_bytes(e.identity.token().len())).unwrap_or(u32::MAX)
                })
                .expire_after(UntilExp)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            invalid: Cache::builder()
                .max_capacity(BAD_TOKEN_BYTES)
                .weigher(|_, token: &Arc<[u8]>| {
                    u32::try_from(token.len() + 512).unwrap_or(u32::MAX)
                })
                .time_to_live(BAD_TOKEN_LIFE)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            hasher: foldhash::quality::RandomState::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            bad_hits: AtomicU64::new(0),
        }
    }

    /// The key of a token: a hash of its last bytes, those of its signature, which differ
    /// between any two signed tokens; hashing all of a token's 800 bytes was 400
    /// instructions of every cached request. Tokens that share their end (forged ones, most
    /// likely) share a slot: each is still told apart by its bytes, and the cost is theirs, an
    /// entry one of them holds at a time.
    pub fn key<'t>(&self, token: &'t [u8]) -> TokenKey<'t> {
        let tail = token
            .get(token.len().saturating_sub(KEYED_TAIL)..)
            .unwrap_or(token);
        TokenKey {
            hash: self.hasher.hash_one(tail),
            token,
        }
    }

    /// What is known of this token: verified before and still good (same key-set generation,
    /// not past `exp` at `now`, Unix seconds on the verifier's clock), failed its signature
    /// moments ago, or nothing. The good tokens are looked up first: the common request pays
    /// for one lookup.
    pub fn lookup(&self, key: &TokenKey<'_>, now: u64) -> Lookup {
        let found = self.valid.get(&key.hash).filter(|e| {
            e.identity.token().as_bytes() == key.token
                && e.generation == e.identity.issuer.keys.generation()
                && e.identity.exp.saturating_add(e.identity.issuer.leeway) > now
        });
        if let Some(e) = found {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Lookup::Verified(e.identity);
        }
        if self
            .invalid
            .get(&key.hash)
            .is_some_and(|bad| *bad == *key.token)
        {
            self.bad_hits.fetch_add(1, Ordering::Relaxed);
            return Lookup::Forged;
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        Lookup::Unknown
    }

    /// Remembers a verified token until its `exp` (seen at `now`), at most five minutes, and
    /// no longer than the key set that verified it is kept (`keys_until`, `None`: for good):
    /// past `max_stale` without a good fetch, remembered tokens stop passing with their keys.
    pub fn insert(
        &self,
        key: &TokenKey<'_>,
        identity: Arc<Identity>,
        generation: u64,
        keys_until: Option<Instant>,
        now: u64,
    ) {
        let left = identity
            .exp
            .saturating_add(identity.issuer.leeway)
            .saturating_sub(now);
        let at = Instant::now();
        let mut expires = at + Duration::from_secs(left).min(MAX_ENTRY_LIFE);
        if let Some(until) = keys_until {
            expires = expires.min(until);
        }
        // The entry is found by the key's hash and matched by the identity's token.
        if expires <= at || identity.token().as_bytes() != key.token {
            return;
        }
        self.valid.insert(
            key.hash,
            Verified {
                identity,
                generation,
                expires,
            },
        );
    }

    /// Remembers a token whose signature failed, for a minute.
    pub fn insert_bad(&self, key: &TokenKey<'_>) {
        self.invalid.insert(key.hash, key.token.into());
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

/// What the token cache knows of a token.
pub enum Lookup {
    Verified(Arc<Identity>),
    /// Its signature failed moments ago.
    Forged,
    Unknown,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Issuer, IssuerKeys, JwksSettings, KeySource};

    fn identity(token: &str, sub: &str, exp: u64) -> Arc<Identity> {
        let keys = IssuerKeys::new(
            "https://issuer.test/t/acme",
            KeySource::Url {
                url: "https://issuer.test/t/acme/.well-known".into(),
                fallback: None,
            },
            JwksSettings::default(),
        );
        let issuer = Arc::new(Issuer {
            name: "acme".into(),
            iss: "https://issuer.test/t/acme".into(),
            audiences: Vec::new(),
            client_ids: Vec::new(),
            algorithms: vec![jsonwebtoken::Algorithm::RS256],
            leeway: 0,
            required_claims: Vec::new(),
            max_token_size: 8192,
            claims_to_headers: vec![("sub".into(), http::HeaderName::from_static("x-user-id"))],
            claims_header: None,
            keys: Arc::new(keys),
        });
        let claims = serde_json::json!({ "sub": sub, "exp": exp });
        let claims = claims.as_object().cloned().unwrap_or_default();
        Arc::new(Identity::new(issuer, sub.into(), exp, claims, token))
    }

    fn sub(found: Lookup) -> Option<String> {
        match found {
            Lookup::Verified(identity) => Some(identity.sub.clone()),
            _ => None,
        }
    }

    #[test]
    fn a_hit_is_the_same_token_and_its_own_identity() {
        let cache = TokenCache::new(1 << 20);
        let alice = cache.key(b"token-of-alice");
        assert!(matches!(cache.lookup(&alice, 100), Lookup::Unknown));
        cache.insert(
            &alice,
            identity("token-of-alice", "alice", 1000),
            0,
            None,
            100,
        );
        assert_eq!(sub(cache.lookup(&alice, 100)).as_deref(), Some("alice"));
        // The claim headers were made once, with the identity.
        let Lookup::Verified(found) = cache.lookup(&alice, 100) else {
            panic!("a hit")
        };
        assert_eq!(found.issuer_headers.len(), 1);
        assert!(matches!(
            cache.lookup(&cache.key(b"token-of-bob"), 100),
            Lookup::Unknown
        ));
        // Past `exp` it is not a hit any more.
        assert!(matches!(cache.lookup(&alice, 1000), Lookup::Unknown));
        assert_eq!(
            cache.stats(),
            CacheStats {
                hits: 2,
                misses: 3,
                bad_hits: 0
            }
        );
    }

    #[test]
    fn a_hash_collision_is_a_miss_never_another_callers_identity() {
        let cache = TokenCache::new(1 << 20);
        let alice = cache.key(b"token-of-alice");
        cache.insert(
            &alice,
            identity("token-of-alice", "alice", 1000),
            0,
            None,
            100,
        );
        cache.insert_bad(&cache.key(b"forged"));
        // Another token that lands on Alice's slot (and one on the forged one's): the bytes
        // differ, so neither Alice's identity nor a refusal is handed out.
        let mallory = TokenKey {
            hash: alice.hash,
            token: b"token-of-mallory",
        };
        assert!(matches!(cache.lookup(&mallory, 100), Lookup::Unknown));
        let honest = TokenKey {
            hash: cache.key(b"forged").hash,
            token: b"an-honest-token",
        };
        assert!(matches!(cache.lookup(&honest, 100), Lookup::Unknown));
        assert!(matches!(
            cache.lookup(&cache.key(b"forged"), 100),
            Lookup::Forged
        ));
    }

    #[test]
    fn tokens_that_end_alike_share_a_slot_never_an_identity() {
        let cache = TokenCache::new(1 << 20);
        let tail = "s".repeat(KEYED_TAIL);
        let (alice, mallory) = (format!("alice.{tail}"), format!("mallory.{tail}"));
        let (a, m) = (cache.key(alice.as_bytes()), cache.key(mallory.as_bytes()));
        assert_eq!(a.hash, m.hash, "only the end is hashed");
        cache.insert(&a, identity(&alice, "alice", 1000), 0, None, 100);
        assert!(matches!(cache.lookup(&m, 100), Lookup::Unknown));
        assert_eq!(sub(cache.lookup(&a, 100)).as_deref(), Some("alice"));
        // Tokens shorter than the hashed end are hashed whole.
        assert_ne!(cache.key(b"x.y.a").hash, cache.key(b"x.y.b").hash);
    }

    #[test]
    fn an_entry_lives_no_longer_than_the_keys_that_verified_it() {
        let cache = TokenCache::new(1 << 20);
        let (a, b) = (cache.key(b"token-of-alice"), cache.key(b"token-of-bob"));
        let soon = Instant::now() + Duration::from_millis(200);
        cache.insert(
            &a,
            identity("token-of-alice", "alice", 1000),
            0,
            Some(soon),
            100,
        );
        // Keys already past their time: nothing is remembered.
        cache.insert(
            &b,
            identity("token-of-bob", "bob", 1000),
            0,
            Some(Instant::now()),
            100,
        );
        assert_eq!(sub(cache.lookup(&a, 100)).as_deref(), Some("alice"));
        assert!(matches!(cache.lookup(&b, 100), Lookup::Unknown));
        std::thread::sleep(Duration::from_millis(300));
        assert!(matches!(cache.lookup(&a, 100), Lookup::Unknown));
    }

    #[test]
    fn each_cache_has_its_own_seed() {
        let (a, b) = (TokenCache::new(1 << 20), TokenCache::new(1 << 20));
        let same = (0..8).all(|i| {
            let t = format!("token-{i}");
            a.key(t.as_bytes()).hash == b.key(t.as_bytes()).hash
        });
        assert!(!same, "two caches hash alike: the seed is not random");
    }
}
