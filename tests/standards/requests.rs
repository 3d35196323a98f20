//! Request `Cache-Control` (RFC 9111 §5.2.1), which knitcache does not honour by design: a
//! browser's reload or a script must not be able to send every request to a one-process ERP
//! (docs/CACHE_STRATEGY.md, "Deviations, stated plainly"). Each test sends one directive and
//! proves the origin was not asked again, so a change that starts honouring one is seen.

use crate::*;

/// Stores `path`, then asks for it with `Cache-Control: directive` and returns that answer,
/// asserting the origin was asked once in all.
async fn asked_with(directive: &str, path: &str) -> Resp {
    let rig = Rig::std(&[]).await;
    rig.serve(path, &[("cache-control", "max-age=60")]);
    rig.get(path).await;
    let r = rig.get_with(path, &[("cache-control", directive)]).await;
    assert_eq!(
        rig.count(path),
        1,
        "Cache-Control: {directive} did not reach the origin"
    );
    r
}

// §5.2.1.4 words no-cache as the client's preference; a browser's hard reload sends it.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_no_cache_is_answered_from_the_cache() {
    assert_hit(&asked_with("no-cache", "/rq/no-cache").await, "no-cache");
}

// §5.2.1.1: a browser's reload sends max-age=0.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_max_age_zero_is_answered_from_the_cache() {
    assert_hit(&asked_with("max-age=0", "/rq/max-age").await, "max-age=0");
}

// §5.2.1.3: min-fresh asks for more freshness than is left.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_min_fresh_is_answered_from_the_cache() {
    assert_hit(
        &asked_with("min-fresh=3600", "/rq/min-fresh").await,
        "min-fresh",
    );
}

// §5.2.1.5 is a MUST ("a cache MUST NOT store any part of ... any response to it"), knowingly
// broken: the response to a no-store request is stored for everyone, or any client could keep
// an expensive key on the ERP.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_no_store_does_not_keep_the_response_out() {
    let rig = Rig::std(&[]).await;
    rig.serve("/rq/no-store", &[("cache-control", "max-age=60")]);
    let miss = rig
        .get_with("/rq/no-store", &[("cache-control", "no-store")])
        .await;
    assert_not_hit(&miss, "the first request");
    assert_hit(&rig.get("/rq/no-store").await, "stored all the same");
    assert_eq!(rig.count("/rq/no-store"), 1);
}
