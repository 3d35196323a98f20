//! HTTPS and HTTP/2 through the real proxy: a CA and leaf certificates made at test time, the
//! TLS listener beside the plain one, hits, misses, coalescing, stale and purges over HTTP/1.1
//! and HTTP/2 counted at the origin, ALPN, h2c, the redirect and HSTS, a certificate that does
//! not fit its key, and a certificate replaced while a connection stays open.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::origin::{Origin, Reply};
use common::raw::Raw;
use common::tls::{self, H1, H2, Leaf, TestCa};
use common::*;

const ROUTES: &str = r#"  - name: api
    prefix: /api/
    ttl_secs: 60
  - name: swr
    exact: /swr
    ttl_secs: 1
    stale_while_revalidate_secs: 60
    stale_if_error_secs: 0
"#;

/// `listen_tls` on an ephemeral port with `leaf`, plus `extra` keys of `tls:`.
fn tls_sections(leaf: &Leaf, extra: &str) -> String {
    format!(
        "listen_tls: \"127.0.0.1:0\"\ntls:\n  cert_file: \"{}\"\n  key_file: \"{}\"\n{extra}",
        leaf.cert_file.display(),
        leaf.key_file.display()
    )
}

struct Setup {
    origin: Origin,
    proxy: TestProxy,
    ca: TestCa,
    leaf: Leaf,
    _dir: tempfile::TempDir,
}

async fn setup(extra_sections: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("knitcache test CA");
    let leaf = ca.leaf(dir.path(), "server");
    let origin = Origin::start().await;
    let sections = format!("{}{extra_sections}", tls_sections(&leaf, ""));
    let proxy = TestProxy::in_front_of_origin_with(origin.addr(), &sections, ROUTES);
    Setup {
        origin,
        proxy,
        ca,
        leaf,
        _dir: dir,
    }
}

impl Setup {
    fn tls_addr(&self) -> std::net::SocketAddr {
        self.proxy.addrs.tls.expect("the TLS listener is bound")
    }

    async fn h1(&self) -> H1 {
        H1::on(tls::connect(self.tls_addr(), &self.ca.der(), &[b"http/1.1"]).await).await
    }

    async fn h2(&self) -> H2 {
        let stream = tls::connect(self.tls_addr(), &self.ca.der(), &[b"h2", b"http/1.1"]).await;
        assert_eq!(tls::alpn(&stream).as_deref(), Some(&b"h2"[..]));
        H2::on(stream).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn alpn_offers_h2_and_falls_back_to_http11() {
    let s = setup("").await;
    s.origin.always("/api/a", Reply::ok("a"));
    let ca = s.ca.der();
    let both = tls::connect(s.tls_addr(), &ca, &[b"h2", b"http/1.1"]).await;
    assert_eq!(
        tls::alpn(&both).as_deref(),
        Some(&b"h2"[..]),
        "h2 preferred"
    );
    assert_eq!(
        tls::server_cert(&both),
        s.leaf.der,
        "the configured certificate"
    );
    let h1_only = tls::connect(s.tls_addr(), &ca, &[b"http/1.1"]).await;
    assert_eq!(tls::alpn(&h1_only).as_deref(), Some(&b"http/1.1"[..]));
    let mut h1 = H1::on(h1_only).await;
    assert_eq!(h1.get("/api/a").await.text(), "a");
    // A client that offers no ALPN at all speaks HTTP/1.1.
    let mut bare = H1::on(tls::connect(s.tls_addr(), &ca, &[]).await).await;
    assert_eq!(bare.get("/api/a").await.text(), "a");
    // Only TLS 1.2 and newer, and the plain port does not speak TLS.
    assert!(
        tls::try_connect(s.proxy.addrs.proxy, &ca, &[b"h2"])
            .await
            .is_err(),
        "no TLS on the plain port"
    );
}

/// The handshake is held to the head's deadline (`clients.header_timeout_ms`), as a request
/// head is: a client that starts one and stops, or speaks plain HTTP to the TLS port, is closed
/// without an answer and without reaching the ERP, and the listener goes on serving others.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_or_plain_text_handshake_is_closed_at_the_head_deadline() {
    let s = setup("clients:\n  header_timeout_ms: 300\n").await;
    s.origin.always("/api/a", Reply::ok("a"));
    // The first bytes of a TLS record carrying a ClientHello, and nothing more.
    let mut stalled = Raw::connect(s.tls_addr()).await;
    stalled.send(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await;
    assert!(
        stalled.open_after(Duration::from_millis(100)).await,
        "still waiting for the rest of the handshake"
    );
    // Within the harness's timeout (20 s), which is far inside the 60 s the handshake was
    // allowed before it had a deadline of its own.
    assert!(
        stalled.until_closed().await.is_empty(),
        "closed without an answer"
    );
    let mut plain = Raw::connect(s.tls_addr()).await;
    plain
        .send(b"GET /api/a HTTP/1.1\r\nHost: erp\r\n\r\n")
        .await;
    let answer = plain.until_closed().await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP is not served on the TLS port: {answer:?}"
    );
    assert_eq!(s.origin.count("/api/a"), 0, "nothing reached the ERP");
    let mut h1 = s.h1().await;
    assert_eq!(h1.get("/api/a").await.text(), "a");
}

#[tokio::test(flavor = "multi_thread")]
async fn hits_and_misses_over_http11_and_http2_share_one_cache() {
    let s = setup("").await;
    s.origin
        .on("/api/items", |_, n| Reply::ok(format!("items v{n}")));
    let mut h1 = s.h1().await;
    let miss = h1.get("/api/items?page=1").await;
    assert_eq!(miss.status, 200);
    assert_eq!(miss.text(), "items v0");
    assert!(!miss.is_hit(), "first is a miss: {}", miss.cache_status());
    // Several hits on the same kept connection (the socket path must not write in the clear:
    // a plaintext byte would break the TLS record layer and the client would fail here).
    for _ in 0..3 {
        let hit = h1.get("/api/items?page=1").await;
        assert!(hit.is_hit(), "TLS HTTP/1.1 hit: {}", hit.cache_status());
        assert_eq!(hit.text(), "items v0");
        assert_eq!(hit.header("content-length"), "8");
    }
    let h2 = s.h2().await;
    for _ in 0..3 {
        let hit = h2.get("/api/items?page=1").await;
        assert_eq!(hit.status, 200);
        assert!(hit.is_hit(), "HTTP/2 hit: {}", hit.cache_status());
        assert_eq!(hit.text(), "items v0");
        assert!(
            hit.headers.get("connection").is_none(),
            "no connection-specific field on HTTP/2"
        );
    }
    let h2_miss = h2.get("/api/items?page=2").await;
    assert!(!h2_miss.is_hit());
    assert_eq!(h2_miss.text(), "items v1");
    assert!(h2.get("/api/items?page=2").await.is_hit());
    // The plain port serves the same entries.
    let plain = get(&client(), &s.proxy.url("/api/items?page=2")).await;
    assert!(plain.is_hit(), "{}", plain.cache_status());
    assert_eq!(s.origin.count("/api/items"), 2, "one ERP request per key");
    let seen = s.origin.last("/api/items");
    assert_eq!(
        seen.header("x-forwarded-proto"),
        Some("https"),
        "the ERP is told HTTPS"
    );
    // No HSTS unless configured.
    assert!(
        h2.get("/api/items?page=1")
            .await
            .headers
            .get("strict-transport-security")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_http2_misses_on_one_connection_make_one_erp_request() {
    let s = setup("").await;
    s.origin.always(
        "/api/slow",
        Reply::ok("slow").delay(Duration::from_millis(400)),
    );
    let h2 = s.h2().await;
    let streams: Vec<_> = (0..20)
        .map(|_| {
            let h2 = h2.clone();
            tokio::spawn(async move { h2.get("/api/slow").await })
        })
        .collect();
    for stream in streams {
        let r = stream.await.expect("stream task");
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "slow");
    }
    assert_eq!(s.origin.count("/api/slow"), 1, "20 streams coalesced");
    // And over HTTP/1.1 on TLS, one connection per client.
    s.origin.always(
        "/api/slow2",
        Reply::ok("slow2").delay(Duration::from_millis(400)),
    );
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(s.h1().await);
    }
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| tokio::spawn(async move { c.get("/api/slow2").await }))
        .collect();
    for t in tasks {
        assert_eq!(t.await.expect("task").text(), "slow2");
    }
    assert_eq!(s.origin.count("/api/slow2"), 1, "8 TLS clients coalesced");
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_while_revalidate_over_http2() {
    let s = setup("").await;
    s.origin.on("/swr", |_, n| Reply::ok(format!("swr v{n}")));
    let h2 = s.h2().await;
    assert_eq!(h2.get("/swr").await.text(), "swr v0");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let stale = h2.get("/swr").await;
    assert_eq!(stale.text(), "swr v0", "the stored copy, served stale");
    assert!(
        stale
            .cache_status()
            .ends_with("detail=stale-while-revalidate"),
        "{}",
        stale.cache_status()
    );
    eventually("one background refresh", || s.origin.count("/swr") == 2).await;
    eventually_async("the refreshed copy is served", || {
        let h2 = h2.clone();
        async move { h2.get("/swr").await.text() == "swr v1" }
    })
    .await;
    assert_eq!(s.origin.count("/swr"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_over_tls_on_http11_and_http2() {
    let s = setup("").await;
    s.origin.on("/api/p", |_, n| Reply::ok(format!("p v{n}")));
    let h2 = s.h2().await;
    assert_eq!(h2.get("/api/p").await.text(), "p v0");
    assert!(h2.get("/api/p").await.is_hit());
    let purged = h2.request("PURGE", "/api/p", &[]).await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    let after = h2.get("/api/p").await;
    assert!(!after.is_hit(), "purged: {}", after.cache_status());
    assert_eq!(after.text(), "p v1");
    let mut h1 = s.h1().await;
    assert!(h1.get("/api/p").await.is_hit());
    assert_eq!(h1.request("PURGE", "/api/p", &[]).await.status, 200);
    assert_eq!(h1.get("/api/p").await.text(), "p v2");
    assert_eq!(
        s.origin.count("/api/p"),
        3,
        "each purge costs one ERP request"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_is_redirected_and_https_carries_hsts() {
    let s = setup("  redirect_http: true\n  hsts_max_age_secs: 31536000\n").await;
    s.origin.always("/api/r", Reply::ok("r"));
    let port = s.tls_addr().port();
    let c = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let plain = get(&c, &s.proxy.url("/api/r?x=1&y=2")).await;
    assert_eq!(plain.status, 308);
    let host = s.proxy.addrs.proxy.ip();
    assert_eq!(
        plain.header("location"),
        format!("https://{host}:{port}/api/r?x=1&y=2")
    );
    assert!(
        plain.headers.get("strict-transport-security").is_none(),
        "never on plain HTTP"
    );
    // A write is redirected too (308 keeps the method), and never reaches the ERP in the clear.
    let post = send(c.post(s.proxy.url("/api/r")).body("x")).await;
    assert_eq!(post.status, 308);
    assert_eq!(s.origin.count("/api/r"), 0);
    let h2 = s.h2().await;
    let miss = h2.get("/api/r").await;
    assert_eq!(miss.header("strict-transport-security"), "max-age=31536000");
    let hit = h2.get("/api/r").await;
    assert!(hit.is_hit());
    assert_eq!(hit.header("strict-transport-security"), "max-age=31536000");
    let mut h1 = s.h1().await;
    let hit = h1.get("/api/r").await;
    assert!(hit.is_hit());
    assert_eq!(hit.header("strict-transport-security"), "max-age=31536000");
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_prior_knowledge_on_the_plain_port_when_enabled() {
    let origin = Origin::start().await;
    origin.on("/api/c", |_, n| Reply::ok(format!("c v{n}")));
    let proxy = TestProxy::in_front_of_origin_with(origin.addr(), "h2c: true\n", ROUTES);
    let tcp = tokio::net::TcpStream::connect(proxy.addrs.proxy)
        .await
        .expect("connect");
    let h2 = H2::on(tcp).await;
    assert_eq!(h2.get("/api/c").await.text(), "c v0");
    let hit = h2.get("/api/c").await;
    assert!(hit.is_hit(), "{}", hit.cache_status());
    // HTTP/1.1 clients on the same port are served as before.
    let plain = get(&client(), &proxy.url("/api/c")).await;
    assert!(plain.is_hit());
    assert_eq!(plain.text(), "c v0");
    assert_eq!(origin.count("/api/c"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_is_off_by_default() {
    let origin = Origin::start().await;
    origin.always("/api/c", Reply::ok("c"));
    let proxy = TestProxy::in_front_of_origin(origin.addr(), ROUTES);
    let tcp = tokio::net::TcpStream::connect(proxy.addrs.proxy)
        .await
        .expect("connect");
    let handshake = tokio::time::timeout(TIMEOUT, async {
        let (mut send, conn) = h2::client::handshake(tcp).await?;
        tokio::spawn(conn);
        let req = http::Request::get("http://localhost/api/c")
            .body(())
            .expect("req");
        let (resp, _) = send.send_request(req, true)?;
        resp.await
    })
    .await
    .expect("answered or refused in time");
    assert!(
        handshake.is_err(),
        "HTTP/2 in the clear is refused: {handshake:?}"
    );
    assert_eq!(origin.count("/api/c"), 0);
}

fn yaml_with(leaf_cert: &Path, leaf_key: &Path) -> String {
    format!(
        "upstream: {{ address: \"127.0.0.1:5007\" }}\nlisten_tls: \"127.0.0.1:0\"\ntls:\n  cert_file: \"{}\"\n  key_file: \"{}\"\n",
        leaf_cert.display(),
        leaf_key.display()
    )
}

#[test]
fn a_key_that_is_not_the_certificates_is_a_config_error_naming_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("ca");
    let a = ca.leaf(dir.path(), "a");
    let b = ca.leaf(dir.path(), "b");
    let err = knitcache::config::parse(&yaml_with(&a.cert_file, &b.key_file), "t.yaml")
        .expect_err("mismatched pair refused")
        .to_string();
    assert!(err.contains("tls.cert_file"), "{err}");
    assert!(err.contains("do not belong together"), "{err}");
    assert!(err.contains("give tls.key_file the private key"), "{err}");
    let missing = dir.path().join("missing.key");
    let err = knitcache::config::parse(&yaml_with(&a.cert_file, &missing), "t.yaml")
        .expect_err("unreadable key refused")
        .to_string();
    assert!(err.contains("tls.key_file"), "{err}");
    assert!(err.contains("cannot read"), "{err}");
    // A key file given as the certificate: no certificate in it.
    let err = knitcache::config::parse(&yaml_with(&a.key_file, &a.key_file), "t.yaml")
        .expect_err("no certificate refused")
        .to_string();
    assert!(
        err.contains("tls.cert_file") && err.contains("holds no certificate"),
        "{err}"
    );
    // The matching pair is fine.
    let ok = knitcache::config::parse(&yaml_with(&a.cert_file, &a.key_file), "t.yaml");
    assert!(ok.is_ok(), "{:?}", ok.err());
}

#[test]
fn check_and_run_report_a_mismatched_pair() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("ca");
    let a = ca.leaf(dir.path(), "a");
    let b = ca.leaf(dir.path(), "b");
    let config = dir.path().join("k.yaml");
    std::fs::write(&config, yaml_with(&a.cert_file, &b.key_file)).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_knitcache"))
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .expect("run check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("tls.cert_file") && stderr.contains("do not belong together"),
        "{stderr}"
    );

    // A valid file, with the command line naming a pair that does not fit: `run` refuses to
    // start, saying which file.
    std::fs::write(&config, yaml_with(&a.cert_file, &a.key_file)).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_knitcache"))
        .args(["run", "-c"])
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--listen-tls", "127.0.0.1:0", "--tls-cert"])
        .arg(&b.cert_file)
        .arg("--tls-key")
        .arg(&a.key_file)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(70), "{stderr}");
    assert!(
        stderr.contains("cannot serve HTTPS") && stderr.contains("do not belong together"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replaced_certificate_is_served_after_reload_and_open_connections_keep_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("ca");
    let first = ca.leaf(dir.path(), "server");
    let origin = Origin::start().await;
    origin.always("/api/k", Reply::ok("k"));
    let (_cache, cache_dir) = cache_dir();
    let yaml = config_yaml_sections(origin.addr(), &cache_dir, &tls_sections(&first, ""), ROUTES);
    let path = dir.path().join("knitcache.yaml");
    std::fs::write(&path, &yaml).expect("write config");
    let proxy = TestProxy::start_file(&path, &cache_dir);
    let addr = proxy.addrs.tls.expect("TLS");

    let before = tls::connect(addr, &ca.der(), &[b"http/1.1"]).await;
    assert_eq!(tls::server_cert(&before), first.der);
    let mut open = H1::on(before).await;
    assert_eq!(open.get("/api/k").await.text(), "k");
    let h2_before = tls::connect(addr, &ca.der(), &[b"h2"]).await;
    let open_h2 = H2::on(h2_before).await;
    assert_eq!(open_h2.get("/api/k").await.text(), "k");

    // Renewal: new files in place of the old, then a reload.
    let second = ca.leaf(dir.path(), "renewed");
    std::fs::copy(&second.cert_file, &first.cert_file).expect("copy cert");
    std::fs::copy(&second.key_file, &first.key_file).expect("copy key");
    proxy.reloads.trigger();
    eventually("the reload applied", || proxy.reloads.version() == 2).await;
    let after = tls::connect(addr, &ca.der(), &[b"http/1.1"]).await;
    assert_eq!(
        tls::server_cert(&after),
        second.der,
        "new connections: the new certificate"
    );
    assert_eq!(H1::on(after).await.get("/api/k").await.text(), "k");
    // The connections opened before are still served.
    let r = open.get("/api/k").await;
    assert_eq!((r.status, r.text().as_str()), (200, "k"));
    assert_eq!(open_h2.get("/api/k").await.text(), "k");

    // A broken replacement (a key that is not the certificate's) is refused; the running
    // certificate stays.
    let third = ca.leaf(dir.path(), "third");
    std::fs::copy(&third.cert_file, &first.cert_file).expect("copy cert");
    proxy.reloads.trigger();
    eventually("the reload was refused", || {
        matches!(
            proxy.reloads.last(),
            Some(knitcache::config::reload::Outcome::Rejected { .. })
        )
    })
    .await;
    assert_eq!(proxy.reloads.version(), 2);
    let still = tls::connect(addr, &ca.der(), &[b"http/1.1"]).await;
    assert_eq!(
        tls::server_cert(&still),
        second.der,
        "the running certificate stays"
    );
}

/// A page whose script fetches `/api/page-data` and writes, once it has it, the data and the
/// protocol of the page and of the fetch as the browser saw them (Navigation and Resource
/// Timing's `nextHopProtocol`).
const PAGE: &str = r#"<!doctype html><html><body>
<p id="data">pending</p><p id="proto">pending</p>
<script>
fetch('/api/page-data').then(r => r.text()).then(t => {
  const nav = performance.getEntriesByType('navigation')[0];
  const res = performance.getEntriesByType('resource').find(e => e.name.endsWith('/api/page-data'));
  document.getElementById('data').textContent = t;
  document.getElementById('proto').textContent = nav.nextHopProtocol + ' ' + (res ? res.nextHopProtocol : 'none');
}).catch(e => { document.getElementById('data').textContent = 'error ' + e; });
</script></body></html>"#;

/// The text of the element with `id` in `dom`.
fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no #{id} in the page:\n{dom}"));
    let rest = &dom[start + id.len() + 6..];
    &rest[..rest.find('<').unwrap_or(rest.len())]
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_loads_a_page_over_https_with_http2_and_its_data_from_the_cache() {
    let s = setup("").await;
    s.origin.always(
        "/app",
        Reply::ok(PAGE).header("content-type", "text/html; charset=utf-8"),
    );
    s.origin
        .on("/api/page-data", |_, n| Reply::ok(format!("data v{n}")));
    let url = format!("https://localhost:{}/app", s.tls_addr().port());
    for load in 0..2 {
        let url = url.clone();
        // The certificate is the test CA's, which this Chromium profile does not trust.
        let dom = tokio::task::spawn_blocking(move || {
            common::browser::dump_dom(&url, 5_000, &["--ignore-certificate-errors"])
        })
        .await
        .expect("browser task");
        assert_eq!(
            text_of(&dom, "proto"),
            "h2 h2",
            "load {load}: HTTP/2 throughout\n{dom}"
        );
        assert_eq!(
            text_of(&dom, "data"),
            "data v0",
            "load {load}: the stored data\n{dom}"
        );
    }
    assert_eq!(
        s.origin.count("/app"),
        2,
        "the page is not cached (no route)"
    );
    assert_eq!(
        s.origin.count("/api/page-data"),
        1,
        "the second browser's fetch was a hit"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn over_http2_max_header_bytes_bounds_the_header_list() {
    let s = setup("clients:\n  max_header_bytes: 2048\n  max_uri_bytes: 1024\n").await;
    s.origin.always("/api/h", Reply::ok("h"));
    let h2 = s.h2().await;
    let big = "x".repeat(4000);
    let req = http::Request::get("https://localhost/api/h")
        .header("x-big", big.as_str())
        .body(())
        .expect("request");
    let answer = tokio::time::timeout(TIMEOUT, async {
        let mut send = h2.sender().ready().await?;
        let (resp, _) = send.send_request(req, true)?;
        resp.await.map(|r| r.status().as_u16())
    })
    .await
    .expect("answered in time");
    // The h2 codec answers 431 itself, or refuses the stream: either way nothing reaches the ERP.
    assert!(
        matches!(answer, Ok(431) | Err(_)),
        "a header list over the limit is refused: {answer:?}"
    );
    assert_eq!(s.origin.count("/api/h"), 0);
    // The connection and the limit's other side: a request within it is served.
    let small = s
        .h2()
        .await
        .request("GET", "/api/h", &[("x-small", "y")])
        .await;
    assert_eq!(small.text(), "h");
}

/// An origin that answers `GET /stream` with `head` and `first`, then holds the connection
/// until `release` fires, then sends `rest`: a response still being streamed. Anything else
/// (the proxy's health probe) gets a short `200`.
async fn held_origin(
    head: String,
    first: Vec<u8>,
    rest: Vec<u8>,
) -> (std::net::SocketAddr, Arc<tokio::sync::Notify>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let release = Arc::new(tokio::sync::Notify::new());
    let released = release.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (head, first, rest, released) =
                (head.clone(), first.clone(), rest.clone(), released.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(n) if n > 0 => request.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                if !request.starts_with(b"GET /stream ") {
                    let _ = conn
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                    return;
                }
                conn.write_all(head.as_bytes()).await.expect("head");
                conn.write_all(&first).await.expect("first part");
                released.notified().await;
                let _ = conn.write_all(&rest).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    (addr, release)
}

/// Reads from `stream` until `want` bytes of the response after its head have arrived.
async fn body_so_far(
    stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    want: usize,
) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let read = async {
        loop {
            let body = got
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(0, |at| got.len() - at - 4);
            if body >= want {
                return;
            }
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed after {} bytes", got.len());
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("what the origin sent so far reached the client over TLS");
    got
}

/// Writes over TLS are sent in one go at a flush, so the proxy's writer has to flush wherever
/// a client is owed bytes: each chunk of a chunked body as it comes, and a streamed body of
/// known length at least every 16 KiB, not only at the end.
#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_response_reaches_a_tls_client_while_the_origin_still_sends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("knitcache test CA");
    let leaf = ca.leaf(dir.path(), "server");
    let cases = [
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned(),
            b"5\r\nfirst\r\n".to_vec(),
            b"6\r\nsecond\r\n0\r\n\r\n".to_vec(),
            "first".len(),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_owned(),
            vec![b'a'; 40_000],
            vec![b'b'; 60_000],
            16 * 1024,
        ),
    ];
    for (head, first, rest, want) in cases {
        let (origin, release) = held_origin(head.clone(), first, rest).await;
        let proxy = TestProxy::in_front_of_origin_with(origin, &tls_sections(&leaf, ""), ROUTES);
        let tls_addr = proxy.addrs.tls.expect("the TLS listener is bound");
        let mut stream = tls::connect(tls_addr, &ca.der(), &[b"http/1.1"]).await;
        use tokio::io::AsyncWriteExt;
        stream
            .write_all(b"GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("request");
        let got = body_so_far(&mut stream, want).await;
        assert!(got.starts_with(b"HTTP/1.1 200"), "{head}: {got:?}");
        release.notify_one();
    }
}
