//! Which statuses and methods are stored (RFC 9111 §3, RFC 9110 §9.2.3, §15.1): any status with
//! explicit freshness on a `freshness: origin` route unless `statuses` restricts it; only GET
//! and HEAD; the route mode's status list.

use crate::*;

/// A `status` response with `max-age=60` and body `v1`, `v2`, ...
fn explicit(rig: &Rig, path: &str, status: u16) {
    rig.origin.on(path, move |_, n| {
        Reply::status(status)
            .body(format!("v{}", n + 1))
            .header("cache-control", "max-age=60")
            .header("location", "/target")
    });
}

// §3: a response may be stored if it "contains ... a max-age response directive" — whatever its
// status is "understood by the cache": a 302 with max-age is stored.
#[tokio::test(flavor = "multi_thread")]
async fn a_302_with_explicit_freshness_is_stored() {
    let rig = Rig::std(&[]).await;
    explicit(&rig, "/st/302", 302);
    rig.get("/st/302").await;
    let hit = rig.get("/st/302").await;
    assert_eq!(
        (hit.status, hit.header("location").as_str()),
        (302, "/target")
    );
    assert_hit(&hit, "explicit freshness");
    assert_eq!(rig.count("/st/302"), 1);
}

// §3: the same for a 307.
#[tokio::test(flavor = "multi_thread")]
async fn a_307_with_explicit_freshness_is_stored() {
    let rig = Rig::std(&[]).await;
    explicit(&rig, "/st/307", 307);
    rig.get("/st/307").await;
    assert_hit(&rig.get("/st/307").await, "explicit freshness");
    assert_eq!(rig.count("/st/307"), 1);
}

// §3: a 500 with explicit freshness is stored too.
#[tokio::test(flavor = "multi_thread")]
async fn a_500_with_explicit_freshness_is_stored() {
    let rig = Rig::std(&[]).await;
    explicit(&rig, "/st/500", 500);
    rig.get("/st/500").await;
    let hit = rig.get("/st/500").await;
    assert_eq!((hit.status, hit.text().as_str()), (500, "v1"));
    assert_hit(&hit, "explicit freshness");
    assert_eq!(rig.count("/st/500"), 1);
}

// §3: and a status the cache has no meaning for (418) with explicit freshness.
#[tokio::test(flavor = "multi_thread")]
async fn a_418_with_explicit_freshness_is_stored() {
    let rig = Rig::std(&[]).await;
    explicit(&rig, "/st/418", 418);
    rig.get("/st/418").await;
    let hit = rig.get("/st/418").await;
    assert_eq!(hit.status, 418);
    assert_hit(&hit, "explicit freshness");
    assert_eq!(rig.count("/st/418"), 1);
}

// §3: a 204 with max-age is stored and served without a body.
#[tokio::test(flavor = "multi_thread")]
async fn a_204_with_explicit_freshness_is_stored() {
    let rig = Rig::std(&[]).await;
    explicit(&rig, "/st/204", 204);
    rig.get("/st/204").await;
    let hit = rig.get("/st/204").await;
    assert_eq!(hit.status, 204);
    assert!(hit.body.is_empty());
    assert_hit(&hit, "explicit freshness");
    assert_eq!(rig.count("/st/204"), 1);
}

// A cache may store less than it could (§3 "MAY"): an explicit `statuses: [200]` restricts a
// standards route to 200s; a 404 with max-age is not stored (detail `status`).
#[tokio::test(flavor = "multi_thread")]
async fn an_explicit_status_list_restricts_storage() {
    let rig = Rig::std(&["statuses: [200]"]).await;
    explicit(&rig, "/st/listed-404", 404);
    let first = rig.get("/st/listed-404").await;
    assert_eq!(first.cache_status(), "knitcache; fwd=miss; detail=status");
    rig.get("/st/listed-404").await;
    assert_eq!(rig.count("/st/listed-404"), 2);
}

// ... while the listed status is still stored.
#[tokio::test(flavor = "multi_thread")]
async fn an_explicit_status_list_stores_what_it_lists() {
    let rig = Rig::std(&["statuses: [200]"]).await;
    explicit(&rig, "/st/listed-200", 200);
    rig.get("/st/listed-200").await;
    assert_hit(&rig.get("/st/listed-200").await, "200 is listed");
    assert_eq!(rig.count("/st/listed-200"), 1);
}

// §3: "the request method is understood by the cache" — knitcache stores GET and HEAD only; a
// POST response with max-age is not stored, and a later GET is not answered with it.
#[tokio::test(flavor = "multi_thread")]
async fn a_post_response_with_max_age_is_not_stored() {
    let rig = Rig::std(&[]).await;
    rig.serve("/st/post", &[("cache-control", "max-age=60")]);
    assert_eq!(rig.request("POST", "/st/post", &[], "a").await.text(), "v1");
    assert_eq!(rig.request("POST", "/st/post", &[], "b").await.text(), "v2");
    assert_eq!(rig.get("/st/post").await.text(), "v3");
    assert_eq!(rig.count("/st/post"), 3);
}

// RFC 9110 §9.3.4: PUT responses are not cacheable.
#[tokio::test(flavor = "multi_thread")]
async fn a_put_response_is_not_stored() {
    let rig = Rig::std(&[]).await;
    rig.serve("/st/put", &[("cache-control", "max-age=60")]);
    rig.request("PUT", "/st/put", &[], "x").await;
    rig.request("PUT", "/st/put", &[], "x").await;
    assert_eq!(rig.count("/st/put"), 2);
}

// RFC 9110 §9.3.7: "Responses to the OPTIONS method are not cacheable."
#[tokio::test(flavor = "multi_thread")]
async fn an_options_response_is_not_stored() {
    let rig = Rig::std(&[]).await;
    rig.serve("/st/options", &[("cache-control", "max-age=60")]);
    rig.request("OPTIONS", "/st/options", &[], "").await;
    rig.request("OPTIONS", "/st/options", &[], "").await;
    assert_eq!(rig.count("/st/options"), 2);
}

// §3 for a non-standard method the cache does not understand.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_method_response_is_not_stored() {
    let rig = Rig::std(&[]).await;
    rig.serve("/st/report", &[("cache-control", "max-age=60")]);
    rig.request("REPORT", "/st/report", &[], "").await;
    rig.request("REPORT", "/st/report", &[], "").await;
    assert_eq!(rig.get("/st/report").await.text(), "v3");
    assert_eq!(rig.count("/st/report"), 3);
}

// Route mode: statuses outside the route's list are not stored (detail `status`).
#[tokio::test(flavor = "multi_thread")]
async fn route_mode_does_not_store_unlisted_statuses() {
    let rig = Rig::route_mode(&[]).await;
    explicit(&rig, "/st/route-500", 500);
    let first = rig.get("/st/route-500").await;
    assert_eq!(first.cache_status(), "knitcache; fwd=miss; detail=status");
    rig.get("/st/route-500").await;
    assert_eq!(rig.count("/st/route-500"), 2);
}

// Route mode: the default list holds 404 (RFC 9110 §15.5.5, heuristically cacheable).
#[tokio::test(flavor = "multi_thread")]
async fn route_mode_stores_a_404_by_default() {
    let rig = Rig::route_mode(&[]).await;
    rig.origin
        .on("/st/route-404", |_, _| Reply::status(404).body("gone"));
    rig.get("/st/route-404").await;
    let hit = rig.get("/st/route-404").await;
    assert_eq!(hit.status, 404);
    assert_hit(&hit, "404 is in the default list");
    assert_eq!(rig.count("/st/route-404"), 1);
}

// Route mode with its own list: a listed 302 is stored.
#[tokio::test(flavor = "multi_thread")]
async fn route_mode_stores_what_its_list_names() {
    let rig = Rig::route_mode(&["statuses: [200, 302]"]).await;
    rig.origin.on("/st/route-302", |_, _| {
        Reply::status(302).header("location", "/there")
    });
    rig.get("/st/route-302").await;
    assert_hit(&rig.get("/st/route-302").await, "302 listed");
    assert_eq!(rig.count("/st/route-302"), 1);
}

// §3: no-store wins whatever the status.
#[tokio::test(flavor = "multi_thread")]
async fn no_store_wins_on_any_status() {
    let rig = Rig::std(&[]).await;
    rig.origin.on("/st/no-store-404", |_, _| {
        Reply::status(404).header("cache-control", "max-age=60, no-store")
    });
    rig.get("/st/no-store-404").await;
    rig.get("/st/no-store-404").await;
    assert_eq!(rig.count("/st/no-store-404"), 2);
}

// §3: a 206 answer to a request without Range is not something a cache may store as the full
// response; the next full GET reaches the origin (RFC 9111 §3.3: incomplete responses).
#[tokio::test(flavor = "multi_thread")]
async fn a_206_to_a_plain_get_is_not_served_as_the_full_response() {
    let rig = Rig::std(&[]).await;
    rig.origin.on("/st/206", |_, n| {
        if n == 0 {
            Reply::status(206)
                .body("par")
                .header("content-range", "bytes 0-2/7")
                .header("cache-control", "max-age=60")
        } else {
            Reply::ok("partial").header("cache-control", "max-age=60")
        }
    });
    rig.get("/st/206").await;
    let full = rig.get("/st/206").await;
    assert_eq!((full.status, full.text().as_str()), (200, "partial"));
    assert_eq!(rig.count("/st/206"), 2);
}

// §5.2.2.3: must-understand "limits caching of the response to a cache that understands and
// conforms to the requirements for that response's status code". 418 has no requirements (RFC
// 9110 §15.5.19 leaves it unused): with the directive it is not stored, though its explicit
// freshness stores it without (`a_418_with_explicit_freshness_is_stored`).
#[tokio::test(flavor = "multi_thread")]
async fn must_understand_keeps_a_status_without_caching_rules_out() {
    let rig = Rig::std(&[]).await;
    rig.origin.on("/st/mu-418", |_, n| {
        Reply::status(418)
            .body(format!("v{}", n + 1))
            .header("cache-control", "must-understand, max-age=60")
    });
    rig.get("/st/mu-418").await;
    assert_not_hit(&rig.get("/st/mu-418").await, "418 is not understood");
    assert_eq!(rig.count("/st/mu-418"), 2);
}

// §5.2.2.3: "When a cache that implements the must-understand directive receives a response that
// includes it, the cache SHOULD ignore the no-store directive if it understands and implements
// the status code's caching requirements": `must-understand, no-store` stores a 200.
#[tokio::test(flavor = "multi_thread")]
async fn must_understand_lifts_no_store_for_an_understood_status() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/st/mu-200",
        &[("cache-control", "must-understand, no-store, max-age=60")],
    );
    rig.get("/st/mu-200").await;
    assert_hit(&rig.get("/st/mu-200").await, "understood");
    assert_eq!(rig.count("/st/mu-200"), 1);
}

// must-understand lifts no-store only: a private response is still never shared (§5.2.2.7).
#[tokio::test(flavor = "multi_thread")]
async fn must_understand_does_not_lift_private() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/st/mu-private",
        &[("cache-control", "must-understand, private, max-age=60")],
    );
    rig.get("/st/mu-private").await;
    rig.get("/st/mu-private").await;
    assert_eq!(rig.count("/st/mu-private"), 2);
}
