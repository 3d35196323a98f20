//! Hostile clients get nothing, through the real proxy: another spelling of a URL takes the
//! route, the key, the invalidation rule and the purge the ERP's own reading of it takes, and
//! what the ERP receives is that one form, with a `Host` and forwarding fields no client chose.
//! Each test is one attack; the origin reads requests as the ERP (Werkzeug) does: it
//! percent-decodes the path and the query (`werkzeug_*` below).

mod common;

use common::origin::{Origin, Reply, SeenRequest};
use common::*;

/// Python's `unquote` on the path (the WSGI server's `PATH_INFO`), for the origin's dispatch.
fn werkzeug_unquote(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], escape) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first value of query parameter `name` as Flask's `request.args.get(name)` reads it.
fn werkzeug_arg(req: &SeenRequest, name: &str) -> Option<String> {
    let query = req.uri.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        (werkzeug_unquote(n, true) == name).then(|| werkzeug_unquote(v, true))
    })
}

/// Sends `GET target` on a fresh connection, byte for byte (an HTTP library would resolve dot
/// segments first), and returns the status.
async fn raw_get_status(proxy: &TestProxy, target: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(proxy.addrs.proxy)
        .await
        .expect("connect");
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: knitcache\r\nConnection: close\r\n\r\n");
    s.write_all(&req).await.expect("write");
    let mut resp = Vec::new();
    tokio::time::timeout(TIMEOUT, s.read_to_end(&mut resp))
        .await
        .expect("answer in time")
        .expect("read");
    let line = String::from_utf8_lossy(&resp);
    line.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {line:?}"))
}

/// Requests the origin received whose path, decoded as Werkzeug decodes it, is `path`.
fn erp_requests(origin: &Origin, spellings: &[&str]) -> Vec<SeenRequest> {
    spellings.iter().flat_map(|s| origin.requests(s)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encoded_pass_through_path_is_not_cached() {
    let origin = Origin::start().await;
    let spellings = ["/api/v2/health", "/api/v2/%68ealth"];
    for s in spellings {
        origin.on(s, |_, n| Reply::ok(format!("healthy #{n}")));
    }
    let routes = r#"  - name: erp-health
    exact: /api/v2/health
    cache: false
  - name: v2-other
    prefix: /api/v2/
    ttl_secs: 60
"#;
    let proxy = TestProxy::in_front_of_origin(origin.addr(), routes);
    let c = client();
    for _ in 0..2 {
        let r = get(&c, &proxy.url("/api/v2/%68ealth")).await;
        assert_eq!(r.status, 200);
        assert!(!r.is_hit(), "a health probe is never answered from cache");
    }
    let seen = erp_requests(&origin, &spellings);
    assert_eq!(seen.len(), 2, "both probes reached the ERP");
    assert!(
        seen.iter().all(|r| r.uri == "/api/v2/health"),
        "the ERP received the canonical path: {:?}",
        seen.iter().map(|r| &r.uri).collect::<Vec<_>>()
    );
}

const ORDER_ROUTES: &str = r#"  - name: knit-orders
    exact: /api/knit-orders
    ttl_secs: 60
  - name: reload-data
    exact: /api/reload-data
    cache: false
"#;

const ORDER_RULES: &str = r#"invalidation:
  - name: knit-orders-generated
    exact: /api/knit-orders/generate
    purge: { routes: [knit-orders] }
  - name: data-reloaded
    exact: /api/reload-data
    methods: [GET, POST]
    purge: { everything: true }
"#;

/// An origin whose order list changes with every fetch, and whose writes succeed under any
/// spelling.
async fn order_origin() -> Origin {
    let origin = Origin::start().await;
    origin.on("/api/knit-orders", |_, n| Reply::ok(format!("orders v{n}")));
    for s in [
        "/api/knit-orders/generate",
        "/api/knit-orders/%67enerate",
        "/api/reload-data",
        "/api/reload-%64ata",
    ] {
        origin.always(s, Reply::ok("done"));
    }
    origin
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encoded_write_fires_its_invalidation_rule() {
    let origin = order_origin().await;
    let proxy = TestProxy::in_front_of_origin_with(origin.addr(), ORDER_RULES, ORDER_ROUTES);
    let c = client();
    assert_eq!(
        get(&c, &proxy.url("/api/knit-orders")).await.text(),
        "orders v0"
    );
    assert!(get(&c, &proxy.url("/api/knit-orders")).await.is_hit());

    let write = send(c.post(proxy.url("/api/knit-orders/%67enerate")).body("{}")).await;
    assert_eq!(write.status, 200);
    let writes = erp_requests(
        &origin,
        &["/api/knit-orders/generate", "/api/knit-orders/%67enerate"],
    );
    assert_eq!(writes.len(), 1, "the write reached the ERP");
    assert_eq!(writes[0].body, "{}", "body unchanged");
    let after = get(&c, &proxy.url("/api/knit-orders")).await;
    assert_eq!(
        after.text(),
        "orders v1",
        "the write purged the order list: {}",
        after.cache_status()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encoded_reload_purges_everything() {
    let origin = order_origin().await;
    let proxy = TestProxy::in_front_of_origin_with(origin.addr(), ORDER_RULES, ORDER_ROUTES);
    let c = client();
    get(&c, &proxy.url("/api/knit-orders")).await;
    assert!(get(&c, &proxy.url("/api/knit-orders")).await.is_hit());

    let reload = get(&c, &proxy.url("/api/reload-%64ata")).await;
    assert_eq!(reload.status, 200);
    let reloads = erp_requests(&origin, &["/api/reload-data", "/api/reload-%64ata"]);
    assert_eq!(reloads.len(), 1, "the reload reached the ERP");
    assert_eq!(
        get(&c, &proxy.url("/api/knit-orders")).await.text(),
        "orders v1",
        "the reload purged what was stored"
    );
    assert_eq!(reloads[0].uri, "/api/reload-data", "as the canonical path");
}

/// An origin that answers with the `view` parameter as the ERP reads it.
async fn view_origin() -> Origin {
    let origin = Origin::start().await;
    origin.on("/p", |req, _| {
        Reply::ok(werkzeug_arg(req, "view").unwrap_or_else(|| "default".to_owned()))
    });
    origin
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encoded_parameter_name_cannot_poison_the_shared_entry() {
    let origin = view_origin().await;
    let routes = r#"  - name: p
    exact: /p
    ttl_secs: 60
    query_key: { only: [view] }
"#;
    let proxy = TestProxy::in_front_of_origin(origin.addr(), routes);
    let c = client();
    let attack = get(&c, &proxy.url("/p?vi%65w=evil&_=1")).await;
    assert_eq!(attack.text(), "evil", "the ERP read view=evil");
    let victim = get(&c, &proxy.url("/p")).await;
    assert_eq!(
        victim.text(),
        "default",
        "the attacker's answer is keyed under view=evil, not under /p"
    );
    let same = get(&c, &proxy.url("/p?view=evil")).await;
    assert!(same.is_hit(), "view=evil however spelled is one entry");
    assert_eq!(same.text(), "evil");
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_parameters_keep_their_order() {
    let origin = Origin::start().await;
    origin.on("/p", |req, _| {
        Reply::ok(werkzeug_arg(req, "x").unwrap_or_default())
    });
    let routes = "  - name: p\n    exact: /p\n    ttl_secs: 60\n";
    let proxy = TestProxy::in_front_of_origin(origin.addr(), routes);
    let c = client();
    assert_eq!(get(&c, &proxy.url("/p?x=1&x=2")).await.text(), "1");
    assert_eq!(
        get(&c, &proxy.url("/p?x=2&x=1")).await.text(),
        "2",
        "the ERP reads the first x: another answer, another entry"
    );
    assert_eq!(origin.count("/p"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn plus_and_percent_twenty_are_one_entry() {
    let origin = Origin::start().await;
    origin.on("/p", |req, _| {
        Reply::ok(werkzeug_arg(req, "q").unwrap_or_default())
    });
    let routes = "  - name: p\n    exact: /p\n    ttl_secs: 60\n";
    let proxy = TestProxy::in_front_of_origin(origin.addr(), routes);
    let c = client();
    assert_eq!(get(&c, &proxy.url("/p?q=a+b")).await.text(), "a b");
    let again = get(&c, &proxy.url("/p?q=a%20b")).await;
    assert!(
        again.is_hit(),
        "q=a b, however spelled: {}",
        again.cache_status()
    );
    assert_eq!(
        origin.last("/p").uri,
        "/p?q=a%20b",
        "the ERP got the canonical query"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unanswerable_targets_are_refused_before_the_erp() {
    let origin = Origin::start().await;
    let routes = "  - name: p\n    prefix: /p/\n    ttl_secs: 60\n";
    let proxy = TestProxy::in_front_of_origin(origin.addr(), routes);
    for target in [
        "/p/%2e%2e/admin",
        "/p/a/../b",
        "/p/%zz",
        "/p/%00",
        "/p/%ff",
        "/p/x?y=%00",
    ] {
        let status = raw_get_status(&proxy, target.as_bytes()).await;
        assert_eq!(status, 400, "{target}");
    }
    for path in [
        "/p/%2e%2e/admin",
        "/admin",
        "/p/b",
        "/p/%zz",
        "/p/%00",
        "/p/%ff",
        "/p/x",
    ] {
        assert_eq!(origin.count(path), 0, "{path} never reached the ERP");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purge_hits_the_entry_however_the_url_is_spelled() {
    let origin = view_origin().await;
    let routes = r#"  - name: p
    exact: /p
    ttl_secs: 60
    query_key: { only: [view] }
"#;
    let proxy = TestProxy::in_front_of_origin(origin.addr(), routes);
    let c = client();
    get(&c, &proxy.url("/p?view=a")).await;
    assert!(get(&c, &proxy.url("/p?view=a")).await.is_hit());

    // The admin API, with another spelling of the same URL.
    let r = post_json(
        &c,
        &proxy.admin_url("/purge"),
        r#"{"url": "/%70?vi%65w=a&_=2"}"#,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let outcome: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(outcome["removed"], 1, "{outcome}");
    assert!(!get(&c, &proxy.url("/p?view=a")).await.is_hit());
    assert_eq!(origin.count("/p"), 2, "the purged entry was refetched");

    // PURGE on the proxy port, spelled another way again.
    assert!(get(&c, &proxy.url("/p?view=a")).await.is_hit());
    let r = send(c.request(
        reqwest::Method::from_bytes(b"PURGE").expect("method"),
        proxy.url("//%70?view=%61"),
    ))
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!get(&c, &proxy.url("/p?view=a")).await.is_hit());
    assert_eq!(origin.count("/p"), 3);

    // A URL with no canonical form was never stored: refused, saying why.
    let r = post_json(&c, &proxy.admin_url("/purge"), r#"{"url": "/p/%zz"}"#, None).await;
    assert_eq!(r.status, 400, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_invalidates_the_location_it_names_however_spelled() {
    let origin = Origin::start().await;
    origin.on("/api/orders/7", |_, n| Reply::ok(format!("order v{n}")));
    origin.always(
        "/api/orders",
        Reply::status(201).header("location", "/api/%6Frders//%37"),
    );
    let routes = "  - name: orders\n    prefix: /api/orders/\n    ttl_secs: 60\n";
    let proxy = TestProxy::in_front_of_origin(origin.addr(), routes);
    let c = client();
    get(&c, &proxy.url("/api/orders/7")).await;
    assert!(get(&c, &proxy.url("/api/orders/7")).await.is_hit());
    let created = send(c.post(proxy.url("/api/orders")).body("{}")).await;
    assert_eq!(created.status, 201);
    assert_eq!(
        get(&c, &proxy.url("/api/orders/7")).await.text(),
        "order v1",
        "the Location the write named was invalidated"
    );
}

/// An origin that builds an absolute URL from `Host`, as Flask's `url_for(_external=True)` does.
async fn reflecting_origin() -> Origin {
    let origin = Origin::start().await;
    origin.on("/p", |req, _| {
        Reply::ok(format!(
            "http://{}/next",
            req.header("host").unwrap_or("none")
        ))
    });
    origin
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_host_cannot_poison_the_shared_entry() {
    let origin = reflecting_origin().await;
    let routes = "  - name: p\n    exact: /p\n    ttl_secs: 60\n";
    let proxy = TestProxy::in_front_of_origin(origin.addr(), routes);
    let c = client();
    let erp = origin.addr().to_string();
    let attack = send(c.get(proxy.url("/p")).header("host", "evil.example")).await;
    assert_eq!(attack.status, 200);
    assert_eq!(
        origin.last("/p").header("host"),
        Some(erp.as_str()),
        "the ERP is sent its own address as Host"
    );
    let victim = get(&c, &proxy.url("/p")).await;
    assert!(
        !victim.text().contains("evil.example"),
        "what everyone gets names no host a client chose: {}",
        victim.text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_client_forges_no_forwarding_field() {
    let origin = Origin::start().await;
    origin.always("/w", Reply::ok("ok"));
    let proxy = TestProxy::in_front_of_origin(
        origin.addr(),
        "  - name: p\n    exact: /p\n    ttl_secs: 60\n",
    );
    let c = client();
    let r = send(
        c.post(proxy.url("/w"))
            .header("x-forwarded-for", "6.6.6.6")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "evil.example")
            .header("forwarded", "for=6.6.6.6;host=evil.example;proto=https")
            .body("x"),
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = origin.last("/w");
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), None);
    assert_eq!(seen.header("forwarded"), Some("for=127.0.0.1;proto=http"));
    assert_eq!(seen.body, "x", "the body is untouched");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxy_is_appended_to() {
    let origin = Origin::start().await;
    origin.always("/w", Reply::ok("ok"));
    let sections = "protection:\n  rate_limit:\n    enabled: true\n    requests_per_sec: 1000\n    burst: 1000\n    trusted_proxies: [\"127.0.0.1/32\"]\n";
    let proxy = TestProxy::in_front_of_origin_with(
        origin.addr(),
        sections,
        "  - name: p\n    exact: /p\n    ttl_secs: 60\n",
    );
    let c = client();
    let r = send(
        c.post(proxy.url("/w"))
            .header("x-forwarded-for", "198.51.100.7")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "erp.example")
            .header("forwarded", "for=198.51.100.7;proto=https")
            .body("x"),
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = origin.last("/w");
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("198.51.100.7, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("https, http"));
    assert_eq!(seen.header("x-forwarded-host"), Some("erp.example"));
    assert_eq!(
        seen.header("forwarded"),
        Some("for=198.51.100.7;proto=https, for=127.0.0.1;proto=http")
    );
}
