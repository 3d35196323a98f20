//! Heuristic freshness (RFC 9111 §4.2.2, RFC 9110 §15.1): a response without explicit freshness
//! but with `Last-Modified` and a heuristically cacheable status is fresh for
//! `heuristic_percent` % of (Date − Last-Modified), at most `heuristic_max_secs`.

use crate::*;

/// A response with `Last-Modified` `lm_offset` seconds from now, a `Date` of now, no
/// `Cache-Control`, body `v1`, `v2`, ...
fn last_modified(rig: &Rig, path: &str, status: u16, lm_offset: i64, extra: &[(&str, &str)]) {
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    rig.origin.on(path, move |_, n| {
        let mut r = Reply::status(status)
            .body(format!("v{}", n + 1))
            .header("date", &http_date(0))
            .header("last-modified", &http_date(lm_offset));
        for (name, value) in &extra {
            r = r.header(name, value);
        }
        r
    });
}

// §4.2.2: "If the response has a Last-Modified header field ..., caches are encouraged to use a
// heuristic expiration value that is no more than some fraction of the interval since that
// time": modified 10 hours ago, 10 % → fresh for an hour.
#[tokio::test(flavor = "multi_thread")]
async fn last_modified_gives_a_heuristic_lifetime() {
    let rig = Rig::std(&[]).await;
    last_modified(&rig, "/he/basic", 200, -36_000, &[]);
    let first = rig.get("/he/basic").await;
    assert_eq!(first.cache_status(), "knitcache; fwd=miss");
    let hit = rig.get("/he/basic").await;
    assert_hit(&hit, "heuristically fresh");
    assert_eq!(hit.text(), "v1");
    assert_eq!(rig.count("/he/basic"), 1);
}

// §4.2.2: the lifetime is the configured fraction of (Date − Last-Modified): 10 % of 20 s is
// 2 s: fresh at once, stale after 2.1 s.
#[tokio::test(flavor = "multi_thread")]
async fn the_heuristic_is_a_fraction_of_the_time_since_last_modified() {
    let rig = Rig::std(&["heuristic_percent: 10"]).await;
    last_modified(&rig, "/he/fraction", 200, -20, &[]);
    rig.get("/he/fraction").await;
    assert_hit(&rig.get("/he/fraction").await, "2 s heuristic lifetime");
    sleep_ms(2100).await;
    assert_not_hit(&rig.get("/he/fraction").await, "2 s passed");
    assert_eq!(rig.count("/he/fraction"), 2);
}

// §4.2.2 with a larger fraction: 50 % of 4 s is 2 s: fresh at once, stale after 2.1 s.
#[tokio::test(flavor = "multi_thread")]
async fn heuristic_percent_scales_the_lifetime() {
    let rig = Rig::std(&["heuristic_percent: 50"]).await;
    last_modified(&rig, "/he/percent", 200, -4, &[]);
    rig.get("/he/percent").await;
    assert_hit(&rig.get("/he/percent").await, "2 s heuristic lifetime");
    sleep_ms(2100).await;
    rig.get("/he/percent").await;
    assert_eq!(rig.count("/he/percent"), 2, "50 % of 4 s ran out");
}

// §4.2.2: a cache may cap the heuristic: `heuristic_max_secs: 1` makes a year-old Last-Modified
// fresh for one second only.
#[tokio::test(flavor = "multi_thread")]
async fn heuristic_max_secs_caps_the_lifetime() {
    let rig = Rig::std(&["heuristic_max_secs: 1"]).await;
    last_modified(&rig, "/he/capped", 200, -31_536_000, &[]);
    rig.get("/he/capped").await;
    sleep_ms(2100).await;
    assert_not_hit(&rig.get("/he/capped").await, "capped at 1 s");
    assert_eq!(rig.count("/he/capped"), 2);
}

// §4.2.2: heuristics are allowed, not required: `heuristic_percent: 0` turns them off, and the
// response (stale at once) is never reused without the origin.
#[tokio::test(flavor = "multi_thread")]
async fn heuristic_percent_zero_turns_heuristics_off() {
    let rig = Rig::std(&["heuristic_percent: 0"]).await;
    last_modified(&rig, "/he/off", 200, -36_000, &[]);
    rig.get("/he/off").await;
    assert_not_hit(&rig.get("/he/off").await, "no heuristic");
    assert_eq!(rig.count("/he/off"), 2);
}

// RFC 9110 §15.1: 302 is not heuristically cacheable: Last-Modified does not make it fresh.
#[tokio::test(flavor = "multi_thread")]
async fn a_302_with_last_modified_is_not_heuristically_fresh() {
    let rig = Rig::std(&[]).await;
    last_modified(&rig, "/he/302", 302, -36_000, &[("location", "/elsewhere")]);
    rig.get("/he/302").await;
    rig.get("/he/302").await;
    assert_eq!(rig.count("/he/302"), 2);
}

// RFC 9110 §15.1: nor is 307.
#[tokio::test(flavor = "multi_thread")]
async fn a_307_with_last_modified_is_not_heuristically_fresh() {
    let rig = Rig::std(&[]).await;
    last_modified(&rig, "/he/307", 307, -36_000, &[("location", "/elsewhere")]);
    rig.get("/he/307").await;
    rig.get("/he/307").await;
    assert_eq!(rig.count("/he/307"), 2);
}

// RFC 9110 §15.1: nor is 500.
#[tokio::test(flavor = "multi_thread")]
async fn a_500_with_last_modified_is_not_heuristically_fresh() {
    let rig = Rig::std(&[]).await;
    last_modified(&rig, "/he/500", 500, -36_000, &[]);
    rig.get("/he/500").await;
    rig.get("/he/500").await;
    assert_eq!(rig.count("/he/500"), 2);
}

// RFC 9110 §15.5.5: "A 404 response is heuristically cacheable".
#[tokio::test(flavor = "multi_thread")]
async fn a_404_with_last_modified_is_heuristically_fresh() {
    let rig = Rig::std(&[]).await;
    last_modified(&rig, "/he/404", 404, -36_000, &[]);
    rig.get("/he/404").await;
    let hit = rig.get("/he/404").await;
    assert_eq!(hit.status, 404);
    assert_hit(&hit, "404 is heuristically cacheable");
    assert_eq!(rig.count("/he/404"), 1);
}

// RFC 9110 §15.4.2: "A 301 response is heuristically cacheable".
#[tokio::test(flavor = "multi_thread")]
async fn a_301_with_last_modified_is_heuristically_fresh() {
    let rig = Rig::std(&[]).await;
    last_modified(&rig, "/he/301", 301, -36_000, &[("location", "/moved")]);
    rig.get("/he/301").await;
    let hit = rig.get("/he/301").await;
    assert_eq!(
        (hit.status, hit.header("location").as_str()),
        (301, "/moved")
    );
    assert_hit(&hit, "301 is heuristically cacheable");
    assert_eq!(rig.count("/he/301"), 1);
}

// RFC 9110 §15.1: the heuristically cacheable statuses are 200, 203, 204, 206, 300, 301, 308,
// 404, 405, 410, 414 and 501 (206 needs a range request; the rest are checked here).
#[tokio::test(flavor = "multi_thread")]
async fn every_heuristically_cacheable_status_is_stored_with_last_modified() {
    let rig = Rig::std(&[]).await;
    let statuses = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];
    for status in statuses {
        let path = format!("/he/status/{status}");
        last_modified(&rig, &path, status, -36_000, &[("location", "/x")]);
        rig.get(&path).await;
        let again = rig.get(&path).await;
        assert_eq!(again.status, status);
        assert_hit(&again, &format!("{status} is heuristically cacheable"));
        assert_eq!(rig.count(&path), 1, "{status}");
    }
}

// §4.2.2: "A cache MUST NOT use heuristics to determine freshness when an explicit expiration
// time is present": max-age=1 with an old Last-Modified expires after a second.
#[tokio::test(flavor = "multi_thread")]
async fn explicit_max_age_wins_over_the_heuristic() {
    let rig = Rig::std(&[]).await;
    last_modified(
        &rig,
        "/he/explicit",
        200,
        -36_000,
        &[("cache-control", "max-age=1")],
    );
    rig.get("/he/explicit").await;
    sleep_ms(2100).await;
    rig.get("/he/explicit").await;
    assert_eq!(rig.count("/he/explicit"), 2);
}

// §4.2.2 + §5.3: an invalid Expires is an explicit (past) expiration time, so no heuristic.
#[tokio::test(flavor = "multi_thread")]
async fn an_expired_expires_wins_over_the_heuristic() {
    let rig = Rig::std(&[]).await;
    last_modified(&rig, "/he/expires", 200, -36_000, &[("expires", "0")]);
    rig.get("/he/expires").await;
    rig.get("/he/expires").await;
    assert_eq!(rig.count("/he/expires"), 2);
}

// §4.2.2: without Last-Modified there is nothing to base a heuristic on (Date alone is not).
#[tokio::test(flavor = "multi_thread")]
async fn no_last_modified_no_heuristic() {
    let rig = Rig::std(&[]).await;
    let date = http_date(0);
    rig.serve("/he/no-lm", &[("date", &date)]);
    rig.get("/he/no-lm").await;
    rig.get("/he/no-lm").await;
    assert_eq!(rig.count("/he/no-lm"), 2);
}

// §4.2.2: a Last-Modified after Date gives no positive interval, so no heuristic lifetime.
#[tokio::test(flavor = "multi_thread")]
async fn a_last_modified_after_date_gives_no_heuristic() {
    let rig = Rig::std(&[]).await;
    last_modified(&rig, "/he/future-lm", 200, 3600, &[]);
    rig.get("/he/future-lm").await;
    rig.get("/he/future-lm").await;
    assert_eq!(rig.count("/he/future-lm"), 2);
}

// §4.2.2 / RFC 9110 §6.6.1: without Date the receipt time stands in for it.
#[tokio::test(flavor = "multi_thread")]
async fn heuristic_without_date_counts_from_receipt() {
    let rig = Rig::std(&[]).await;
    let lm = http_date(-36_000);
    rig.serve("/he/no-date", &[("last-modified", &lm)]);
    rig.get("/he/no-date").await;
    assert_hit(&rig.get("/he/no-date").await, "an hour by heuristic");
    assert_eq!(rig.count("/he/no-date"), 1);
}

// §5.2.2.9: "If a response with the public directive has no explicit freshness information,
// it is heuristically cacheable" — whatever its status, here a 302.
#[tokio::test(flavor = "multi_thread")]
async fn public_makes_any_status_heuristically_cacheable() {
    let rig = Rig::std(&[]).await;
    last_modified(
        &rig,
        "/he/public-302",
        302,
        -36_000,
        &[("cache-control", "public"), ("location", "/x")],
    );
    rig.get("/he/public-302").await;
    let hit = rig.get("/he/public-302").await;
    assert_eq!(hit.status, 302);
    assert_hit(&hit, "public 302 with Last-Modified");
    assert_eq!(rig.count("/he/public-302"), 1);
}

// §4.2.2 in the ERP's route mode: no heuristics, the route's TTL decides (a response without
// Last-Modified is stored for ttl_secs).
#[tokio::test(flavor = "multi_thread")]
async fn route_mode_needs_no_heuristic() {
    let rig = Rig::route_mode(&[]).await;
    rig.serve("/he/route", &[]);
    rig.get("/he/route").await;
    assert_hit(&rig.get("/he/route").await, "ttl_secs: 60");
    assert_eq!(rig.count("/he/route"), 1);
}
