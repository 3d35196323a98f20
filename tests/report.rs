//! `knitcache report` against a running proxy: it reads `/stats` over HTTP and prints per-route
//! rows, slowest first, with the ERP plan's targets checked and 5xx and refusals counted. An
//! admin listener that answers chunked is read; one that refuses, or closes in the middle of its
//! answer, is a clear error.

mod common;

use std::io::{Read, Write};
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

/// A stand-in admin listener on loopback: answers one connection with `parts`, written one at a
/// time (so a chunked answer really arrives in pieces), then closes. Returns its base URL.
fn admin_answering(parts: Vec<Vec<u8>>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        for part in parts {
            if conn.write_all(&part).and_then(|()| conn.flush()).is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    });
    base
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_stats_answer_is_read_whole() {
    // A real /stats document, served chunked in three pieces with a chunk extension.
    let sim = start_sim(0.01).await;
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();
    for _ in 0..3 {
        get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    }
    // A hit is recorded after its answer is written: the client can ask before the third is.
    eventually_async("the three requests recorded", || async {
        route_stats(&stats(&c, &proxy).await, "kpis")["requests"] == 3
    })
    .await;
    let doc = stats(&c, &proxy).await.to_string().into_bytes();
    let third = doc.len() / 3;
    let mut parts = vec![
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec(),
    ];
    for (i, piece) in [&doc[..third], &doc[third..2 * third], &doc[2 * third..]]
        .into_iter()
        .enumerate()
    {
        let mut chunk = format!("{:x};part={i}\r\n", piece.len()).into_bytes();
        chunk.extend_from_slice(piece);
        chunk.extend_from_slice(b"\r\n");
        parts.push(chunk);
    }
    parts.push(b"0\r\n\r\n".to_vec());
    let admin = admin_answering(parts);

    let out = tokio::task::spawn_blocking(move || {
        report(vec![
            "--admin".into(),
            admin,
            "--format".into(),
            "json".into(),
        ])
    })
    .await
    .expect("task");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON rows");
    assert_eq!(rows[0]["route"], "kpis", "{rows}");
    assert_eq!(rows[0]["requests"], 3, "{rows}");
}

#[test]
fn a_refusing_admin_listener_is_a_clear_error_quoting_its_answer() {
    let admin = admin_answering(vec![
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nnot found\n".to_vec(),
    ]);
    let out = report(vec!["--admin".into(), admin]);
    assert_eq!(out.status.code(), Some(69), "EX_UNAVAILABLE");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/stats: answered 404: not found"), "{err}");
}

#[test]
fn an_admin_listener_that_closes_mid_answer_is_a_clear_error() {
    // A whole stats document, but fewer bytes than declared: the peer closed early, and what
    // arrived must not be reported as if it were the answer.
    let doc = serde_json::to_vec(&knitcache::stats::doc::StatsDoc::default()).expect("JSON");
    let mut answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
        doc.len() + 100
    )
    .into_bytes();
    answer.extend_from_slice(&doc);
    let admin = admin_answering(vec![answer]);
    let out = report(vec!["--admin".into(), admin]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "EX_UNAVAILABLE: {err}");
    assert!(
        err.contains("closed the connection before the whole answer"),
        "{err}"
    );
}
