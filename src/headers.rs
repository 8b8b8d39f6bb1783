//! Header rewriting that every forwarded message gets: hop-by-hop removal (both ways),
//! `X-Forwarded-*`, `Forwarded` and `Via`.

use std::net::IpAddr;

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, FORWARDED, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, TE, TRANSFER_ENCODING, UPGRADE, VIA,
};
use http::Version;

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// RFC 9110 section 7.6.1, plus the non-standard `Keep-Alive` and `Proxy-Connection`.
/// (`Trailer` is end-to-end: it announces an answer's trailers, which we pass through; a
/// request's trailer fields are dropped, see `pipeline::limit_body`.)
fn hop_by_hop() -> [&'static HeaderName; 8] {
    [
        &CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &TE,
        &TRANSFER_ENCODING,
        &UPGRADE,
        &PROXY_AUTHENTICATE,
        &PROXY_AUTHORIZATION,
    ]
}

/// Where `name` is in `hop_by_hop()`, if it is. By length first: most names have a length
/// that no name of the list has, and cost one comparison instead of eight.
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    let name = name.as_str();
    let i = match name.len() {
        2 => 3,
        7 => 5,
        10 if name.starts_with('c') => 0,
        10 => 1,
        16 => 2,
        17 => 4,
        18 => 6,
        19 => 7,
        _ => return None,
    };
    (hop_by_hop()[i].as_str() == name).then_some(i)
}

/// Removes the hop-by-hop headers: the fixed list and every header that `Connection` names.
/// Returns whether the sender asked for trailers (`TE: trailers`), which is worth passing on
/// as our own `TE` since trailers do stream through.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) -> bool {
    // One pass over the fields notes which of the fixed list are present, and whether a
    // `Connection` says anything but `keep-alive`: most messages carry none of the list, or
    // only `Connection: keep-alive` (and `Keep-Alive`), and only those are then removed, each
    // removal a hashed lookup, with no other lookup.
    let hop_by_hop = hop_by_hop();
    let mut present = [false; 8];
    let mut connection_options = false;
    for (name, value) in headers.iter() {
        if let Some(i) = hop_by_hop_index(name) {
            present[i] = true;
            connection_options |= i == 0 && !value.as_bytes().eq_ignore_ascii_case(b"keep-alive");
        }
    }
    if !present.contains(&true) {
        return false;
    }
    let wants_trailers = present[3]
        && headers.get_all(TE).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',').any(|t| {
                    t.trim()
                        .split(';')
                        .next()
                        .is_some_and(|n| n.trim().eq_ignore_ascii_case("trailers"))
                })
            })
        });
    if connection_options {
        // HeaderName::from_bytes lower-cases, so `Connection: X-Custom` removes `x-custom`.
        // Options naming a header of the fixed list (`keep-alive`, the usual one) are removed
        // with that list; only other names are collected.
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| {
                !hop_by_hop
                    .iter()
                    .any(|h| h.as_str().eq_ignore_ascii_case(t))
            })
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (name, present) in hop_by_hop.iter().zip(present) {
        if present {
            headers.remove(*name);
        }
    }
    wants_trailers
}

/// Who sent the request, as far as the forwarding headers are concerned.
pub(crate) struct Client<'a> {
    pub ip: IpAddr,
    /// `ip` as text, made once per connection.
    pub ip_text: &'a HeaderValue,
    /// The peer is a configured trusted proxy: its forwarding headers are kept and extended.
    pub trusted: bool,
    /// `http` or `https`: how the client reached us.
    pub proto: &'static str,
    /// The `Host` (or `:authority`) the client addressed.
    pub host: Option<&'a HeaderValue>,
}

/// Sets `X-Forwarded-For/-Proto/-Host` and extends `Forwarded` when present. An untrusted peer's
/// own copies of these (and of every `X-Forwarded-*` and `X-Real-IP`, in any spelling) are
/// dropped first, so the chain starts anew and nobody can forge their address to an upstream;
/// a trusted peer's are kept, but for spellings with `_`, which no proxy writes. The URL
/// overrides (`X-Original-URL`, `X-Rewrite-URL`) are dropped from every peer.
pub(crate) fn set_forwarding(headers: &mut HeaderMap, client: &Client<'_>) {
    // One pass over the names finds them; the common request carries none, and then
    // nothing is looked up or removed (each removal is a hashed lookup).
    let forged = |n: &HeaderName| {
        (is_forwarding(n) && (!client.trusted || n.as_str().contains('_'))) || is_url_override(n)
    };
    if headers.keys().any(forged) {
        let forged: Vec<HeaderName> = headers.keys().filter(|n| forged(n)).cloned().collect();
        for name in forged {
            headers.remove(name);
        }
    }
    let ip = client.ip_text.to_str().unwrap_or_default();
    let mut xff = None;
    if client.trusted {
        let previous: Vec<&str> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if !previous.is_empty() {
            xff = HeaderValue::from_str(&format!("{}, {ip}", previous.join(", "))).ok();
        }
        if headers.contains_key(FORWARDED) {
            let node = match client.ip {
                IpAddr::V4(_) => ip.to_string(),
                IpAddr::V6(_) => format!("\"[{ip}]\""),
            };
            append(
                headers,
                FORWARDED,
                &format!("for={node};proto={}", client.proto),
            );
        }
    }
    let xff = xff.unwrap_or_else(|| client.ip_text.clone());
    headers.insert(X_FORWARDED_FOR.clone(), xff);
    // An untrusted peer's were removed above: no lookup needed to know they are absent.
    if !client.trusted || !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(client.proto),
        );
    }
    if !client.trusted || !headers.contains_key(&X_FORWARDED_HOST) {
        if let Some(host) = client.host {
            headers.insert(X_FORWARDED_HOST.clone(), host.clone());
        }
    }
}

/// Whether `name`, with `_` read as `-`, is a forwarding header: `X-Forwarded-*`, `Forwarded`
/// or `X-Real-IP`. Servers that hand headers to applications as CGI-style variables
/// (`HTTP_X_FORWARDED_FOR`) take `X_Forwarded_For` for `X-Forwarded-For`.
fn is_forwarding(name: &HeaderName) -> bool {
    let name = name.as_str().as_bytes();
    name.get(..12)
        .is_some_and(|p| same_name_reading_underscores(p, b"x-forwarded-"))
        || name == b"forwarded"
        || same_name_reading_underscores(name, b"x-real-ip")
}

/// Whether `name`, with `_` read as `-`, is `X-Original-URL` or `X-Rewrite-URL`. IIS's URL
/// Rewrite module writes them for the application behind it, and applications that read them
/// (Symfony and Zend Framework did until their 2018 fixes, CVE-2018-14773) serve the path they
/// name in place of the request's: a request the gateway routed as `/public` would be served
/// as the `/admin` such a header names. The gateway vouches for the path it routed, so no
/// peer's copy is passed on, a trusted proxy's included (nginx passes a client's on as it is).
fn is_url_override(name: &HeaderName) -> bool {
    let name = name.as_str().as_bytes();
    same_name_reading_underscores(name, b"x-original-url")
        || same_name_reading_underscores(name, b"x-rewrite-url")
}

/// Whether header name `name` (lower case, as a `HeaderName` always is) is `want` (lower case,
/// with `-`) when each `_` in it is read as `-`: what servers that hand headers to
/// applications as CGI-style variables (`HTTP_X_USER_ID`) make of both spellings.
pub(crate) fn same_name_reading_underscores(name: &[u8], want: &[u8]) -> bool {
    name.len() == want.len()
        && name
            .iter()
            .zip(want)
            .all(|(&a, &b)| a == b || (a == b'_' && b == b'-'))
}

/// Appends our `Via` entry (RFC 9110 section 7.6.3) for a message received with `version`.
pub(crate) fn add_via(headers: &mut HeaderMap, version: Version) {
    // Constants, so that `from_static` checks their bytes once, at build time: called at run
    // time it checks them on every call.
    const VIA_09: HeaderValue = HeaderValue::from_static("0.9 cryptr-gateway");
    const VIA_10: HeaderValue = HeaderValue::from_static("1.0 cryptr-gateway");
    const VIA_11: HeaderValue = HeaderValue::from_static("1.1 cryptr-gateway");
    const VIA_2: HeaderValue = HeaderValue::from_static("2 cryptr-gateway");
    const VIA_3: HeaderValue = HeaderValue::from_static("3 cryptr-gateway");
    let entry = match version {
        Version::HTTP_09 => VIA_09,
        Version::HTTP_10 => VIA_10,
        Version::HTTP_2 => VIA_2,
        Version::HTTP_3 => VIA_3,
        _ => VIA_11,
    };
    match headers.entry(VIA) {
        // The usual case, on both legs: the first proxy, and upstreams that add none.
        http::header::Entry::Vacant(e) => {
            e.insert(entry);
        }
        // Our constants are visible ASCII: `to_str` cannot fail on them.
        http::header::Entry::Occupied(_) => {
            append(headers, VIA, entry.to_str().unwrap_or_default())
        }
    }
}

/// Adds `value` to the comma list in `name`, folding earlier lines into one.
fn append(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    let joined = {
        let existing: Vec<&str> = headers
            .get_all(&name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if existing.is_empty() {
            value.to_string()
        } else {
            format!("{}, {value}", existing.join(", "))
        }
    };
    if let Ok(v) = HeaderValue::from_str(&joined) {
        headers.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    /// Which names are left, whatever their order (removal reorders distinct names; the values
    /// of one name keep theirs).
    fn names_left(h: &HeaderMap) -> Vec<&str> {
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        left
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed_in_any_case() {
        let mut h = map(&[
            ("Connection", "Keep-Alive, X-Secret-Hop"),
            ("connection", "x-other"),
            ("keep-alive", "timeout=5"),
            ("X-SECRET-HOP", "1"),
            ("x-other", "2"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authenticate", "Basic"),
            ("proxy-authorization", "Basic eA=="),
            ("x-end-to-end", "kept"),
            ("trailer", "x-checksum"),
        ]);
        assert!(!strip_hop_by_hop(&mut h));
        assert_eq!(names_left(&h), ["trailer", "x-end-to-end"]);
    }

    #[test]
    fn a_keep_alive_answer_loses_exactly_its_hop_by_hop_headers() {
        let mut h = map(&[
            ("server", "nginx"),
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=75"),
            ("content-length", "2"),
        ]);
        assert!(!strip_hop_by_hop(&mut h));
        assert_eq!(names_left(&h), ["content-length", "server"]);
        // `Connection: close` names no header; one called `close` would go.
        let mut h = map(&[("connection", "close"), ("close", "x"), ("server", "nginx")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(names_left(&h), ["server"]);
    }

    #[test]
    fn the_hop_by_hop_list_is_found_by_length_then_name() {
        for (i, name) in hop_by_hop().iter().enumerate() {
            assert_eq!(hop_by_hop_index(name), Some(i), "{name}");
        }
        // Lengths the list has, names it does not.
        for other in [
            "user-agent",
            "if-none-match",
            "tk",
            "referer",
            "x-connection-idx",
            "content-encoding2",
        ] {
            let name = HeaderName::from_static(other);
            assert_eq!(hop_by_hop_index(&name), None, "{other}");
        }
        assert_eq!(hop_by_hop_index(&HeaderName::from_static("cookie")), None);
    }

    #[test]
    fn te_trailers_is_reported() {
        let mut h = map(&[("te", "gzip, Trailers;q=1")]);
        assert!(strip_hop_by_hop(&mut h));
        assert!(h.get(TE).is_none());
    }

    #[test]
    fn untrusted_peer_starts_a_new_forwarding_chain() {
        let mut h = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil"),
            ("x-forwarded-port", "1"),
            ("forwarded", "for=6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            // What CGI-style servers read as the same variables.
            ("x_forwarded_for", "6.6.6.6"),
            ("x-forwarded_host", "evil"),
            ("x_real_ip", "6.6.6.6"),
            ("x-forwardedx", "kept"),
            ("x-original-url", "/admin"),
            ("X_Rewrite_URL", "/admin"),
            ("x-original-urls", "kept"),
        ]);
        let host = HeaderValue::from_static("api.example.com");
        set_forwarding(
            &mut h,
            &Client {
                ip: "192.0.2.7".parse().unwrap(),
                ip_text: &HeaderValue::from_static("192.0.2.7"),
                trusted: false,
                proto: "http",
                host: Some(&host),
            },
        );
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example.com");
        assert!(h.get("x-forwarded-port").is_none());
        assert!(h.get("forwarded").is_none());
        assert!(h.get("x-real-ip").is_none());
        for forged in [
            "x_forwarded_for",
            "x-forwarded_host",
            "x_real_ip",
            "x-original-url",
            "x-rewrite-url",
            "x_rewrite_url",
        ] {
            assert!(h.get(forged).is_none(), "{forged}");
        }
        assert_eq!(h["x-forwardedx"], "kept");
        assert_eq!(h["x-original-urls"], "kept");
    }

    #[test]
    fn trusted_peer_chain_is_appended_to() {
        let mut h = map(&[
            ("x-forwarded-for", "203.0.113.1"),
            ("X-Forwarded-For", "10.0.0.2"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=203.0.113.1"),
            // A client's, passed on by the trusted proxy: no proxy writes these.
            ("x_forwarded_for", "6.6.6.6"),
            ("x_real_ip", "6.6.6.6"),
            // Passed on by the trusted proxy too (nginx does): the gateway routed another path.
            ("x-original-url", "/admin"),
            ("x-rewrite-url", "/admin"),
        ]);
        set_forwarding(
            &mut h,
            &Client {
                ip: "::1".parse().unwrap(),
                ip_text: &HeaderValue::from_static("::1"),
                trusted: true,
                proto: "http",
                host: None,
            },
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.1, 10.0.0.2, ::1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["forwarded"], "for=203.0.113.1, for=\"[::1]\";proto=http");
        assert!(h.get("x_forwarded_for").is_none());
        assert!(h.get("x_real_ip").is_none());
        assert!(h.get("x-original-url").is_none());
        assert!(h.get("x-rewrite-url").is_none());
    }

    #[test]
    fn via_is_appended() {
        let mut h = map(&[("via", "1.0 edge")]);
        add_via(&mut h, Version::HTTP_2);
        assert_eq!(h["via"], "1.0 edge, 2 cryptr-gateway");
        let mut two = map(&[("via", "1.0 a"), ("via", "1.1 b")]);
        add_via(&mut two, Version::HTTP_11);
        assert_eq!(two.get_all("via").iter().count(), 1);
        assert_eq!(two["via"], "1.0 a, 1.1 b, 1.1 cryptr-gateway");
    }

    #[test]
    fn via_is_set_when_the_message_has_none() {
        let mut h = map(&[]);
        add_via(&mut h, Version::HTTP_10);
        assert_eq!(h["via"], "1.0 cryptr-gateway");
    }
}
