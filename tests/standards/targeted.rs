//! Targeted cache-control fields (RFC 9213): `Knitcache-Cache-Control` (knitcache's own target)
//! wins over `CDN-Cache-Control`, which wins over `Cache-Control` and `Expires`; the own field
//! is not passed on, `CDN-Cache-Control` is.

use crate::*;

const KCC: &str = "knitcache-cache-control";
const CDN: &str = "cdn-cache-control";

// RFC 9213 §2.2: "a cache that ... uses a targeted field MUST ignore ... Cache-Control":
// CDN-Cache-Control: max-age=60 stores a response whose Cache-Control says no-store.
#[tokio::test(flavor = "multi_thread")]
async fn cdn_cache_control_max_age_wins_over_cache_control_no_store() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/tg/cdn-stores",
        &[(CDN, "max-age=60"), ("cache-control", "no-store")],
    );
    rig.get("/tg/cdn-stores").await;
    assert_hit(
        &rig.get("/tg/cdn-stores").await,
        "CDN-Cache-Control decides",
    );
    assert_eq!(rig.count("/tg/cdn-stores"), 1);
}

// RFC 9213 §2.2, the other way round: CDN-Cache-Control: no-store is not stored even though
// Cache-Control says max-age=60.
#[tokio::test(flavor = "multi_thread")]
async fn cdn_cache_control_no_store_wins_over_cache_control_max_age() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/tg/cdn-no-store",
        &[(CDN, "no-store"), ("cache-control", "max-age=60")],
    );
    rig.get("/tg/cdn-no-store").await;
    rig.get("/tg/cdn-no-store").await;
    assert_eq!(rig.count("/tg/cdn-no-store"), 2);
}

// RFC 9213 §2.2: the targeted lifetime replaces Cache-Control's: CDN max-age=1 expires even
// though Cache-Control says max-age=60.
#[tokio::test(flavor = "multi_thread")]
async fn cdn_cache_control_lifetime_replaces_cache_control_max_age() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/tg/cdn-short",
        &[(CDN, "max-age=1"), ("cache-control", "max-age=60")],
    );
    rig.get("/tg/cdn-short").await;
    sleep_ms(2100).await;
    rig.get("/tg/cdn-short").await;
    assert_eq!(rig.count("/tg/cdn-short"), 2);
}

// RFC 9213 §2.2: Expires is ignored too when a targeted field applies.
#[tokio::test(flavor = "multi_thread")]
async fn cdn_cache_control_wins_over_expires() {
    let rig = Rig::std(&[]).await;
    rig.serve("/tg/cdn-expires", &[(CDN, "max-age=60"), ("expires", "0")]);
    rig.get("/tg/cdn-expires").await;
    assert_hit(&rig.get("/tg/cdn-expires").await, "Expires ignored");
    assert_eq!(rig.count("/tg/cdn-expires"), 1);
}

// RFC 9213 §2.2: Cache-Control: private is ignored as well when CDN-Cache-Control applies.
#[tokio::test(flavor = "multi_thread")]
async fn cdn_cache_control_wins_over_cache_control_private() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/tg/cdn-private",
        &[(CDN, "max-age=60"), ("cache-control", "private")],
    );
    rig.get("/tg/cdn-private").await;
    assert_hit(&rig.get("/tg/cdn-private").await, "private ignored");
    assert_eq!(rig.count("/tg/cdn-private"), 1);
}

// RFC 9213 §2.1: the most specific target wins: Knitcache-Cache-Control over CDN-Cache-Control.
#[tokio::test(flavor = "multi_thread")]
async fn knitcache_cache_control_wins_over_cdn_no_store() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/tg/own-stores",
        &[
            (KCC, "max-age=60"),
            (CDN, "no-store"),
            ("cache-control", "no-store"),
        ],
    );
    rig.get("/tg/own-stores").await;
    assert_hit(&rig.get("/tg/own-stores").await, "own target decides");
    assert_eq!(rig.count("/tg/own-stores"), 1);
}

// RFC 9213 §2.1, the other way round.
#[tokio::test(flavor = "multi_thread")]
async fn knitcache_no_store_wins_over_cdn_max_age() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/tg/own-no-store",
        &[(KCC, "no-store"), (CDN, "max-age=60")],
    );
    rig.get("/tg/own-no-store").await;
    rig.get("/tg/own-no-store").await;
    assert_eq!(rig.count("/tg/own-no-store"), 2);
}

// RFC 9213 §2.1: a cache's own targeted field is for it alone: Knitcache-Cache-Control is not
// passed on, on the miss or on hits.
#[tokio::test(flavor = "multi_thread")]
async fn knitcache_cache_control_is_not_passed_on() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/tg/own-removed",
        &[(KCC, "max-age=60"), ("cache-control", "max-age=5")],
    );
    let miss = rig.get("/tg/own-removed").await;
    assert!(miss.headers.get(KCC).is_none(), "{:?}", miss.headers);
    assert_eq!(miss.header("cache-control"), "max-age=5");
    let hit = rig.get("/tg/own-removed").await;
    assert_hit(&hit, "stored");
    assert!(hit.headers.get(KCC).is_none(), "{:?}", hit.headers);
    assert_eq!(rig.count("/tg/own-removed"), 1);
}

// RFC 9213 §3.1: CDN-Cache-Control is for every CDN-like cache on the way, so it is passed on.
#[tokio::test(flavor = "multi_thread")]
async fn cdn_cache_control_is_passed_on() {
    let rig = Rig::std(&[]).await;
    rig.serve("/tg/cdn-kept", &[(CDN, "max-age=60")]);
    assert_eq!(rig.get("/tg/cdn-kept").await.header(CDN), "max-age=60");
    let hit = rig.get("/tg/cdn-kept").await;
    assert_hit(&hit, "stored");
    assert_eq!(hit.header(CDN), "max-age=60");
}

// RFC 9213 §2.1: "If a targeted field ... is invalid, the cache MUST ignore it and fall back":
// an unparseable CDN-Cache-Control leaves Cache-Control: max-age=60 in charge.
#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_targeted_field_is_ignored() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/tg/invalid",
        &[(CDN, "@@@"), ("cache-control", "max-age=60")],
    );
    rig.get("/tg/invalid").await;
    assert_hit(&rig.get("/tg/invalid").await, "Cache-Control applies");
    assert_eq!(rig.count("/tg/invalid"), 1);
}

// RFC 9213 §2.2 + RFC 9111 §5.2.2.4: a targeted no-cache forces validation on every use even
// when Cache-Control would allow reuse.
#[tokio::test(flavor = "multi_thread")]
async fn a_targeted_no_cache_forces_validation() {
    let rig = Rig::std(&[]).await;
    rig.origin.on("/tg/no-cache", |req, _| {
        let r = if req.header("if-none-match") == Some("\"t1\"") {
            Reply::status(304)
        } else {
            Reply::ok("targeted")
        };
        r.header("etag", "\"t1\"")
            .header(CDN, "no-cache")
            .header("cache-control", "max-age=60")
    });
    rig.get("/tg/no-cache").await;
    assert_eq!(rig.get("/tg/no-cache").await.text(), "targeted");
    assert_eq!(rig.count("/tg/no-cache"), 2);
    assert_eq!(
        rig.origin.last("/tg/no-cache").header("if-none-match"),
        Some("\"t1\"")
    );
}

// RFC 9213 §2.2 + RFC 9111 §5.2.2.10: a targeted s-maxage is a shared-cache lifetime too.
#[tokio::test(flavor = "multi_thread")]
async fn a_targeted_s_maxage_gives_the_lifetime() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/tg/s-maxage",
        &[(CDN, "s-maxage=60"), ("cache-control", "no-cache")],
    );
    rig.get("/tg/s-maxage").await;
    assert_hit(&rig.get("/tg/s-maxage").await, "targeted s-maxage");
    assert_eq!(rig.count("/tg/s-maxage"), 1);
}

// Route mode with `origin_cache_control: honour` reads the targeted fields as well.
#[tokio::test(flavor = "multi_thread")]
async fn route_mode_honour_reads_cdn_cache_control() {
    let rig = Rig::route_mode(&["origin_cache_control: honour"]).await;
    rig.serve(
        "/tg/route-honour",
        &[(CDN, "max-age=1"), ("cache-control", "max-age=60")],
    );
    rig.get("/tg/route-honour").await;
    sleep_ms(2100).await;
    rig.get("/tg/route-honour").await;
    assert_eq!(rig.count("/tg/route-honour"), 2);
}

// Knitcache-Cache-Control is removed in route mode too.
#[tokio::test(flavor = "multi_thread")]
async fn route_mode_does_not_pass_knitcache_cache_control_on() {
    let rig = Rig::route_mode(&[]).await;
    rig.serve("/tg/route-removed", &[(KCC, "max-age=60")]);
    let miss = rig.get("/tg/route-removed").await;
    assert!(miss.headers.get(KCC).is_none(), "{:?}", miss.headers);
    let hit = rig.get("/tg/route-removed").await;
    assert!(hit.headers.get(KCC).is_none(), "{:?}", hit.headers);
}
