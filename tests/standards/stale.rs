//! Serving stale responses (RFC 9111 §4.2.4, RFC 5861): only where the origin's
//! `stale-while-revalidate`/`stale-if-error` or, when it says nothing, the route's windows allow
//! it; never with `must-revalidate`, `proxy-revalidate`, `s-maxage` or `no-cache`.

use crate::*;

/// `v1` with `cc`, then whatever `later` answers (n = 1, 2, ...).
fn first_then(
    rig: &Rig,
    path: &str,
    cc: &'static str,
    later: impl Fn(usize) -> Reply + Send + Sync + 'static,
) {
    rig.origin.on(path, move |_, n| {
        if n == 0 {
            Reply::ok("v1").header("cache-control", cc)
        } else {
            later(n)
        }
    });
}

// RFC 5861 §3: "stale-while-revalidate ... indicates that caches MAY serve the response in
// which it appears after it becomes stale, up to the indicated number of seconds", while one
// background request refreshes it.
#[tokio::test(flavor = "multi_thread")]
async fn origin_stale_while_revalidate_serves_stale_and_refreshes_once() {
    let rig = Rig::std(&[]).await;
    first_then(
        &rig,
        "/sl/swr",
        "max-age=1, stale-while-revalidate=30",
        |n| Reply::ok(format!("v{}", n + 1)).header("cache-control", "max-age=60"),
    );
    rig.get("/sl/swr").await;
    sleep_ms(2100).await;
    let stale = rig.get("/sl/swr").await;
    assert_eq!(stale.text(), "v1", "the stale copy, at once");
    assert!(
        stale
            .cache_status()
            .contains("detail=stale-while-revalidate"),
        "{}",
        stale.cache_status()
    );
    rig.until_count("/sl/swr", 2).await;
    sleep_ms(200).await;
    let fresh = rig.get("/sl/swr").await;
    assert_eq!(fresh.text(), "v2", "refreshed in the background");
    assert_hit(&fresh, "the refresh was stored");
    assert_eq!(rig.count("/sl/swr"), 2);
}

// RFC 5861 §3: several stale requests inside the window trigger one refresh between them.
#[tokio::test(flavor = "multi_thread")]
async fn stale_while_revalidate_sends_one_refresh_for_many_requests() {
    let rig = Rig::std(&[]).await;
    first_then(
        &rig,
        "/sl/swr-once",
        "max-age=1, stale-while-revalidate=30",
        |n| {
            Reply::ok(format!("v{}", n + 1))
                .header("cache-control", "max-age=60")
                .delay(std::time::Duration::from_millis(300))
        },
    );
    rig.get("/sl/swr-once").await;
    sleep_ms(2100).await;
    let (a, b, c) = tokio::join!(
        rig.get("/sl/swr-once"),
        rig.get("/sl/swr-once"),
        rig.get("/sl/swr-once")
    );
    for r in [&a, &b, &c] {
        assert_eq!(r.text(), "v1", "{}", r.cache_status());
    }
    rig.until_count("/sl/swr-once", 2).await;
    sleep_ms(500).await;
    assert_eq!(rig.count("/sl/swr-once"), 2, "one background refresh");
}

// RFC 5861 §3: past the window the stale copy is not served: the client waits for the origin.
#[tokio::test(flavor = "multi_thread")]
async fn stale_while_revalidate_ends_with_its_window() {
    let rig = Rig::std(&[]).await;
    first_then(
        &rig,
        "/sl/swr-over",
        "max-age=1, stale-while-revalidate=1",
        |n| Reply::ok(format!("v{}", n + 1)),
    );
    rig.get("/sl/swr-over").await;
    sleep_ms(3100).await;
    assert_eq!(rig.get("/sl/swr-over").await.text(), "v2");
}

// RFC 5861 §4: "stale-if-error ... indicates that when an error is encountered, a cached stale
// response MAY be used to satisfy the request": a 500 after expiry gets the stale 200.
#[tokio::test(flavor = "multi_thread")]
async fn origin_stale_if_error_serves_stale_on_a_500() {
    let rig = Rig::std(&[]).await;
    first_then(&rig, "/sl/sie-500", "max-age=1, stale-if-error=60", |_| {
        Reply::status(500).body("broken")
    });
    rig.get("/sl/sie-500").await;
    sleep_ms(2100).await;
    let r = rig.get("/sl/sie-500").await;
    assert_eq!((r.status, r.text().as_str()), (200, "v1"));
    assert!(
        r.cache_status().contains("detail=stale-if-error"),
        "{}",
        r.cache_status()
    );
    assert_eq!(rig.count("/sl/sie-500"), 2, "the origin was asked first");
}

// RFC 5861 §4: a 503 is an error too.
#[tokio::test(flavor = "multi_thread")]
async fn origin_stale_if_error_serves_stale_on_a_503() {
    let rig = Rig::std(&[]).await;
    first_then(&rig, "/sl/sie-503", "max-age=1, stale-if-error=60", |_| {
        Reply::status(503)
    });
    rig.get("/sl/sie-503").await;
    sleep_ms(2100).await;
    let r = rig.get("/sl/sie-503").await;
    assert_eq!((r.status, r.text().as_str()), (200, "v1"));
    assert!(rig.count("/sl/sie-503") >= 2);
}

// RFC 5861 §4: a connection closed without an answer is an error (it would be a 502).
#[tokio::test(flavor = "multi_thread")]
async fn origin_stale_if_error_serves_stale_when_the_origin_hangs_up() {
    let rig = Rig::std(&[]).await;
    first_then(&rig, "/sl/sie-drop", "max-age=1, stale-if-error=60", |_| {
        Reply::drop()
    });
    rig.get("/sl/sie-drop").await;
    sleep_ms(2100).await;
    let r = rig.get("/sl/sie-drop").await;
    assert_eq!((r.status, r.text().as_str()), (200, "v1"));
    assert!(rig.count("/sl/sie-drop") >= 2);
}

// RFC 5861 §4: an error is "a 500, 502, 503, or 504": a 404 is an answer, not an error, and is
// passed on instead of the stale copy.
#[tokio::test(flavor = "multi_thread")]
async fn stale_if_error_does_not_hide_a_404() {
    let rig = Rig::std(&[]).await;
    first_then(&rig, "/sl/sie-404", "max-age=1, stale-if-error=60", |_| {
        Reply::status(404).body("gone")
    });
    rig.get("/sl/sie-404").await;
    sleep_ms(2100).await;
    assert_eq!(rig.get("/sl/sie-404").await.status, 404);
}

// RFC 5861 §4: past the stale-if-error window the error reaches the client.
#[tokio::test(flavor = "multi_thread")]
async fn stale_if_error_ends_with_its_window() {
    let rig = Rig::std(&[]).await;
    first_then(&rig, "/sl/sie-over", "max-age=1, stale-if-error=1", |_| {
        Reply::status(503)
    });
    rig.get("/sl/sie-over").await;
    sleep_ms(3100).await;
    assert!(rig.get("/sl/sie-over").await.status >= 500);
}

// The route's `stale_while_revalidate_secs` applies when the origin says nothing about it.
#[tokio::test(flavor = "multi_thread")]
async fn route_stale_while_revalidate_applies_when_the_origin_is_silent() {
    let rig = Rig::std(&["stale_while_revalidate_secs: 30"]).await;
    first_then(&rig, "/sl/route-swr", "max-age=1", |n| {
        Reply::ok(format!("v{}", n + 1)).header("cache-control", "max-age=60")
    });
    rig.get("/sl/route-swr").await;
    sleep_ms(2100).await;
    assert_eq!(rig.get("/sl/route-swr").await.text(), "v1", "stale at once");
    rig.until_count("/sl/route-swr", 2).await;
}

// The route's `stale_if_error_secs` applies when the origin says nothing about it.
#[tokio::test(flavor = "multi_thread")]
async fn route_stale_if_error_applies_when_the_origin_is_silent() {
    let rig = Rig::std(&["stale_if_error_secs: 60"]).await;
    first_then(&rig, "/sl/route-sie", "max-age=1", |_| Reply::status(502));
    rig.get("/sl/route-sie").await;
    sleep_ms(2100).await;
    let r = rig.get("/sl/route-sie").await;
    assert_eq!((r.status, r.text().as_str()), (200, "v1"));
}

// The origin's explicit stale-while-revalidate=0 is the origin saying something: the route's
// window does not apply.
#[tokio::test(flavor = "multi_thread")]
async fn origin_stale_while_revalidate_zero_wins_over_the_route() {
    let rig = Rig::std(&["stale_while_revalidate_secs: 30"]).await;
    first_then(
        &rig,
        "/sl/swr-zero",
        "max-age=1, stale-while-revalidate=0",
        |n| Reply::ok(format!("v{}", n + 1)),
    );
    rig.get("/sl/swr-zero").await;
    sleep_ms(2100).await;
    assert_eq!(rig.get("/sl/swr-zero").await.text(), "v2");
}

// §5.2.2.2: must-revalidate: "the cache MUST NOT use the response to satisfy any other request
// without forwarding it for validation" once stale: a failing origin gives the client an error,
// not the stale 200, even with a route stale-if-error window.
#[tokio::test(flavor = "multi_thread")]
async fn must_revalidate_forbids_stale_if_error() {
    let rig = Rig::std(&["stale_if_error_secs: 60"]).await;
    first_then(&rig, "/sl/mr-sie", "max-age=1, must-revalidate", |_| {
        Reply::status(503)
    });
    rig.get("/sl/mr-sie").await;
    sleep_ms(2100).await;
    let r = rig.get("/sl/mr-sie").await;
    assert!(r.status >= 500, "{} {}", r.status, r.text());
    assert_ne!(r.text(), "v1");
}

// §5.2.2.2: must-revalidate wins over the origin's own stale-if-error too (with a dropped
// connection as the failure).
#[tokio::test(flavor = "multi_thread")]
async fn must_revalidate_wins_over_the_origins_stale_if_error() {
    let rig = Rig::std(&[]).await;
    first_then(
        &rig,
        "/sl/mr-origin-sie",
        "max-age=1, must-revalidate, stale-if-error=60",
        |_| Reply::drop(),
    );
    rig.get("/sl/mr-origin-sie").await;
    sleep_ms(2100).await;
    let r = rig.get("/sl/mr-origin-sie").await;
    assert!(r.status >= 500, "{} {}", r.status, r.text());
}

// §5.2.2.2: must-revalidate forbids stale-while-revalidate as well: the client waits for the
// origin's current answer.
#[tokio::test(flavor = "multi_thread")]
async fn must_revalidate_forbids_stale_while_revalidate() {
    let rig = Rig::std(&["stale_while_revalidate_secs: 30"]).await;
    first_then(&rig, "/sl/mr-swr", "max-age=1, must-revalidate", |n| {
        Reply::ok(format!("v{}", n + 1))
    });
    rig.get("/sl/mr-swr").await;
    sleep_ms(2100).await;
    assert_eq!(rig.get("/sl/mr-swr").await.text(), "v2");
}

// §5.2.2.8: proxy-revalidate is must-revalidate for shared caches.
#[tokio::test(flavor = "multi_thread")]
async fn proxy_revalidate_forbids_stale_if_error() {
    let rig = Rig::std(&["stale_if_error_secs: 60"]).await;
    first_then(&rig, "/sl/pr-sie", "max-age=1, proxy-revalidate", |_| {
        Reply::status(500)
    });
    rig.get("/sl/pr-sie").await;
    sleep_ms(2100).await;
    assert!(rig.get("/sl/pr-sie").await.status >= 500);
}

// §5.2.2.10: s-maxage "also implies the semantics of the proxy-revalidate response directive".
#[tokio::test(flavor = "multi_thread")]
async fn s_maxage_forbids_stale_if_error() {
    let rig = Rig::std(&["stale_if_error_secs: 60"]).await;
    first_then(&rig, "/sl/smax-sie", "s-maxage=1", |_| Reply::status(503));
    rig.get("/sl/smax-sie").await;
    sleep_ms(2100).await;
    assert!(rig.get("/sl/smax-sie").await.status >= 500);
}

// §5.2.2.10: ... and stale-while-revalidate.
#[tokio::test(flavor = "multi_thread")]
async fn s_maxage_forbids_stale_while_revalidate() {
    let rig = Rig::std(&["stale_while_revalidate_secs: 30"]).await;
    first_then(&rig, "/sl/smax-swr", "s-maxage=1", |n| {
        Reply::ok(format!("v{}", n + 1))
    });
    rig.get("/sl/smax-swr").await;
    sleep_ms(2100).await;
    assert_eq!(rig.get("/sl/smax-swr").await.text(), "v2");
}

// §5.2.2.4: no-cache: never used without successful validation, so a failing origin is an
// error for the client, whatever the stale windows say.
#[tokio::test(flavor = "multi_thread")]
async fn no_cache_forbids_stale_if_error() {
    let rig = Rig::std(&["stale_if_error_secs: 60"]).await;
    rig.origin.on("/sl/nc-sie", |_, n| {
        if n == 0 {
            Reply::ok("v1")
                .header("etag", "\"n1\"")
                .header("cache-control", "max-age=60, no-cache, stale-if-error=60")
        } else {
            Reply::status(503)
        }
    });
    rig.get("/sl/nc-sie").await;
    let r = rig.get("/sl/nc-sie").await;
    assert!(r.status >= 500, "{} {}", r.status, r.text());
}

// §4.2.4: "A cache MUST NOT generate a stale response unless it is disconnected or doing so is
// explicitly permitted by the client or origin server": with no window at all (route 0, origin
// silent), an expired response is not served when the origin fails.
#[tokio::test(flavor = "multi_thread")]
async fn no_stale_window_means_no_stale_response() {
    let rig = Rig::std(&[]).await;
    first_then(&rig, "/sl/none", "max-age=1", |_| Reply::status(503));
    rig.get("/sl/none").await;
    sleep_ms(2100).await;
    assert!(rig.get("/sl/none").await.status >= 500);
}

// Route mode, `ttl_secs: 0`: stored but never fresh, so it serves only as a stale-if-error
// fallback; while the origin answers, every request reaches it.
#[tokio::test(flavor = "multi_thread")]
async fn route_ttl_zero_is_a_stale_if_error_fallback() {
    let rig = Rig::route_mode(&["ttl_secs: 0", "stale_if_error_secs: 60"]).await;
    rig.origin.on("/sl/ttl0", |_, n| match n {
        0 | 1 => Reply::ok(format!("v{}", n + 1)),
        _ => Reply::status(503),
    });
    assert_eq!(rig.get("/sl/ttl0").await.text(), "v1");
    let second = rig.get("/sl/ttl0").await;
    assert_eq!(second.text(), "v2", "never fresh: the origin is asked");
    let fallback = rig.get("/sl/ttl0").await;
    assert_eq!(
        (fallback.status, fallback.text().as_str()),
        (200, "v2"),
        "the origin failed: the stored copy is served"
    );
    assert_eq!(rig.count("/sl/ttl0"), 3);
}

// Route mode, `ttl_secs: 0` with a validator: every use is revalidated, and a 304 serves the
// stored body.
#[tokio::test(flavor = "multi_thread")]
async fn route_ttl_zero_revalidates_every_use() {
    let rig = Rig::route_mode(&["ttl_secs: 0"]).await;
    rig.origin.on("/sl/ttl0-etag", |req, _| {
        if req.header("if-none-match") == Some("\"e1\"") {
            Reply::status(304).header("etag", "\"e1\"")
        } else {
            Reply::ok("body").header("etag", "\"e1\"")
        }
    });
    rig.get("/sl/ttl0-etag").await;
    let again = rig.get("/sl/ttl0-etag").await;
    assert_eq!((again.status, again.text().as_str()), (200, "body"));
    let seen = rig.origin.requests("/sl/ttl0-etag");
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[1].header("if-none-match"),
        Some("\"e1\""),
        "a conditional request"
    );
}
