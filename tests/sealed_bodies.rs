//! Large bodies sent without a copy (`cache::sealed_body`), against the real proxy: a hit on a
//! sealed body reaches a slow reader whole, and a body the kernel still holds for a client
//! after its entry was purged and replaced arrives as it was stored, not as the replacement.
//!
//! One test per binary: the sealed-file count is the process's, and a second proxy in this
//! process would move it.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use erp_sim::ScriptedResponse;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROUTES: &str = r#"  - name: scripted
    prefix: /t/
    ttl_secs: 60
"#;

/// Far more than a loopback socket queues (`tcp_wmem`'s 4 MiB at most), so the proxy must wait
/// for the reader before it can hand over the last bytes.
const LEN: usize = 6_000_000;

fn large(body: &[u8]) -> ScriptedResponse {
    ScriptedResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/octet-stream".into())],
        body: Bytes::copy_from_slice(body),
        latency: Duration::ZERO,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sealed_body_in_flight_arrives_as_stored_after_its_entry_is_purged_and_replaced() {
    let stored: Vec<u8> = (0..LEN).map(|i| (i * 7 % 251) as u8).collect();
    let replacement = vec![0xA5u8; LEN];
    let sim = start_sim(0.01).await;
    sim.add_route("/t/large", large(&stored));
    let (_tmp, dir) = cache_dir();
    let yaml = config_yaml(sim.addr(), &dir, ROUTES)
        .replace("memory_mib: 16", "memory_mib: 64")
        .replace("max_object_bytes: 1048576", "max_object_bytes: 8388608");
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let c = client();
    let sealed = "knitcache_cache_sealed_bodies";
    let direct = r#"knitcache_cache_hits_total{path="direct"}"#;

    let filled = get(&c, &proxy.url("/t/large")).await;
    assert_eq!(filled.status, 200);
    assert_eq!(
        metric(&proxy, sealed).await,
        1.0,
        "the stored body is sealed"
    );

    // A reader with a 4 KiB receive buffer asks for the hit and waits: the proxy fills the
    // socket's queue and waits for room.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small buffer");
    let mut conn = socket.connect(proxy.addrs.proxy).await.expect("connect");
    conn.write_all(b"GET /t/large HTTP/1.1\r\nHost: erp\r\n\r\n")
        .await
        .expect("request");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let head = read_head(&mut conn).await.to_ascii_lowercase();
    assert!(head.contains("cache-status: knitcache; hit"), "{head}");
    assert!(head.contains(&format!("content-length: {LEN}")), "{head}");

    // Read until the proxy has handed the whole body to the kernel and finished the request;
    // megabytes of it are still queued for this reader then.
    let mut got = Vec::with_capacity(LEN);
    let mut chunk = vec![0u8; 64 * 1024];
    while metric(&proxy, direct).await < 1.0 {
        assert!(
            got.len() < LEN,
            "the whole body was read before the hit was counted"
        );
        let n = tokio::time::timeout(TIMEOUT, conn.read(&mut chunk))
            .await
            .expect("body in time")
            .expect("read");
        assert!(n > 0, "closed after {} bytes", got.len());
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(
        got.len() + 1_000_000 < LEN,
        "only {} of {LEN} bytes were still queued: the test proves nothing",
        LEN - got.len()
    );

    // The entry goes, its file is closed and unmapped, and new content is stored: freed pages
    // would now hold the replacement if the kernel had not kept the queued ones.
    let purged = post_json(
        &c,
        &proxy.admin_url("/purge"),
        r#"{"url": "/t/large"}"#,
        None,
    )
    .await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    sim.add_route("/t/large", large(&replacement));
    let refilled = get(&c, &proxy.url("/t/large")).await;
    assert_eq!(refilled.status, 200);
    assert!(
        refilled.body == replacement,
        "the refill stores the new body"
    );
    assert_eq!(sim.hits("/t/large"), 2);
    assert_eq!(
        metric(&proxy, sealed).await,
        1.0,
        "the purged body's file is closed; only the replacement's is open"
    );

    let rest = LEN - got.len();
    let mut tail = vec![0u8; rest];
    tokio::time::timeout(TIMEOUT, conn.read_exact(&mut tail))
        .await
        .expect("rest in time")
        .expect("rest");
    got.extend_from_slice(&tail);
    assert!(
        got == stored,
        "the queued bytes are the stored body's (first difference at byte {:?})",
        got.iter().zip(&stored).position(|(a, b)| a != b)
    );

    // The connection carries on with the replacement, sealed too.
    conn.write_all(b"GET /t/large HTTP/1.1\r\nHost: erp\r\n\r\n")
        .await
        .expect("request");
    let head = read_head(&mut conn).await.to_ascii_lowercase();
    assert!(head.contains("cache-status: knitcache; hit"), "{head}");
    let mut again = vec![0u8; LEN];
    tokio::time::timeout(TIMEOUT, conn.read_exact(&mut again))
        .await
        .expect("body in time")
        .expect("body");
    assert!(again == replacement, "the next hit sends the replacement");
}
