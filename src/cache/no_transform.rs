//! `no-transform` (RFC 9111 §5.2.2.6, RFC 9110 §7.7): a response whose content no intermediary
//! may change.
//!
//! knitcache changes content in two places, and neither touches such a response: the
//! compression of a fill (`proxy`, which turns pingora's compression off before it decides) and
//! a coding made from another coding's stored bytes (`transcode`, which then serves the stored
//! bytes as they are, to clients that accept them).
//!
//! The directive is read from `Cache-Control` and from the targeted fields knitcache obeys
//! (`Knitcache-Cache-Control`, `CDN-Cache-Control`). RFC 9213 has a cache that uses a targeted
//! field ignore `Cache-Control`'s caching directives, but not transforming is always allowed, so
//! `no-transform` is honoured wherever the origin says it.

use pingora_cache::cache_control::CacheControl;
use pingora_http::ResponseHeader;

use super::freshness::{CDN_CACHE_CONTROL, KNITCACHE_CACHE_CONTROL};

/// The fields a `no-transform` is read from.
const FIELDS: [&str; 3] = ["cache-control", CDN_CACHE_CONTROL, KNITCACHE_CACHE_CONTROL];

/// Whether `resp` forbids any change to its content.
pub fn forbidden(resp: &ResponseHeader) -> bool {
    FIELDS.into_iter().any(|name| {
        CacheControl::from_resp_headers_named(name, resp)
            .is_some_and(|cc| cc.has_key("no-transform"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(fields: &[(&str, &str)]) -> ResponseHeader {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        for (name, value) in fields {
            resp.append_header(name.to_string(), *value).unwrap();
        }
        resp
    }

    #[test]
    fn no_transform_in_any_field_forbids() {
        for name in FIELDS {
            assert!(forbidden(&resp(&[(name, "no-transform")])), "{name}");
        }
        assert!(forbidden(&resp(&[(
            "cache-control",
            "public, max-age=60, No-Transform"
        )])));
        // A second line counts as much as the first.
        assert!(forbidden(&resp(&[
            ("cache-control", "max-age=60"),
            ("cache-control", "no-transform"),
        ])));
        // In Cache-Control even when a targeted field gives the caching directives.
        assert!(forbidden(&resp(&[
            (CDN_CACHE_CONTROL, "max-age=600"),
            ("cache-control", "no-transform"),
        ])));
    }

    #[test]
    fn anything_else_allows() {
        assert!(!forbidden(&resp(&[])));
        assert!(!forbidden(&resp(&[(
            "cache-control",
            "max-age=60, public"
        )])));
        assert!(!forbidden(&resp(&[("cache-control", "no-transformed")])));
        assert!(!forbidden(&resp(&[(
            "cache-control",
            "private=\"no-transform\""
        )])));
        assert!(!forbidden(&resp(&[("pragma", "no-transform")])));
    }
}
