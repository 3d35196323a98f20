//! What one client may send and how long it may take (`clients:`), and the requests whose
//! framing could be read two ways.
//!
//! Three places enforce them:
//! * `gate`: the proxy port's connection loop. Each request's head is read there whole, within
//!   `header_timeout_ms` (or the connection is dropped after `idle_timeout_ms` without one),
//!   and refused as it arrives when its target, size or field count is over the limit
//!   (`408`, `414`, `431`); connections beyond `max_connections_per_address` are refused (`429`).
//! * `check_request` (pingora's `early_request_filter`): framing pingora lets through but that
//!   must never reach the ERP (`400`, `501`), and bodies on GET/HEAD of caching routes (`413`).
//! * `check_body_chunk` (`request_body_filter`): the body's deadline (`408`) and the size of a
//!   chunked body on a caching route's GET/HEAD (`413`).
//!
//! Writes (anything but GET/HEAD) keep their bodies whatever their size: they stream through to
//! the ERP as they arrive, never held whole here, so their size costs no memory, and only the
//! ERP knows what size its own endpoints take. Their time is bounded by `body_timeout_ms`.

pub mod gate;
pub mod h2;
pub mod head;
pub mod per_address;

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Method};
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_proxy::Session;

use super::RequestCtx;
use crate::canonical;

/// Why a request or connection was refused: the values of the `reason` label of
/// `knitcache_client_refusals_total`.
pub const REFUSAL_REASONS: [&str; 9] = [
    "header_timeout",
    "body_timeout",
    "uri_too_long",
    "header_too_large",
    "too_many_headers",
    "body_too_large",
    "bad_framing",
    "unsupported_coding",
    "too_many_connections",
];

/// A request or connection over a client limit, or with framing that could be read two ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The head did not arrive whole in time (`408`).
    HeaderTimeout,
    /// The body did not arrive whole in time (`408`).
    BodyTimeout,
    /// The request target is too long (`414`).
    UriTooLong,
    /// The head is too large (`431`).
    HeaderTooLarge,
    /// The head has too many fields (`431`).
    TooManyHeaders,
    /// A GET/HEAD on a caching route with too large a body (`413`).
    BodyTooLarge,
    /// Framing that could be read two ways (`400`).
    BadFraming,
    /// A transfer coding other than `chunked` (`501`, RFC 9112 §6.1).
    UnsupportedCoding,
    /// The client's address has too many connections open (`429`).
    TooManyConnections,
}

impl Refusal {
    /// The answer's status code and reason phrase.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            Refusal::HeaderTimeout | Refusal::BodyTimeout => (408, "Request Timeout"),
            Refusal::UriTooLong => (414, "URI Too Long"),
            Refusal::HeaderTooLarge | Refusal::TooManyHeaders => {
                (431, "Request Header Fields Too Large")
            }
            Refusal::BodyTooLarge => (413, "Content Too Large"),
            Refusal::BadFraming => (400, "Bad Request"),
            Refusal::UnsupportedCoding => (501, "Not Implemented"),
            Refusal::TooManyConnections => (429, "Too Many Requests"),
        }
    }

    /// The metric label (one of `REFUSAL_REASONS`).
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::HeaderTimeout => "header_timeout",
            Refusal::BodyTimeout => "body_timeout",
            Refusal::UriTooLong => "uri_too_long",
            Refusal::HeaderTooLarge => "header_too_large",
            Refusal::TooManyHeaders => "too_many_headers",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::BadFraming => "bad_framing",
            Refusal::UnsupportedCoding => "unsupported_coding",
            Refusal::TooManyConnections => "too_many_connections",
        }
    }

    /// The error that ends the request in a proxy phase: `fail_to_proxy` answers its status
    /// and closes the connection.
    fn error(self, why: &'static str) -> Box<Error> {
        let (status, _) = self.status();
        Error::create(
            ErrorType::HTTPStatus(status),
            ErrorSource::Downstream,
            Some(format!("{}: {why}", self.reason()).into()),
            None,
        )
    }

    /// The refusal an error of a proxy phase stands for, if it is one: a refusal made here, or
    /// pingora's own timeout reading a request body (its read timeout is `body_timeout_ms`).
    pub fn of_error(e: &Error) -> Option<Refusal> {
        if e.esource() != &ErrorSource::Downstream {
            return None;
        }
        match e.etype() {
            ErrorType::ReadTimedout => Some(Refusal::BodyTimeout),
            // Only the checks here end a proxy phase with a client-sourced status (pingora
            // answers its own parse errors before the phases run). The status says which: the
            // error's context may have been extended on its way (`error_while_proxy`).
            // (`431` is `TooManyHeaders` here: a head too large in bytes is refused by the head
            // reader, or by the HTTP/2 codec, before any phase.)
            ErrorType::HTTPStatus(status) => [
                Refusal::BodyTimeout,
                Refusal::UriTooLong,
                Refusal::TooManyHeaders,
                Refusal::BodyTooLarge,
                Refusal::BadFraming,
                Refusal::UnsupportedCoding,
            ]
            .into_iter()
            .find(|r| r.status().0 == *status),
            _ => None,
        }
    }
}

fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// Whether the request is a read on a caching route, where a body is suspect. Routing has not
/// run yet: the route is that of the canonical target, as routing will find it (a target
/// canonicalisation rejects is refused by routing, whatever its body).
fn is_cached_read(session: &Session, ctx: &RequestCtx) -> bool {
    let req = session.req_header();
    if !is_read(&req.method) {
        return false;
    }
    let raw = match req.raw_path() {
        raw @ [b'/', ..] => raw,
        _ => req
            .uri
            .path_and_query()
            .map_or(&b""[..], |pq| pq.as_str().as_bytes()),
    };
    let Ok(target) = canonical::target(raw, ctx.config.upstream.url_form) else {
        return false;
    };
    ctx.config
        .route_for(&req.method, target.path())
        .is_some_and(|(_, route)| route.cache_policy().is_some())
}

/// Checks a request pingora has parsed, before anything else looks at it (the
/// `early_request_filter` phase). pingora has already refused (`400`) differing or malformed
/// `Content-Length` values, `Transfer-Encoding` on HTTP/1.0 and a final coding other than
/// `chunked`.
pub fn check_request(session: &Session, ctx: &RequestCtx) -> Result<()> {
    let limits = &ctx.config.clients;
    let req = session.req_header();
    // The head reader applies these to an HTTP/1 head as it arrives; an HTTP/2 head is
    // decoded whole by the codec (HPACK), so its target and fields are counted here, decoded.
    let target = req.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > limits.max_uri_bytes {
        return Err(Refusal::UriTooLong.error("the request target"));
    }
    if req.headers.len() > limits.max_headers {
        return Err(Refusal::TooManyHeaders.error("the request's header fields"));
    }
    let headers = &req.headers;
    if headers.contains_key(TRANSFER_ENCODING) {
        check_transfer_encoding(session, headers)?;
    }
    let max = limits.max_read_body_bytes;
    let declared = match headers.get(CONTENT_LENGTH) {
        // pingora checked the value; several equal values may be listed.
        Some(len) => std::str::from_utf8(len.as_bytes())
            .ok()
            .and_then(|v| v.split(',').next()?.trim().parse::<u64>().ok())
            .unwrap_or(u64::MAX),
        None => 0,
    };
    // A chunked body's size is unknown until read: with no body allowed, that it is there is
    // enough; else it is counted as it arrives (`check_body_chunk`).
    let chunked_over = max == 0 && headers.contains_key(TRANSFER_ENCODING);
    if (declared > max || chunked_over) && is_cached_read(session, ctx) {
        return Err(Refusal::BodyTooLarge.error("a GET or HEAD on a caching route"));
    }
    Ok(())
}

/// `Transfer-Encoding` that pingora accepts but that is refused here: `chunked` more than once
/// (RFC 9112 §6.1: a sender must not; a recipient that decodes it once and one that decodes it
/// twice disagree on where the body ends), a coding other than `chunked` (`501`: knitcache
/// decodes no other, RFC 9112 §6.1), and `Content-Length` beside it. pingora drops such a
/// `Content-Length` and closes the connection after the response, as RFC 9112 §6.3 allows; the
/// same section says the message "ought to be handled as an error", and no client of the ERP
/// sends both: it is refused before anything is proxied.
fn check_transfer_encoding(session: &Session, headers: &HeaderMap) -> Result<()> {
    let mut chunked = 0;
    for value in headers.get_all(TRANSFER_ENCODING) {
        let Ok(value) = std::str::from_utf8(value.as_bytes()) else {
            return Err(Refusal::BadFraming.error("Transfer-Encoding is not text"));
        };
        for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if coding.eq_ignore_ascii_case("chunked") {
                chunked += 1;
            } else {
                return Err(
                    Refusal::UnsupportedCoding.error("a transfer coding other than chunked")
                );
            }
        }
    }
    if chunked > 1 {
        return Err(Refusal::BadFraming.error("chunked more than once"));
    }
    let raw = session
        .as_downstream()
        .as_http1()
        .map(|h1| h1.get_headers_raw_bytes())
        .unwrap_or_default();
    if has_field(&raw, b"content-length") {
        return Err(Refusal::BadFraming.error("Content-Length beside Transfer-Encoding"));
    }
    Ok(())
}

/// Whether the raw head `raw` has a field line named `name` (lower case).
fn has_field(raw: &[u8], name: &[u8]) -> bool {
    raw.split(|b| *b == b'\n').skip(1).any(|line| {
        line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name)
            && line[name.len()] == b':'
    })
}

/// Checks each piece of a request body as it arrives (the `request_body_filter` phase): the
/// body must be whole within `body_timeout_ms` of its head (pingora's read timeout, set to
/// what is left, bounds the wait for the next piece), and a caching route's GET/HEAD may carry
/// at most `max_read_body_bytes`.
pub fn check_body_chunk(
    session: &mut Session,
    end_of_stream: bool,
    ctx: &RequestCtx,
) -> Result<()> {
    let clients = &ctx.config.clients;
    let cached_read = is_read(&session.req_header().method)
        && ctx.route().is_some_and(|r| r.cache_policy().is_some());
    if cached_read && session.body_bytes_read() as u64 > clients.max_read_body_bytes {
        return Err(Refusal::BodyTooLarge.error("a GET or HEAD on a caching route"));
    }
    if end_of_stream {
        return Ok(());
    }
    let left = clients
        .body_timeout
        .checked_sub(ctx.started.elapsed())
        .filter(|left| !left.is_zero());
    match left {
        Some(left) => {
            session.as_downstream_mut().set_read_timeout(Some(left));
            Ok(())
        }
        None => Err(Refusal::BodyTimeout.error("the body took too long")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_field_names_are_found_case_insensitively_and_whole() {
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nCONTENT-LENGTH: 5\r\n\r\n";
        assert!(has_field(raw, b"content-length"));
        let raw = b"POST / HTTP/1.1\r\nContent-Lengthy: 5\r\nX: content-length:\r\n\r\n";
        assert!(!has_field(raw, b"content-length"));
        // The request line is no field.
        assert!(!has_field(
            b"content-length: / HTTP/1.1\r\n\r\n",
            b"content-length"
        ));
    }

    #[test]
    fn every_refusal_has_a_listed_reason_and_a_client_error_status() {
        for r in [
            Refusal::HeaderTimeout,
            Refusal::BodyTimeout,
            Refusal::UriTooLong,
            Refusal::HeaderTooLarge,
            Refusal::TooManyHeaders,
            Refusal::BodyTooLarge,
            Refusal::BadFraming,
            Refusal::UnsupportedCoding,
            Refusal::TooManyConnections,
        ] {
            assert!(REFUSAL_REASONS.contains(&r.reason()), "{r:?}");
            assert!((400..=501).contains(&r.status().0), "{r:?}");
        }
    }

    #[test]
    fn refusals_made_in_proxy_phases_are_recognised() {
        let e = Refusal::BodyTooLarge.error("x");
        assert_eq!(Refusal::of_error(&e), Some(Refusal::BodyTooLarge));
        let e = Refusal::BodyTimeout
            .error("x")
            .more_context("Peer: 127.0.0.1:5007");
        assert_eq!(
            Refusal::of_error(&e),
            Some(Refusal::BodyTimeout),
            "context grown"
        );
        let e = Error::create(
            ErrorType::HTTPStatus(413),
            ErrorSource::Upstream,
            None,
            None,
        );
        assert_eq!(Refusal::of_error(&e), None, "the ERP's own 413 is not ours");
        let e = Error::create(ErrorType::ReadTimedout, ErrorSource::Downstream, None, None);
        assert_eq!(Refusal::of_error(&e), Some(Refusal::BodyTimeout));
        for r in [Refusal::UriTooLong, Refusal::TooManyHeaders] {
            assert_eq!(Refusal::of_error(&r.error("x")), Some(r), "{r:?}");
        }
    }
}
