//! Tests of the simulator over real loopback sockets, with a raw HTTP/1.1 client so that
//! what is on the wire (headers, `Connection: close`, refused connects) is what is checked.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

/// Upper bound for any single network step in these tests.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn parse(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = std::str::from_utf8(&raw[..split]).expect("ascii head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Resp {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// Sends raw bytes and reads until the server closes the connection, which it must do.
async fn send_raw(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let io = async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(request).await.expect("write");
        let mut out = Vec::new();
        s.read_to_end(&mut out)
            .await
            .expect("read to the server's close");
        out
    };
    tokio::time::timeout(TIMEOUT, io)
        .await
        .expect("the server answers and closes in time")
}

async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || !matches!(method, "GET" | "HEAD" | "OPTIONS") {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    parse(&send_raw(addr, &bytes).await)
}

async fn get(addr: SocketAddr, target: &str) -> Resp {
    request(addr, "GET", target, &[], b"").await
}

async fn sim(mode: Mode, time_scale: f64) -> ErpSim {
    let opts = SimOptions {
        mode,
        time_scale,
        control_listen: None,
    };
    ErpSim::start("127.0.0.1:0".parse().expect("addr"), opts)
        .await
        .expect("start")
}

#[tokio::test]
async fn known_path_answers_with_the_measured_size_and_erp_headers() {
    let sim = sim(Mode::Rollback, 0.01).await;
    let r = get(sim.addr(), "/api/knit-orders").await;
    assert_eq!(r.status, 200);
    // docs/ERP.md §3: 102,505 B.
    assert!(
        (97_000..108_000).contains(&r.body.len()),
        "knit-orders body is {} B",
        r.body.len()
    );
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    for absent in [
        "cache-control",
        "etag",
        "last-modified",
        "content-encoding",
        "vary",
    ] {
        assert_eq!(r.header(absent), None, "{absent} must not be sent on JSON");
    }
    let text = r.text();
    assert!(
        text.contains("\"timestamp\":\"") && text.contains("\"endpoint\":\"/api/knit-orders\""),
        "{}",
        &text[..200]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn bodies_differ_per_call_and_echo_the_query() {
    let sim = sim(Mode::Rollback, 0.01).await;
    let a = get(sim.addr(), "/api/comprehensive-kpis?x=1").await;
    let b = get(sim.addr(), "/api/comprehensive-kpis?x=1").await;
    assert_eq!((a.status, b.status), (200, 200));
    assert_ne!(a.body, b.body, "the timestamp makes every body different");
    assert!(a.text().contains("\"query\":\"x=1\""), "{}", a.text());
    // 342 B measured, plus the echoed query.
    assert!((300..420).contains(&a.body.len()), "{} B", a.body.len());
}

#[tokio::test]
async fn counters_count_erp_requests_only() {
    let sim = sim(Mode::Rollback, 0.0).await;
    get(sim.addr(), "/api/planning-phases").await;
    get(sim.addr(), "/api/planning-phases?view=a").await;
    get(sim.addr(), "/api/planning-phases?view=a").await;
    get(sim.addr(), "/no/such/path").await;
    let c = get(sim.addr(), "/__sim/counters").await;
    assert_eq!(c.status, 200);
    assert!(c.text().contains("\"total\":4"), "{}", c.text());
    assert_eq!(sim.hits("/api/planning-phases"), 3);
    assert_eq!(sim.hits_with_query("/api/planning-phases"), 1);
    assert_eq!(sim.hits_with_query("/api/planning-phases?view=a"), 2);
    assert_eq!(sim.hits("/no/such/path"), 1);
    assert_eq!(sim.total_hits(), 4, "control requests are not ERP requests");
    sim.reset_counters();
    assert_eq!((sim.total_hits(), sim.hits("/api/planning-phases")), (0, 0));
}

#[tokio::test]
async fn shipped_mode_redirects_like_the_erp() {
    let sim = sim(Mode::Shipped, 0.0).await;
    let r = get(sim.addr(), "/api/yarn-intelligence").await;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some("/api/v2/yarn?action=intelligence")
    );
    assert_eq!(r.body.len(), 251, "Werkzeug's redirect page, as measured");
    let r = get(sim.addr(), "/api/v2/yarn?action=intelligence").await;
    assert_eq!(r.status, 500);
    assert!(r.text().contains("cannot import name"), "{}", r.text());

    let r = get(
        sim.addr(),
        "/api/inventory-intelligence-enhanced?realtime=true",
    )
    .await;
    assert_eq!(
        r.header("location"),
        Some("/api/v2/inventory?analysis=intelligence&realtime=true")
    );
    let r = get(
        sim.addr(),
        "/api/v2/inventory?analysis=intelligence&realtime=true",
    )
    .await;
    assert_eq!(r.status, 200, "the placeholder answer");

    let r = get(sim.addr(), "/api/pipeline/forecast").await;
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some("/api/ml-forecast-detailed?source=pipeline")
    );
    assert_eq!(r.header("x-deprecated"), Some("true"));
    let r = request(sim.addr(), "POST", "/api/yarn-data?a=1", &[], b"{}").await;
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("/api/yarn-intelligence?view=data&a=1"))
    );

    // Same paths in rollback mode reach the monolith handlers.
    sim.set_mode(Mode::Rollback);
    assert_eq!(get(sim.addr(), "/api/yarn-intelligence").await.status, 200);
    assert_eq!(get(sim.addr(), "/api/v2/health").await.status, 404);
}

#[tokio::test]
async fn real_failures_are_kept_in_rollback_mode() {
    let sim = sim(Mode::Rollback, 0.0).await;
    let r = get(sim.addr(), "/api/inventory-analysis/complete").await;
    assert_eq!(r.status, 500);
    assert!(r.text().contains("analyze_all"), "{}", r.text());
    assert_eq!(
        get(sim.addr(), "/api/yarn-shortage-timeline?yarn_id=18868")
            .await
            .status,
        501
    );
    let r = get(sim.addr(), "/api/v2/analytics/kpis").await;
    assert_eq!(
        (r.status, r.header("content-type")),
        (404, Some("application/json"))
    );
    let r = get(sim.addr(), "/health").await;
    assert_eq!(
        (r.status, r.header("content-type")),
        (404, Some("text/html; charset=utf-8"))
    );
    // Flask's 405 ends in the ERP's catch-all handler as a 500.
    assert_eq!(
        request(sim.addr(), "PATCH", "/api/knit-orders", &[], b"x")
            .await
            .status,
        500
    );
}

#[tokio::test]
async fn a_posted_body_round_trips_byte_for_byte() {
    let sim = sim(Mode::Rollback, 0.0).await;
    let body: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let r = request(
        sim.addr(),
        "POST",
        "/api/knit-orders/generate?x=1",
        &[("Content-Type", "application/octet-stream")],
        &body,
    )
    .await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.contains("\"received_bytes\":70000"), "{text}");
    assert!(
        text.contains(&format!("\"received_fnv1a64\":\"{:016x}\"", fnv1a64(&body))),
        "{text}"
    );
    assert_eq!(
        sim.last_body("/api/knit-orders/generate").as_deref(),
        Some(&body[..])
    );
    let over_http = get(
        sim.addr(),
        "/__sim/last-body?path=/api/knit-orders/generate",
    )
    .await;
    assert_eq!(over_http.body, body);
    assert_eq!(sim.last_body("/api/knit-orders"), None);
    for method in ["PUT", "PATCH", "DELETE"] {
        let r = request(sim.addr(), method, "/api/knit-orders/generate", &[], b"abc").await;
        assert_eq!(r.status, 200, "{method} is accepted on a write endpoint");
        assert!(r.text().contains("\"received_bytes\":3"), "{}", r.text());
    }
}

#[tokio::test]
async fn side_effect_gets_reload_the_data() {
    let sim = sim(Mode::Rollback, 0.0).await;
    assert_eq!(get(sim.addr(), "/api/reload-data").await.status, 200);
    get(sim.addr(), "/api/system/unified?operation=reload").await;
    get(sim.addr(), "/api/system/unified?operation=status").await;
    assert_eq!(sim.data_version(), 2);
    assert!(
        get(sim.addr(), "/api/planning-phases")
            .await
            .text()
            .contains("\"data_version\":2")
    );
    assert_eq!(sim.hits("/api/system/unified"), 2);
}

#[tokio::test]
async fn fail_and_slow_switches() {
    let sim = sim(Mode::Rollback, 0.0).await;
    sim.set_fail(Some(503));
    let r = get(sim.addr(), "/api/planning-phases").await;
    assert_eq!((r.status, r.header("connection")), (503, Some("close")));
    sim.set_fail(None);
    sim.set_extra_latency(Duration::from_millis(150));
    let t = Instant::now();
    assert_eq!(get(sim.addr(), "/api/planning-phases").await.status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "slow adds latency: {:?}",
        t.elapsed()
    );
    sim.set_extra_latency(Duration::ZERO);
    assert_eq!(sim.hits("/api/planning-phases"), 2);
}

#[tokio::test]
async fn hang_accepts_and_never_answers() {
    let sim = sim(Mode::Rollback, 0.0).await;
    sim.set_hang(true);
    let mut s = TcpStream::connect(sim.addr())
        .await
        .expect("connect while hanging");
    s.write_all(b"GET /api/planning-phases HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 64];
    let waited = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
    assert!(waited.is_err(), "a hung request gets no answer");
    assert_eq!((sim.in_flight(), sim.hits("/api/planning-phases")), (1, 1));
    sim.set_hang(false);
    let n = tokio::time::timeout(TIMEOUT, s.read(&mut buf))
        .await
        .expect("closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "released hung requests are closed without an answer");
    assert_eq!(get(sim.addr(), "/api/planning-phases").await.status, 200);
}

#[tokio::test]
async fn down_refuses_connects_and_up_serves_again() {
    let sim = sim(Mode::Rollback, 0.0).await;
    let addr = sim.addr();
    assert_eq!(get(addr, "/hello").await.status, 200);
    sim.set_down(true).await.expect("down");
    let err = TcpStream::connect(addr)
        .await
        .expect_err("nothing listens while down");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    sim.set_down(true).await.expect("down twice is fine");
    sim.set_down(false).await.expect("up");
    assert_eq!(sim.addr(), addr);
    assert_eq!(get(addr, "/hello").await.text(), "Hello World");
}

#[tokio::test]
async fn http_control_on_its_own_listener_survives_down() {
    let opts = SimOptions {
        mode: Mode::Rollback,
        time_scale: 0.0,
        control_listen: Some("127.0.0.1:0".parse().expect("addr")),
    };
    let sim = ErpSim::start("127.0.0.1:0".parse().expect("addr"), opts)
        .await
        .expect("start");
    let ctl = sim.control_addr().expect("control listener");
    assert_eq!(
        request(ctl, "POST", "/__sim/fail?status=502", &[], b"")
            .await
            .status,
        200
    );
    assert_eq!(get(sim.addr(), "/hello").await.status, 502);
    assert_eq!(
        request(ctl, "POST", "/__sim/normal", &[], b"").await.status,
        200
    );
    assert_eq!(
        request(ctl, "POST", "/__sim/down", &[], b"").await.status,
        200
    );
    assert!(
        TcpStream::connect(sim.addr()).await.is_err(),
        "down via HTTP control"
    );
    assert_eq!(
        request(ctl, "POST", "/__sim/up", &[], b"").await.status,
        200
    );
    assert_eq!(get(sim.addr(), "/hello").await.status, 200);
    assert_eq!(
        request(ctl, "POST", "/__sim/mode?mode=shipped", &[], b"")
            .await
            .status,
        200
    );
    assert_eq!(sim.mode(), Mode::Shipped);
    assert_eq!(
        request(ctl, "POST", "/__sim/fail?status=abc", &[], b"")
            .await
            .status,
        400
    );
    assert_eq!(get(ctl, "/__sim/reset").await.status, 405);
    let c = get(ctl, "/__sim/counters").await;
    assert!(
        c.text().contains("\"paths\":{\"/hello\":2}"),
        "{}",
        c.text()
    );
}

#[tokio::test]
async fn down_requested_on_the_main_port_answers_then_goes_down() {
    let sim = sim(Mode::Rollback, 0.0).await;
    let r = request(sim.addr(), "POST", "/__sim/down", &[], b"").await;
    assert_eq!(r.status, 200);
    assert!(TcpStream::connect(sim.addr()).await.is_err());
    sim.set_down(false).await.expect("up");
    assert_eq!(sim.total_hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_bound_handlers_run_one_at_a_time() {
    // 1.2-2.5 s (cold 1.76 s) at 0.05: 62-125 ms each.
    let sim = sim(Mode::Rollback, 0.05).await;
    let addr = sim.addr();
    let t = Instant::now();
    let calls: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(async move {
                let r = get(addr, "/api/fabric-forecast-integrated").await;
                (r.status, Instant::now())
            })
        })
        .collect();
    // A fast handler does not queue behind the lock: it ends before the last slow call does.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(get(addr, "/api/planning-phases").await.status, 200);
    let fast_done = Instant::now();
    let mut last_slow_done = t;
    for c in calls {
        let (status, done) = c.await.expect("join");
        assert_eq!(status, 200);
        last_slow_done = last_slow_done.max(done);
    }
    let wall = last_slow_done - t;
    assert_eq!(
        sim.max_cpu_concurrency(),
        1,
        "the interpreter lock serialises CPU-bound handlers"
    );
    assert!(
        sim.max_in_flight() >= 3,
        "the three calls were in flight together"
    );
    assert!(
        wall >= Duration::from_millis(3 * 61),
        "three serialised calls take >= 3 x 61 ms: {wall:?}"
    );
    assert!(
        fast_done < last_slow_done,
        "the fast handler waited for the slow ones"
    );
}

#[tokio::test]
async fn the_forecast_pipeline_is_cold_once() {
    let sim = sim(Mode::Rollback, 0.01).await;
    let t = Instant::now();
    assert_eq!(get(sim.addr(), "/api/pipeline/forecast").await.status, 200);
    let cold = t.elapsed();
    let t = Instant::now();
    get(sim.addr(), "/api/pipeline/forecast").await;
    let warm = t.elapsed();
    assert!(
        cold >= Duration::from_millis(69),
        "7 s cold x 0.01: {cold:?}"
    );
    assert!(
        warm < Duration::from_millis(50),
        "0.7-0.9 s warm x 0.01: {warm:?}"
    );
}

#[tokio::test]
async fn preflight_head_and_origin() {
    let sim = sim(Mode::Rollback, 0.0).await;
    let r = request(
        sim.addr(),
        "OPTIONS",
        "/api/comprehensive-kpis",
        &[
            ("Origin", "http://localhost:5006"),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("vary"), None);
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("content-type")
    );
    assert!(
        r.header("access-control-allow-methods")
            .is_some_and(|m| m.contains("GET"))
    );
    assert!(r.body.is_empty());
    sim.set_cors_echo_origin(true);
    let r = request(
        sim.addr(),
        "GET",
        "/hello",
        &[("Origin", "http://a.example")],
        b"",
    )
    .await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://a.example")
    );
    assert_eq!(r.header("vary"), Some("Origin"));

    let full = get(sim.addr(), "/api/knit-orders").await;
    let head = request(sim.addr(), "HEAD", "/api/knit-orders", &[], b"").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let len: usize = head
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .expect("length");
    assert!(
        len.abs_diff(full.body.len()) < 10,
        "HEAD length {len} vs GET {}",
        full.body.len()
    );
}

#[tokio::test]
async fn dashboard_pages() {
    let sim = sim(Mode::Rollback, 0.0).await;
    let r = get(sim.addr(), "/").await;
    assert_eq!((r.status, r.body.len()), (200, 808_563));
    assert_eq!(
        r.header("cache-control"),
        Some("no-cache, no-store, must-revalidate")
    );
    assert_eq!(
        (r.header("pragma"), r.header("expires")),
        (Some("no-cache"), Some("0"))
    );
    let r = get(sim.addr(), "/ai-factory-floor").await;
    assert_eq!((r.status, r.body.len()), (200, 25_302));
    let etag = r.header("etag").expect("send_file sets an ETag").to_owned();
    let r = request(
        sim.addr(),
        "GET",
        "/ai-factory-floor",
        &[("If-None-Match", &etag)],
        b"",
    )
    .await;
    assert_eq!(r.status, 304);
    assert_eq!(get(sim.addr(), "/favicon.ico").await.status, 204);
}

#[tokio::test]
async fn scripted_routes_override_and_count() {
    let sim = sim(Mode::Rollback, 0.0).await;
    sim.add_route(
        "/test/cookie",
        ScriptedResponse::ok("fixed")
            .with_header("Set-Cookie", "a=b")
            .with_header("Cache-Control", "no-store"),
    );
    sim.add_route(
        "/api/knit-orders",
        ScriptedResponse::ok(vec![7u8; 6 << 20]).with_status(201),
    );
    let r = get(sim.addr(), "/test/cookie?q=1").await;
    assert_eq!((r.status, r.text().as_str()), (200, "fixed"));
    assert_eq!(
        (r.header("set-cookie"), r.header("cache-control")),
        (Some("a=b"), Some("no-store"))
    );
    assert_eq!(r.header("connection"), Some("close"));
    let r = get(sim.addr(), "/api/knit-orders").await;
    assert_eq!((r.status, r.body.len()), (201, 6 << 20));
    assert_eq!(
        (sim.hits("/test/cookie"), sim.hits("/api/knit-orders")),
        (1, 1)
    );
    assert!(sim.remove_route("/api/knit-orders"));
    assert_eq!(get(sim.addr(), "/api/knit-orders").await.status, 200);
}

#[tokio::test]
async fn malformed_requests_get_400() {
    let sim = sim(Mode::Rollback, 0.0).await;
    let raw = send_raw(sim.addr(), b"GARBAGE \x01\x02\r\n\r\n").await;
    assert!(
        raw.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    assert_eq!(get(sim.addr(), "/hello").await.status, 200, "still serving");
}

#[tokio::test]
async fn bad_options_are_rejected() {
    let opts = SimOptions {
        time_scale: f64::NAN,
        ..SimOptions::default()
    };
    let err = ErpSim::start("127.0.0.1:0".parse().expect("addr"), opts)
        .await
        .expect_err("NaN scale");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!("Shipped".parse::<Mode>(), Ok(Mode::Shipped));
    assert!("nope".parse::<Mode>().is_err());
}

async fn post(addr: SocketAddr, target: &str) -> Resp {
    request(addr, "POST", target, &[], b"").await
}

#[tokio::test]
async fn one_path_fails_persistently_while_the_others_serve() {
    let sim = sim(Mode::Rollback, 0.0).await;
    let addr = sim.addr();
    let set = post(addr, "/__sim/fail?path=/api/knit-orders&status=500").await;
    assert_eq!(set.status, 200, "{}", set.text());
    for _ in 0..3 {
        assert_eq!(get(addr, "/api/knit-orders").await.status, 500);
        assert_eq!(get(addr, "/api/knit-orders?page=2").await.status, 500);
        assert_eq!(get(addr, "/api/comprehensive-kpis").await.status, 200);
        assert_eq!(get(addr, "/hello").await.status, 200);
    }
    assert_eq!(
        sim.hits("/api/knit-orders"),
        6,
        "failed requests are counted"
    );
    let c = get(addr, "/__sim/counters").await.text();
    assert!(
        c.contains("\"path_fail\":{\"/api/knit-orders\":500}"),
        "{c}"
    );
    assert_eq!(
        post(addr, "/__sim/fail?path=api&status=500").await.status,
        400
    );
    // Only that path is mended; the in-process switch does the same.
    assert_eq!(
        post(addr, "/__sim/normal?path=/api/knit-orders")
            .await
            .status,
        200
    );
    assert_eq!(get(addr, "/api/knit-orders").await.status, 200);
    sim.set_path_fail("/hello", Some(503));
    assert_eq!(get(addr, "/hello").await.status, 503);
    assert_eq!(get(addr, "/api/knit-orders").await.status, 200);
    sim.set_path_fail("/hello", None);
    assert_eq!(get(addr, "/hello").await.status, 200);
}

#[tokio::test]
async fn drop_closes_the_connection_of_every_request_after_n_without_a_response() {
    let sim = sim(Mode::Rollback, 0.0).await;
    let addr = sim.addr();
    assert_eq!(post(addr, "/__sim/drop?after=2").await.status, 200);
    let get_hello = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut answered = Vec::new();
    for _ in 0..6 {
        // An empty read: the connection was closed without a byte of response.
        answered.push(!send_raw(addr, get_hello).await.is_empty());
    }
    assert_eq!(answered, [true, true, false, true, true, false]);
    assert_eq!(
        sim.hits("/hello"),
        6,
        "dropped requests were read and counted"
    );
    let c = get(addr, "/__sim/counters").await.text();
    assert!(c.contains("\"drop_after\":2"), "{c}");
    assert_eq!(post(addr, "/__sim/drop?after=x").await.status, 400);
    assert_eq!(post(addr, "/__sim/normal").await.status, 200);
    for _ in 0..4 {
        assert_eq!(get(addr, "/hello").await.status, 200);
    }
    sim.set_drop_after(Some(0));
    assert!(
        send_raw(addr, get_hello).await.is_empty(),
        "after=0 drops all"
    );
}

#[tokio::test]
async fn the_health_path_lies_both_ways() {
    let sim = sim(Mode::Rollback, 0.0).await;
    let addr = sim.addr();
    // Healthy while everything 500s (and even while requests hang).
    assert_eq!(post(addr, "/__sim/fail?status=500").await.status, 200);
    assert_eq!(post(addr, "/__sim/health?says=healthy").await.status, 200);
    let hello = get(addr, "/hello").await;
    assert_eq!((hello.status, hello.text().as_str()), (200, "Hello World"));
    assert_eq!(get(addr, "/api/comprehensive-kpis").await.status, 500);
    sim.set_hang(true);
    assert_eq!(get(addr, "/hello").await.status, 200);
    sim.set_hang(false);
    let c = get(addr, "/__sim/counters").await.text();
    assert!(
        c.contains("\"health_lie\":{\"path\":\"/hello\",\"says\":\"healthy\"}"),
        "{c}"
    );

    // Unhealthy while everything works, on a path of the switch's choosing.
    assert_eq!(post(addr, "/__sim/normal").await.status, 200);
    assert_eq!(
        get(addr, "/api/v2/health").await.status,
        404,
        "rollback mode"
    );
    let set = post(addr, "/__sim/health?says=unhealthy&path=/api/v2/health").await;
    assert_eq!(set.status, 200, "{}", set.text());
    assert_eq!(get(addr, "/api/v2/health").await.status, 503);
    assert_eq!(get(addr, "/hello").await.status, 200);
    assert_eq!(get(addr, "/api/comprehensive-kpis").await.status, 200);
    assert_eq!(post(addr, "/__sim/health?says=maybe").await.status, 400);
    assert_eq!(post(addr, "/__sim/health?says=truth").await.status, 200);
    assert_eq!(get(addr, "/api/v2/health").await.status, 404);
    sim.set_health_lie("/hello", Some(HealthSays::Unhealthy));
    assert_eq!(get(addr, "/hello").await.status, 503);
    sim.set_health_lie("/hello", None);
    assert_eq!(get(addr, "/hello").await.status, 200);
}
