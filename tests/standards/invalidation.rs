//! Invalidation by unsafe methods (RFC 9111 §4.4): a non-error response to POST, PUT, PATCH or
//! DELETE removes the stored responses of its target URI and of same-origin `Location` and
//! `Content-Location`; errors remove nothing; the write reaches the origin untouched.

use crate::*;

/// Stores `path` (GET, max-age=60, body `v1`...) and checks the second GET is a hit.
async fn warm(rig: &Rig, path: &str) {
    rig.get(path).await;
    assert_hit(&rig.get(path).await, &format!("{path} stored"));
}

/// `path` answers GET with `versioned` max-age=60 and other methods with `write_status` and
/// `write_headers`.
fn resource(rig: &Rig, path: &str, write_status: u16, write_headers: &[(&str, &str)]) {
    let read = versioned(&[("cache-control", "max-age=60")]);
    let write: Vec<(String, String)> = write_headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    rig.origin.on(path, move |req, n| {
        if req.method == "GET" || req.method == "HEAD" {
            read(req, n)
        } else {
            write
                .iter()
                .fold(Reply::status(write_status).body("written"), |r, (k, v)| {
                    r.header(k, v)
                })
        }
    });
}

/// GETs that reached the origin for `path`.
fn gets(rig: &Rig, path: &str) -> usize {
    rig.origin
        .requests(path)
        .iter()
        .filter(|r| r.method == "GET")
        .count()
}

// §4.4: "A cache MUST invalidate the target URI ... when it receives a non-error status code in
// response to an unsafe request method": POST.
#[tokio::test(flavor = "multi_thread")]
async fn a_successful_post_invalidates_its_target_uri() {
    let rig = Rig::std(&[]).await;
    resource(&rig, "/in/post", 200, &[]);
    warm(&rig, "/in/post").await;
    assert_eq!(rig.request("POST", "/in/post", &[], "x").await.status, 200);
    let after = rig.get("/in/post").await;
    assert_not_hit(&after, "invalidated by POST");
    assert_eq!(after.text(), "v3", "the origin's current answer");
    assert_eq!(gets(&rig, "/in/post"), 2);
}

// §4.4: PUT.
#[tokio::test(flavor = "multi_thread")]
async fn a_successful_put_invalidates_its_target_uri() {
    let rig = Rig::std(&[]).await;
    resource(&rig, "/in/put", 204, &[]);
    warm(&rig, "/in/put").await;
    rig.request("PUT", "/in/put", &[], "x").await;
    assert_not_hit(&rig.get("/in/put").await, "invalidated by PUT");
    assert_eq!(gets(&rig, "/in/put"), 2);
}

// §4.4: PATCH.
#[tokio::test(flavor = "multi_thread")]
async fn a_successful_patch_invalidates_its_target_uri() {
    let rig = Rig::std(&[]).await;
    resource(&rig, "/in/patch", 200, &[]);
    warm(&rig, "/in/patch").await;
    rig.request("PATCH", "/in/patch", &[], "x").await;
    assert_not_hit(&rig.get("/in/patch").await, "invalidated by PATCH");
    assert_eq!(gets(&rig, "/in/patch"), 2);
}

// §4.4: DELETE.
#[tokio::test(flavor = "multi_thread")]
async fn a_successful_delete_invalidates_its_target_uri() {
    let rig = Rig::std(&[]).await;
    resource(&rig, "/in/delete", 202, &[]);
    warm(&rig, "/in/delete").await;
    rig.request("DELETE", "/in/delete", &[], "").await;
    assert_not_hit(&rig.get("/in/delete").await, "invalidated by DELETE");
    assert_eq!(gets(&rig, "/in/delete"), 2);
}

// §4.4: "non-error status code": a 3xx answer to a write invalidates too.
#[tokio::test(flavor = "multi_thread")]
async fn a_redirecting_write_invalidates() {
    let rig = Rig::std(&[]).await;
    resource(&rig, "/in/see-other", 303, &[("location", "/in/elsewhere")]);
    warm(&rig, "/in/see-other").await;
    assert_eq!(
        rig.request("POST", "/in/see-other", &[], "x").await.status,
        303
    );
    assert_not_hit(&rig.get("/in/see-other").await, "303 is not an error");
    assert_eq!(gets(&rig, "/in/see-other"), 2);
}

// §4.4: an error response (4xx) to the write invalidates nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_4xx_write_invalidates_nothing() {
    let rig = Rig::std(&[]).await;
    resource(&rig, "/in/rejected", 409, &[]);
    warm(&rig, "/in/rejected").await;
    assert_eq!(
        rig.request("POST", "/in/rejected", &[], "x").await.status,
        409
    );
    assert_hit(&rig.get("/in/rejected").await, "a 409 invalidates nothing");
    assert_eq!(gets(&rig, "/in/rejected"), 1);
}

// §4.4: nor does a 5xx.
#[tokio::test(flavor = "multi_thread")]
async fn a_5xx_write_invalidates_nothing() {
    let rig = Rig::std(&[]).await;
    resource(&rig, "/in/failed", 500, &[]);
    warm(&rig, "/in/failed").await;
    assert_eq!(rig.request("PUT", "/in/failed", &[], "x").await.status, 500);
    assert_hit(&rig.get("/in/failed").await, "a 500 invalidates nothing");
    assert_eq!(gets(&rig, "/in/failed"), 1);
}

// §4.4: "A cache MUST invalidate ... the URI(s) in the Location and Content-Location response
// header fields (if present)": a relative Location.
#[tokio::test(flavor = "multi_thread")]
async fn a_relative_location_is_invalidated() {
    let rig = Rig::std(&[]).await;
    resource(&rig, "/in/items", 201, &[("location", "/in/items-7")]);
    resource(&rig, "/in/items-7", 200, &[]);
    warm(&rig, "/in/items-7").await;
    rig.request("POST", "/in/items", &[], "new").await;
    assert_not_hit(&rig.get("/in/items-7").await, "named by Location");
    assert_eq!(gets(&rig, "/in/items-7"), 2);
}

// §4.4: an absolute Location with the request's own host is the same origin.
#[tokio::test(flavor = "multi_thread")]
async fn an_absolute_same_host_location_is_invalidated() {
    let rig = Rig::std(&[]).await;
    let location = format!("http://{}/in/abs-target", rig.proxy.addrs.proxy);
    resource(&rig, "/in/abs", 201, &[("location", &location)]);
    resource(&rig, "/in/abs-target", 200, &[]);
    warm(&rig, "/in/abs-target").await;
    rig.request("POST", "/in/abs", &[], "new").await;
    assert_not_hit(&rig.get("/in/abs-target").await, "same host");
    assert_eq!(gets(&rig, "/in/abs-target"), 2);
}

// §4.4: "a cache MUST NOT trigger an invalidation ... when the origin (Section 4.3.1 of
// [HTTP]) of the URI ... differs from the origin of the target URI": a cross-host Location.
#[tokio::test(flavor = "multi_thread")]
async fn a_cross_host_location_is_not_invalidated() {
    let rig = Rig::std(&[]).await;
    resource(
        &rig,
        "/in/cross",
        201,
        &[("location", "http://other.example/in/cross-target")],
    );
    resource(&rig, "/in/cross-target", 200, &[]);
    warm(&rig, "/in/cross-target").await;
    rig.request("POST", "/in/cross", &[], "new").await;
    assert_hit(&rig.get("/in/cross-target").await, "another origin");
    assert_eq!(gets(&rig, "/in/cross-target"), 1);
}

// §4.4: Content-Location is invalidated too.
#[tokio::test(flavor = "multi_thread")]
async fn a_content_location_is_invalidated() {
    let rig = Rig::std(&[]).await;
    resource(
        &rig,
        "/in/cl",
        200,
        &[("content-location", "/in/cl-representation")],
    );
    resource(&rig, "/in/cl-representation", 200, &[]);
    warm(&rig, "/in/cl-representation").await;
    rig.request("PUT", "/in/cl", &[], "x").await;
    assert_not_hit(
        &rig.get("/in/cl-representation").await,
        "named by Content-Location",
    );
    assert_eq!(gets(&rig, "/in/cl-representation"), 2);
}

// §4.4: the target URI is path and query: another query of the same path stays stored.
#[tokio::test(flavor = "multi_thread")]
async fn invalidation_is_by_path_and_query() {
    let rig = Rig::std(&[]).await;
    resource(&rig, "/in/q", 200, &[]);
    warm(&rig, "/in/q?id=1").await;
    warm(&rig, "/in/q?id=2").await;
    rig.request("POST", "/in/q?id=1", &[], "x").await;
    assert_not_hit(&rig.get("/in/q?id=1").await, "the target");
    assert_hit(&rig.get("/in/q?id=2").await, "another URI");
    assert_eq!(gets(&rig, "/in/q"), 3);
}

// §4.4: "invalidate" means every stored response for the URI: all Vary variants go.
#[tokio::test(flavor = "multi_thread")]
async fn invalidation_removes_every_variant() {
    let rig = Rig::std(&[]).await;
    rig.origin.on("/in/varied", |req, n| {
        if req.method == "GET" {
            Reply::ok(format!("v{}", n + 1))
                .header("cache-control", "max-age=60")
                .header("vary", "X-Tenant")
        } else {
            Reply::status(204)
        }
    });
    for t in ["a", "b"] {
        rig.get_with("/in/varied", &[("x-tenant", t)]).await;
        assert_hit(
            &rig.get_with("/in/varied", &[("x-tenant", t)]).await,
            "stored",
        );
    }
    rig.request("DELETE", "/in/varied", &[], "").await;
    for t in ["a", "b"] {
        assert_not_hit(
            &rig.get_with("/in/varied", &[("x-tenant", t)]).await,
            "every variant",
        );
    }
    assert_eq!(gets(&rig, "/in/varied"), 4);
}

// §4.4 with the cache in the way: the write itself reaches the origin byte for byte (method,
// URI, body, fields).
#[tokio::test(flavor = "multi_thread")]
async fn the_write_reaches_the_origin_unchanged() {
    let rig = Rig::std(&[]).await;
    resource(&rig, "/in/body", 200, &[]);
    let body = "{\"qty\": 42, \"note\": \"caf\u{e9} \\u00e9\"}";
    let r = rig
        .request(
            "POST",
            "/in/body?b=2&a=1",
            &[
                ("content-type", "application/json"),
                ("x-request-id", "r-1"),
            ],
            body,
        )
        .await;
    assert_eq!((r.status, r.text().as_str()), (200, "written"));
    let seen = rig.origin.last("/in/body");
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.uri, "/in/body?b=2&a=1");
    assert_eq!(seen.body, body.as_bytes());
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(seen.header("x-request-id"), Some("r-1"));
}

// §4.4: invalidations are counted in knitcache_method_invalidations_total.
#[tokio::test(flavor = "multi_thread")]
async fn method_invalidations_are_counted() {
    let rig = Rig::std(&[]).await;
    resource(&rig, "/in/counted", 200, &[]);
    warm(&rig, "/in/counted").await;
    let before = metric_sum(&rig.proxy, "knitcache_method_invalidations_total").await;
    rig.request("POST", "/in/counted", &[], "x").await;
    let after = metric_sum(&rig.proxy, "knitcache_method_invalidations_total").await;
    assert!(after > before, "counted: {before} -> {after}");
}

// §4.4: a failed write is not counted as an invalidation.
#[tokio::test(flavor = "multi_thread")]
async fn failed_writes_are_not_counted() {
    let rig = Rig::std(&[]).await;
    resource(&rig, "/in/not-counted", 400, &[]);
    warm(&rig, "/in/not-counted").await;
    rig.request("POST", "/in/not-counted", &[], "x").await;
    let n = metric_sum(&rig.proxy, "knitcache_method_invalidations_total").await;
    assert_eq!(n, 0.0);
}

// §4.4 in the ERP's route mode.
#[tokio::test(flavor = "multi_thread")]
async fn a_successful_write_invalidates_in_route_mode() {
    let rig = Rig::route_mode(&[]).await;
    resource(&rig, "/in/route", 200, &[("location", "/in/route-other")]);
    resource(&rig, "/in/route-other", 200, &[]);
    warm(&rig, "/in/route").await;
    warm(&rig, "/in/route-other").await;
    rig.request("POST", "/in/route", &[], "x").await;
    assert_not_hit(&rig.get("/in/route").await, "target");
    assert_not_hit(&rig.get("/in/route-other").await, "Location");
    assert_eq!(gets(&rig, "/in/route") + gets(&rig, "/in/route-other"), 4);
}

// §4.4: a safe method (GET) never invalidates; a write to one path leaves others alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_leaves_other_uris_alone() {
    let rig = Rig::std(&[]).await;
    resource(&rig, "/in/one", 200, &[]);
    resource(&rig, "/in/two", 200, &[]);
    warm(&rig, "/in/one").await;
    warm(&rig, "/in/two").await;
    rig.request("POST", "/in/one", &[], "x").await;
    assert_hit(&rig.get("/in/two").await, "not the target");
    assert_eq!(gets(&rig, "/in/two"), 1);
}
