//! Validation and freshening (RFC 9111 §4.3): an expired stored response is revalidated with its
//! validators; a `304` freshens it (§4.3.4) and updates its header fields (§3.2) except
//! Content-Length, Transfer-Encoding, Content-Encoding and hop-by-hop fields; a `200` replaces it.

use crate::*;

/// A resource with ETag `"e1"` that answers `304` (with `not_modified` fields) to a matching
/// `If-None-Match` and `200` `stored body` (with `fields`) otherwise.
fn etag_resource(
    rig: &Rig,
    path: &str,
    fields: &'static [(&'static str, &'static str)],
    not_modified: &'static [(&'static str, &'static str)],
) {
    rig.origin.on(path, move |req, _| {
        if req.header("if-none-match") == Some("\"e1\"") {
            not_modified
                .iter()
                .fold(Reply::status(304).header("etag", "\"e1\""), |r, (n, v)| {
                    r.header(n, v)
                })
        } else {
            fields.iter().fold(
                Reply::ok("stored body").header("etag", "\"e1\""),
                |r, (n, v)| r.header(n, v),
            )
        }
    });
}

// §4.3.1: "When generating a conditional request for validation, a cache ... MUST send the
// relevant entity tags (using If-None-Match)".
#[tokio::test(flavor = "multi_thread")]
async fn an_expired_response_is_revalidated_with_if_none_match() {
    let rig = Rig::std(&[]).await;
    etag_resource(&rig, "/fs/inm", &[("cache-control", "max-age=1")], &[]);
    rig.get("/fs/inm").await;
    sleep_ms(2100).await;
    let r = rig.get("/fs/inm").await;
    assert_eq!((r.status, r.text().as_str()), (200, "stored body"));
    assert_eq!(rig.count("/fs/inm"), 2);
    assert_eq!(
        rig.origin.last("/fs/inm").header("if-none-match"),
        Some("\"e1\"")
    );
}

// §4.3.1: "... and SHOULD send the Last-Modified value (using If-Modified-Since)" when there is
// no entity tag.
#[tokio::test(flavor = "multi_thread")]
async fn an_expired_response_is_revalidated_with_if_modified_since() {
    let rig = Rig::std(&[]).await;
    let lm = http_date(-3600);
    let lm2 = lm.clone();
    rig.origin.on("/fs/ims", move |req, _| {
        if req.header("if-modified-since") == Some(lm2.as_str()) {
            Reply::status(304).header("cache-control", "max-age=1")
        } else {
            Reply::ok("dated")
                .header("last-modified", &lm2)
                .header("cache-control", "max-age=1")
        }
    });
    rig.get("/fs/ims").await;
    sleep_ms(2100).await;
    let r = rig.get("/fs/ims").await;
    assert_eq!((r.status, r.text().as_str()), (200, "dated"));
    assert_eq!(rig.count("/fs/ims"), 2);
    assert_eq!(
        rig.origin.last("/fs/ims").header("if-modified-since"),
        Some(lm.as_str())
    );
}

// §4.3.4: the 304 freshens the stored response: with the 304's max-age=60, the next request is
// a hit.
#[tokio::test(flavor = "multi_thread")]
async fn a_304_freshens_the_stored_response() {
    let rig = Rig::std(&[]).await;
    etag_resource(
        &rig,
        "/fs/fresh",
        &[("cache-control", "max-age=1")],
        &[("cache-control", "max-age=60")],
    );
    rig.get("/fs/fresh").await;
    sleep_ms(2100).await;
    rig.get("/fs/fresh").await;
    let hit = rig.get("/fs/fresh").await;
    assert_hit(&hit, "freshened for 60 s");
    assert_eq!(hit.text(), "stored body");
    assert_eq!(hit.header("cache-control"), "max-age=60");
    assert_eq!(rig.count("/fs/fresh"), 2);
}

// §4.3.4: without a new max-age, the stored max-age=1 applies again from the 304's time: fresh
// right after, so a request at once is a hit.
#[tokio::test(flavor = "multi_thread")]
async fn a_304_restarts_the_lifetime() {
    let rig = Rig::std(&[]).await;
    etag_resource(&rig, "/fs/restart", &[("cache-control", "max-age=2")], &[]);
    rig.get("/fs/restart").await;
    sleep_ms(3000).await;
    rig.get("/fs/restart").await;
    let hit = rig.get("/fs/restart").await;
    assert_hit(&hit, "fresh again after the 304");
    assert!(age(&hit) < 2, "the age restarts: {}", age(&hit));
    assert_eq!(rig.count("/fs/restart"), 2);
}

// §3.2: "the cache MUST add each header field in the provided response to the stored response,
// replacing field values that are already present": a new field on the 304 shows on the
// revalidated response and on later hits.
#[tokio::test(flavor = "multi_thread")]
async fn a_304_updates_the_stored_header_fields() {
    let rig = Rig::std(&[]).await;
    etag_resource(
        &rig,
        "/fs/fields",
        &[("cache-control", "max-age=1"), ("x-version", "1")],
        &[("cache-control", "max-age=60"), ("x-version", "2")],
    );
    assert_eq!(rig.get("/fs/fields").await.header("x-version"), "1");
    sleep_ms(2100).await;
    let revalidated = rig.get("/fs/fields").await;
    assert_eq!(revalidated.header("x-version"), "2");
    assert_eq!(revalidated.text(), "stored body");
    let hit = rig.get("/fs/fields").await;
    assert_hit(&hit, "fresh after the 304");
    assert_eq!(hit.header("x-version"), "2");
    assert_eq!(rig.count("/fs/fields"), 2);
}

// §3.2: a field only the 304 carries is added to the stored response.
#[tokio::test(flavor = "multi_thread")]
async fn a_304_adds_new_header_fields() {
    let rig = Rig::std(&[]).await;
    etag_resource(
        &rig,
        "/fs/new-field",
        &[("cache-control", "max-age=1")],
        &[("cache-control", "max-age=60"), ("x-added", "yes")],
    );
    rig.get("/fs/new-field").await;
    sleep_ms(2100).await;
    rig.get("/fs/new-field").await;
    let hit = rig.get("/fs/new-field").await;
    assert_hit(&hit, "fresh");
    assert_eq!(hit.header("x-added"), "yes");
}

// §3.2: "the Content-Length header field" is not updated: a 304 stating another length leaves
// the stored body and its length alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_304_does_not_change_content_length() {
    let rig = Rig::std(&[]).await;
    etag_resource(
        &rig,
        "/fs/length",
        &[("cache-control", "max-age=1")],
        &[("cache-control", "max-age=60"), ("content-length", "3")],
    );
    rig.get("/fs/length").await;
    sleep_ms(2100).await;
    let revalidated = rig.get("/fs/length").await;
    assert_eq!(revalidated.text(), "stored body");
    let hit = rig.get("/fs/length").await;
    assert_eq!(hit.text(), "stored body");
    assert_eq!(
        hit.header("content-length"),
        "stored body".len().to_string()
    );
}

// §3.2: fields "automatically processed and removed by the recipient" (Content-Encoding here)
// are not taken from the 304: the stored identity body is not suddenly labelled br.
#[tokio::test(flavor = "multi_thread")]
async fn a_304_does_not_change_content_encoding() {
    let rig = Rig::std(&[]).await;
    etag_resource(
        &rig,
        "/fs/encoding",
        &[("cache-control", "max-age=1")],
        &[("cache-control", "max-age=60"), ("content-encoding", "br")],
    );
    rig.get("/fs/encoding").await;
    sleep_ms(2100).await;
    rig.get("/fs/encoding").await;
    let hit = rig.get("/fs/encoding").await;
    assert_eq!(hit.text(), "stored body");
    assert_ne!(hit.header("content-encoding"), "br");
}

// §3.1 / §3.2: hop-by-hop fields (named by Connection) are not stored from a 304.
#[tokio::test(flavor = "multi_thread")]
async fn a_304_does_not_store_hop_by_hop_fields() {
    let rig = Rig::std(&[]).await;
    etag_resource(
        &rig,
        "/fs/hop",
        &[("cache-control", "max-age=1")],
        &[
            ("cache-control", "max-age=60"),
            ("connection", "x-hop"),
            ("x-hop", "1"),
        ],
    );
    rig.get("/fs/hop").await;
    sleep_ms(2100).await;
    rig.get("/fs/hop").await;
    let hit = rig.get("/fs/hop").await;
    assert_hit(&hit, "fresh");
    assert!(hit.headers.get("x-hop").is_none(), "{:?}", hit.headers);
}

// §4.3.3: "If the status code is ... a full response ... the cache ... uses the new
// response": a 200 on revalidation replaces the stored one.
#[tokio::test(flavor = "multi_thread")]
async fn a_200_on_revalidation_replaces_the_stored_response() {
    let rig = Rig::std(&[]).await;
    rig.origin.on("/fs/replaced", |_, n| {
        Reply::ok(format!("body {}", n + 1))
            .header("etag", &format!("\"r{}\"", n + 1))
            .header("cache-control", "max-age=1")
    });
    rig.get("/fs/replaced").await;
    sleep_ms(2100).await;
    assert_eq!(rig.get("/fs/replaced").await.text(), "body 2");
    let hit = rig.get("/fs/replaced").await;
    assert_hit(&hit, "the new response is stored");
    assert_eq!(
        (hit.text(), hit.header("etag")),
        ("body 2".into(), "\"r2\"".into())
    );
    assert_eq!(rig.count("/fs/replaced"), 2);
}

// §4.3.3: a 5xx on revalidation (no stale allowed) is forwarded, not the stored response.
#[tokio::test(flavor = "multi_thread")]
async fn a_5xx_on_revalidation_is_forwarded_without_stale_permission() {
    let rig = Rig::std(&[]).await;
    rig.origin.on("/fs/error", |_, n| {
        if n == 0 {
            Reply::ok("ok")
                .header("etag", "\"x\"")
                .header("cache-control", "max-age=1")
        } else {
            Reply::status(503).body("down")
        }
    });
    rig.get("/fs/error").await;
    sleep_ms(2100).await;
    assert_eq!(rig.get("/fs/error").await.status, 503);
    assert_eq!(rig.count("/fs/error"), 2);
}

// §4.3.2 / §4.3.1: the client's own conditional is not what the cache sends: a client
// If-None-Match for another tag still gets the stored body after the cache's own revalidation.
#[tokio::test(flavor = "multi_thread")]
async fn revalidation_uses_the_stored_validators() {
    let rig = Rig::std(&[]).await;
    etag_resource(
        &rig,
        "/fs/own-validator",
        &[("cache-control", "max-age=1")],
        &[("cache-control", "max-age=60")],
    );
    rig.get("/fs/own-validator").await;
    sleep_ms(2100).await;
    let r = rig
        .get_with("/fs/own-validator", &[("if-none-match", "\"other\"")])
        .await;
    assert_eq!((r.status, r.text().as_str()), (200, "stored body"));
    let seen = rig.origin.last("/fs/own-validator");
    assert!(
        seen.header("if-none-match")
            .is_some_and(|v| v.contains("\"e1\"")),
        "the stored ETag is sent: {:?}",
        seen.headers
    );
}

// §4.3.4 in the ERP's route mode: an expired entry with an ETag is revalidated and a 304 keeps
// the stored body.
#[tokio::test(flavor = "multi_thread")]
async fn route_mode_revalidates_with_the_stored_etag() {
    let rig = Rig::route_mode(&["ttl_secs: 1"]).await;
    etag_resource(&rig, "/fs/route", &[], &[]);
    rig.get("/fs/route").await;
    sleep_ms(2100).await;
    let r = rig.get("/fs/route").await;
    assert_eq!((r.status, r.text().as_str()), (200, "stored body"));
    assert_eq!(
        rig.origin.last("/fs/route").header("if-none-match"),
        Some("\"e1\"")
    );
}
