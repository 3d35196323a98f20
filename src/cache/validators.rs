//! Validators of stored responses: the `ETag` of a body knitcache compressed, and the fields a
//! `304 Not Modified` brings to a stored response (RFC 9111 §4.3.4).
//!
//! A body knitcache compresses is a different representation from the origin's, so it cannot
//! carry the origin's strong `ETag`. It gets one derived from it, `"abc"` -> `"abc-gzip"`
//! (Apache's mod_deflate does the same), on the miss and on every hit alike; a weak tag stays
//! weak. When such a response is revalidated the derived tag is turned back into the origin's
//! in `If-None-Match`, so the origin can still answer `304`.

use http::header::{self, HeaderName, HeaderValue};
use pingora_http::ResponseHeader;

/// The `ETag` of a body compressed with `coding` from the origin's `etag`: the suffix goes
/// inside the quotes. `None` for a value that is not a valid entity tag (it is dropped, as a
/// validator that no longer describes the bytes sent).
pub fn derive(etag: &HeaderValue, coding: &str) -> Option<HeaderValue> {
    let bytes = etag.as_bytes();
    let (weak, tag) = match bytes.strip_prefix(b"W/") {
        Some(tag) => (true, tag),
        None => (false, bytes),
    };
    let inner = tag.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let mut out = Vec::with_capacity(bytes.len() + coding.len() + 1);
    if weak {
        out.extend_from_slice(b"W/");
    }
    out.push(b'"');
    out.extend_from_slice(inner);
    out.push(b'-');
    out.extend_from_slice(coding.as_bytes());
    out.push(b'"');
    HeaderValue::from_bytes(&out).ok()
}

/// `If-None-Match` as the origin knows its tags: every member derived for `coding` loses its
/// suffix. Members that are not derived are kept as they are.
pub fn to_origin(if_none_match: &HeaderValue, coding: &str) -> HeaderValue {
    let Ok(text) = if_none_match.to_str() else {
        return if_none_match.clone();
    };
    let suffix = format!("-{coding}\"");
    let members: Vec<String> = text
        .split(',')
        .map(str::trim)
        .map(|m| match m.strip_suffix(suffix.as_str()) {
            Some(origin) if m.ends_with('"') => format!("{origin}\""),
            _ => m.to_owned(),
        })
        .collect();
    HeaderValue::from_str(&members.join(", ")).unwrap_or_else(|_| if_none_match.clone())
}

/// Whether `etag` was derived for `coding` by `derive`.
pub fn is_derived(etag: &HeaderValue, coding: &str) -> bool {
    let suffix = format!("-{coding}\"");
    etag.as_bytes().ends_with(suffix.as_bytes())
}

/// Fields of a `304` that never replace the stored ones: hop-by-hop and framing fields, the
/// body's own coding and range (the stored body is what it is), and `Vary` (the variant's
/// slot was chosen by the stored one). RFC 9111 §3.2 lists the first kinds.
const KEPT: [HeaderName; 12] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::CONTENT_RANGE,
];

/// The stored response `stored` freshened by `not_modified` (RFC 9111 §4.3.4): every field
/// of the `304` replaces all of the stored field's lines, except the ones in `KEPT`, those the
/// `304`'s `Connection` names, and `Vary`. A stored `ETag` that knitcache derived for `coding`
/// is derived again from the `304`'s.
pub fn freshen(
    stored: &ResponseHeader,
    not_modified: &ResponseHeader,
    coding: Option<&str>,
) -> ResponseHeader {
    let mut merged = stored.clone();
    let connection_named: Vec<String> = not_modified
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    let derived = coding.filter(|c| {
        stored
            .headers
            .get(header::ETAG)
            .is_some_and(|e| is_derived(e, c))
    });
    let mut names: Vec<&HeaderName> = not_modified.headers.keys().collect();
    names.dedup();
    for name in names {
        if KEPT.contains(name)
            || *name == header::VARY
            || connection_named.iter().any(|n| n == name.as_str())
        {
            continue;
        }
        merged.remove_header(name);
        for value in not_modified.headers.get_all(name) {
            let value = match derived {
                Some(c) if *name == header::ETAG => match derive(value, c) {
                    Some(v) => v,
                    None => continue,
                },
                _ => value.clone(),
            };
            // A field name and value that came in a valid response can always be appended.
            let _ = merged.append_header(name.clone(), value);
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).expect("value")
    }

    fn header(status: u16, fields: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).expect("header");
        for (k, v) in fields {
            r.append_header(k.to_string(), *v).expect("append");
        }
        r
    }

    #[test]
    fn derived_tags_keep_strength_and_invalid_ones_are_dropped() {
        assert_eq!(derive(&hv("\"abc\""), "gzip"), Some(hv("\"abc-gzip\"")));
        assert_eq!(derive(&hv("W/\"abc\""), "br"), Some(hv("W/\"abc-br\"")));
        assert_eq!(derive(&hv("abc"), "br"), None);
        assert!(is_derived(&hv("\"abc-br\""), "br"));
        assert!(!is_derived(&hv("\"abc-br\""), "gzip"));
    }

    #[test]
    fn if_none_match_goes_back_to_the_origins_tags() {
        assert_eq!(to_origin(&hv("\"abc-gzip\""), "gzip"), hv("\"abc\""));
        assert_eq!(
            to_origin(&hv("W/\"a-gzip\", \"b\", \"c-br\""), "gzip"),
            hv("W/\"a\", \"b\", \"c-br\"")
        );
        assert_eq!(to_origin(&hv("*"), "gzip"), hv("*"));
    }

    #[test]
    fn a_304_replaces_every_field_but_framing_coding_and_vary() {
        let stored = header(
            200,
            &[
                ("content-type", "application/json"),
                ("content-length", "42"),
                ("content-encoding", "gzip"),
                ("x-version", "1"),
                ("x-multi", "a"),
                ("x-multi", "b"),
                ("vary", "origin"),
                ("etag", "\"v1-gzip\""),
            ],
        );
        let nm = header(
            304,
            &[
                ("x-version", "2"),
                ("x-multi", "c"),
                ("x-new", "yes"),
                ("content-length", "0"),
                ("vary", "accept-language"),
                ("etag", "\"v2\""),
                ("connection", "x-hop"),
                ("x-hop", "1"),
                ("cache-control", "max-age=60"),
            ],
        );
        let merged = freshen(&stored, &nm, Some("gzip"));
        let get = |n: &str| -> Vec<&str> {
            merged
                .headers
                .get_all(n)
                .iter()
                .map(|v| v.to_str().expect("text"))
                .collect()
        };
        assert_eq!(merged.status, 200);
        assert_eq!(get("x-version"), ["2"]);
        assert_eq!(get("x-multi"), ["c"]);
        assert_eq!(get("x-new"), ["yes"]);
        assert_eq!(get("content-length"), ["42"]);
        assert_eq!(get("content-encoding"), ["gzip"]);
        assert_eq!(get("vary"), ["origin"]);
        assert_eq!(get("etag"), ["\"v2-gzip\""]);
        assert!(get("x-hop").is_empty() && get("connection").is_empty());
        assert_eq!(get("cache-control"), ["max-age=60"]);
        assert_eq!(get("content-type"), ["application/json"]);
        let identity = freshen(&header(200, &[("etag", "\"v1\"")]), &nm, Some("gzip"));
        assert_eq!(
            identity.headers.get("etag"),
            Some(&hv("\"v2\"")),
            "not derived: as sent"
        );
    }
}
