//! `no-transform` (RFC 9111 §5.2.2.6; RFC 9110 §7.7: "A proxy MUST NOT transform the content of
//! a response message that contains a no-transform cache directive"). knitcache compresses
//! fills and makes one coding from another's stored bytes; neither may touch such a response.

use std::io::Write;

use crate::*;

/// Text pingora would compress for a client that accepts gzip or zstd.
fn text() -> String {
    "the same line, again and again\n".repeat(200)
}

fn gzip(plain: &[u8]) -> Vec<u8> {
    let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    w.write_all(plain).expect("gzip");
    w.finish().expect("gzip")
}

/// Answers `path` with `text()` as `text/plain` and these fields.
fn serve_text(rig: &Rig, path: &str, fields: &'static [(&'static str, &'static str)]) {
    rig.origin.on(path, move |_, _| {
        fields.iter().fold(
            Reply::ok(text()).header("content-type", "text/plain"),
            |r, (n, v)| r.header(n, v),
        )
    });
}

/// The response is the origin's bytes, untouched: no coding added, the same length and tag.
fn assert_untouched(r: &Resp, why: &str) {
    assert_eq!(r.status, 200, "{why}");
    assert_eq!(r.header("content-encoding"), "", "{why}: no coding added");
    assert_eq!(r.body, text().as_bytes(), "{why}: the origin's bytes");
}

// §5.2.2.6: a client that accepts gzip gets the uncompressed body the origin sent, from the
// origin and from the cache, with the origin's validator.
#[tokio::test(flavor = "multi_thread")]
async fn a_no_transform_response_is_not_compressed() {
    let rig = Rig::std(&[]).await;
    serve_text(
        &rig,
        "/nt/plain",
        &[
            ("cache-control", "max-age=60, no-transform"),
            ("etag", "\"t1\""),
        ],
    );
    let gz = [("accept-encoding", "gzip")];
    let miss = rig.get_with("/nt/plain", &gz).await;
    assert_untouched(&miss, "the miss");
    let hit = rig.get_with("/nt/plain", &gz).await;
    assert_hit(&hit, "stored as it came");
    assert_untouched(&hit, "the hit");
    assert_eq!(
        hit.header("etag"),
        "\"t1\"",
        "the origin's tag for the origin's bytes"
    );
    assert_eq!(hit.header("content-length"), text().len().to_string());
    assert_eq!(rig.count("/nt/plain"), 1);
}

// The same for a zstd client, and the stored bytes serve it as they are: the variant it would
// otherwise be made from another coding is the same bytes, and the origin is not asked again.
#[tokio::test(flavor = "multi_thread")]
async fn other_codings_get_the_stored_bytes_as_they_are() {
    let rig = Rig::std(&[]).await;
    serve_text(
        &rig,
        "/nt/codings",
        &[("cache-control", "max-age=60, no-transform")],
    );
    assert_untouched(
        &rig.get_with("/nt/codings", &[("accept-encoding", "gzip")])
            .await,
        "gzip",
    );
    for accept in ["zstd", "gzip, deflate, br, zstd", "identity"] {
        let r = rig
            .get_with("/nt/codings", &[("accept-encoding", accept)])
            .await;
        assert_untouched(&r, accept);
    }
    assert_eq!(
        rig.count("/nt/codings"),
        1,
        "one origin request for every coding"
    );
}

// RFC 9213 targets caching directives; not transforming is always allowed, so a `no-transform`
// in the targeted field is honoured too.
#[tokio::test(flavor = "multi_thread")]
async fn no_transform_in_cdn_cache_control_is_honoured() {
    let rig = Rig::std(&[]).await;
    serve_text(
        &rig,
        "/nt/cdn",
        &[("cdn-cache-control", "max-age=60, no-transform")],
    );
    let zs = [("accept-encoding", "zstd")];
    assert_untouched(&rig.get_with("/nt/cdn", &zs).await, "the miss");
    let hit = rig.get_with("/nt/cdn", &zs).await;
    assert_hit(&hit, "CDN-Cache-Control stores it");
    assert_untouched(&hit, "the hit");
}

// A body the origin compressed itself is never decoded for a client that did not ask for its
// coding: that client's variant comes from the origin.
#[tokio::test(flavor = "multi_thread")]
async fn an_origin_compressed_body_is_never_decoded_for_another_client() {
    let rig = Rig::std(&[]).await;
    let gzipped = gzip(text().as_bytes());
    let sent = gzipped.clone();
    rig.origin.on("/nt/gz", move |req, _| {
        let base = Reply::status(200)
            .header("content-type", "text/plain")
            .header("cache-control", "max-age=60, no-transform");
        match req.header("accept-encoding") {
            Some(ae) if ae.contains("gzip") => {
                base.header("content-encoding", "gzip").body(sent.clone())
            }
            _ => base.body(text()),
        }
    });
    let gz = rig.get_with("/nt/gz", &[("accept-encoding", "gzip")]).await;
    assert_eq!(gz.header("content-encoding"), "gzip");
    assert_eq!(gz.body, gzipped, "the origin's own gzip bytes");
    assert_hit(
        &rig.get_with("/nt/gz", &[("accept-encoding", "gzip")]).await,
        "the gzip variant is stored",
    );
    let plain = rig.get("/nt/gz").await;
    assert_untouched(&plain, "identity");
    assert_eq!(
        rig.count("/nt/gz"),
        2,
        "the identity variant came from the origin, not from decoding the gzip one"
    );
}

// Route mode sets the lifetime itself, but the content is still not the proxy's to change.
#[tokio::test(flavor = "multi_thread")]
async fn route_mode_honours_no_transform() {
    let rig = Rig::route_mode(&[]).await;
    serve_text(&rig, "/nt/route", &[("cache-control", "no-transform")]);
    let gz = [("accept-encoding", "gzip")];
    assert_untouched(&rig.get_with("/nt/route", &gz).await, "the miss");
    let hit = rig.get_with("/nt/route", &gz).await;
    assert_hit(&hit, "stored for the route's TTL");
    assert_untouched(&hit, "the hit");
}
