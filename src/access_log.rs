//! The access log: one structured line per request to the log target `access`, and the one
//! redaction helper that decides what of a request may appear in a log or a report.
//!
//! What is logged: route, method, path, status, cache result, total and ERP time, bytes sent,
//! client address. What never is: query strings (the ERP's callers may put tokens there),
//! `Authorization`, cookies, or any other header. [`redact`] is the only way request data reaches
//! a log line, so that rule lives in one place and is tested there.

use std::borrow::Cow;
use std::time::Duration;

use pingora_http::RequestHeader;

/// Query parameter names whose values are masked wherever a key is shown (hot keys in `/stats`).
const SECRET_PARAMS: [&str; 10] = [
    "token",
    "access_token",
    "api_key",
    "apikey",
    "key",
    "password",
    "secret",
    "session",
    "signature",
    "auth",
];

/// What of a request may be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redacted<'a> {
    /// The method.
    pub method: &'a str,
    /// The path without the query string.
    pub path: &'a str,
}

/// The loggable part of a request: method and path. The query string and every header
/// (`Authorization`, `Cookie`, ...) are left out by construction.
pub fn redact(req: &RequestHeader) -> Redacted<'_> {
    Redacted {
        method: req.method.as_str(),
        path: req.uri.path(),
    }
}

/// A cache key (`GET /path?a=1&token=x`) as it may be shown: values of parameters named like
/// credentials are replaced by `***`.
pub fn mask_key(key: &str) -> Cow<'_, str> {
    let Some((path, query)) = key.split_once('?') else {
        return Cow::Borrowed(key);
    };
    let secret = |pair: &str| {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        SECRET_PARAMS.iter().any(|s| name.eq_ignore_ascii_case(s))
    };
    if !query.split('&').any(secret) {
        return Cow::Borrowed(key);
    }
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if secret(pair) => format!("{name}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    Cow::Owned(format!("{path}?{}", masked.join("&")))
}

/// One access line's data.
#[derive(Debug, Clone)]
pub struct AccessLine<'a> {
    /// The matched route (or `unmatched`).
    pub route: &'a str,
    /// Method and path, redacted.
    pub request: Redacted<'a>,
    /// Status sent to the client (0 if none was).
    pub status: u16,
    /// Cache result.
    pub cache: &'a str,
    /// Time from request to response end.
    pub took: Duration,
    /// The ERP's time, if it was asked.
    pub upstream: Option<Duration>,
    /// The ERP's status, if it answered.
    pub upstream_status: Option<u16>,
    /// Body bytes sent to the client.
    pub bytes: u64,
    /// The client's address.
    pub client: Option<String>,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// Writes `line` to the log target `access` (JSON or text, as the subscriber is set up).
pub fn write(line: &AccessLine<'_>) {
    tracing::info!(
        target: "access",
        route = line.route,
        method = line.request.method,
        path = line.request.path,
        status = line.status,
        cache = line.cache,
        took_us = u64::try_from(line.took.as_micros()).unwrap_or(u64::MAX),
        upstream_us = line.upstream.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        upstream_status = line.upstream_status,
        bytes = line.bytes,
        client = line.client.as_deref(),
        error = line.error.as_deref(),
        "request"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_keeps_method_and_path_only() {
        let mut req = RequestHeader::build(
            "GET",
            b"/api/yarn-intelligence?token=s3cret&view=full",
            None,
        )
        .expect("request");
        req.insert_header("authorization", "Bearer s3cret")
            .expect("h");
        req.insert_header("cookie", "session=s3cret").expect("h");
        let r = redact(&req);
        assert_eq!(
            r,
            Redacted {
                method: "GET",
                path: "/api/yarn-intelligence"
            }
        );
        let shown = format!("{r:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn keys_mask_credential_values_only() {
        assert_eq!(mask_key("GET /a?b=1"), "GET /a?b=1");
        assert_eq!(mask_key("GET /a"), "GET /a");
        assert_eq!(
            mask_key("GET /a?Token=x&view=full&api_key=y"),
            "GET /a?Token=***&view=full&api_key=***"
        );
    }
}
