//! `knitcache report` against a running proxy: it reads `/stats` over HTTP and prints per-route
//! rows, slowest first, with the ERP plan's targets checked and 5xx and refusals counted.

mod common;

use std::process::Command;

use common::*;

const ROUTES: &str = r#"  - name: kpis
    exact: /api/comprehensive-kpis
    ttl_secs: 600
  - name: fabric-forecast
    exact: /api/fabric-forecast-integrated
    ttl_secs: 600
"#;

fn report(args: Vec<String>) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_knitcache"))
        .arg("report")
        .args(args)
        .output()
        .expect("run knitcache report")
}

#[tokio::test(flavor = "multi_thread")]
async fn report_lists_routes_slowest_first_and_marks_missed_targets() {
    // Scale 0.2: the forecast takes 240-500 ms, over the 200 ms target; the KPIs take ~2 ms.
    let sim = start_sim(0.2).await;
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();
    get(&c, &proxy.url("/api/fabric-forecast-integrated")).await;
    for _ in 0..4 {
        get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    }
    // A GET-only endpoint answers POST with the ERP's 500: one of the route's five requests.
    let failed = send(c.post(proxy.url("/api/comprehensive-kpis"))).await;
    assert_eq!(failed.status, 500);
    let admin = format!("http://{}", proxy.addrs.admin);

    let a = admin.clone();
    let json = tokio::task::spawn_blocking(move || {
        report(vec!["--admin".into(), a, "--format".into(), "json".into()])
    })
    .await
    .expect("task");
    assert!(
        json.status.success(),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON rows");
    let rows = rows.as_array().expect("array");
    assert_eq!(rows.len(), 2, "routes with traffic only: {rows:?}");
    assert_eq!(rows[0]["route"], "fabric-forecast", "slowest first");
    assert_eq!(rows[0]["missed"], serde_json::json!(["p95"]));
    assert_eq!(rows[1]["route"], "kpis");
    assert_eq!(rows[1]["requests"], 5);
    assert_eq!(rows[1]["hit_ratio"], 0.75);
    assert_eq!(rows[1]["missed"], serde_json::json!([]));
    assert_eq!(rows[0]["responses_5xx"], 0);
    assert_eq!(rows[0]["attention"], serde_json::json!([]));
    assert_eq!(rows[1]["responses_5xx"], 1);
    assert_eq!(rows[1]["share_5xx"], 0.2);
    assert_eq!(rows[1]["attention"], serde_json::json!(["5xx"]));
    assert_eq!(rows[1]["refused"], 0, "refusals are counted per route");

    let text = tokio::task::spawn_blocking(move || report(vec!["--admin".into(), admin]))
        .await
        .expect("task");
    let out = String::from_utf8_lossy(&text.stdout);
    assert!(text.status.success(), "{out}");
    assert!(
        out.contains("MISSED p95") && out.contains("1 of 2 routes with traffic miss a target"),
        "{out}"
    );
    assert!(
        out.contains("ATTENTION 1 of 5 5xx (20.0%)")
            && out.contains("1 of 2 routes need attention: 1 with 5xx over 1 %, 0 with refusals"),
        "{out}"
    );
}

#[test]
fn an_unreachable_admin_listener_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let out = report(vec!["--admin".into(), format!("http://127.0.0.1:{port}")]);
    assert_eq!(out.status.code(), Some(69), "EX_UNAVAILABLE");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect"), "{err}");
}
