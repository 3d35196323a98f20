//! HEAD (RFC 9110 §9.3.2, RFC 9111 §4.3.5): answered from a stored GET response with the same
//! header fields and no body; a HEAD first does not leave a bodiless entry for GETs.

use crate::*;

/// `path`: max-age=60, a custom field, ETag, body `full body`.
fn resource(rig: &Rig, path: &str) {
    rig.origin.on(path, |_, _| {
        Reply::ok("full body")
            .header("cache-control", "max-age=60")
            .header("content-type", "text/plain")
            .header("etag", "\"h1\"")
            .header("x-custom", "kept")
    });
}

async fn head(rig: &Rig, path: &str) -> Resp {
    rig.request("HEAD", path, &[], "").await
}

// RFC 9110 §9.3.2: "The server SHOULD send the same header fields in response to a HEAD request
// as it would have sent if the request method had been GET"; a cache may answer HEAD from a
// stored GET response (RFC 9111 §4).
#[tokio::test(flavor = "multi_thread")]
async fn head_after_get_is_answered_from_the_cache() {
    let rig = Rig::std(&[]).await;
    resource(&rig, "/hd/after-get");
    let full = rig.get("/hd/after-get").await;
    let h = head(&rig, "/hd/after-get").await;
    assert_eq!(h.status, 200);
    assert_hit(&h, "from the stored GET");
    assert!(h.body.is_empty(), "HEAD has no body");
    for field in ["etag", "x-custom", "content-type", "cache-control"] {
        assert_eq!(h.header(field), full.header(field), "{field}");
    }
    assert_eq!(rig.count("/hd/after-get"), 1);
}

// RFC 9110 §8.6: a HEAD response's Content-Length is the GET's.
#[tokio::test(flavor = "multi_thread")]
async fn head_from_the_cache_states_the_gets_length() {
    let rig = Rig::std(&[]).await;
    resource(&rig, "/hd/length");
    rig.get("/hd/length").await;
    let h = head(&rig, "/hd/length").await;
    assert_eq!(h.header("content-length"), "full body".len().to_string());
    assert_eq!(rig.count("/hd/length"), 1);
}

// RFC 9111 §5.1: a HEAD answered from the cache carries Age like any response from it.
#[tokio::test(flavor = "multi_thread")]
async fn head_from_the_cache_carries_age() {
    let rig = Rig::std(&[]).await;
    resource(&rig, "/hd/age");
    rig.get("/hd/age").await;
    let h = head(&rig, "/hd/age").await;
    assert!(!h.header("age").is_empty(), "{:?}", h.headers);
}

// RFC 9111 §4.3.5 / RFC 9110 §9.3.2: a HEAD first must not leave a bodiless entry: the GET
// after it gets the full body, and a second GET is a hit.
#[tokio::test(flavor = "multi_thread")]
async fn get_after_head_gets_the_full_body() {
    let rig = Rig::std(&[]).await;
    resource(&rig, "/hd/first");
    let h = head(&rig, "/hd/first").await;
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty());
    let g = rig.get("/hd/first").await;
    assert_eq!((g.status, g.text().as_str()), (200, "full body"));
    let again = rig.get("/hd/first").await;
    assert_hit(&again, "stored");
    assert_eq!(again.text(), "full body");
    assert!(rig.count("/hd/first") <= 2, "{}", rig.count("/hd/first"));
}

// RFC 9111 §3: HEAD follows the same storage rules: a no-store response is not reused.
#[tokio::test(flavor = "multi_thread")]
async fn head_of_a_no_store_response_is_never_from_the_cache() {
    let rig = Rig::std(&[]).await;
    rig.serve("/hd/no-store", &[("cache-control", "no-store")]);
    rig.get("/hd/no-store").await;
    let h = head(&rig, "/hd/no-store").await;
    assert_not_hit(&h, "nothing stored");
    assert_eq!(rig.count("/hd/no-store"), 2);
}

// HEAD after GET in the ERP's route mode.
#[tokio::test(flavor = "multi_thread")]
async fn head_after_get_is_answered_from_the_cache_in_route_mode() {
    let rig = Rig::route_mode(&[]).await;
    rig.serve("/hd/route", &[("x-custom", "kept")]);
    rig.get("/hd/route").await;
    let h = head(&rig, "/hd/route").await;
    assert_hit(&h, "from the stored GET");
    assert!(h.body.is_empty());
    assert_eq!(h.header("x-custom"), "kept");
    assert_eq!(rig.count("/hd/route"), 1);
}

// RFC 9110 §9.3.2 + §13.1.2: a conditional HEAD with the stored ETag gets a 304.
#[tokio::test(flavor = "multi_thread")]
async fn a_conditional_head_gets_a_304_from_the_cache() {
    let rig = Rig::std(&[]).await;
    resource(&rig, "/hd/conditional");
    rig.get("/hd/conditional").await;
    let h = rig
        .request(
            "HEAD",
            "/hd/conditional",
            &[("if-none-match", "\"h1\"")],
            "",
        )
        .await;
    assert_eq!(h.status, 304);
    assert_eq!(rig.count("/hd/conditional"), 1);
}
