//! `Cache-Control` parsing and RFC 9111 arithmetic (`cache::freshness`) over one response.
//!
//! Input: the response's fields, one `Name: value` a line (`Cache-Control`,
//! `CDN-Cache-Control`, `Knitcache-Cache-Control`, `Expires`, `Date`, `Age`, `Last-Modified`...).
//! Invariants: never a panic; the decisions agree with each other (a directive that forbids
//! serving stale forbids it; targeted directives ignore `Expires`; a stated `max-age` is a
//! lifetime); ages and heuristic lifetimes stay within their bounds; and the directives are a
//! canonical form: each cache-control field rewritten as its parsed directives gives the same
//! decisions.
#![no_main]

use std::time::{Duration, SystemTime};

use http::HeaderValue;
use knitcache::cache::freshness::{
    CDN_CACHE_CONTROL, KNITCACHE_CACHE_CONTROL, directives, heuristic_lifetime, initial_age,
};
use knitcache::config::Heuristic;
use knitcache_fuzz::{lines, response};
use libfuzzer_sys::fuzz_target;
use pingora_cache::cache_control::CacheControl;
use pingora_http::ResponseHeader;

const RECEIVED: u64 = 1_700_000_000;

/// Everything knitcache decides from the directives of `resp`.
#[derive(Debug, PartialEq)]
struct Decisions {
    targeted: bool,
    forbids_storing: bool,
    no_cache: bool,
    public: bool,
    must_revalidate: bool,
    allows_authorized: bool,
    forbids_stale: bool,
    stale_windows: (Option<Duration>, Option<Duration>),
    lifetime: Option<Duration>,
}

fn decide(resp: &ResponseHeader, received: SystemTime) -> Decisions {
    let d = directives(resp);
    if d.targeted {
        let cc = d.cc.as_ref().expect("targeted directives are parsed ones");
        assert!(
            !cc.directives.is_empty(),
            "an empty targeted field was used"
        );
    }
    let lifetime = d.explicit_lifetime(resp, received);
    if let Some(cc) = &d.cc {
        if cc.has_key("max-age") || cc.has_key("s-maxage") {
            assert!(lifetime.is_some(), "a stated max-age is no lifetime");
        }
    } else {
        assert!(!d.forbids_storing() && !d.no_cache() && !d.public());
    }
    if d.no_cache() || d.must_revalidate() || d.has_s_maxage() {
        assert!(d.forbids_stale());
    }
    assert_eq!(
        d.allows_authorized(),
        d.public() || d.has_s_maxage() || d.must_revalidate()
    );
    Decisions {
        targeted: d.targeted,
        forbids_storing: d.forbids_storing(),
        no_cache: d.no_cache(),
        public: d.public(),
        must_revalidate: d.must_revalidate(),
        allows_authorized: d.allows_authorized(),
        forbids_stale: d.forbids_stale(),
        stale_windows: d.stale_windows(),
        lifetime,
    }
}

/// The directives of one field written back as a field value.
fn render(cc: &CacheControl) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in &cc.directives {
        if !out.is_empty() {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(key.as_str().as_bytes());
        if let Some(v) = value {
            out.push(b'=');
            out.extend_from_slice(&v.0);
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let resp = response(lines(data));
    let received = SystemTime::UNIX_EPOCH + Duration::from_secs(RECEIVED);
    let decisions = decide(&resp, received);

    let delay = Duration::from_secs(3);
    let age = initial_age(&resp, received, delay);
    assert!(age >= delay, "the age forgot the time the request took");

    let heuristic = Heuristic {
        fraction: 0.1,
        max: Duration::from_secs(86_400),
    };
    if let Some(h) = heuristic_lifetime(&resp, received, &heuristic) {
        assert!(h <= heuristic.max);
    }

    // Each cache-control field as its parsed directives: the same decisions.
    let mut canonical = resp.clone();
    for name in [KNITCACHE_CACHE_CONTROL, CDN_CACHE_CONTROL, "cache-control"] {
        if let Some(cc) = CacheControl::from_resp_headers_named(name, &resp)
            && resp.headers.contains_key(name)
        {
            let value = HeaderValue::from_bytes(&render(&cc))
                .expect("parsed directives are valid field text");
            canonical.remove_header(name);
            canonical
                .append_header(name, value)
                .expect("a valid field appends");
        }
    }
    assert_eq!(
        decide(&canonical, received),
        decisions,
        "the directives written back decide otherwise"
    );
});
