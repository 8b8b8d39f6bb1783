//! `X-Request-Id`: one id per request, shared by the client, the upstream and the access log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use http::header::{Entry, HeaderMap, HeaderName, HeaderValue};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The longest client-sent id kept.
const MAX_LEN: usize = 128;

/// The request's id: the client's when it is sane (1 to 128 characters of letters, digits and
/// `-_.:+/=@`), a new one otherwise. Every copy is removed from `headers`; the pipeline sets
/// the one it keeps on the upstream request.
pub fn take_or_generate(headers: &mut HeaderMap) -> HeaderValue {
    // One lookup, and none more for the common request, which sends none.
    let Entry::Occupied(entry) = headers.entry(X_REQUEST_ID) else {
        return generate();
    };
    let (_, mut copies) = entry.remove_entry_mult();
    // Two copies: neither is trusted over the other.
    let (Some(mut sent), None) = (copies.next(), copies.next()) else {
        return generate();
    };
    if is_sane(sent.as_bytes()) {
        sent.set_sensitive(false);
        sent
    } else {
        generate()
    }
}

fn is_sane(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=@".contains(b))
}

/// A new id: 32 hex digits, a random per-process prefix then a counter, so ids never repeat
/// within a process and are very unlikely to across replicas. No randomness per request: the
/// id names a request, it guards nothing.
pub fn generate() -> HeaderValue {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut b = [0u8; 8];
        if aws_lc_rs::rand::fill(&mut b).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            return (t as u64) ^ u64::from(std::process::id());
        }
        u64::from_be_bytes(b)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Hex digits written in place: one allocation (the header value's), not three.
    let mut text = [0u8; 32];
    for (i, byte) in prefix
        .to_be_bytes()
        .iter()
        .chain(&n.to_be_bytes())
        .enumerate()
    {
        text[2 * i] = HEX[usize::from(byte >> 4)];
        text[2 * i + 1] = HEX[usize::from(byte & 0xf)];
    }
    HeaderValue::from_bytes(&text).unwrap_or(HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sane_client_id_is_kept_and_others_replaced() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(take_or_generate(&mut h), "abc-123");
        assert!(h.get(X_REQUEST_ID).is_none());

        for bad in ["", "has space", "semi;colon", &"x".repeat(129)] {
            let mut h = HeaderMap::new();
            h.insert(X_REQUEST_ID, HeaderValue::from_str(bad).unwrap());
            let id = take_or_generate(&mut h);
            assert_eq!(id.len(), 32, "{bad:?} replaced");
        }

        let mut h = HeaderMap::new();
        h.append(X_REQUEST_ID, HeaderValue::from_static("one"));
        h.append(X_REQUEST_ID, HeaderValue::from_static("two"));
        assert_eq!(take_or_generate(&mut h).len(), 32);
    }

    #[test]
    fn generated_ids_differ() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        let hex = |v: &HeaderValue| v.as_bytes().iter().all(|c| HEX.contains(c));
        assert!(hex(&a) && a.len() == 32, "{a:?}");
    }
}
