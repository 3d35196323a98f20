//! Caching through the real proxy: miss then hit, TTL expiry, query normalisation, HEAD,
//! ETag/304, byte ranges, what is never stored, the object-size cap, keep-alive and hop-by-hop headers.
//! Caching is proven by the simulator's request counters, not by headers alone.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use erp_sim::ScriptedResponse;

const ROUTES: &str = r#"  - name: kpis
    exact: /api/comprehensive-kpis
    ttl_secs: 60
  - name: short
    prefix: /t/short/
    ttl_secs: 1
    stale_while_revalidate_secs: 0
    stale_if_error_secs: 0
  - name: sorted
    prefix: /t/query/
    ttl_secs: 60
  - name: only-view
    prefix: /t/only/
    ttl_secs: 60
    query_key: { only: [view] }
  - name: scripted
    prefix: /t/
    ttl_secs: 60
"#;

fn scripted(body: &'static str, headers: &[(&str, &str)]) -> ScriptedResponse {
    ScriptedResponse {
        status: 200,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: Bytes::from_static(body.as_bytes()),
        latency: Duration::ZERO,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn second_get_is_served_from_cache() {
    let sim = start_sim(0.01).await;
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();

    let first = get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.cache_status(),
        "knitcache; fwd=miss",
        "first request is a miss"
    );
    let second = get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    assert_eq!(second.status, 200);
    assert!(
        second.is_hit(),
        "second request must be a hit: {}",
        second.cache_status()
    );
    assert!(
        second.cache_status().contains("ttl="),
        "{}",
        second.cache_status()
    );
    assert!(!second.header("age").is_empty(), "a hit carries Age");
    assert_eq!(
        first.body, second.body,
        "the hit serves the stored body byte for byte"
    );
    assert_eq!(
        sim.hits("/api/comprehensive-kpis"),
        1,
        "the second request must not reach the ERP"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_expire_after_their_ttl() {
    let sim = start_sim(0.01).await;
    sim.add_route(
        "/t/short/a",
        scripted(r#"{"v":1}"#, &[("content-type", "application/json")]),
    );
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();

    get(&c, &proxy.url("/t/short/a")).await;
    assert!(get(&c, &proxy.url("/t/short/a")).await.is_hit());
    assert_eq!(sim.hits("/t/short/a"), 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let after = get(&c, &proxy.url("/t/short/a")).await;
    assert!(
        !after.is_hit(),
        "an expired entry is not a hit: {}",
        after.cache_status()
    );
    assert_eq!(
        sim.hits("/t/short/a"),
        2,
        "expiry sends the next request to the ERP"
    );
    assert!(
        get(&c, &proxy.url("/t/short/a")).await.is_hit(),
        "the refetched entry is stored again"
    );
    assert_eq!(sim.hits("/t/short/a"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn query_parameters_are_normalised_in_the_key() {
    let sim = start_sim(0.01).await;
    sim.add_route("/t/query/x", scripted("x", &[]));
    sim.add_route("/t/only/y", scripted("y", &[]));
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();

    get(&c, &proxy.url("/t/query/x?b=2&a=1")).await;
    let swapped = get(&c, &proxy.url("/t/query/x?a=1&b=2")).await;
    assert!(
        swapped.is_hit(),
        "parameter order must not split entries: {}",
        swapped.cache_status()
    );
    assert_eq!(
        sim.hits_with_query("/t/query/x?b=2&a=1"),
        1,
        "the ERP sees the query as sent"
    );
    let other = get(&c, &proxy.url("/t/query/x?a=2&b=2")).await;
    assert!(!other.is_hit(), "a different value is a different entry");
    assert_eq!(sim.hits("/t/query/x"), 2);

    get(&c, &proxy.url("/t/only/y?view=full&_=1")).await;
    let busted = get(&c, &proxy.url("/t/only/y?_=2&view=full")).await;
    assert!(
        busted.is_hit(),
        "parameters outside `only` do not split entries"
    );
    assert!(!get(&c, &proxy.url("/t/only/y?view=summary")).await.is_hit());
    assert_eq!(sim.hits("/t/only/y"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn head_is_served_from_a_cached_get() {
    let sim = start_sim(0.01).await;
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();

    let full = get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    let head = send(c.head(proxy.url("/api/comprehensive-kpis"))).await;
    assert_eq!(head.status, 200);
    assert!(
        head.is_hit(),
        "HEAD after GET is a hit: {}",
        head.cache_status()
    );
    assert!(head.body.is_empty(), "HEAD has no body");
    assert_eq!(
        head.header("etag"),
        get(&c, &proxy.url("/api/comprehensive-kpis"))
            .await
            .header("etag")
    );
    assert!(!full.body.is_empty());
    assert_eq!(
        sim.hits("/api/comprehensive-kpis"),
        1,
        "HEAD must not reach the ERP"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn if_none_match_is_answered_304_from_cache() {
    let sim = start_sim(0.01).await;
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();

    get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    let hit = get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    let etag = hit.header("etag");
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 10,
        "strong ETag: {etag:?}"
    );
    let not_modified = send(
        c.get(proxy.url("/api/comprehensive-kpis"))
            .header("if-none-match", &etag),
    )
    .await;
    assert_eq!(not_modified.status, 304, "matching validator: 304");
    assert!(not_modified.body.is_empty());
    let changed = send(
        c.get(proxy.url("/api/comprehensive-kpis"))
            .header("if-none-match", "\"other\""),
    )
    .await;
    assert_eq!(changed.status, 200, "a different validator gets the body");
    assert_eq!(
        sim.hits("/api/comprehensive-kpis"),
        1,
        "conditional requests are answered from cache"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn byte_ranges_of_a_stored_response_come_from_cache() {
    let sim = start_sim(0.01).await;
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();
    let url = proxy.url("/api/comprehensive-kpis");

    let whole = get(&c, &url).await;
    let hit = get(&c, &url).await;
    assert!(hit.is_hit(), "{}", hit.cache_status());
    assert_eq!(hit.header("accept-ranges"), "bytes", "a hit offers ranges");
    let part = send(c.get(&url).header("range", "bytes=5-14")).await;
    assert_eq!(part.status, 206, "a range of a stored response");
    assert_eq!(&part.body[..], &whole.body[5..15]);
    assert_eq!(
        part.header("content-range"),
        format!("bytes 5-14/{}", whole.body.len())
    );
    let past = send(c.get(&url).header("range", "bytes=999999999-")).await;
    assert_eq!(past.status, 416, "a range past the end");
    assert_eq!(
        sim.hits("/api/comprehensive-kpis"),
        1,
        "ranges are answered from cache"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn set_cookie_and_no_store_are_never_stored() {
    let sim = start_sim(0.01).await;
    sim.add_route("/t/cookie", scripted("c", &[("set-cookie", "session=1")]));
    sim.add_route(
        "/t/nostore",
        scripted("n", &[("cache-control", "no-store")]),
    );
    sim.add_route(
        "/t/private",
        scripted("p", &[("cache-control", "private, max-age=60")]),
    );
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();

    for (path, detail) in [
        ("/t/cookie", "set-cookie"),
        ("/t/nostore", "no-store"),
        ("/t/private", "no-store"),
    ] {
        for _ in 0..3 {
            let r = get(&c, &proxy.url(path)).await;
            assert_eq!(r.status, 200);
            assert_eq!(
                r.cache_status(),
                format!("knitcache; fwd=miss; detail={detail}"),
                "{path}"
            );
        }
        assert_eq!(sim.hits(path), 3, "{path} must reach the ERP every time");
    }
    let cookie = get(&c, &proxy.url("/t/cookie")).await;
    assert_eq!(
        cookie.header("set-cookie"),
        "session=1",
        "the cookie still reaches the client"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_over_the_size_cap_are_proxied_but_not_stored() {
    let sim = start_sim(0.01).await;
    let big: &'static str = Box::leak("x".repeat(2 * 1024 * 1024).into_boxed_str());
    sim.add_route(
        "/t/big",
        scripted(big, &[("content-type", "application/octet-stream")]),
    );
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();

    for _ in 0..2 {
        let r = get(&c, &proxy.url("/t/big")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), big.len(), "the whole body reaches the client");
        assert!(!r.is_hit());
    }
    assert_eq!(
        sim.hits("/t/big"),
        2,
        "an object over max_object_bytes is never served from cache"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_connections_stay_alive_while_the_erp_closes_each() {
    let sim = start_sim(0.01).await;
    let proxy = TestProxy::in_front_of(&sim, ROUTES);

    // One raw connection, several requests: each answer must keep the connection open.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(proxy.addrs.proxy)
        .await
        .expect("connect");
    for path in [
        "/api/comprehensive-kpis",
        "/api/comprehensive-kpis",
        "/api/planning-phases",
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: erp\r\n\r\n");
        conn.write_all(req.as_bytes()).await.expect("write");
        let head = read_head(&mut conn).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let lower = head.to_ascii_lowercase();
        assert!(
            !lower.contains("connection: close"),
            "the proxy must not close: {head}"
        );
        let len: usize = header_in(&lower, "content-length")
            .map(|v| v.parse().expect("len"))
            .unwrap_or(0);
        let chunked = header_in(&lower, "transfer-encoding").is_some_and(|v| v.contains("chunked"));
        if chunked {
            read_chunked(&mut conn).await;
        } else {
            let mut body = vec![0u8; len];
            conn.read_exact(&mut body).await.expect("body");
        }
    }
    assert_eq!(sim.hits("/api/comprehensive-kpis"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_hit_reaches_a_slow_reader_whole_on_a_connection_that_stays_open() {
    // Hits are written straight to the client's socket. 6 MB to a client with a 4 KiB
    // receive buffer that waits before reading cannot go in one write (the kernel queues at
    // most `tcp_wmem`'s 4 MiB for a socket): the proxy must wait for room and carry on where
    // it stopped, then leave the connection ready for more.
    const LEN: u32 = 6_000_000;
    let body: Vec<u8> = (0..LEN).map(|i| (i * 7 % 251) as u8).collect();
    let sim = start_sim(0.01).await;
    sim.add_route(
        "/t/large",
        ScriptedResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/octet-stream".into())],
            body: Bytes::from(body.clone()),
            latency: Duration::ZERO,
        },
    );
    let (_tmp, dir) = cache_dir();
    let yaml = config_yaml(sim.addr(), &dir, ROUTES)
        .replace("memory_mib: 16", "memory_mib: 64")
        .replace("max_object_bytes: 1048576", "max_object_bytes: 8388608");
    let proxy = TestProxy::start_yaml(&yaml, &dir);

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let mut conn = socket.connect(proxy.addrs.proxy).await.expect("connect");
    for (round, method) in ["GET", "GET", "HEAD", "GET"].into_iter().enumerate() {
        let req = format!("{method} /t/large HTTP/1.1\r\nHost: erp\r\n\r\n");
        conn.write_all(req.as_bytes()).await.expect("write");
        if round == 1 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let head = read_head(&mut conn).await;
        let lower = head.to_ascii_lowercase();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(
            header_in(&lower, "content-length"),
            Some(LEN.to_string().as_str()),
            "{head}"
        );
        assert_eq!(
            header_in(&lower, "connection"),
            Some("keep-alive"),
            "{head}"
        );
        if round > 0 {
            assert!(
                header_in(&lower, "cache-status").is_some_and(|v| v.contains("; hit")),
                "{head}"
            );
        }
        if method == "GET" {
            let mut got = vec![0u8; body.len()];
            tokio::time::timeout(TIMEOUT, conn.read_exact(&mut got))
                .await
                .expect("timeout")
                .expect("body");
            assert!(
                got == body,
                "round {round}: the body arrives as the ERP sent it"
            );
        }
    }
    assert_eq!(sim.hits("/t/large"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hit_for_a_client_that_asks_to_close_says_so_and_closes() {
    let sim = start_sim(0.01).await;
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let filled = get(&client(), &proxy.url("/api/comprehensive-kpis")).await;
    assert_eq!(filled.status, 200);

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(proxy.addrs.proxy)
        .await
        .expect("connect");
    let req = "GET /api/comprehensive-kpis HTTP/1.1\r\nHost: erp\r\nConnection: close\r\n\r\n";
    conn.write_all(req.as_bytes()).await.expect("write");
    let head = read_head(&mut conn).await;
    let lower = head.to_ascii_lowercase();
    assert!(
        header_in(&lower, "cache-status").is_some_and(|v| v.contains("; hit")),
        "{head}"
    );
    assert_eq!(header_in(&lower, "connection"), Some("close"), "{head}");
    let mut rest = Vec::new();
    tokio::time::timeout(TIMEOUT, conn.read_to_end(&mut rest))
        .await
        .expect("the proxy closes the connection")
        .expect("read");
    assert_eq!(
        rest, filled.body,
        "the body, then the end of the connection"
    );
    assert_eq!(sim.hits("/api/comprehensive-kpis"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn erp_connection_headers_do_not_leak() {
    let sim = start_sim(0.01).await;
    sim.add_route(
        "/t/hop",
        scripted(
            "h",
            &[
                ("keep-alive", "timeout=5"),
                ("upgrade", "h2c"),
                ("x-keep", "2"),
            ],
        ),
    );
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();
    for _ in 0..2 {
        let r = get(&c, &proxy.url("/t/hop")).await;
        assert!(
            r.headers.get("keep-alive").is_none(),
            "Keep-Alive describes the ERP's connection"
        );
        assert!(r.headers.get("upgrade").is_none(), "Upgrade is hop-by-hop");
        assert_eq!(r.header("x-keep"), "2", "end-to-end fields pass");
        assert_ne!(
            r.header("connection"),
            "close",
            "the ERP's close is not the client's"
        );
    }
}

fn header_in<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        l.split_once(':')
            .filter(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim())
    })
}

async fn read_chunked(conn: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    loop {
        let line = read_line(conn).await;
        let size = usize::from_str_radix(line.trim(), 16).expect("chunk size");
        let mut data = vec![0u8; size + 2];
        conn.read_exact(&mut data).await.expect("chunk");
        if size == 0 {
            return;
        }
    }
}

async fn read_line(conn: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        conn.read_exact(&mut byte).await.expect("line");
        line.push(byte[0]);
    }
    String::from_utf8_lossy(&line).to_string()
}
