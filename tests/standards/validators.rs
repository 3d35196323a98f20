//! Validators and conditional requests answered from the cache (RFC 9110 §8.8, §13.1, §13.2):
//! strong ETags kept for identity bodies and derived for compressed ones, the same on miss and
//! hit; `If-None-Match` (weak comparison) and `If-Modified-Since` answered with `304`.

use std::io::Read;

use crate::*;

/// A compressible JSON body large enough to be compressed.
fn json_body() -> String {
    let items: Vec<String> = (0..200)
        .map(|i| format!("{{\"id\":{i},\"name\":\"item number {i}\"}}"))
        .collect();
    format!("[{}]", items.join(","))
}

/// `path` answers a JSON body with ETag `etag`, Last-Modified `lm` and max-age=60.
fn validated(rig: &Rig, path: &str, etag: &str, lm: &str) {
    let (etag, lm) = (etag.to_owned(), lm.to_owned());
    let body = json_body();
    rig.origin.on(path, move |_, _| {
        Reply::ok(body.clone())
            .header("content-type", "application/json")
            .header("cache-control", "max-age=60")
            .header("etag", &etag)
            .header("last-modified", &lm)
    });
}

// RFC 9110 §8.8.3: a strong ETag identifies the exact representation; an identity client gets
// the origin's tag unchanged, on the miss and on the hit.
#[tokio::test(flavor = "multi_thread")]
async fn an_identity_client_sees_the_origins_strong_etag() {
    let rig = Rig::std(&[]).await;
    validated(&rig, "/vl/identity", "\"abc123\"", &http_date(-3600));
    let miss = rig.get("/vl/identity").await;
    assert_eq!(miss.header("etag"), "\"abc123\"");
    let hit = rig.get("/vl/identity").await;
    assert_hit(&hit, "stored");
    assert_eq!(hit.header("etag"), "\"abc123\"");
    assert_eq!(rig.count("/vl/identity"), 1);
}

// RFC 9110 §8.8.3.3: a differently encoded representation needs a different strong tag: a gzip
// variant gets a strong tag derived from the origin's, the same on miss and hit.
#[tokio::test(flavor = "multi_thread")]
async fn a_compressed_variant_has_its_own_strong_etag() {
    let rig = Rig::std(&[]).await;
    validated(&rig, "/vl/gzip", "\"abc123\"", &http_date(-3600));
    let gz = [("accept-encoding", "gzip")];
    let miss = rig.get_with("/vl/gzip", &gz).await;
    assert_eq!(miss.header("content-encoding"), "gzip");
    let tag = miss.header("etag");
    assert!(tag.starts_with('"') && tag.ends_with('"'), "strong: {tag}");
    assert_ne!(tag, "\"abc123\"", "not the identity body's tag");
    assert!(tag.contains("abc123"), "derived from the origin's: {tag}");
    let hit = rig.get_with("/vl/gzip", &gz).await;
    assert_hit(&hit, "stored");
    assert_eq!(hit.header("etag"), tag, "same tag on the hit");
    let mut decoded = String::new();
    flate2::read::GzDecoder::new(&hit.body[..])
        .read_to_string(&mut decoded)
        .expect("gzip");
    assert_eq!(decoded, json_body());
    assert_eq!(rig.count("/vl/gzip"), 1);
}

// RFC 9110 §13.1.2: If-None-Match with the stored strong tag → 304 from the cache.
#[tokio::test(flavor = "multi_thread")]
async fn if_none_match_with_the_etag_gets_a_304_from_the_cache() {
    let rig = Rig::std(&[]).await;
    validated(&rig, "/vl/inm", "\"t1\"", &http_date(-3600));
    rig.get("/vl/inm").await;
    let r = rig
        .get_with("/vl/inm", &[("if-none-match", "\"t1\"")])
        .await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), "\"t1\"");
    assert_eq!(rig.count("/vl/inm"), 1);
}

// RFC 9110 §13.1.2: "A recipient MUST use the weak comparison function when comparing
// entity tags for If-None-Match": W/"t1" matches "t1".
#[tokio::test(flavor = "multi_thread")]
async fn if_none_match_with_the_weak_form_gets_a_304() {
    let rig = Rig::std(&[]).await;
    validated(&rig, "/vl/inm-weak", "\"t1\"", &http_date(-3600));
    rig.get("/vl/inm-weak").await;
    let r = rig
        .get_with("/vl/inm-weak", &[("if-none-match", "W/\"t1\"")])
        .await;
    assert_eq!(r.status, 304);
    assert_eq!(rig.count("/vl/inm-weak"), 1);
}

// RFC 9110 §13.1.2: a list of tags matches if any member does.
#[tokio::test(flavor = "multi_thread")]
async fn if_none_match_with_a_list_containing_the_etag_gets_a_304() {
    let rig = Rig::std(&[]).await;
    validated(&rig, "/vl/inm-list", "\"t1\"", &http_date(-3600));
    rig.get("/vl/inm-list").await;
    let r = rig
        .get_with("/vl/inm-list", &[("if-none-match", "\"x\", \"t1\"")])
        .await;
    assert_eq!(r.status, 304);
    assert_eq!(rig.count("/vl/inm-list"), 1);
}

// RFC 9110 §13.1.2: If-None-Match: * is false when a current representation exists → 304.
#[tokio::test(flavor = "multi_thread")]
async fn if_none_match_star_gets_a_304() {
    let rig = Rig::std(&[]).await;
    validated(&rig, "/vl/inm-star", "\"t1\"", &http_date(-3600));
    rig.get("/vl/inm-star").await;
    let r = rig
        .get_with("/vl/inm-star", &[("if-none-match", "*")])
        .await;
    assert_eq!(r.status, 304);
    assert_eq!(rig.count("/vl/inm-star"), 1);
}

// RFC 9110 §13.1.2: a tag that does not match → the full 200 (from the cache).
#[tokio::test(flavor = "multi_thread")]
async fn if_none_match_with_another_tag_gets_the_body() {
    let rig = Rig::std(&[]).await;
    validated(&rig, "/vl/inm-other", "\"t1\"", &http_date(-3600));
    rig.get("/vl/inm-other").await;
    let r = rig
        .get_with("/vl/inm-other", &[("if-none-match", "\"t2\"")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), json_body());
    assert_hit(&r, "served from the cache");
    assert_eq!(rig.count("/vl/inm-other"), 1);
}

// RFC 9111 §4.3.2 / RFC 9110 §13.1.3: If-Modified-Since equal to the stored Last-Modified → 304.
#[tokio::test(flavor = "multi_thread")]
async fn if_modified_since_equal_to_last_modified_gets_a_304() {
    let rig = Rig::std(&[]).await;
    let lm = http_date(-3600);
    validated(&rig, "/vl/ims-equal", "\"t1\"", &lm);
    rig.get("/vl/ims-equal").await;
    let r = rig
        .get_with("/vl/ims-equal", &[("if-modified-since", &lm)])
        .await;
    assert_eq!(r.status, 304);
    assert_eq!(rig.count("/vl/ims-equal"), 1);
}

// RFC 9110 §13.1.3: a later If-Modified-Since → 304 too.
#[tokio::test(flavor = "multi_thread")]
async fn if_modified_since_later_than_last_modified_gets_a_304() {
    let rig = Rig::std(&[]).await;
    validated(&rig, "/vl/ims-later", "\"t1\"", &http_date(-3600));
    rig.get("/vl/ims-later").await;
    let later = http_date(-60);
    let r = rig
        .get_with("/vl/ims-later", &[("if-modified-since", &later)])
        .await;
    assert_eq!(r.status, 304);
    assert_eq!(rig.count("/vl/ims-later"), 1);
}

// RFC 9110 §13.1.3: an earlier If-Modified-Since → the full 200.
#[tokio::test(flavor = "multi_thread")]
async fn if_modified_since_earlier_than_last_modified_gets_the_body() {
    let rig = Rig::std(&[]).await;
    validated(&rig, "/vl/ims-earlier", "\"t1\"", &http_date(-3600));
    rig.get("/vl/ims-earlier").await;
    let earlier = http_date(-7200);
    let r = rig
        .get_with("/vl/ims-earlier", &[("if-modified-since", &earlier)])
        .await;
    assert_eq!((r.status, r.text()), (200, json_body()));
    assert_eq!(rig.count("/vl/ims-earlier"), 1);
}

// RFC 9110 §13.1.3: "A recipient MUST ignore If-Modified-Since if the request contains an
// If-None-Match header field": a mismatching tag with a later date → 200.
#[tokio::test(flavor = "multi_thread")]
async fn if_none_match_takes_precedence_over_if_modified_since() {
    let rig = Rig::std(&[]).await;
    validated(&rig, "/vl/precedence", "\"t1\"", &http_date(-3600));
    rig.get("/vl/precedence").await;
    let later = http_date(-60);
    let r = rig
        .get_with(
            "/vl/precedence",
            &[("if-none-match", "\"t2\""), ("if-modified-since", &later)],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(rig.count("/vl/precedence"), 1);
}

// RFC 9110 §13.1.2 for the compressed variant: its derived tag validates it.
#[tokio::test(flavor = "multi_thread")]
async fn the_compressed_variants_etag_gets_a_304() {
    let rig = Rig::std(&[]).await;
    validated(&rig, "/vl/gzip-304", "\"g1\"", &http_date(-3600));
    let gz = ("accept-encoding", "gzip");
    let tag = rig.get_with("/vl/gzip-304", &[gz]).await.header("etag");
    let r = rig
        .get_with("/vl/gzip-304", &[gz, ("if-none-match", &tag)])
        .await;
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), tag);
    assert_eq!(rig.count("/vl/gzip-304"), 1);
}

// RFC 9110 §8.8.3: a hit never invents a validator: without an origin ETag, the hit carries
// the same ETag (if any) as the miss that filled it.
#[tokio::test(flavor = "multi_thread")]
async fn a_hit_never_carries_an_etag_the_miss_lacked() {
    let rig = Rig::std(&[]).await;
    rig.serve("/vl/no-etag", &[("cache-control", "max-age=60")]);
    let miss = rig.get("/vl/no-etag").await;
    let hit = rig.get("/vl/no-etag").await;
    assert_hit(&hit, "stored");
    assert_eq!(hit.header("etag"), miss.header("etag"));
}

// RFC 9110 §8.8.1: a weak ETag from the origin stays weak (it is not promoted to strong).
#[tokio::test(flavor = "multi_thread")]
async fn a_weak_etag_stays_weak() {
    let rig = Rig::std(&[]).await;
    validated(&rig, "/vl/weak", "W/\"w1\"", &http_date(-3600));
    assert_eq!(rig.get("/vl/weak").await.header("etag"), "W/\"w1\"");
    let hit = rig.get("/vl/weak").await;
    assert_hit(&hit, "stored");
    assert_eq!(hit.header("etag"), "W/\"w1\"");
}

// RFC 9110 §15.4.5: a 304 from the cache carries the fields a 200 would (ETag, Cache-Control,
// Last-Modified) and no body.
#[tokio::test(flavor = "multi_thread")]
async fn a_304_from_the_cache_carries_the_validators() {
    let rig = Rig::std(&[]).await;
    let lm = http_date(-3600);
    validated(&rig, "/vl/304-fields", "\"f1\"", &lm);
    rig.get("/vl/304-fields").await;
    let r = rig
        .get_with("/vl/304-fields", &[("if-none-match", "\"f1\"")])
        .await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), "\"f1\"");
    assert_eq!(r.header("cache-control"), "max-age=60");
    assert_eq!(r.header("last-modified"), lm);
}

// RFC 9111 §4.3.1 and §4.3.4 for a body knitcache compressed: the revalidation asks with the
// origin's own tag (the origin never saw the derived one), and the 304's tag is derived again
// for the stored compressed bytes, on that response and on later hits.
#[tokio::test(flavor = "multi_thread")]
async fn a_compressed_variant_is_revalidated_with_the_origins_tag() {
    let rig = Rig::std(&[]).await;
    let body = json_body();
    rig.origin.on("/vl/gzip-reval", move |req, _| {
        if req.header("if-none-match") == Some("\"r1\"") {
            Reply::status(304)
                .header("etag", "\"r1\"")
                .header("cache-control", "max-age=60")
        } else {
            Reply::ok(body.clone())
                .header("content-type", "application/json")
                .header("cache-control", "max-age=1")
                .header("etag", "\"r1\"")
        }
    });
    let gz = [("accept-encoding", "gzip")];
    let miss = rig.get_with("/vl/gzip-reval", &gz).await;
    let tag = miss.header("etag");
    assert_eq!(tag, "\"r1-gzip\"");
    sleep_ms(2100).await;
    let revalidated = rig.get_with("/vl/gzip-reval", &gz).await;
    let seen = rig.origin.requests("/vl/gzip-reval");
    assert_eq!(seen.len(), 2, "one revalidation");
    assert_eq!(
        seen[1].header("if-none-match"),
        Some("\"r1\""),
        "the origin's tag"
    );
    assert_eq!(revalidated.status, 200);
    assert_eq!(revalidated.header("content-encoding"), "gzip");
    assert_eq!(
        revalidated.header("etag"),
        tag,
        "still the compressed bytes' tag"
    );
    let hit = rig.get_with("/vl/gzip-reval", &gz).await;
    assert_hit(&hit, "freshened by the 304");
    assert_eq!(hit.header("etag"), tag);
    let mut decoded = String::new();
    flate2::read::GzDecoder::new(&hit.body[..])
        .read_to_string(&mut decoded)
        .expect("gzip");
    assert_eq!(decoded, json_body());
    assert_eq!(rig.count("/vl/gzip-reval"), 2);
}
