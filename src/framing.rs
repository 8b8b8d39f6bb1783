//! A watch on the bytes of HTTP/1.1 requests as they arrive, before hyper parses them.
//!
//! hyper accepts some messages that RFC 9112 lets a server refuse, and that a gateway must
//! refuse, because a server behind or in front of it may read them another way (request
//! smuggling):
//! - both `Content-Length` and `Transfer-Encoding` (hyper drops the length and decodes the
//!   chunks, as §6.3 allows; a front end that went by the length sees another request);
//! - a `Transfer-Encoding` other than exactly one `chunked` (hyper looks at the last coding
//!   of the last line only: `gzip, chunked` or `chunked` twice pass);
//! - a bare LF as a line ending in a head or in chunked framing (§2.2 makes accepting it
//!   optional; a peer that does not sees different headers);
//! - chunked framing that breaks after a first good chunk (a chunk not followed by CRLF, a
//!   bad size): hyper yields the first chunk before it sees the fault.
//!
//! Written by hand because no crate does this: it is the framing rules of RFC 9112 applied
//! to a byte stream, without buffering (a small line buffer only). It follows each request's
//! framing (length, or chunks and trailers) so that pipelined heads are watched too. A fault
//! marks the connection: the next request the pipeline sees on it is refused with 400 and the
//! connection is closed, so nothing of it reaches an upstream.

/// What the guard found wrong, for the 400's description and the log.
pub type Violation = &'static str;

/// The longest field line (without its CRLF) the guard judges: a longer one is neither a
/// `Content-Length` nor a `Transfer-Encoding` it accepts. Of a line that spans reads, this much
/// and its CR are kept.
const LINE_KEPT: usize = 128;

/// The longest chunk-size line (size and extensions). hyper allows 16KiB of extensions in
/// all; no client sends more than a few bytes, and a short bound is found within the read
/// that brings the request's head, before hyper has parsed it.
const MAX_CHUNK_LINE: usize = 4096;

#[derive(Debug)]
pub(crate) struct FramingGuard {
    state: State,
    /// The previous byte, for CRLF checks.
    prev: u8,
    line: Vec<u8>,
    /// The current line's length (the buffer keeps only its start).
    line_len: usize,
    head: Head,
    violation: Option<Violation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a message, or inside its head.
    Head,
    /// Skipping this many more body bytes.
    Body(u64),
    /// A chunk-size line (size, extensions) up to its CRLF.
    ChunkSize,
    /// Chunk data still to come.
    ChunkData(u64),
    /// Expecting the CR, then the LF, that end a chunk's data.
    ChunkEndCr,
    ChunkEndLf,
    /// Trailer fields after the last chunk, up to an empty line.
    Trailers,
    /// Not HTTP/1 (the HTTP/2 preface), or a fault was found: nothing more is watched.
    Stopped,
}

#[derive(Debug, Default)]
struct Head {
    /// Lines of the head so far (0: the request line is being read).
    lines: usize,
    content_length: Option<u64>,
    /// `Transfer-Encoding` lines seen, and whether the only one said exactly `chunked`.
    te_lines: usize,
    te_chunked: bool,
    /// The head's length so far: past hyper's own bound, the guard leaves it to hyper.
    bytes: usize,
}

impl FramingGuard {
    pub(crate) fn new() -> FramingGuard {
        FramingGuard {
            state: State::Head,
            prev: 0,
            line: Vec::with_capacity(LINE_KEPT + 1),
            line_len: 0,
            head: Head::default(),
            violation: None,
        }
    }

    /// What was wrong, once something was.
    pub(crate) fn violation(&self) -> Option<Violation> {
        self.violation
    }

    /// Whether the bytes fed so far end inside a request head: begun, not yet complete. `None`
    /// once the guard no longer follows the stream (HTTP/2, a fault, a head past its bound).
    pub(crate) fn head_pending(&self) -> Option<bool> {
        match self.state {
            State::Stopped => None,
            State::Head => Some(self.head.bytes > 0),
            _ => Some(false),
        }
    }

    /// Watches the next bytes read from the client.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.state {
                State::Stopped => return,
                State::Body(n) | State::ChunkData(n) => {
                    let take = usize::try_from(n).map_or(bytes.len(), |n| n.min(bytes.len()));
                    let left = n - take as u64;
                    bytes = &bytes[take..];
                    self.prev = 0;
                    self.state = match (self.state, left) {
                        (State::Body(_), 0) => self.next_message(),
                        (State::Body(_), _) => State::Body(left),
                        (_, 0) => State::ChunkEndCr,
                        _ => State::ChunkData(left),
                    };
                }
                State::Head | State::ChunkSize | State::Trailers => {
                    // A line at a time: the bytes up to the next LF are only counted, so a
                    // long header (a 1 KiB token) costs a memchr.
                    let Some(end) = memchr::memchr(b'\n', bytes) else {
                        self.line_text(bytes);
                        return;
                    };
                    let (text, rest) = (&bytes[..end], &bytes[end + 1..]);
                    // Whether the whole line came in this read, as it does in most requests.
                    let whole = self.line_len == 0;
                    if !self.count(text) {
                        return;
                    }
                    if self.prev != b'\r' {
                        self.fault("a bare LF ends a line (RFC 9112 requires CRLF)");
                        return;
                    }
                    self.prev = b'\n';
                    if whole {
                        // Judged where it lies, without its CR: nothing copied.
                        self.line_len = 0;
                        self.judge(text.strip_suffix(b"\r").unwrap_or(text));
                    } else {
                        self.keep(text);
                        self.line_end();
                    }
                    bytes = rest;
                }
                State::ChunkEndCr | State::ChunkEndLf => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    self.chunk_end(b);
                }
            }
        }
    }

    /// Bytes of the current line that do not end it: counted, and the line's start kept.
    fn line_text(&mut self, text: &[u8]) {
        if self.count(text) {
            self.keep(text);
        }
    }

    /// Counts bytes of the current line, without its LF (they may end with its CR); false
    /// when the guard stopped on them.
    fn count(&mut self, text: &[u8]) -> bool {
        let Some(&last) = text.last() else {
            return true;
        };
        self.prev = last;
        self.line_len += text.len();
        if self.state == State::Head {
            self.head.bytes += text.len();
            if self.head.bytes > 1 << 20 {
                // Far past any head hyper accepts: it refuses it itself.
                self.state = State::Stopped;
                return false;
            }
        }
        if self.state == State::ChunkSize && self.line_len > MAX_CHUNK_LINE + 1 {
            self.fault("a chunk-size line longer than 4KiB");
            return false;
        }
        true
    }

    /// Keeps the start of a line that spans reads, enough to judge it.
    fn keep(&mut self, text: &[u8]) {
        let room = (LINE_KEPT + 1).saturating_sub(self.line.len());
        self.line.extend_from_slice(&text[..text.len().min(room)]);
    }

    fn fault(&mut self, why: Violation) {
        self.violation = Some(why);
        self.state = State::Stopped;
    }

    fn next_message(&mut self) -> State {
        self.head = Head::default();
        self.line.clear();
        State::Head
    }

    fn chunk_end(&mut self, b: u8) {
        self.prev = b;
        match (self.state, b) {
            (State::ChunkEndCr, b'\r') => self.state = State::ChunkEndLf,
            (State::ChunkEndLf, b'\n') => {
                self.state = State::ChunkSize;
                self.line.clear();
                self.line_len = 0;
            }
            _ => self.fault("a chunk's data is not followed by CRLF"),
        }
    }

    /// The end of a line that spanned reads: judged from what was kept of it.
    fn line_end(&mut self) {
        self.line_len = 0;
        let mut line = std::mem::take(&mut self.line);
        // The CR of CRLF (kept by `keep`), unless the line was cut short before it.
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        self.judge(&line);
        self.line = line;
        self.line.clear();
    }

    /// A complete line, without its CRLF.
    fn judge(&mut self, line: &[u8]) {
        // A line split across reads is judged on what `keep` kept of it: a whole one on as
        // much, so that the verdict does not depend on where the reads fell.
        let line = &line[..line.len().min(LINE_KEPT + 1)];
        match self.state {
            State::Head => self.head_line(line),
            State::ChunkSize => self.chunk_size(line),
            State::Trailers if line.is_empty() => self.state = self.next_message(),
            _ => {}
        }
    }

    fn head_line(&mut self, line: &[u8]) {
        if self.head.lines == 0 {
            if line.is_empty() {
                // Empty lines before a request line may be ignored (RFC 9112 §2.2).
                return;
            }
            if line.starts_with(b"PRI * HTTP/2.0") {
                self.state = State::Stopped;
                return;
            }
            self.head.lines = 1;
            return;
        }
        if !line.is_empty() {
            self.head.lines += 1;
            self.header(line);
            return;
        }
        // The end of the head: its framing decides what follows.
        let h = std::mem::take(&mut self.head);
        self.state = match (h.te_lines, h.content_length) {
            (0, None) | (0, Some(0)) => self.next_message(),
            (0, Some(n)) => State::Body(n),
            (_, Some(_)) => return self.fault("both Content-Length and Transfer-Encoding"),
            (1, None) if h.te_chunked => State::ChunkSize,
            _ => return self.fault("a Transfer-Encoding other than one `chunked`"),
        };
    }

    fn header(&mut self, line: &[u8]) {
        // Only `Content-Length` and `Transfer-Encoding` matter here: a line is passed over
        // on its first letter (`| 0x20` lower-cases ASCII), without a search for its colon.
        if !matches!(line.first().map(|b| b | 0x20), Some(b'c' | b't')) {
            return;
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            return; // not a field line: hyper refuses it
        };
        let name = &line[..colon];
        let value = trim_ows(&line[colon + 1..]);
        // A line longer than what is kept of one split across reads is judged alike whole
        // or split: as no sane `Content-Length` or `Transfer-Encoding`.
        let sane = line.len() <= LINE_KEPT;
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.head.te_lines += 1;
            self.head.te_chunked = sane && value.eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"content-length") {
            if !sane {
                return self.fault("a Content-Length line longer than 128 bytes");
            }
            // Several equal lengths are one length; anything else hyper refuses itself.
            let n = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<u64>().ok());
            self.head.content_length = Some(n.unwrap_or(0));
        }
    }

    fn chunk_size(&mut self, line: &[u8]) {
        let size = match memchr::memchr(b';', line) {
            Some(semicolon) => &line[..semicolon],
            // The size runs past what is kept of the line (extensions may, up to 4 KiB).
            None if line.len() > LINE_KEPT => {
                return self.fault("a chunk size longer than 128 bytes");
            }
            None => line,
        };
        let size = trim_ows(size);
        let parsed = std::str::from_utf8(size)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|c| c.is_ascii_hexdigit()))
            .and_then(|s| u64::from_str_radix(s, 16).ok());
        match parsed {
            Some(0) => self.state = State::Trailers,
            Some(n) => self.state = State::ChunkData(n),
            None => self.fault("a chunk size that is not a hexadecimal number"),
        }
    }
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&c| c != b' ' && c != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&c| c != b' ' && c != b'\t')
        .map_or(start, |e| e + 1);
    &v[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(parts: &[&[u8]]) -> Option<Violation> {
        let mut g = FramingGuard::new();
        for p in parts {
            g.feed(p);
        }
        g.violation()
    }

    fn one_byte_at_a_time(bytes: &[u8]) -> Option<Violation> {
        let parts: Vec<&[u8]> = bytes.chunks(1).collect();
        verdict(&parts)
    }

    #[test]
    fn a_head_is_pending_from_its_first_byte_to_its_empty_line_and_never_in_a_body() {
        let mut g = FramingGuard::new();
        let steps: [(&[u8], Option<bool>); 7] = [
            (b"GET / HTTP/1.1\r\nHost: a\r\n", Some(true)),
            (b"\r\n", Some(false)),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab",
                Some(false),
            ),
            (b"cde", Some(false)),
            // A whole request and the start of the next, in one read.
            (b"GET /a HTTP/1.1\r\n\r\nGE", Some(true)),
            (b"T /b HTTP/1.1\r\n\r\n", Some(false)),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", None),
        ];
        for (bytes, pending) in steps {
            g.feed(bytes);
            assert_eq!(
                g.head_pending(),
                pending,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn honest_requests_pass_however_they_are_split() {
        let stream: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\
POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhe\nlo\
POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\nT: v\r\n\r\n\
GET /next HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(verdict(&[stream]), None);
        assert_eq!(one_byte_at_a_time(stream), None);
    }

    #[test]
    fn ambiguous_framing_is_found_in_a_pipelined_request_too() {
        let cases: [(&[u8], &str); 7] = [
            (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "both"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "other than"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", "other than"),
            (b"GET / HTTP/1.1\nHost: a\r\n\r\n", "bare LF"),
            (b"GET / HTTP/1.1\r\nHost: a\n\r\n", "bare LF"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n", "CRLF"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n", "hexadecimal"),
        ];
        for (bad, why) in cases {
            let pipelined = [b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n".as_slice(), bad].concat();
            for stream in [bad, pipelined.as_slice()] {
                let found = verdict(&[stream])
                    .unwrap_or_else(|| panic!("{:?} passed", String::from_utf8_lossy(stream)));
                assert!(found.contains(why), "{found}");
                assert!(one_byte_at_a_time(stream).is_some());
            }
        }
    }

    #[test]
    fn bodies_are_skipped_not_read_as_heads() {
        // A body that looks like a smuggled request is only a body.
        let body = b"GET /smuggled HTTP/1.1\nTransfer-Encoding: x\n\n";
        let head = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len());
        assert_eq!(verdict(&[head.as_bytes(), body]), None);
    }

    #[test]
    fn framing_lines_longer_than_the_guard_keeps_are_refused() {
        let padded = |len: usize| format!("Content-Length: {}5", "0".repeat(len - 17));
        let cl = format!("POST / HTTP/1.1\r\n{}\r\n\r\nhello", padded(LINE_KEPT + 1));
        let found = verdict(&[cl.as_bytes()]).unwrap_or_else(|| panic!("{cl:?} passed"));
        assert!(found.contains("Content-Length line longer"), "{found}");
        let te = format!(
            "POST / HTTP/1.1\r\nTransfer-Encoding:{}chunked\r\n\r\n0\r\n\r\n",
            " ".repeat(LINE_KEPT)
        );
        let found = verdict(&[te.as_bytes()]).unwrap_or_else(|| panic!("{te:?} passed"));
        assert!(found.contains("other than"), "{found}");
        // Up to the bound they are read in full, whole or split anywhere.
        let fits = format!("POST / HTTP/1.1\r\n{}\r\n\r\nhello", padded(LINE_KEPT));
        assert_eq!(verdict(&[fits.as_bytes()]), None);
        assert_eq!(one_byte_at_a_time(fits.as_bytes()), None);
    }

    /// Lines judged where they lie (whole in one read) and lines kept across reads get the
    /// same verdict, wherever the reads split the bytes.
    #[test]
    fn a_verdict_does_not_depend_on_where_reads_split_the_bytes() {
        let long = format!(
            "POST / HTTP/1.1\r\nX-Long: {}\r\nContent-Length: 3\r\n\r\nabc\
GET / HTTP/1.1\r\nContent-Length: {}5\r\n\r\n",
            "v".repeat(300),
            "0".repeat(200)
        );
        // Lines one byte either side of the bound, long by their whitespace.
        let ows = |n: usize| {
            format!(
                "POST / HTTP/1.1\r\nContent-Length:{}5\r\n\r\nhello",
                " ".repeat(n - 16)
            )
        };
        let (fits, over) = (ows(LINE_KEPT), ows(LINE_KEPT + 1));
        // Chunk-size lines: a long size (hyper reads it), long extensions (read past).
        let chunked = |line: String| {
            format!(
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{line}\r\nhello\r\n0\r\n\r\n"
            )
        };
        let long_size = chunked(format!("{}5", "0".repeat(200)));
        let long_extension = chunked(format!("5;{}", "x".repeat(300)));
        let streams: [&[u8]; 11] = [
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
5;x=1\r\nhello\r\n0\r\nT: v\r\n\r\nGET /n HTTP/1.1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\n\r\n",
            b"POST / HTTP/1.1\r\ncontent-length: 2\r\n\r\n\n\nGET / HTTP/1.1\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n",
            b"\r\nGET / HTTP/1.1\r\nT: \r\n\r\n",
            long.as_bytes(),
            fits.as_bytes(),
            over.as_bytes(),
            long_size.as_bytes(),
            long_extension.as_bytes(),
        ];
        assert_eq!(verdict(&[fits.as_bytes()]), None);
        assert!(verdict(&[over.as_bytes()]).is_some());
        assert!(verdict(&[long_size.as_bytes()]).is_some_and(|v| v.contains("chunk size")));
        assert_eq!(verdict(&[long_extension.as_bytes()]), None);
        for stream in streams {
            let whole = verdict(&[stream]);
            for cut in 0..=stream.len() {
                let (a, b) = stream.split_at(cut);
                assert_eq!(
                    verdict(&[a, b]),
                    whole,
                    "cut at {cut} of {:?}",
                    String::from_utf8_lossy(stream)
                );
            }
        }
    }

    #[test]
    fn http2_is_left_alone() {
        assert_eq!(
            verdict(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\n\n\n"]),
            None
        );
    }
}
