//! The access log: one structured line per request to the log target `access`, and the one
//! redaction helper that decides what of a request may appear in a log or a report.
//!
//! What is logged: route, method, path, status, cache result, total and ERP time, bytes sent,
//! client address. What never is: query strings (the ERP's callers may put tokens there),
//! `Authorization`, cookies, or any other header. [`redact`] is the only way request data reaches
//! a log line, so that rule lives in one place and is tested there.
//!
//! The line is formatted here, by hand, into a reused buffer and appended to the log's bounded
//! buffer (`telemetry::write_line`, `log_sink`), in the format of the other log lines (JSON or
//! text). Through `tracing`'s formatter the same line cost several microseconds of a hit's CPU.
//! Writing it never waits for stderr: a writer thread does that, and when it falls too far
//! behind the line is dropped and counted (`knitcache_access_log_dropped_total`). The `access`
//! target still obeys the log filter (`RUST_LOG=access=off` silences it).

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::telemetry::{self, LogFormat};

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
    /// How a miss's fill ended (`proxy::fill::OUTCOMES`), for requests that filled.
    pub fill: Option<&'a str>,
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

/// Whether the log filter lets access lines through. Asked before a line is built: formatting
/// the client address alone cost 4 % of a hit's instructions with the log filtered off.
pub fn enabled() -> bool {
    tracing::enabled!(target: "access", tracing::Level::INFO)
}

/// Writes `line` to the log target `access`, as JSON or text like the other log lines. The
/// caller has checked [`enabled`].
pub fn write(line: &AccessLine<'_>) {
    thread_local! {
        static BUF: RefCell<String> = RefCell::new(String::with_capacity(512));
    }
    BUF.with(|buf| {
        let mut out = buf.borrow_mut();
        out.clear();
        format_line(&mut out, line, telemetry::format(), SystemTime::now());
        telemetry::write_line(out.as_bytes());
    });
}

/// Formats one access line (ending in a newline) into `out`.
pub fn format_line(out: &mut String, l: &AccessLine<'_>, format: LogFormat, now: SystemTime) {
    let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    match format {
        LogFormat::Json => {
            out.push_str("{\"timestamp\":\"");
            rfc3339(out, now);
            out.push_str("\",\"level\":\"INFO\",\"target\":\"access\",\"message\":\"request\"");
            json_field(out, "route", l.route);
            json_field(out, "method", l.request.method);
            json_field(out, "path", l.request.path);
            let _ = write!(out, ",\"status\":{}", l.status);
            json_field(out, "cache", l.cache);
            if let Some(f) = l.fill {
                json_field(out, "fill", f);
            }
            let _ = write!(out, ",\"took_us\":{}", us(l.took));
            if let Some(u) = l.upstream {
                let _ = write!(out, ",\"upstream_us\":{}", us(u));
            }
            if let Some(s) = l.upstream_status {
                let _ = write!(out, ",\"upstream_status\":{s}");
            }
            let _ = write!(out, ",\"bytes\":{}", l.bytes);
            if let Some(c) = &l.client {
                json_field(out, "client", c);
            }
            if let Some(e) = &l.error {
                json_field(out, "error", e);
            }
            out.push_str("}\n");
        }
        LogFormat::Text => {
            rfc3339(out, now);
            let _ = write!(
                out,
                "  INFO access: request route={} method={} path={:?} status={} cache={} took_us={}",
                l.route,
                l.request.method,
                l.request.path,
                l.status,
                l.cache,
                us(l.took)
            );
            if let Some(f) = l.fill {
                let _ = write!(out, " fill={f}");
            }
            if let Some(u) = l.upstream {
                let _ = write!(out, " upstream_us={}", us(u));
            }
            if let Some(s) = l.upstream_status {
                let _ = write!(out, " upstream_status={s}");
            }
            let _ = write!(out, " bytes={}", l.bytes);
            if let Some(c) = &l.client {
                let _ = write!(out, " client={c}");
            }
            if let Some(e) = &l.error {
                let _ = write!(out, " error={e:?}");
            }
            out.push('\n');
        }
    }
}

/// `,"name":"value"` with the value escaped as a JSON string.
fn json_field(out: &mut String, name: &str, value: &str) {
    let _ = write!(out, ",\"{name}\":\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `2026-11-28T22:56:46.937449Z` (UTC, microseconds).
fn rfc3339(out: &mut String, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        d.subsec_micros()
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

    fn line() -> AccessLine<'static> {
        AccessLine {
            route: "kpis",
            request: Redacted {
                method: "GET",
                path: "/api/x\"y",
            },
            status: 200,
            cache: "hit",
            fill: None,
            took: Duration::from_micros(41),
            upstream: None,
            upstream_status: None,
            bytes: 342,
            client: Some("127.0.0.1:5".into()),
            error: None,
        }
    }

    #[test]
    fn json_lines_parse_and_carry_every_field() {
        let mut out = String::new();
        let at = UNIX_EPOCH + Duration::from_micros(1_795_906_606_937_449);
        format_line(&mut out, &line(), LogFormat::Json, at);
        assert!(out.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&out).expect("JSON line");
        assert_eq!(v["timestamp"], "2026-11-28T22:56:46.937449Z");
        assert_eq!(v["target"], "access");
        assert_eq!(v["path"], "/api/x\"y");
        assert_eq!(
            (v["status"].as_u64(), v["took_us"].as_u64()),
            (Some(200), Some(41))
        );
        assert_eq!(v["client"], "127.0.0.1:5");
        assert!(v.get("upstream_us").is_none());
        assert!(v.get("fill").is_none(), "only misses that filled say how");
        let miss = AccessLine {
            cache: "miss",
            fill: Some("truncated"),
            ..line()
        };
        let mut out = String::new();
        format_line(&mut out, &miss, LogFormat::Json, at);
        let v: serde_json::Value = serde_json::from_str(&out).expect("JSON line");
        assert_eq!(v["fill"], "truncated");
        let mut text = String::new();
        format_line(&mut text, &miss, LogFormat::Text, at);
        assert!(
            text.contains(" cache=miss ") && text.contains(" fill=truncated "),
            "{text}"
        );
        let mut text = String::new();
        format_line(&mut text, &line(), LogFormat::Text, at);
        assert!(
            text.starts_with("2026-11-28T22:56:46.937449Z  INFO access: request route=kpis"),
            "{text}"
        );
    }

    #[test]
    fn dates_before_march_and_in_leap_years() {
        let mut out = String::new();
        rfc3339(&mut out, UNIX_EPOCH + Duration::from_secs(951_782_400)); // 2000-02-29
        assert_eq!(out, "2000-02-29T00:00:00.000000Z");
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
