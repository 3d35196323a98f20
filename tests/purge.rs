//! `POST /purge` against a real proxy and the simulator: who may purge, and that each kind of
//! purge really makes the next request go to the ERP (proven by the simulator's hit counter),
//! including a ban made before a restart.

mod common;

use std::io::Read;

use common::*;

const TOKEN: &str = "test-admin-token-0123456789";

const ROUTES: &str = r#"  - name: kpis
    exact: /api/comprehensive-kpis
    ttl_secs: 600
  - name: knit-orders
    exact: /api/knit-orders
    ttl_secs: 600
  - name: yarn
    prefix: /api/yarn-
    ttl_secs: 600
  - name: reload-data
    exact: /api/reload-data
    cache: false
"#;

fn yaml_with_token(sim: std::net::SocketAddr, dir: &std::path::Path) -> String {
    format!(
        "{}admin:\n  token: \"{TOKEN}\"\n",
        config_yaml(sim, dir, ROUTES)
    )
}

/// GETs `path` twice through the proxy: the second must be a hit.
async fn warm(c: &reqwest::Client, proxy: &TestProxy, path: &str) {
    get(c, &proxy.url(path)).await;
    let again = get(c, &proxy.url(path)).await;
    assert!(again.is_hit(), "{path} is cached: {}", again.cache_status());
}

#[tokio::test(flavor = "multi_thread")]
async fn url_purge_needs_the_token_and_removes_every_variant() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let proxy = TestProxy::start_yaml(&yaml_with_token(sim.addr(), &dir), &dir);
    let c = client();
    let url = "/api/knit-orders?b=2&a=1";
    // Two stored variants of one key: identity and gzip.
    warm(&c, &proxy, url).await;
    let gz = send(c.get(proxy.url(url)).header("accept-encoding", "gzip")).await;
    assert_eq!(gz.header("content-encoding"), "gzip");
    assert!(
        send(c.get(proxy.url(url)).header("accept-encoding", "gzip"))
            .await
            .is_hit()
    );
    assert_eq!(
        sim.hits("/api/knit-orders"),
        1,
        "one fill; the gzip variant was made from it"
    );

    let purge = proxy.admin_url("/purge");
    let body = r#"{"url": "/api/knit-orders?a=1&b=2"}"#;
    let none = post_json(&c, &purge, body, None).await;
    assert_eq!(none.status, 401, "{}", none.text());
    assert!(none.header("www-authenticate").starts_with("Bearer"));
    let wrong = post_json(&c, &purge, body, Some("not-the-token-at-all")).await;
    assert_eq!(
        (wrong.status, wrong.text().trim()),
        (401, "wrong admin token")
    );
    assert!(
        get(&c, &proxy.url(url)).await.is_hit(),
        "a refused purge purges nothing"
    );

    let done = post_json(&c, &purge, body, Some(TOKEN)).await;
    assert_eq!(done.status, 200, "{}", done.text());
    let done: serde_json::Value = serde_json::from_slice(&done.body).expect("JSON");
    assert_eq!(done["purged"], "url");
    assert_eq!(done["route"], "knit-orders");
    assert_eq!(done["key"], "GET /api/knit-orders?a=1&b=2");
    assert_eq!(done["removed"], 2, "both variants: {done}");

    let gz = send(c.get(proxy.url(url)).header("accept-encoding", "gzip")).await;
    assert!(
        gz.cache_status().contains("fwd=miss"),
        "the gzip variant is gone: {}",
        gz.cache_status()
    );
    // The identity variant is gone too: what is served now is made from the new gzip copy
    // (the ERP's body carries the time it was made), not the identity copy stored before.
    let after = get(&c, &proxy.url(url)).await;
    let mut refetched = Vec::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_end(&mut refetched)
        .expect("gzip");
    assert!(
        after.body == refetched,
        "identity made from the refetched copy"
    );
    assert_eq!(sim.hits("/api/knit-orders"), 2, "one fetch after the purge");

    let metrics = String::from_utf8_lossy(&proxy.metrics.render()).to_string();
    assert!(
        metrics.contains("knitcache_purges_total{kind=\"url\"} 1"),
        "purge counted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prefix_and_route_purges_ban_what_they_match_only() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let proxy = TestProxy::start_yaml(&yaml_with_token(sim.addr(), &dir), &dir);
    let c = client();
    for path in [
        "/api/comprehensive-kpis",
        "/api/knit-orders",
        "/api/yarn-data",
        "/api/yarn-inventory",
    ] {
        warm(&c, &proxy, path).await;
    }
    let purge = proxy.admin_url("/purge");

    let r = post_json(&c, &purge, r#"{"prefix": "/api/yarn"}"#, Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
    assert_eq!(
        (r["purged"].as_str(), r["persisted"].as_bool()),
        (Some("prefix"), Some(true)),
        "{r}"
    );
    for path in ["/api/yarn-data", "/api/yarn-inventory"] {
        let again = get(&c, &proxy.url(path)).await;
        assert!(
            again.cache_status().contains("fwd=miss"),
            "{path}: {}",
            again.cache_status()
        );
        assert_eq!(sim.hits(path), 2, "{path} went to the ERP once more");
        assert!(
            get(&c, &proxy.url(path)).await.is_hit(),
            "{path}: the refill is served again"
        );
    }
    assert!(
        get(&c, &proxy.url("/api/knit-orders")).await.is_hit(),
        "outside the prefix"
    );

    let r = post_json(&c, &purge, r#"{"route": "kpis"}"#, Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        get(&c, &proxy.url("/api/comprehensive-kpis"))
            .await
            .cache_status()
            .contains("fwd=miss")
    );
    assert_eq!(sim.hits("/api/comprehensive-kpis"), 2);
    assert!(
        get(&c, &proxy.url("/api/knit-orders")).await.is_hit(),
        "another route"
    );
    assert_eq!(sim.hits("/api/knit-orders"), 1);

    let doc = stats(&c, &proxy).await;
    assert_eq!(doc["cache"]["bans"], 2, "{}", doc["cache"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ban_survives_a_restart() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let yaml = yaml_with_token(sim.addr(), &dir);
    let c = client();

    let proxy = TestProxy::start_yaml(&yaml, &dir);
    warm(&c, &proxy, "/api/comprehensive-kpis").await;
    warm(&c, &proxy, "/api/knit-orders").await;
    let r = post_json(
        &c,
        &proxy.admin_url("/purge"),
        r#"{"route": "kpis"}"#,
        Some(TOKEN),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    proxy.stop(true);

    let proxy = TestProxy::start_yaml(&yaml, &dir);
    assert!(
        get(&c, &proxy.url("/api/knit-orders")).await.is_hit(),
        "unbanned entries come back from disk"
    );
    let kpis = get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    assert!(
        kpis.cache_status().contains("fwd=miss"),
        "the ban outlived the restart: {}",
        kpis.cache_status()
    );
    assert_eq!(sim.hits("/api/comprehensive-kpis"), 2);
    assert_eq!(sim.hits("/api/knit-orders"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_purges_get_a_status_and_a_reason() {
    let sim = start_sim(0.01).await;
    // No token configured: loopback clients may purge.
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();
    let purge = proxy.admin_url("/purge");
    let cases = [
        (r#"{"route": "nope"}"#, 404, "no route named \"nope\""),
        (r#"{"route": "reload-data"}"#, 400, "passes through"),
        (r#"{"url": "/api/reload-data"}"#, 400, "passes through"),
        (r#"{"url": "/not/routed"}"#, 400, "matches no route"),
        (r#"{"prefix": "api"}"#, 400, "must be a path"),
        (r#"{"url": "/a", "prefix": "/b"}"#, 400, "exactly one"),
        ("{", 400, "not a purge request"),
    ];
    for (body, status, reason) in cases {
        let r = post_json(&c, &purge, body, None).await;
        assert_eq!(r.status, status, "{body}: {}", r.text());
        assert!(r.text().contains(reason), "{body}: {}", r.text());
    }
    let ok = post_json(
        &c,
        &purge,
        r#"{"url": "http://erp:5006/api/comprehensive-kpis"}"#,
        None,
    )
    .await;
    assert_eq!(
        ok.status,
        200,
        "loopback may purge without a token: {}",
        ok.text()
    );
    let ok: serde_json::Value = serde_json::from_slice(&ok.body).expect("JSON");
    assert_eq!(ok["removed"], 0, "nothing was stored");
}

/// An origin whose first answer for any path streams: the head and the first half of the body
/// at once, the rest only when `release` is notified. Later answers are complete at once. The
/// body names the answer's number, so a client can tell the first copy from a refetch. A POST
/// gets `204` (a write the origin accepted); anything but `/slow/...` (the proxy's health probe)
/// a `404`.
async fn streaming_origin(
    release: std::sync::Arc<tokio::sync::Notify>,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind origin");
    let addr = listener.local_addr().expect("origin addr");
    let gets = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = gets.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (gets, release) = (counted.clone(), release.clone());
            tokio::spawn(async move {
                loop {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    if head.starts_with(b"POST ") {
                        // The test's writes carry no body.
                        let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
                        continue;
                    }
                    if !head.starts_with(b"GET /slow/") {
                        let _ = stream
                            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                            .await;
                        continue;
                    }
                    let n = gets.fetch_add(1, Ordering::SeqCst);
                    let body = format!("answer {n:04}");
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nCache-Control: max-age=600\r\n\r\n",
                        body.len()
                    );
                    let (first, rest) = body.split_at(body.len() / 2);
                    if stream.write_all(head.as_bytes()).await.is_err()
                        || stream.write_all(first.as_bytes()).await.is_err()
                    {
                        return;
                    }
                    if n == 0 {
                        release.notified().await;
                    }
                    if stream.write_all(rest.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, gets)
}

/// How a purge reaches the proxy in `a_purge_while_a_fill_streams_is_not_undone`.
#[derive(Clone, Copy, Debug)]
enum PurgeBy {
    /// `POST /purge {"url": ...}` on the admin port.
    Admin,
    /// A successful write to the URL through the proxy (RFC 9111 §4.4).
    Write,
}

/// A purge that arrives while a miss's body is still streaming from the origin finds nothing
/// stored yet; the fill, completing after it, must not then store the copy the purge retired.
async fn a_purge_while_a_fill_streams_is_not_undone(by: PurgeBy) {
    use std::sync::atomic::Ordering;
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let (origin, gets) = streaming_origin(release.clone()).await;
    let proxy = TestProxy::in_front_of_origin(
        origin,
        "  - name: slow\n    prefix: /slow\n    ttl_secs: 600\n",
    );
    let c = client();
    let url = proxy.url("/slow/report");

    // The client has the head: the proxy has it too, and the fill is under way.
    let first = c.get(&url).send().await.expect("first request");
    assert_eq!(first.status(), 200);
    let purged = match by {
        PurgeBy::Admin => {
            post_json(
                &c,
                &proxy.admin_url("/purge"),
                r#"{"url": "/slow/report"}"#,
                None,
            )
            .await
        }
        PurgeBy::Write => send(c.post(&url)).await,
    };
    assert!(
        (200..300).contains(&purged.status),
        "{by:?}: {} {}",
        purged.status,
        purged.text()
    );
    release.notify_one();
    let body = first.text().await.expect("first body");
    assert_eq!(body, "answer 0000");
    // The fill has ended (pingora counts it once the response is done), complete but purged.
    eventually_async("the first fill ended", || async {
        metric(
            &proxy,
            r#"knitcache_cache_fills_total{outcome="purged",route="slow"}"#,
        )
        .await
            >= 1.0
    })
    .await;
    assert_eq!(
        metric(
            &proxy,
            r#"knitcache_cache_fills_total{outcome="stored",route="slow"}"#
        )
        .await,
        0.0
    );

    let second = get(&c, &url).await;
    assert_eq!(
        (second.text().as_str(), gets.load(Ordering::SeqCst)),
        ("answer 0001", 2),
        "{by:?}: the copy purged while in flight was served again ({})",
        second.cache_status()
    );
    assert!(
        get(&c, &url).await.is_hit(),
        "the refetched copy is stored as usual"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_purge_while_a_fill_streams_is_not_undone_by_the_fill() {
    a_purge_while_a_fill_streams_is_not_undone(PurgeBy::Admin).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_while_a_fill_streams_is_not_undone_by_the_fill() {
    a_purge_while_a_fill_streams_is_not_undone(PurgeBy::Write).await;
}
