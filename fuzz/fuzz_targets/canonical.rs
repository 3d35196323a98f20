//! The request canonicaliser (`canonical::target`): the one spelling of a request target that
//! routing, the cache key, purges and the ERP see.
//!
//! Input: a raw request target (`/path?query`). Invariants: never a panic; a canonical target
//! is a fixed point (canonicalising it again gives it back), a valid URI (`apply` sends it to
//! the ERP as one), visible ASCII only, with no empty, `.` or `..` segment in its path and
//! every query parameter written `name=value`; every other spelling of it (each character
//! percent-encoded, in either case of hex, slashes doubled, empty parameters added) has the same
//! canonical form; and its cache key, built from it, is keyed the same again. In the RFC 3986
//! form (`Form::Rfc3986`): never a panic; a fixed point, a valid URI, visible ASCII only, with
//! no `.` or `..` segment.
#![no_main]

use knitcache::cache::key::primary_key;
use knitcache::canonical::{Form, Target, decode, params, target};
use knitcache::config::QueryKey;
use libfuzzer_sys::fuzz_target;

/// Every byte of `text` as `%xx`, lower-case hex (the canonical form writes upper case).
fn escaped(text: &str, out: &mut String) {
    for b in text.bytes() {
        out.push_str(&format!("%{b:02x}"));
    }
}

/// Another spelling of canonical `t`: decoded, then every character escaped, slashes doubled,
/// and empty query pieces around the parameters.
fn respelled(t: &Target) -> String {
    let mut out = String::new();
    for segment in t.path()[1..].split('/') {
        out.push_str("//");
        escaped(&decode(segment), &mut out);
    }
    if let Some(query) = t.query() {
        out.push_str("?&");
        for (_, pair) in params(query) {
            let (name, value) = pair.split_once('=').expect("canonical pairs have a =");
            escaped(&decode(name), &mut out);
            out.push('=');
            escaped(&decode(value), &mut out);
            out.push_str("&&");
        }
    }
    out
}

/// What a canonical target in either form is: a fixed point, visible ASCII, a valid URI (the
/// origin is sent it as one), with no `.` or `..` segment. `data`'s form, if it has one.
fn canonical_in(data: &[u8], form: Form) -> Option<Target> {
    let t = target(data, form).ok()?;
    let text = t.as_str();
    assert_eq!(
        target(text.as_bytes(), form),
        Ok(t.clone()),
        "not a fixed point"
    );
    assert!(text.bytes().all(|b| b.is_ascii_graphic()), "{text:?}");
    assert!(http::Uri::try_from(text).is_ok(), "not a URI: {text:?}");
    for segment in t.path().split('/') {
        assert!(segment != "." && segment != "..", "{text:?}");
    }
    Some(t)
}

fuzz_target!(|data: &[u8]| {
    canonical_in(data, Form::Rfc3986);
    let Some(t) = canonical_in(data, Form::Wsgi) else {
        return;
    };
    let text = t.as_str();
    let path = t.path();
    assert!(path.starts_with('/'), "{text:?}");
    assert!(!path.contains("//"), "{text:?}");
    for segment in decode(path).split('/') {
        assert!(segment != "." && segment != "..", "{text:?}");
    }
    if let Some(query) = t.query() {
        assert!(!query.is_empty(), "a bare ? kept: {text:?}");
        for (name, pair) in params(query) {
            assert!(pair.contains('='), "{text:?}");
            assert!(pair.starts_with(name));
        }
    }

    let other = respelled(&t);
    assert_eq!(
        target(other.as_bytes(), Form::Wsgi),
        Ok(t.clone()),
        "another spelling has another form: {other:?}"
    );

    let key = primary_key(path, t.query(), &QueryKey::All);
    let rest = &key["GET ".len() + path.len()..];
    let key_query = rest.strip_prefix('?');
    assert_eq!(primary_key(path, key_query, &QueryKey::All), key);
});
