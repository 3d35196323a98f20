//! The two ways a fresh hit is written, through the real proxy in front of a real origin: a hit
//! from the memory tier goes straight to the client's socket (`proxy::fast_hit`), and one that
//! needs pingora-cache (a `Range` request) goes through pingora's hit path and writer. Whatever
//! header the origin sent, including the fields a hit sets itself (`Age`, `Accept-Ranges`,
//! `Cache-Status`, `Connection`, `Date`: nginx, Apache and Flask's `send_file` send some), the
//! direct path serves it, and both paths send the same bytes but for the clock. Which path
//! served each hit is read from `knitcache_cache_hits_total{path}`.

mod common;

use common::origin::{Origin, Reply, http_date};
use common::raw::{Raw, RawResponse};
use common::*;

const ROUTES: &str = "  - name: cached\n    prefix: /c/\n    ttl_secs: 60\n";

/// A path, the status the origin answers it with, and the header fields it sends.
type Case = (&'static str, u16, Vec<(String, String)>);

/// Stored header sets: each of the fields a hit sets, an nginx static file's own set, and all
/// of them at once with repeats.
fn matrix() -> Vec<Case> {
    let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    let now = http_date(0);
    let modified = http_date(-3600);
    vec![
        ("/c/plain", 200, h(&[("content-type", "text/plain")])),
        ("/c/accept-ranges", 200, h(&[("accept-ranges", "bytes")])),
        ("/c/age", 200, h(&[("age", "5")])),
        (
            "/c/cache-status",
            200,
            h(&[("cache-status", "upstream; hit")]),
        ),
        ("/c/connection", 200, h(&[("connection", "keep-alive")])),
        ("/c/date", 200, h(&[("date", &now), ("x-after", "1")])),
        (
            "/c/nginx",
            200,
            h(&[
                ("server", "nginx/1.22.1"),
                ("date", &now),
                ("content-type", "text/html"),
                ("last-modified", &modified),
                ("connection", "keep-alive"),
                ("etag", "\"6581a9c4-800\""),
                ("accept-ranges", "bytes"),
            ]),
        ),
        (
            "/c/all",
            200,
            h(&[
                ("x-before", "1"),
                ("cache-status", "upstream; hit"),
                ("age", "5"),
                ("accept-ranges", "none"),
                ("date", &now),
                ("cache-status", "edge; fwd=miss"),
                ("x-after", "2"),
            ]),
        ),
        // Not a 200: pingora's range filter leaves a stored `Accept-Ranges` as it is.
        (
            "/c/gone",
            404,
            h(&[("accept-ranges", "bytes"), ("date", &now)]),
        ),
    ]
}

/// The fields a hit sets: each must appear once in what it sends.
const SET_BY_A_HIT: [&str; 5] = ["age", "accept-ranges", "cache-status", "connection", "date"];

async fn setup() -> (Origin, TestProxy) {
    let origin = Origin::start().await;
    for (path, status, fields) in matrix() {
        let mut reply = Reply::status(status).body(format!("body of {path}").repeat(40));
        for (name, value) in &fields {
            reply = reply.header(name, value);
        }
        origin.always(path, reply);
    }
    let proxy = TestProxy::in_front_of_origin(origin.addr(), ROUTES);
    (origin, proxy)
}

/// `GET path` on a new connection, with `extra` header lines.
async fn raw_get(proxy: &TestProxy, path: &str, extra: &str) -> RawResponse {
    let mut c = Raw::connect(proxy.addrs.proxy).await;
    c.send(format!("GET {path} HTTP/1.1\r\nHost: erp\r\n{extra}\r\n").as_bytes())
        .await;
    c.response(false).await.expect("an answer")
}

fn hits(proxy: &TestProxy, path: &str) -> f64 {
    proxy
        .metrics
        .read("knitcache_cache_hits_total", ("path", path))
}

/// Waits until the hit just answered is counted for `path` (the count is taken after the
/// response is written).
async fn counted(proxy: &TestProxy, path: &str, expected: f64, what: &str) {
    eventually(&format!("{what}: {path} hits reach {expected}"), || {
        hits(proxy, path) == expected
    })
    .await;
}

/// `head` with what differs from one response to the next left out: the values of `Date` and
/// `Age`, and the seconds of freshness left in `Cache-Status`.
fn masked(head: &str) -> String {
    head.split("\r\n")
        .map(|line| match line.split_once(": ") {
            Some((name, _)) if name.eq_ignore_ascii_case("date") => format!("{name}: *"),
            Some((name, _)) if name.eq_ignore_ascii_case("age") => format!("{name}: *"),
            Some((name, value)) if name.eq_ignore_ascii_case("cache-status") => {
                let value: Vec<&str> = value
                    .split("; ")
                    .map(|p| if p.starts_with("ttl=") { "ttl=*" } else { p })
                    .collect();
                format!("{name}: {}", value.join("; "))
            }
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_stored_header_set_is_served_directly_with_the_bytes_pingoras_path_sends() {
    let (origin, proxy) = setup().await;
    let c = client();
    for (path, status, _) in matrix() {
        assert_eq!(
            get(&c, &proxy.url(path)).await.status,
            status,
            "{path}: miss"
        );
        let (direct_before, pingora_before) = (hits(&proxy, "direct"), hits(&proxy, "pingora"));

        let direct = raw_get(&proxy, path, "").await;
        assert!(
            direct
                .header("cache-status")
                .is_some_and(|v| v.contains("; hit")),
            "{path}: a hit\n{}",
            direct.head
        );
        counted(&proxy, "direct", direct_before + 1.0, path).await;

        // A range unit pingora does not know: its hit path answers with the whole response,
        // as the direct path would have.
        let by_pingora = raw_get(&proxy, path, "Range: items=0-1\r\n").await;
        counted(&proxy, "pingora", pingora_before + 1.0, path).await;
        assert_eq!(hits(&proxy, "direct"), direct_before + 1.0, "{path}");

        assert_eq!(
            masked(&direct.head),
            masked(&by_pingora.head),
            "{path}: the direct path's head differs from pingora's"
        );
        assert_eq!(direct.body, by_pingora.body, "{path}");
        assert_eq!(direct.status, status, "{path}");
        for name in SET_BY_A_HIT {
            let times = direct.headers.iter().filter(|(n, _)| n == name).count();
            assert_eq!(
                times, 1,
                "{path}: {name} sent {times} times\n{}",
                direct.head
            );
        }
        assert_eq!(origin.count(path), 1, "{path}: stored once, then hits");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn what_a_hit_sets_replaces_what_the_origin_said() {
    let (_origin, proxy) = setup().await;
    let c = client();
    assert_eq!(get(&c, &proxy.url("/c/all")).await.status, 200);
    let hit = raw_get(&proxy, "/c/all", "").await;
    counted(&proxy, "direct", 1.0, "/c/all").await;
    assert_eq!(hit.header("accept-ranges"), Some("bytes"), "{}", hit.head);
    let status = hit.header("cache-status").unwrap_or_default();
    assert!(status.starts_with("knitcache; hit; ttl="), "{}", hit.head);
    assert!(!hit.head.contains("upstream") && !hit.head.contains("edge"));
    assert_eq!(hit.header("connection"), Some("keep-alive"));
    // The route's TTL overrides the origin's freshness: Age counts from the store, not from
    // the origin's 5.
    assert_eq!(hit.header("age"), Some("0"), "{}", hit.head);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_304_from_the_memory_tier_goes_through_pingoras_writer() {
    let (_origin, proxy) = setup().await;
    let c = client();
    assert_eq!(get(&c, &proxy.url("/c/nginx")).await.status, 200);
    let hit = raw_get(&proxy, "/c/nginx", "If-None-Match: \"6581a9c4-800\"\r\n").await;
    assert_eq!(hit.status, 304, "{}", hit.head);
    counted(&proxy, "writer", 1.0, "/c/nginx").await;
    assert_eq!(hits(&proxy, "direct"), 0.0);
    assert_eq!(hits(&proxy, "pingora"), 0.0);
}

// RFC 9110 §9.3.2: a response to HEAD has no content. A body after a HEAD hit's head would be
// read as the start of the next response on the kept-alive connection.
#[tokio::test(flavor = "multi_thread")]
async fn a_head_hit_sends_no_body_and_the_connection_stays_in_step() {
    let (_origin, proxy) = setup().await;
    assert_eq!(get(&client(), &proxy.url("/c/all")).await.status, 200);
    let body = "body of /c/all".repeat(40);
    let mut c = Raw::connect(proxy.addrs.proxy).await;
    // The direct path, then pingora's (a range unit it does not know).
    for extra in ["", "Range: items=0-1\r\n"] {
        c.send(format!("HEAD /c/all HTTP/1.1\r\nHost: erp\r\n{extra}\r\n").as_bytes())
            .await;
        let head = c.response(true).await.expect("the HEAD's answer");
        assert_eq!(head.status, 200, "{}", head.head);
        c.send(b"GET /c/all HTTP/1.1\r\nHost: erp\r\n\r\n").await;
        let next = c.response(false).await.expect("the next answer");
        assert_eq!(next.status, 200, "after HEAD with {extra:?}: {}", next.head);
        assert_eq!(next.body, body.as_bytes());
    }
}
