//! One origin computation per key, whatever codings clients ask for: a coding the cache does
//! not hold is made from another coding's fresh copy (`proxy::derive`), stored, and served,
//! instead of asking the origin again. Proven by the origin's request counter; every body is
//! decoded and compared with the origin's.

mod common;

use std::io::Read;
use std::time::Duration;

use common::origin::{Origin, Reply};
use common::*;

const ROUTES: &str = r#"  - name: data
    prefix: /d/
    ttl_secs: 60
  - name: short
    prefix: /s/
    ttl_secs: 1
  - name: hot
    prefix: /h/
    ttl_secs: 3
    stale_while_revalidate_secs: 0
    stale_if_error_secs: 0
"#;

/// About 50 KB of JSON, different for each path so a mix-up shows.
fn json(path: &str) -> String {
    let rows: Vec<String> = (0..1500)
        .map(|i| format!("{{\"path\":\"{path}\",\"row\":{i},\"qty\":{}}}", i * 7))
        .collect();
    format!("[{}]", rows.join(","))
}

fn serve_json(origin: &Origin, path: &'static str, extra: &'static [(&'static str, &'static str)]) {
    origin.on(path, move |_, _| {
        let mut reply = Reply::ok(json(path)).header("content-type", "application/json");
        for (n, v) in extra {
            reply = reply.header(n, v);
        }
        reply
    });
}

/// The body as the client would read it, decoded from its `Content-Encoding`.
fn decoded(resp: &Resp) -> String {
    let mut out = String::new();
    match resp.header("content-encoding").as_str() {
        "" => out = String::from_utf8(resp.body.to_vec()).expect("utf-8"),
        "gzip" => {
            flate2::read::GzDecoder::new(&resp.body[..])
                .read_to_string(&mut out)
                .expect("a whole gzip stream");
        }
        "zstd" => {
            let plain = zstd::stream::decode_all(&resp.body[..]).expect("a whole zstd stream");
            out = String::from_utf8(plain).expect("utf-8");
        }
        other => panic!("unexpected content-encoding {other:?}"),
    }
    out
}

async fn with_coding(c: &reqwest::Client, url: &str, accept: Option<&str>) -> Resp {
    let mut req = c.get(url);
    if let Some(accept) = accept {
        req = req.header("accept-encoding", accept);
    }
    send(req).await
}

#[tokio::test(flavor = "multi_thread")]
async fn browsers_with_zstd_gzip_and_identity_cost_the_origin_one_request() {
    let origin = Origin::start().await;
    serve_json(&origin, "/d/orders", &[]);
    let proxy = TestProxy::in_front_of_origin(origin.addr(), ROUTES);
    let c = client();
    let url = proxy.url("/d/orders");
    let want = json("/d/orders");

    let first = with_coding(&c, &url, Some("gzip, deflate, br, zstd")).await;
    assert_eq!(first.header("content-encoding"), "zstd");
    assert_eq!(decoded(&first), want);
    for (accept, coding) in [
        (Some("gzip, deflate"), "gzip"),
        (None, ""),
        (Some("br"), ""),
        (Some("gzip"), "gzip"),
        (Some("zstd"), "zstd"),
    ] {
        let r = with_coding(&c, &url, accept).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), coding, "{accept:?}");
        assert!(r.is_hit(), "{accept:?}: {}", r.cache_status());
        assert_eq!(
            r.header("content-length"),
            r.body.len().to_string(),
            "{accept:?}"
        );
        assert!(decoded(&r) == want, "{accept:?}: the origin's body");
    }
    assert_eq!(
        origin.count("/d/orders"),
        1,
        "one origin request for every coding"
    );
    assert_eq!(
        metric(&proxy, "knitcache_cache_derived_total{route=\"data\"}").await,
        2.0,
        "gzip and identity were derived, once each"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_derived_coding_carries_the_origins_validator_and_answers_304() {
    let origin = Origin::start().await;
    serve_json(&origin, "/d/tagged", &[("etag", "\"v7\"")]);
    let proxy = TestProxy::in_front_of_origin(origin.addr(), ROUTES);
    let c = client();
    let url = proxy.url("/d/tagged");

    let zs = with_coding(&c, &url, Some("zstd")).await;
    assert_eq!(zs.header("etag"), "\"v7-zstd\"");
    let gz = with_coding(&c, &url, Some("gzip")).await;
    assert_eq!(
        gz.header("etag"),
        "\"v7-gzip\"",
        "derived from the origin's tag"
    );
    let plain = with_coding(&c, &url, None).await;
    assert_eq!(
        plain.header("etag"),
        "\"v7\"",
        "the origin's own tag on its own bytes"
    );
    let revalidated = send(
        c.get(&url)
            .header("accept-encoding", "gzip")
            .header("if-none-match", "\"v7-gzip\""),
    )
    .await;
    assert_eq!(revalidated.status, 304);
    assert_eq!(origin.count("/d/tagged"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_origin_tag_each_coding_gets_one_over_its_own_bytes() {
    let origin = Origin::start().await;
    serve_json(&origin, "/d/untagged", &[]);
    let proxy = TestProxy::in_front_of_origin(origin.addr(), ROUTES);
    let c = client();
    let url = proxy.url("/d/untagged");

    with_coding(&c, &url, Some("zstd")).await;
    // The tag is computed as the body is stored: the hit carries it, the miss could not.
    let zs = with_coding(&c, &url, Some("zstd")).await;
    let gz = with_coding(&c, &url, Some("gzip")).await;
    let (zs_tag, gz_tag) = (zs.header("etag"), gz.header("etag"));
    assert!(
        zs_tag.starts_with('"') && gz_tag.starts_with('"'),
        "{zs_tag} {gz_tag}"
    );
    assert_ne!(zs_tag, gz_tag, "two representations, two strong tags");
    let again = send(
        c.get(&url)
            .header("accept-encoding", "gzip")
            .header("if-none-match", gz_tag.as_str()),
    )
    .await;
    assert_eq!(again.status, 304);
    assert_eq!(origin.count("/d/untagged"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn another_vary_selection_is_never_derived_from() {
    let origin = Origin::start().await;
    origin.on("/d/lang", |req, _| {
        let lang = req.header("accept-language").unwrap_or("none").to_owned();
        Reply::ok(format!("{}{lang}", json("/d/lang")))
            .header("content-type", "application/json")
            .header("vary", "accept-language")
    });
    let proxy = TestProxy::in_front_of_origin(origin.addr(), ROUTES);
    let c = client();
    let url = proxy.url("/d/lang");
    let ask = |coding: &'static str, lang: &'static str| {
        send(
            c.get(&url)
                .header("accept-encoding", coding)
                .header("accept-language", lang),
        )
    };

    let en = ask("zstd", "en").await;
    assert!(decoded(&en).ends_with("en"));
    let fr = ask("gzip", "fr").await;
    assert!(decoded(&fr).ends_with("fr"), "French is its own answer");
    assert_eq!(origin.count("/d/lang"), 2);
    let en_gz = ask("gzip", "en").await;
    assert!(decoded(&en_gz).ends_with("en"));
    assert!(en_gz.is_hit(), "derived from the English zstd copy");
    assert_eq!(origin.count("/d/lang"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_copy_is_never_derived_from() {
    let origin = Origin::start().await;
    serve_json(&origin, "/s/brief", &[]);
    let proxy = TestProxy::in_front_of_origin(origin.addr(), ROUTES);
    let c = client();
    let url = proxy.url("/s/brief");

    with_coding(&c, &url, Some("zstd")).await;
    // Well past the one-second lifetime (pingora keeps whole seconds).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let gz = with_coding(&c, &url, Some("gzip")).await;
    assert_eq!(gz.header("content-encoding"), "gzip");
    assert_eq!(
        origin.count("/s/brief"),
        2,
        "the expired zstd copy was not used"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purged_copy_is_never_derived_from() {
    let origin = Origin::start().await;
    serve_json(&origin, "/d/purged", &[]);
    let proxy = TestProxy::in_front_of_origin(origin.addr(), ROUTES);
    let c = client();
    let url = proxy.url("/d/purged");

    with_coding(&c, &url, Some("zstd")).await;
    // A prefix purge bans what it matches (the stored copy stays until replaced).
    let purged = c
        .post(proxy.admin_url("/purge"))
        .header("content-type", "application/json")
        .body(r#"{"prefix": "/d/purged"}"#)
        .send()
        .await
        .expect("purge");
    assert!(purged.status().is_success(), "{}", purged.status());
    let gz = with_coding(&c, &url, Some("gzip")).await;
    assert_eq!(gz.header("content-encoding"), "gzip");
    assert_eq!(origin.count("/d/purged"), 2, "the purged copy was not used");
}

#[tokio::test(flavor = "multi_thread")]
async fn refreshing_a_hot_key_in_two_codings_costs_the_origin_one_request() {
    let origin = Origin::start().await;
    serve_json(&origin, "/h/kpis", &[]);
    let (_tmp, dir) = cache_dir();
    let yaml = config_yaml_sections(origin.addr(), &dir, "warming:\n  lead_secs: 2\n", ROUTES);
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let c = client();
    let url = proxy.url("/h/kpis");

    with_coding(&c, &url, Some("zstd")).await;
    with_coding(&c, &url, Some("gzip")).await;
    // Two dashboards, one per coding, polling across three TTLs: every answer a fresh hit.
    let mut not_hits = Vec::new();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        for coding in ["zstd", "gzip"] {
            let r = with_coding(&c, &url, Some(coding)).await;
            assert_eq!(r.header("content-encoding"), coding);
            if !r.is_hit() {
                not_hits.push(r.cache_status());
            }
        }
    }
    assert!(not_hits.is_empty(), "a client saw a miss: {not_hits:?}");
    let refreshes = origin.count("/h/kpis") - 1;
    assert!(
        (2..=4).contains(&refreshes),
        "8 s of a 3 s TTL takes about 3 refreshes of the key, not of each coding: {refreshes}"
    );
}
