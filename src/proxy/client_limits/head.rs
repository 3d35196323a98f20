//! Reading a request's head (request line and header fields) off a client connection, against
//! a deadline and size limits, before pingora's parser sees it.
//!
//! pingora reads the head itself with a timeout per read (none at all once a connection has
//! been kept alive), up to 1 MiB and 256 fields: a client dribbling a byte at a time holds its
//! connection, task and buffer for as long as it likes. Here the head is read whole within
//! `clients.header_timeout_ms`, and its request target, size and field count are checked as it
//! arrives, so an oversized head is refused before it is buffered. The bytes read are handed to
//! pingora as the session's first bytes: it parses them without reading again.

use std::time::Duration;

use bytes::BytesMut;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use tokio::io::AsyncReadExt;
use tokio::time::{Instant, timeout_at};

use super::Refusal;
use crate::config::ClientSettings;

/// The first buffer of a request head: pingora's own initial header buffer.
const INITIAL_BYTES: usize = 4_096;

/// `" HTTP/1.1"`: what may still follow a request target whose line is not complete yet.
const VERSION_SUFFIX_BYTES: usize = 9;

/// The size limits of a head.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Longest request target.
    pub max_uri: usize,
    /// Largest head, from the request line's first byte to the blank line's end.
    pub max_bytes: usize,
    /// Most header field lines.
    pub max_fields: usize,
}

impl From<&ClientSettings> for HeadLimits {
    fn from(c: &ClientSettings) -> Self {
        HeadLimits {
            max_uri: c.max_uri_bytes,
            max_bytes: c.max_header_bytes,
            max_fields: c.max_headers,
        }
    }
}

/// Where scanning a buffer got to.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// The head is not complete yet.
    Partial,
    /// The head is complete.
    Complete,
    /// The head breaks a limit.
    Refused(Refusal),
}

/// Scans a growing buffer for the end of a request head, line by line, each byte once.
///
/// Lines end in LF, with or without CR before it, as the parser behind (httparse) reads them;
/// empty lines before the request line are skipped, as RFC 9112 §2.2 allows and httparse does.
#[derive(Debug, Default)]
pub struct Scanner {
    /// Index of the request line's first byte, once seen.
    start: Option<usize>,
    /// Index of the current line's first byte.
    line_start: usize,
    /// Bytes before this index have been scanned.
    pos: usize,
    /// Whether the request line is complete.
    request_line: bool,
    /// Header field lines seen.
    fields: usize,
}

impl Scanner {
    /// Scans what `buf` holds beyond the last call (`buf` only ever grows).
    pub fn scan(&mut self, buf: &[u8], limits: &HeadLimits) -> Scan {
        let start = match self.start {
            Some(start) => start,
            None => match buf.iter().position(|b| !matches!(b, b'\r' | b'\n')) {
                Some(start) => {
                    self.start = Some(start);
                    self.line_start = start;
                    self.pos = start;
                    start
                }
                None if buf.len() > limits.max_bytes => {
                    return Scan::Refused(Refusal::HeaderTooLarge);
                }
                None => return Scan::Partial,
            },
        };
        while let Some(offset) = buf[self.pos..].iter().position(|b| *b == b'\n') {
            let newline = self.pos + offset;
            let line = &buf[self.line_start..newline];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !self.request_line {
                self.request_line = true;
                if target_len(line, true) > limits.max_uri {
                    return Scan::Refused(Refusal::UriTooLong);
                }
            } else if line.is_empty() {
                if newline + 1 - start > limits.max_bytes {
                    return Scan::Refused(Refusal::HeaderTooLarge);
                }
                return Scan::Complete;
            } else {
                self.fields += 1;
                if self.fields > limits.max_fields {
                    return Scan::Refused(Refusal::TooManyHeaders);
                }
            }
            self.line_start = newline + 1;
            self.pos = newline + 1;
        }
        self.pos = buf.len();
        let partial = &buf[self.line_start..];
        let partial = partial.strip_suffix(b"\r").unwrap_or(partial);
        if !self.request_line
            && target_len(partial, false) > limits.max_uri.saturating_add(VERSION_SUFFIX_BYTES)
        {
            return Scan::Refused(Refusal::UriTooLong);
        }
        if buf.len() - start > limits.max_bytes {
            return Scan::Refused(Refusal::HeaderTooLarge);
        }
        Scan::Partial
    }
}

/// The length of the request target in a request line (`METHOD SP target SP version`); of all
/// that follows the method while the line is not `complete`. A line without the spaces counts
/// whole: the parser will refuse it, and its length is all there is to limit.
fn target_len(line: &[u8], complete: bool) -> usize {
    let Some(first) = line.iter().position(|b| *b == b' ') else {
        return line.len();
    };
    let rest = &line[first + 1..];
    if !complete {
        return rest.len();
    }
    match rest.iter().rposition(|b| *b == b' ') {
        Some(last) => last,
        None => rest.len(),
    }
}

/// How long the connection may wait for this request.
#[derive(Debug, Clone, Copy)]
pub enum Wait {
    /// A new connection: the whole head by this instant.
    Fresh(Instant),
    /// A kept-alive connection: the first byte within this long, then the head within the
    /// header timeout.
    Idle(Duration),
}

/// What reading a head came to.
#[derive(Debug)]
pub enum Read {
    /// A complete head, possibly followed by body bytes or a pipelined request.
    Head(BytesMut),
    /// The client closed (or broke) the connection, stayed idle too long, or the server is
    /// shutting down, before any byte of a request: nothing to answer.
    Gone,
    /// The head broke a limit or the deadline.
    Refused(Refusal),
}

/// Reads one request head from `stream` within `wait` and the limits of `clients`.
pub async fn read_head(
    stream: &mut Stream,
    wait: Wait,
    clients: &ClientSettings,
    shutdown: &ShutdownWatch,
) -> Read {
    let limits = HeadLimits::from(clients);
    let mut shutdown = shutdown.clone();
    let mut buf = BytesMut::with_capacity(INITIAL_BYTES);
    let mut scanner = Scanner::default();
    let mut deadline = match wait {
        Wait::Fresh(by) => by,
        Wait::Idle(idle) => Instant::now() + idle,
    };
    loop {
        if buf.capacity() == buf.len() {
            buf.reserve(INITIAL_BYTES);
        }
        let read = tokio::select! {
            read = timeout_at(deadline, stream.read_buf(&mut buf)) => read,
            _ = shutdown.wait_for(|stopping| *stopping) => return Read::Gone,
        };
        match read {
            Err(_elapsed) if buf.is_empty() => return Read::Gone,
            Err(_elapsed) => return Read::Refused(Refusal::HeaderTimeout),
            Ok(Ok(0) | Err(_)) => return Read::Gone,
            Ok(Ok(n)) => {
                if let (Wait::Idle(_), true) = (wait, buf.len() == n) {
                    // The first bytes of a request on a kept-alive connection: its head is
                    // timed from here.
                    deadline = Instant::now() + clients.header_timeout;
                }
            }
        }
        match scanner.scan(&buf, &limits) {
            Scan::Partial => {}
            Scan::Complete => return Read::Head(buf),
            Scan::Refused(refusal) => return Read::Refused(refusal),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_uri: 16,
        max_bytes: 120,
        max_fields: 3,
    };

    /// Scans `input` fed in pieces of `step` bytes, as reads would bring it.
    fn scan_in_steps(input: &[u8], step: usize) -> Scan {
        let mut scanner = Scanner::default();
        let mut end = 0;
        loop {
            end = (end + step).min(input.len());
            match scanner.scan(&input[..end], &LIMITS) {
                Scan::Partial if end < input.len() => {}
                other => return other,
            }
        }
    }

    fn scan(input: &[u8]) -> Scan {
        let whole = scan_in_steps(input, input.len());
        for step in [1, 2, 7] {
            assert_eq!(scan_in_steps(input, step), whole, "step {step}: {input:?}");
        }
        whole
    }

    #[test]
    fn complete_heads_with_crlf_or_bare_lf() {
        assert_eq!(scan(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Scan::Complete);
        assert_eq!(scan(b"GET / HTTP/1.1\nHost: a\n\n"), Scan::Complete);
        assert_eq!(scan(b"GET / HTTP/1.1\r\n\r\nbody"), Scan::Complete);
        assert_eq!(scan(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"), Scan::Complete);
    }

    #[test]
    fn partial_heads_wait() {
        assert_eq!(scan(b"GET / HTTP/1.1\r\nHost: a\r\n"), Scan::Partial);
        assert_eq!(scan(b"\r\n\r\n"), Scan::Partial);
        assert_eq!(scan(b"GET / HT"), Scan::Partial);
    }

    #[test]
    fn a_long_target_is_414_even_before_its_line_ends() {
        let at_limit = b"GET /123456789012345 HTTP/1.1\r\n\r\n";
        assert_eq!(scan(at_limit), Scan::Complete);
        assert_eq!(
            scan(b"GET /1234567890123456 HTTP/1.1\r\n\r\n"),
            Scan::Refused(Refusal::UriTooLong)
        );
        assert_eq!(
            scan(b"GET /123456789012345678901234567890"),
            Scan::Refused(Refusal::UriTooLong)
        );
    }

    #[test]
    fn too_many_fields_or_bytes_are_431() {
        assert_eq!(
            scan(b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n"),
            Scan::Complete
        );
        assert_eq!(
            scan(b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\n\r\n"),
            Scan::Refused(Refusal::TooManyHeaders)
        );
        let big = format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", "v".repeat(120));
        assert_eq!(scan(big.as_bytes()), Scan::Refused(Refusal::HeaderTooLarge));
        // Still incomplete, already too large.
        let big = format!("GET / HTTP/1.1\r\nx: {}", "v".repeat(120));
        assert_eq!(scan(big.as_bytes()), Scan::Refused(Refusal::HeaderTooLarge));
        // Endless blank lines are no way around the size limit.
        assert_eq!(
            scan(&b"\r\n".repeat(100)),
            Scan::Refused(Refusal::HeaderTooLarge)
        );
    }

    #[test]
    fn the_body_after_a_head_does_not_count_against_it() {
        let req = format!("POST / HTTP/1.1\r\na: 1\r\n\r\n{}", "b".repeat(500));
        assert_eq!(scan(req.as_bytes()), Scan::Complete);
    }
}
