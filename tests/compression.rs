//! Compression: clients that accept gzip or zstd get the body compressed once, before it is
//! stored; every hit serves the stored bytes. Decoded, every variant is the ERP's body. `br`
//! is never chosen (pingora's brotli encoder cuts bodies short: `cache::encoding::negotiate`).

mod common;

use std::io::Read;

use common::*;

const ROUTES: &str = r#"  - name: knit-orders
    exact: /api/knit-orders
    ttl_secs: 60
"#;

#[tokio::test(flavor = "multi_thread")]
async fn gzip_and_zstd_variants_are_stored_and_decode_to_the_same_json() {
    let sim = start_sim(0.01).await;
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();
    let url = proxy.url("/api/knit-orders");

    let gz1 = send(c.get(&url).header("accept-encoding", "gzip")).await;
    let gz2 = send(c.get(&url).header("accept-encoding", "gzip")).await;
    assert_eq!(gz1.header("content-encoding"), "gzip");
    assert!(gz2.is_hit(), "{}", gz2.cache_status());
    assert_eq!(
        gz1.body, gz2.body,
        "the hit serves the stored compressed bytes"
    );
    assert_eq!(
        gz2.header("content-length"),
        gz2.body.len().to_string(),
        "a stored variant states its length instead of being chunked again"
    );
    assert!(gz2.headers.get("transfer-encoding").is_none());
    let mut json = String::new();
    flate2::read::GzDecoder::new(&gz2.body[..])
        .read_to_string(&mut json)
        .expect("valid gzip");
    assert!(
        json.len() > 90_000,
        "knit-orders is ~100 KB of JSON, got {}",
        json.len()
    );
    assert!(
        gz2.body.len() * 3 < json.len(),
        "compressed well: {} -> {}",
        json.len(),
        gz2.body.len()
    );
    assert!(
        gz2.header("vary")
            .to_ascii_lowercase()
            .contains("accept-encoding")
    );

    let zs = send(
        c.get(&url)
            .header("accept-encoding", "gzip, deflate, br, zstd"),
    )
    .await;
    assert_eq!(zs.header("content-encoding"), "zstd", "browsers get zstd");
    let unzstd = zstd::stream::decode_all(&zs.body[..]).expect("a finished zstd stream");
    // Made from the stored gzip copy, not fetched again: the same bytes, timestamp included.
    assert!(unzstd == json.as_bytes(), "decoded, the same JSON");
    let br = send(c.get(&url).header("accept-encoding", "br;q=1, gzip;q=0.5")).await;
    assert_eq!(br.header("content-encoding"), "gzip", "never br");
    assert!(
        br.is_hit(),
        "a different header asking for the same coding shares the entry"
    );

    let plain = get(&c, &url).await;
    assert!(
        plain.headers.get("content-encoding").is_none(),
        "no Accept-Encoding: identity"
    );
    let plain2 = get(&c, &url).await;
    assert!(plain2.is_hit());
    assert!(
        plain2.body.starts_with(b"{"),
        "identity body is the JSON itself"
    );

    assert_eq!(
        sim.hits("/api/knit-orders"),
        1,
        "one ERP request for every coding: zstd and identity are made from the gzip copy"
    );
}
