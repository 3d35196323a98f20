//! Examples of each rule, and properties over generated spellings (proptest).

use std::path::Path;

use http::Method;
use proptest::prelude::*;

use super::*;

/// The WSGI form, which most tests here are about.
fn target(raw: &[u8]) -> Result<Target, Rejection> {
    super::target(raw, Form::Wsgi)
}

fn apply(req: &mut RequestHeader) -> Result<(), Rejection> {
    super::apply(req, Form::Wsgi)
}

fn canon(raw: &str) -> Result<String, Rejection> {
    target(raw.as_bytes()).map(|t| t.as_str().to_owned())
}

/// The RFC 3986 form.
fn rfc(raw: &str) -> Result<String, Rejection> {
    super::target(raw.as_bytes(), Form::Rfc3986).map(|t| t.as_str().to_owned())
}

#[test]
fn rfc3986_form_keeps_what_such_an_origin_may_tell_apart() {
    for kept in [
        "/api/projects/group%2Fproject",
        "/a//b/",
        "//x",
        "/a;v=1/b",
        "/p?q=a+b",
        "/p?a=1;b=2",
        "/p?a=b=c&&d",
        "/p?",
        "/p?x=%2F%3D%26%2B",
        "/latin/%E9",
        "/p?q=%FF",
    ] {
        assert_eq!(rfc(kept).as_deref(), Ok(kept), "{kept}");
    }
}

#[test]
fn rfc3986_form_normalises_escapes_and_nothing_else() {
    assert_eq!(rfc("/api/v2/%68ealth").as_deref(), Ok("/api/v2/health"));
    assert_eq!(rfc("/%7e%2D%5f%2e1?%61=%62").as_deref(), Ok("/~-_.1?a=b"));
    assert_eq!(rfc("/a%2fb?x=%2b").as_deref(), Ok("/a%2Fb?x=%2B"));
    assert_eq!(rfc("/a%c3%a9").as_deref(), Ok("/a%C3%A9"));
    // Characters a URI may not carry literally are escaped, as browsers do.
    assert_eq!(
        rfc("/a|b\\c?d=\"e\"").as_deref(),
        Ok("/a%7Cb%5Cc?d=%22e%22")
    );
    assert_eq!(rfc("/p#frag").as_deref(), Ok("/p"));
    let t = super::target(b"/a%2Fb?x=1", Form::Rfc3986).expect("canonical");
    assert_eq!((t.path(), t.query()), ("/a%2Fb", Some("x=1")));
    let t = super::target(b"/a?", Form::Rfc3986).expect("canonical");
    assert_eq!((t.path(), t.query()), ("/a", None));
}

#[test]
fn rfc3986_form_refuses_what_the_wsgi_form_refuses() {
    for (raw, why) in [
        ("/a/../b", Rejection::DotSegment),
        ("/a/%2e%2E/b", Rejection::DotSegment),
        ("/./b", Rejection::DotSegment),
        ("/a/.", Rejection::DotSegment),
        ("/a%zz", Rejection::MalformedEscape),
        ("/a%4", Rejection::MalformedEscape),
        ("/p?a=%", Rejection::MalformedEscape),
        ("/a%00", Rejection::ControlCharacter),
        ("/a%0Ab", Rejection::ControlCharacter),
        ("/a%7F", Rejection::ControlCharacter),
        ("/p?a=%00", Rejection::ControlCharacter),
        ("/a b", Rejection::RawByte),
        ("*", Rejection::NotOriginForm),
    ] {
        assert_eq!(rfc(raw), Err(why), "{raw}");
    }
    // Not dot segments: `.` within a segment, and a `..` joined to the next by `%2F`.
    assert_eq!(rfc("/a/..b/.c").as_deref(), Ok("/a/..b/.c"));
    assert_eq!(rfc("/a/..%2Fb").as_deref(), Ok("/a/..%2Fb"));
    // A control character in a query is the origin's to read, NUL aside.
    assert_eq!(rfc("/p?a=%0A").as_deref(), Ok("/p?a=%0A"));
}

#[test]
fn apply_rewrites_in_the_form_asked_for() {
    let mut req = RequestHeader::build(Method::GET, b"/a%2fb//c?q=a+b", None).expect("request");
    super::apply(&mut req, Form::Rfc3986).expect("canonical");
    assert_eq!(req.uri.to_string(), "/a%2Fb//c?q=a+b");
    super::apply(&mut req, Form::Wsgi).expect("canonical");
    assert_eq!(req.uri.to_string(), "/a/b/c?q=a%20b");
}

#[test]
fn unreserved_escapes_are_decoded() {
    assert_eq!(canon("/api/v2/%68ealth").as_deref(), Ok("/api/v2/health"));
    assert_eq!(
        canon("/api/knit-orders/%67%65nerate").as_deref(),
        Ok("/api/knit-orders/generate")
    );
    assert_eq!(canon("/%7e%2D%5f%2e1").as_deref(), Ok("/~-_.1"));
}

#[test]
fn apply_reduces_absolute_form_and_rewrites_only_what_is_not_canonical() {
    let mut req =
        RequestHeader::build(Method::GET, b"http://erp.example/api/x?a=1", None).expect("request");
    apply(&mut req).expect("canonical");
    assert_eq!(
        req.uri.to_string(),
        "/api/x?a=1",
        "the authority is not the ERP's to see"
    );
    // What is written on the ERP's request line, which pingora keeps verbatim otherwise.
    assert_eq!(req.raw_path(), b"/api/x?a=1");
    let mut req = RequestHeader::build(Method::GET, b"/api/%78?a=1", None).expect("request");
    apply(&mut req).expect("canonical");
    assert_eq!(req.uri.to_string(), "/api/x?a=1");
    let mut req = RequestHeader::build(Method::GET, b"/api/../x", None).expect("request");
    assert_eq!(apply(&mut req), Err(Rejection::DotSegment));
}

#[test]
fn targets_and_rejections_read_as_they_display() {
    let t = target(b"/a/%62?x=1").expect("canonical");
    assert_eq!(t.to_string(), "/a/b?x=1");
    assert_eq!(t.to_string(), t.as_str());
    let all = [
        Rejection::NotOriginForm,
        Rejection::MalformedEscape,
        Rejection::InvalidUtf8,
        Rejection::ControlCharacter,
        Rejection::DotSegment,
        Rejection::RawByte,
    ];
    let reasons: std::collections::HashSet<&str> = all.iter().map(|r| r.reason()).collect();
    assert_eq!(
        reasons.len(),
        all.len(),
        "each rejection says its own reason"
    );
    for r in all {
        assert_eq!(r.to_string(), r.reason());
        assert!(
            r.reason().contains("URL")
                || r.reason().contains("path")
                || r.reason().contains("target"),
            "{r:?}"
        );
    }
}

#[test]
fn other_characters_get_one_spelling() {
    // Werkzeug decodes every escape, so `%21` and `!` are the same path to the ERP.
    assert_eq!(canon("/a%21b").as_deref(), Ok("/a!b"));
    assert_eq!(canon("/a!b").as_deref(), Ok("/a!b"));
    assert_eq!(canon("/a%3fb%23c%25").as_deref(), Ok("/a%3Fb%23c%25"));
    assert_eq!(canon("/caf%c3%a9").as_deref(), Ok("/caf%C3%A9"));
    assert_eq!(canon("/a%20b").as_deref(), Ok("/a%20b"));
    assert_eq!(
        canon("/a+b").as_deref(),
        Ok("/a+b"),
        "+ is no space in a path"
    );
    assert_eq!(canon("/a%2Bb").as_deref(), Ok("/a+b"));
    assert_eq!(canon("/a{b}").as_deref(), Ok("/a%7Bb%7D"));
}

#[test]
fn encoded_slash_is_a_slash_and_slashes_merge() {
    assert_eq!(
        canon("/api%2Fknit-orders").as_deref(),
        Ok("/api/knit-orders")
    );
    assert_eq!(canon("//api//x///").as_deref(), Ok("/api/x/"));
    assert_eq!(canon("/").as_deref(), Ok("/"));
    assert_eq!(canon("//").as_deref(), Ok("/"));
    assert_eq!(
        canon("/a/").as_deref(),
        Ok("/a/"),
        "a trailing slash is kept"
    );
}

#[test]
fn dot_segments_are_refused_however_spelled() {
    for raw in [
        "/a/../b",
        "/a/./b",
        "/..",
        "/a/.",
        "/a/%2e%2e/b",
        "/a/%2E./b",
        "/a/..%2Fb",
        "/a%2F..%2Fb",
    ] {
        assert_eq!(canon(raw), Err(Rejection::DotSegment), "{raw}");
    }
    assert_eq!(canon("/.well-known/x").as_deref(), Ok("/.well-known/x"));
    assert_eq!(canon("/a/.../b").as_deref(), Ok("/a/.../b"));
    assert_eq!(canon("/a/..b").as_deref(), Ok("/a/..b"));
}

#[test]
fn malformed_and_dangerous_escapes_are_refused() {
    assert_eq!(canon("/a%zz"), Err(Rejection::MalformedEscape));
    assert_eq!(canon("/a%4"), Err(Rejection::MalformedEscape));
    assert_eq!(canon("/a%"), Err(Rejection::MalformedEscape));
    assert_eq!(canon("/a?x=%g1"), Err(Rejection::MalformedEscape));
    assert_eq!(canon("/a%00b"), Err(Rejection::ControlCharacter));
    assert_eq!(canon("/a%0Ab"), Err(Rejection::ControlCharacter));
    assert_eq!(canon("/a?x=%00"), Err(Rejection::ControlCharacter));
    assert_eq!(canon("/a%ff"), Err(Rejection::InvalidUtf8));
    assert_eq!(canon("/a%C3"), Err(Rejection::InvalidUtf8));
    assert_eq!(canon("/a?%ff=1"), Err(Rejection::InvalidUtf8));
    assert_eq!(target(b"/a\xc3\xa9"), Err(Rejection::RawByte));
    assert_eq!(target(b"/a b"), Err(Rejection::RawByte));
    assert_eq!(target(b"/a\tb"), Err(Rejection::ControlCharacter));
    assert_eq!(canon("*"), Err(Rejection::NotOriginForm));
    assert_eq!(canon(""), Err(Rejection::NotOriginForm));
    assert_eq!(canon("http://h/a"), Err(Rejection::NotOriginForm));
}

#[test]
fn query_is_decoded_as_the_erp_reads_it() {
    assert_eq!(canon("/p?vi%65w=evil").as_deref(), Ok("/p?view=evil"));
    assert_eq!(canon("/p?a=x+y").as_deref(), Ok("/p?a=x%20y"));
    assert_eq!(canon("/p?a=x%20y").as_deref(), Ok("/p?a=x%20y"));
    assert_eq!(canon("/p?a=x%2By").as_deref(), Ok("/p?a=x%2By"));
    assert_eq!(canon("/p?a=b=c").as_deref(), Ok("/p?a=b%3Dc"));
    assert_eq!(canon("/p?a=%26").as_deref(), Ok("/p?a=%26"));
    assert_eq!(canon("/p?flag").as_deref(), Ok("/p?flag="));
    assert_eq!(canon("/p?a=1;b=2").as_deref(), Ok("/p?a=1%3Bb%3D2"));
    assert_eq!(canon("/p?&&a=1&&").as_deref(), Ok("/p?a=1"));
    assert_eq!(canon("/p?").as_deref(), Ok("/p"));
    assert_eq!(canon("/p?&").as_deref(), Ok("/p"));
    assert_eq!(canon("/p?x=/a?b:c@d").as_deref(), Ok("/p?x=/a?b:c@d"));
    assert_eq!(canon("/p#frag").as_deref(), Ok("/p"));
}

#[test]
fn parameter_order_is_kept() {
    assert_eq!(canon("/p?x=2&x=1").as_deref(), Ok("/p?x=2&x=1"));
    assert_eq!(canon("/p?b=1&a=2").as_deref(), Ok("/p?b=1&a=2"));
}

#[test]
fn parts_and_params() {
    let t = target(b"/p/q?a=1&b&c=%20").expect("canonical");
    assert_eq!(t.path(), "/p/q");
    assert_eq!(t.query(), Some("a=1&b=&c=%20"));
    let names: Vec<&str> = params(t.query().unwrap_or_default())
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(target(b"/p").expect("canonical").query(), None);
    assert_eq!(decode("/caf%C3%A9/%3F"), "/café/?");
    assert_eq!(decode("/plain"), "/plain");
}

#[test]
fn apply_rewrites_only_what_is_not_canonical() {
    let mut req = RequestHeader::build("GET", b"/api/v2/%68ealth?b=1", None).expect("req");
    apply(&mut req).expect("canonical");
    assert_eq!(req.raw_path(), b"/api/v2/health?b=1");
    assert_eq!(req.uri.path(), "/api/v2/health");

    let mut req = RequestHeader::build("GET", b"http://evil.example/a%62", None).expect("req");
    apply(&mut req).expect("canonical");
    assert_eq!(req.raw_path(), b"/ab", "absolute-form becomes origin-form");

    let mut req = RequestHeader::build("GET", b"/a/../b", None).expect("req");
    assert_eq!(apply(&mut req), Err(Rejection::DotSegment));
}

#[test]
fn routes_match_the_decoded_path() {
    // Characters that stay escaped in the canonical form are still matched as the ERP sees them.
    let yaml = "upstream: { address: \"127.0.0.1:5007\" }\nroutes:\n  - name: q\n    pattern: \"/q/[^%]+\"\n    ttl_secs: 60\n";
    let config = crate::config::parse(yaml, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    let t = target(b"/q/a%3fb").expect("canonical");
    assert_eq!(t.path(), "/q/a%3Fb");
    assert_eq!(
        config.route_for(&Method::GET, t.path()).map(|(i, _)| i),
        Some(0)
    );
    assert_eq!(
        config.route_for(&Method::POST, t.path()).map(|(i, _)| i),
        Some(0)
    );
}

// ---- properties ----

/// Python's `urllib.parse.unquote` (what Werkzeug's server applies to the path): valid escapes
/// decoded, malformed ones kept literally, invalid UTF-8 replaced; then Werkzeug's router merges
/// runs of slashes. Written independently of the code under test, as the reference.
fn werkzeug_path(raw: &str) -> String {
    let path = raw.split(['?', '#']).next().unwrap_or_default();
    let bytes = path.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes.get(i + 1..i + 3).and_then(|h| {
            std::str::from_utf8(h)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        });
        match (bytes[i], escape) {
            (b'%', Some(b)) if bytes[i + 1] != b'+' && bytes[i + 1] != b'-' => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    let decoded = String::from_utf8_lossy(&out);
    let mut merged = String::new();
    for c in decoded.chars() {
        if !(c == '/' && merged.ends_with('/')) {
            merged.push(c);
        }
    }
    merged
}

/// Characters of a path segment or query text, weighted towards the interesting ones.
fn text_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range('a', 'z'),
        1 => proptest::char::range('A', 'Z'),
        1 => proptest::char::range('0', '9'),
        3 => proptest::sample::select(vec![
            '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '@',
            '%', '?', '#', ' ', '"', '<', '>', '[', ']', '\\', '^', '`', '{', '|', '}', '/',
        ]),
        1 => proptest::sample::select(vec!['é', 'ü', '☃', '𝄞', 'ß']),
    ]
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(text_char(), 0..max).prop_map(|cs| cs.into_iter().collect())
}

/// A decoded path segment: no `/`, never `.` or `..`, not empty.
fn segment() -> impl Strategy<Value = String> {
    text(8)
        .prop_map(|s| s.replace('/', ""))
        .prop_filter("a real segment", |s| !s.is_empty() && s != "." && s != "..")
}

/// One way to write `c` in a request target. `must` says it cannot appear literally there.
fn spell_char(c: char, must: bool, choice: u8, out: &mut String) {
    let literal_ok = c.is_ascii_graphic() && !must && !matches!(c, '%' | '?' | '#');
    if literal_ok && !choice.is_multiple_of(3) {
        out.push(c);
        return;
    }
    let mut buf = [0; 4];
    for &b in c.encode_utf8(&mut buf).as_bytes() {
        let hex = format!("{b:02X}");
        // Either case of each hex digit names the same octet.
        let hex = if choice.is_multiple_of(2) {
            hex.to_ascii_lowercase()
        } else {
            hex
        };
        out.push('%');
        out.push_str(&hex);
    }
}

/// Some spelling of the path made of `segments`, with `extra` slashes sprinkled in.
fn spell_path(segments: &[String], choices: &[u8], extra: &[bool]) -> String {
    let mut out = String::new();
    let mut k = 0;
    for (i, seg) in segments.iter().enumerate() {
        out.push('/');
        if extra.get(i).copied().unwrap_or(false) {
            out.push('/');
        }
        for c in seg.chars() {
            spell_char(c, false, choices[k % choices.len()], &mut out);
            k += 1;
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Some spelling of `params` as a query: separators and `+` always escaped, spaces as `+` or
/// `%20`, empty pieces sprinkled in.
fn spell_query(params: &[(String, String)], choices: &[u8]) -> String {
    let mut out = String::new();
    let mut k = 0;
    for (name, value) in params {
        if choices[k % choices.len()].is_multiple_of(5) {
            out.push('&');
        }
        if !out.is_empty() {
            out.push('&');
        }
        for (i, part) in [name, value].into_iter().enumerate() {
            if i == 1 {
                out.push('=');
            }
            for c in part.chars() {
                let choice = choices[k % choices.len()];
                k += 1;
                if c == ' ' && choice.is_multiple_of(2) {
                    out.push('+');
                } else {
                    spell_char(c, matches!(c, '&' | '=' | '+' | ' '), choice, &mut out);
                }
            }
        }
    }
    out
}

/// Bytes biased towards escapes, dots, slashes and separators.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let alphabet: Vec<u8> = b"/./%2eEfF0aA+&=?#;: \x00\xc3\xa9zx~".to_vec();
    proptest::collection::vec(proptest::sample::select(alphabet), 0..24).prop_map(|mut v| {
        v.insert(0, b'/');
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = target(&bytes);
        let _ = super::target(&bytes, Form::Rfc3986);
    }

    #[test]
    fn rfc3986_form_is_idempotent_and_a_uri(raw in hostile_bytes()) {
        if let Ok(t) = super::target(&raw, Form::Rfc3986) {
            prop_assert_eq!(super::target(t.as_str().as_bytes(), Form::Rfc3986), Ok(t.clone()));
            let uri = http::Uri::try_from(t.as_str()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(uri.path(), t.path());
            // Nothing but unreserved escapes is decoded: decoding both spellings gives the same.
            let decoded = |s: &[u8]| percent_decode(s.split(|&b| b == b'#').next().unwrap_or_default());
            prop_assert_eq!(decoded(&raw).ok(), decoded(t.as_str().as_bytes()).ok());
        }
    }

    #[test]
    fn idempotent(raw in hostile_bytes()) {
        if let Ok(t) = target(&raw) {
            prop_assert_eq!(target(t.as_str().as_bytes()), Ok(t.clone()));
            // And it is a valid URI that round-trips.
            let uri = http::Uri::try_from(t.as_str()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(uri.path_and_query().map(|pq| pq.as_str()), Some(t.as_str()));
        }
    }

    #[test]
    fn every_spelling_of_a_path_is_one_form(
        segments in proptest::collection::vec(segment(), 0..5),
        a in proptest::collection::vec(any::<u8>(), 1..16),
        b in proptest::collection::vec(any::<u8>(), 1..16),
        extra_a in proptest::collection::vec(any::<bool>(), 5),
        extra_b in proptest::collection::vec(any::<bool>(), 5),
        trailing in any::<bool>(),
    ) {
        let mut one = spell_path(&segments, &a, &extra_a);
        let mut two = spell_path(&segments, &b, &extra_b);
        if trailing && !segments.is_empty() {
            one.push('/');
            two.push_str("//");
        }
        let t1 = target(one.as_bytes());
        prop_assert!(t1.is_ok(), "{one}: {t1:?}");
        prop_assert_eq!(&t1, &target(two.as_bytes()), "{} vs {}", one, two);
        let mut decoded = format!("/{}", segments.join("/"));
        if trailing && !segments.is_empty() {
            decoded.push('/');
        }
        let t1 = t1.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decode(t1.path()), decoded);
    }

    #[test]
    fn every_spelling_of_a_query_is_one_form(
        params in proptest::collection::vec((text(6), text(6)), 0..5),
        a in proptest::collection::vec(any::<u8>(), 1..16),
        b in proptest::collection::vec(any::<u8>(), 1..16),
    ) {
        let one = format!("/p?{}", spell_query(&params, &a));
        let two = format!("/p?{}", spell_query(&params, &b));
        let t1 = target(one.as_bytes());
        prop_assert!(t1.is_ok(), "{one}: {t1:?}");
        prop_assert_eq!(&t1, &target(two.as_bytes()), "{} vs {}", one, two);
        let t1 = t1.map_err(|e| TestCaseError::fail(e.to_string()))?;
        // The parameters, decoded, are the ones spelled, in their order.
        prop_assert_eq!(params_of(t1.query()), params);
    }

    #[test]
    fn the_path_decodes_as_werkzeug_decodes_it(raw in hostile_bytes()) {
        let Ok(text) = std::str::from_utf8(&raw) else { return Ok(()) };
        if let Ok(t) = target(&raw) {
            prop_assert_eq!(decode(t.path()), werkzeug_path(text));
        }
    }

    #[test]
    fn routing_follows_werkzeug(
        segments in proptest::collection::vec(proptest::sample::select(vec![
            "api", "v2", "health", "knit-orders", "generate", "reload-data", "admin", "static",
            "ai", "yarn-forecast", "a b", "x?y", "é", "%", "backtest", "v2-x",
        ]), 1..5),
        choices in proptest::collection::vec(any::<u8>(), 1..16),
        extra in proptest::collection::vec(any::<bool>(), 5),
    ) {
        let config = shipped();
        let segments: Vec<String> = segments.into_iter().map(str::to_owned).collect();
        let raw = spell_path(&segments, &choices, &extra);
        let t = target(raw.as_bytes()).map_err(|e| TestCaseError::fail(format!("{raw}: {e}")))?;
        let erp_path = werkzeug_path(&raw);
        for m in [Method::GET, Method::POST] {
            let knitcache = config.route_for(&m, t.path()).map(|(i, _)| i);
            let erp = config.routes.iter().position(|r| r.matches(&m, &erp_path));
            prop_assert_eq!(knitcache, erp, "{} {} (ERP sees {})", m, raw, erp_path);
        }
    }
}

fn params_of(query: Option<&str>) -> Vec<(String, String)> {
    params(query.unwrap_or_default())
        .map(|(name, pair)| {
            let value = pair.split_once('=').map_or("", |(_, v)| v);
            (decode(name).into_owned(), decode(value).into_owned())
        })
        .collect()
}

fn shipped() -> &'static crate::config::Config {
    static SHIPPED: std::sync::LazyLock<crate::config::Config> = std::sync::LazyLock::new(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/knitcache.yaml");
        crate::config::load(&path).unwrap_or_else(|e| panic!("{e}"))
    });
    &SHIPPED
}
