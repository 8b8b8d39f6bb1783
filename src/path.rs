//! The request path as the upstream will see it, decided once, before matching.
//!
//! A route must match the very path that is forwarded; otherwise `/public/../api/x` could match
//! a public route and be resolved by the upstream into a protected `/api/x`. So the path is put
//! in one canonical form, matched in that form, and forwarded in that form:
//! - percent-encoded unreserved characters are decoded (`/%61pi` is `/api`, RFC 3986 6.2.2.2);
//! - runs of `/` are merged (`//api` is `/api` to most servers);
//! - a `.` or `..` segment, literal or encoded (`%2e%2e`), with path parameters or without
//!   (`..;x`, which Tomcat, Jetty and Spring resolve as `..`), is refused: clients resolve
//!   those before sending, so one that arrives is an attempt to reach around a route;
//! - an encoded `/` or `\` (`%2F`, `%5C`), a literal `\`, or an encoded NUL is refused, as
//!   upstreams disagree on whether they separate segments;
//! - a `.`, `/`, `\`, `;` or NUL encoded twice (`%252e`, `%252f`) is refused: an upstream
//!   that decodes twice would see a dot segment, a separator or parameters that the route was
//!   never matched on (Spring Security's firewall refuses every `%25` for that reason);
//! - a path that reaches another route once its segments' `;parameters` are cut (which
//!   Tomcat, Jetty and Spring do before they route) is refused (`route::select`).
//!
//! Hand-written: the URL crates (url, percent-encoding) decode everything or nothing, and
//! decoding reserved characters would change the meaning of the path.

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    NotAbsolute,
    BadPercentEncoding,
    DotSegment,
    EncodedSeparator,
    /// `%25` before the hex of a `.`, `/`, `\`, `;` or NUL: that character encoded twice.
    DoubleEncoded,
    /// Without its `;parameters` the path reaches another route (see `route::select`).
    ParametersChangeRoute,
}

impl PathError {
    pub fn describe(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "the request path must start with `/`",
            PathError::BadPercentEncoding => {
                "the request path holds a `%` not followed by two hex digits"
            }
            PathError::DotSegment => {
                "the request path holds a `.` or `..` segment; send the resolved path"
            }
            PathError::EncodedSeparator => {
                "the request path holds an encoded `/`, `\\` or NUL, or a literal `\\`"
            }
            PathError::DoubleEncoded => {
                "the request path holds a `.`, `/`, `\\`, `;` or NUL encoded twice (`%252e`); encode it once"
            }
            PathError::ParametersChangeRoute => {
                "the request path's `;` parameters would take it to another route than without them"
            }
        }
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Puts `raw` (the path of the request target, without its query) in canonical form, or says
/// why it cannot be forwarded. Borrows when the path is already canonical, the common case.
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let canonical = !bytes.windows(2).any(|w| w == b"//") && !bytes.contains(&b'%');
    let path: Cow<'_, str> = if canonical {
        Cow::Borrowed(raw)
    } else {
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b == b'%' {
                let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadPercentEncoding);
                };
                let decoded = hi << 4 | lo;
                if matches!(decoded, b'/' | b'\\' | 0) {
                    return Err(PathError::EncodedSeparator);
                }
                if is_unreserved(decoded) {
                    out.push(decoded);
                } else {
                    out.extend_from_slice(&bytes[i..i + 3]);
                }
                i += 3;
                continue;
            }
            if !(b == b'/' && out.last() == Some(&b'/')) {
                out.push(b);
            }
            i += 1;
        }
        // Checked on the output: `%25%32%65` is `%252e` once its unreserved bytes are decoded.
        if double_encodes_a_separator(&out) {
            return Err(PathError::DoubleEncoded);
        }
        // Only ASCII went in, and every decoded byte is an unreserved ASCII character.
        Cow::Owned(String::from_utf8_lossy(&out).into_owned())
    };
    // Most paths have neither a dot nor a backslash: one vectorised scan settles those,
    // where the checks below walk the path char by char (400 instructions a request).
    if memchr::memchr2(b'.', b'\\', path.as_bytes()).is_none() {
        return Ok(path);
    }
    if path.contains('\\') {
        return Err(PathError::EncodedSeparator);
    }
    if path.split('/').any(is_dot_segment) {
        return Err(PathError::DotSegment);
    }
    Ok(path)
}

/// `path` without its segments' parameters (from a `;`, literal or encoded, to the segment's
/// end), or `None` when it has none, the common case.
pub(crate) fn without_parameters(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    // A byte loop: on paths of a few dozen bytes, memchr's set-up costs more than the scan
    // (callgrind, PGO builds: a public-route request took 28,073 instructions with a memchr
    // and a memchr_iter here, 27,929 with this loop).
    if !bytes.iter().any(|&b| b == b';' || b == b'%') {
        return None;
    }
    let has_parameters = memchr::memchr(b';', bytes).is_some()
        || memchr::memchr_iter(b'%', bytes).any(|i| is_encoded_semicolon(bytes, i));
    has_parameters.then(|| {
        path.split('/')
            .map(segment_name)
            .collect::<Vec<_>>()
            .join("/")
    })
}

/// Whether `path` holds `%25` followed by the encoding of a `.`, `/`, `\`, `;` or NUL: what a
/// second decoding would turn into the first's.
fn double_encodes_a_separator(path: &[u8]) -> bool {
    memchr::memmem::find_iter(path, b"%25").any(|i| {
        let (Some(hi), Some(lo)) = (
            path.get(i + 3).copied().and_then(hex),
            path.get(i + 4).copied().and_then(hex),
        ) else {
            return false;
        };
        matches!(hi << 4 | lo, b'.' | b'/' | b'\\' | b';' | 0)
    })
}

/// Whether `%3B` (any case) starts at `i`.
fn is_encoded_semicolon(bytes: &[u8], i: usize) -> bool {
    bytes
        .get(i..i + 3)
        .is_some_and(|e| e.eq_ignore_ascii_case(b"%3b"))
}

/// A segment up to its first `;`, literal or encoded (`%3B`).
fn segment_name(segment: &str) -> &str {
    let bytes = segment.as_bytes();
    let end = (0..bytes.len())
        .find(|&i| bytes[i] == b';' || is_encoded_semicolon(bytes, i))
        .unwrap_or(bytes.len());
    // `;` and `%` are ASCII: `end` is a character boundary.
    segment.get(..end).unwrap_or(segment)
}

/// `.` or `..`, alone or followed by path parameters (`..;x`, also with the `;` encoded):
/// Tomcat, Jetty and Spring drop a segment's parameters before they resolve dots, so to them
/// `/public/..;/api` is `/api`.
fn is_dot_segment(segment: &str) -> bool {
    matches!(segment_name(segment), "." | "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_path_is_borrowed_unchanged() {
        assert!(matches!(
            normalize("/api/v1/courses"),
            Ok(Cow::Borrowed("/api/v1/courses"))
        ));
        assert_eq!(normalize("/").unwrap(), "/");
    }

    #[test]
    fn encoded_unreserved_characters_are_decoded_and_others_kept() {
        assert_eq!(normalize("/%61pi/x").unwrap(), "/api/x");
        assert_eq!(normalize("/a%20b/%E2%82%AC").unwrap(), "/a%20b/%E2%82%AC");
        assert_eq!(normalize("/a%7e").unwrap(), "/a~");
    }

    #[test]
    fn repeated_slashes_are_merged() {
        assert_eq!(normalize("//api///x/").unwrap(), "/api/x/");
    }

    #[test]
    fn dot_segments_are_refused_literal_or_encoded() {
        for p in [
            "/public/../api/x",
            "/public/./x",
            "/..",
            "/public/%2e%2e/api",
            "/public/%2E./api",
            "/public/.%2e",
            "/a/%2e",
        ] {
            assert_eq!(normalize(p), Err(PathError::DotSegment), "{p}");
        }
        // With path parameters, which some servers drop before they resolve dots.
        for p in [
            "/public/..;/api",
            "/public/..;jsessionid=1/api",
            "/public/.;x/y",
            "/public/%2e%2e;/api",
            "/public/..%3B/api",
            "/public/..%3bx=1/api",
            "/..;",
        ] {
            assert_eq!(normalize(p), Err(PathError::DotSegment), "{p}");
        }
        // Dots inside a segment are ordinary characters, and so are parameters after a name.
        assert_eq!(normalize("/a/..b/c.d/...").unwrap(), "/a/..b/c.d/...");
        for p in [
            "/a;b/c",
            "/a/...;x/b",
            "/a/..x;/b",
            "/a/;/b",
            "/a/..%20/b",
            "/a/%3b../b",
        ] {
            assert!(normalize(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn parameters_are_cut_from_each_segment_for_route_matching() {
        for (path, bare) in [
            ("/api;x/secret", "/api/secret"),
            ("/api;a=1;b=2/s;c/", "/api/s/"),
            ("/a%3Bx/b%3bq", "/a/b"),
            ("/;x", "/"),
        ] {
            assert_eq!(without_parameters(path).as_deref(), Some(bare), "{path}");
        }
        for path in ["/api/secret", "/a%20b/c", "/", "/a%3"] {
            assert_eq!(without_parameters(path), None, "{path}");
        }
    }

    #[test]
    fn encoded_separators_and_backslashes_are_refused() {
        for p in ["/api%2fx", "/api%2Fx", "/api%5cx", "/a\\b", "/a%00"] {
            assert_eq!(normalize(p), Err(PathError::EncodedSeparator), "{p}");
        }
    }

    #[test]
    fn separators_encoded_twice_are_refused_and_other_percent_signs_pass() {
        for p in [
            "/public/%252e%252e/api",
            "/public/%252E./api",
            "/api%252fx",
            "/api%255Cx",
            "/api%253bx/y",
            "/a%2500",
            // `%32` and `%65` are decoded first: the path is `%252e` by then.
            "/public/%25%32%65%25%32%65/api",
        ] {
            assert_eq!(normalize(p), Err(PathError::DoubleEncoded), "{p}");
        }
        for (p, canonical) in [
            ("/discount/100%25", "/discount/100%25"),
            ("/q/%2541", "/q/%2541"),
            ("/q/%25%25", "/q/%25%25"),
            ("/q/%252", "/q/%252"),
        ] {
            assert_eq!(normalize(p).unwrap(), canonical, "{p}");
        }
    }

    #[test]
    fn broken_percent_encoding_is_refused() {
        for p in ["/a%", "/a%2", "/a%zz"] {
            assert_eq!(normalize(p), Err(PathError::BadPercentEncoding), "{p}");
        }
    }

    #[test]
    fn relative_paths_are_refused() {
        assert_eq!(normalize("*"), Err(PathError::NotAbsolute));
        assert_eq!(normalize(""), Err(PathError::NotAbsolute));
    }
}
