//! The admin listener through real HTTP against a real proxy and the simulator: status codes,
//! JSON shapes, and `/stats` counting what happened.

mod common;

use common::*;

const ROUTES: &str = r#"  - name: reload-data
    exact: /api/reload-data
    cache: false
  - name: kpis
    exact: /api/comprehensive-kpis
    ttl_secs: 600
  - name: knit-orders
    exact: /api/knit-orders
    ttl_secs: 600
"#;

#[tokio::test(flavor = "multi_thread")]
async fn endpoints_answer_with_status_and_shape() {
    let sim = start_sim(0.01).await;
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();

    let live = get(&c, &proxy.admin_url("/healthz")).await;
    assert_eq!((live.status, live.text().trim()), (200, "ok"));
    let ready = wait_ready(&c, &proxy).await;
    let ready: serde_json::Value = serde_json::from_slice(&ready.body).expect("readyz JSON");
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["cache"], "memory+disk", "{ready}");
    assert!(
        ready["config_version"]
            .as_str()
            .is_some_and(|v| v.len() == 16),
        "{ready}"
    );

    for path in ["/nope", "/stats/x"] {
        assert_eq!(get(&c, &proxy.admin_url(path)).await.status, 404, "{path}");
    }
    let wrong = send(c.post(proxy.admin_url("/stats"))).await;
    assert_eq!(
        (wrong.status, wrong.header("allow").as_str()),
        (405, "GET, HEAD")
    );
    let wrong = get(&c, &proxy.admin_url("/purge")).await;
    assert_eq!(
        (wrong.status, wrong.header("allow").as_str()),
        (405, "POST")
    );
    let page = get(&c, &proxy.admin_url("/dashboard")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type").starts_with("text/html"),
        "{:?}",
        page.headers
    );

    // Traffic: one miss and one hit on kpis, one pass-through, one unmatched path.
    get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    assert!(
        get(&c, &proxy.url("/api/comprehensive-kpis"))
            .await
            .is_hit()
    );
    get(&c, &proxy.url("/api/reload-data")).await;
    get(&c, &proxy.url("/api/yarn-data?token=s3cret")).await;

    let doc = stats(&c, &proxy).await;
    let names: Vec<&str> = doc["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["reload-data", "kpis", "knit-orders", "unmatched"]);
    let kpis = route_stats(&doc, "kpis");
    assert_eq!(
        (
            kpis["requests"].as_u64(),
            kpis["hits"].as_u64(),
            kpis["misses"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "{kpis}"
    );
    assert_eq!(kpis["hit_ratio"], 0.5);
    for class in ["all", "hit", "miss", "upstream"] {
        for field in ["count", "p50_ms", "p95_ms", "p99_ms", "max_ms"] {
            assert!(
                kpis["latency"][class][field].is_number(),
                "latency.{class}.{field}: {kpis}"
            );
            assert!(
                kpis["recent"][class][field].is_number(),
                "recent.{class}.{field}: {kpis}"
            );
        }
    }
    assert_eq!(kpis["latency"]["hit"]["count"], 1);
    assert_eq!(kpis["latency"]["upstream"]["count"], 1);
    assert_eq!(
        route_stats(&doc, "reload-data")["hit_ratio"],
        serde_json::Value::Null
    );
    assert_eq!(route_stats(&doc, "unmatched")["requests"], 1);
    assert_eq!(doc["totals"]["requests"], 4, "{}", doc["totals"]);

    assert_eq!(doc["erp"]["healthy"], true, "{}", doc["erp"]);
    assert_eq!(doc["erp"]["health_path"], "/hello");
    assert!(
        doc["process"]["rss_bytes"]
            .as_u64()
            .is_some_and(|b| b > 1 << 20),
        "{}",
        doc["process"]
    );
    assert!(doc["uptime_secs"].as_f64().is_some_and(|s| s > 0.0));
    assert!(
        doc["cache"]["memory"]["entries"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{}",
        doc["cache"]
    );
    assert!(doc["cache"]["disk"]["bytes"].is_u64(), "{}", doc["cache"]);
    assert_eq!(doc["cache"]["disk"]["state"], "open");
    assert_eq!(doc["config_version"], ready["config_version"]);

    let slowest = doc["slowest"].as_array().expect("slowest");
    assert!(!slowest.is_empty() && slowest.len() <= 10, "{slowest:?}");
    let hot = doc["hot_keys"].as_array().expect("hot keys");
    assert_eq!(hot[0]["key"], "GET /api/comprehensive-kpis", "{hot:?}");
    assert_eq!(hot[0]["count"], 2);
    assert!(
        !doc.to_string().contains("s3cret"),
        "no query value of an unmatched path leaks"
    );
}

const TOKEN: &str = "read-and-purge-token-0123456789";

/// `knitcache run` on the shipped config (token from `KNITCACHE_ADMIN_TOKEN`) with `token` in
/// that variable, on loopback ports in `tmp`; the admin port.
fn run_with_env_token(tmp: &std::path::Path, token: &str) -> (Reap, u16) {
    let admin = free_port();
    let path = |name: &str| tmp.join(name).display().to_string();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_knitcache"))
        .args([
            "run",
            "-c",
            "config/knitcache.yaml",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--upstream", "127.0.0.1:9", "--admin-listen"])
        .arg(format!("127.0.0.1:{admin}"))
        .args(["--cache-dir", &path("cache"), "--pid-file", &path("pid")])
        .args(["--upgrade-sock", &path("sock")])
        .env("KNITCACHE_ADMIN_TOKEN", token)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    (Reap(child), admin)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_from_the_environment_is_checked_like_the_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut short, _) = run_with_env_token(tmp.path(), "short");
    // A proxy that wrongly starts would run forever: `Reap` kills it when the wait fails.
    let deadline = std::time::Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = short.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a short token must stop the start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut short.0.stderr.take().expect("stderr"), &mut stderr)
        .expect("read");
    assert_eq!(status.code(), Some(64), "refused as invalid: {stderr}");
    assert!(
        stderr.contains(
            "admin.token_env: the token in the environment variable KNITCACHE_ADMIN_TOKEN is \
             5 characters long; use at least 16"
        ),
        "{stderr}"
    );

    // A long one is the purge token on the real admin listener.
    let (_proxy, admin) = run_with_env_token(tmp.path(), TOKEN);
    let c = client();
    until_ok(&c, &format!("http://127.0.0.1:{admin}/healthz")).await;
    let purge = format!("http://127.0.0.1:{admin}/purge");
    let body = r#"{"prefix": "/api"}"#;
    assert_eq!(post_json(&c, &purge, body, None).await.status, 401);
    assert_eq!(
        post_json(&c, &purge, body, Some("x".repeat(31).as_str()))
            .await
            .status,
        401
    );
    assert_eq!(post_json(&c, &purge, body, Some(TOKEN)).await.status, 200);
}

/// The `config_version` `/readyz` and `/stats` publish for `admin_and_routes` on one directory.
async fn published_version(dir: &std::path::Path, sections: &str, routes: &str) -> String {
    let upstream: std::net::SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let proxy = TestProxy::start_yaml(&config_yaml_sections(upstream, dir, sections, routes), dir);
    let c = client();
    let ready: serde_json::Value =
        serde_json::from_slice(&get(&c, &proxy.admin_url("/readyz")).await.body).expect("JSON");
    let stats = stats(&c, &proxy).await;
    assert_eq!(ready["config_version"], stats["config_version"]);
    proxy.stop(true);
    ready["config_version"]
        .as_str()
        .expect("version")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_published_config_version_is_no_digest_of_the_token() {
    let (_tmp, dir) = cache_dir();
    let with = |token: &str| format!("admin:\n  token: \"{token}\"\n");
    let first = published_version(&dir, &with(TOKEN), ROUTES).await;
    let other_token = published_version(&dir, &with(&"z".repeat(40)), ROUTES).await;
    assert_eq!(first, other_token, "only the token changed");
    let other_route = ROUTES.replace("ttl_secs: 600", "ttl_secs: 300");
    let changed = published_version(&dir, &with(TOKEN), &other_route).await;
    assert_ne!(first, changed, "a route changed");
}

#[tokio::test(flavor = "multi_thread")]
async fn protected_reads_need_the_token_and_the_dashboard_logs_in_with_basic() {
    let sim = start_sim(0.01).await;
    let sections = format!("admin:\n  token: \"{TOKEN}\"\n  protect_reads: true\n");
    let proxy = TestProxy::in_front_of_origin_with(sim.addr(), &sections, ROUTES);
    let c = client();
    // What a browser sends once the user typed any name and the token.
    let basic = |user_pass: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    };
    for path in ["/stats", "/metrics", "/dashboard"] {
        let url = proxy.admin_url(path);
        let none = get(&c, &url).await;
        assert_eq!(none.status, 401, "{path}");
        let challenges: Vec<&str> = none
            .headers
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert!(
            challenges.iter().any(|v| v.starts_with("Basic ")),
            "{path}: a browser is asked to log in: {challenges:?}"
        );
        for wrong in [
            "Bearer not-the-token-0123456789".to_owned(),
            basic("admin:not-the-token-0123456789"),
        ] {
            let r = send(c.get(&url).header("authorization", wrong.as_str())).await;
            assert_eq!(r.status, 401, "{path} {wrong}");
        }
        for right in [format!("Bearer {TOKEN}"), basic(&format!("anyone:{TOKEN}"))] {
            let r = send(c.get(&url).header("authorization", right.as_str())).await;
            assert_eq!(r.status, 200, "{path} {right}");
        }
    }
    // Probes carry no credentials.
    assert_eq!(get(&c, &proxy.admin_url("/healthz")).await.status, 200);
    assert_eq!(get(&c, &proxy.admin_url("/readyz")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_are_open_by_default_even_with_a_token() {
    let sim = start_sim(0.01).await;
    let sections = format!("admin:\n  token: \"{TOKEN}\"\n");
    let proxy = TestProxy::in_front_of_origin_with(sim.addr(), &sections, ROUTES);
    let c = client();
    for path in ["/stats", "/metrics", "/dashboard"] {
        assert_eq!(get(&c, &proxy.admin_url(path)).await.status, 200, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn report_sends_the_token_from_the_environment_to_protected_reads() {
    let sim = start_sim(0.01).await;
    let sections = format!("admin:\n  token: \"{TOKEN}\"\n  protect_reads: true\n");
    let proxy = TestProxy::in_front_of_origin_with(sim.addr(), &sections, ROUTES);
    let admin = format!("http://{}", proxy.addrs.admin);
    let report = move |token: Option<&'static str>| {
        let admin = admin.clone();
        tokio::task::spawn_blocking(move || {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_knitcache"));
            cmd.args(["report", "--admin", &admin])
                .env_remove("KNITCACHE_ADMIN_TOKEN");
            if let Some(t) = token {
                cmd.env("KNITCACHE_ADMIN_TOKEN", t);
            }
            cmd.output().expect("report")
        })
    };
    let refused = report(None).await.expect("join");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("answered 401"), "{stderr}");
    let read = report(Some(TOKEN)).await.expect("join");
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert!(!read.stdout.is_empty(), "a report was printed");
}
