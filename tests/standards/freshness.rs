//! Freshness (RFC 9111 §4.2, §5.2, §5.3): how long a stored response may be reused, from
//! `s-maxage`, `max-age`, `Expires − Date`; `no-cache`, `no-store` and `private`; and what the
//! ERP's route mode does with the same headers.

use crate::*;

// §4.2.1: "If the max-age response directive is present, use its value" as the lifetime.
#[tokio::test(flavor = "multi_thread")]
async fn max_age_response_is_stored_and_reused_while_fresh() {
    let rig = Rig::std(&[]).await;
    rig.serve("/fr/max-age", &[("cache-control", "max-age=60")]);
    let first = rig.get("/fr/max-age").await;
    assert_eq!(first.cache_status(), "knitcache; fwd=miss");
    let second = rig.get("/fr/max-age").await;
    assert_hit(&second, "max-age=60 is fresh");
    assert_eq!(second.text(), "v1");
    assert_eq!(rig.count("/fr/max-age"), 1);
}

// §4.2: "a stale response ... cannot be reused without validation"; max-age=2 runs out.
#[tokio::test(flavor = "multi_thread")]
async fn max_age_expires_and_the_next_request_reaches_the_origin() {
    let rig = Rig::std(&[]).await;
    // Stored lifetimes keep whole seconds: max-age=2 is fresh for more than one.
    rig.serve("/fr/expiry", &[("cache-control", "max-age=2")]);
    rig.get("/fr/expiry").await;
    assert_hit(&rig.get("/fr/expiry").await, "fresh for two seconds");
    sleep_ms(2100).await;
    let after = rig.get("/fr/expiry").await;
    assert_not_hit(&after, "expired");
    assert_eq!(after.text(), "v2");
    assert_eq!(rig.count("/fr/expiry"), 2);
}

// §5.2.2.10: "s-maxage ... overrides the maximum age specified by either the max-age directive
// or the Expires header field" for a shared cache.
#[tokio::test(flavor = "multi_thread")]
async fn s_maxage_overrides_max_age() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/fr/s-maxage-long",
        &[("cache-control", "max-age=1, s-maxage=60")],
    );
    rig.get("/fr/s-maxage-long").await;
    sleep_ms(2100).await;
    assert_hit(
        &rig.get("/fr/s-maxage-long").await,
        "s-maxage=60 wins over max-age=1",
    );
    assert_eq!(rig.count("/fr/s-maxage-long"), 1);
}

// §5.2.2.10: s-maxage wins even when it is the shorter lifetime.
#[tokio::test(flavor = "multi_thread")]
async fn s_maxage_shorter_than_max_age_wins() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/fr/s-maxage-short",
        &[("cache-control", "max-age=60, s-maxage=1")],
    );
    rig.get("/fr/s-maxage-short").await;
    sleep_ms(2100).await;
    assert_not_hit(&rig.get("/fr/s-maxage-short").await, "s-maxage=1 ran out");
    assert_eq!(rig.count("/fr/s-maxage-short"), 2);
}

// §5.2.2.10: s-maxage also overrides Expires.
#[tokio::test(flavor = "multi_thread")]
async fn s_maxage_overrides_a_past_expires() {
    let rig = Rig::std(&[]).await;
    let date = http_date(0);
    let expires = http_date(-60);
    rig.serve(
        "/fr/s-maxage-expires",
        &[
            ("cache-control", "s-maxage=60"),
            ("date", &date),
            ("expires", &expires),
        ],
    );
    rig.get("/fr/s-maxage-expires").await;
    assert_hit(&rig.get("/fr/s-maxage-expires").await, "s-maxage wins");
    assert_eq!(rig.count("/fr/s-maxage-expires"), 1);
}

// §5.3: "If a response includes a Cache-Control header field with the max-age directive, a
// recipient MUST ignore the Expires header field."
#[tokio::test(flavor = "multi_thread")]
async fn max_age_wins_over_a_past_expires() {
    let rig = Rig::std(&[]).await;
    let date = http_date(0);
    let expires = http_date(-3600);
    rig.serve(
        "/fr/max-age-over-expires",
        &[
            ("cache-control", "max-age=60"),
            ("date", &date),
            ("expires", &expires),
        ],
    );
    rig.get("/fr/max-age-over-expires").await;
    assert_hit(
        &rig.get("/fr/max-age-over-expires").await,
        "Expires ignored",
    );
    assert_eq!(rig.count("/fr/max-age-over-expires"), 1);
}

// §5.3: max-age wins over Expires in the other direction too (a short max-age, a far Expires).
#[tokio::test(flavor = "multi_thread")]
async fn short_max_age_wins_over_a_far_expires() {
    let rig = Rig::std(&[]).await;
    let expires = http_date(3600);
    rig.serve(
        "/fr/short-max-age-far-expires",
        &[("cache-control", "max-age=1"), ("expires", &expires)],
    );
    rig.get("/fr/short-max-age-far-expires").await;
    sleep_ms(2100).await;
    rig.get("/fr/short-max-age-far-expires").await;
    assert_eq!(rig.count("/fr/short-max-age-far-expires"), 2);
}

// §4.2.1: "Otherwise, if the Expires header field is present, use its value minus the value of
// the Date header field".
#[tokio::test(flavor = "multi_thread")]
async fn expires_minus_date_gives_the_lifetime() {
    let rig = Rig::std(&[]).await;
    let date = http_date(0);
    let expires = http_date(60);
    rig.serve("/fr/expires", &[("date", &date), ("expires", &expires)]);
    rig.get("/fr/expires").await;
    assert_hit(&rig.get("/fr/expires").await, "Expires 60 s after Date");
    assert_eq!(rig.count("/fr/expires"), 1);
}

// §4.2.1: lifetime = Expires − Date, not Expires − the local clock: Date an hour ahead and
// Expires 30 minutes ahead is a negative lifetime, stale on arrival.
#[tokio::test(flavor = "multi_thread")]
async fn expires_is_measured_against_date_not_the_local_clock() {
    let rig = Rig::std(&[]).await;
    let date = http_date(3600);
    let expires = http_date(1800);
    rig.serve(
        "/fr/expires-vs-date",
        &[("date", &date), ("expires", &expires)],
    );
    rig.get("/fr/expires-vs-date").await;
    let second = rig.get("/fr/expires-vs-date").await;
    assert_not_hit(&second, "Expires before Date: stale at once");
    assert_eq!(rig.count("/fr/expires-vs-date"), 2);
}

// §4.2.1 with an origin clock behind ours: Date 10 minutes ago, Expires 10 minutes + 30 s after
// Date: fresh for the 30 s left (the local clock would agree), so this one is stored.
#[tokio::test(flavor = "multi_thread")]
async fn expires_with_an_old_date_is_fresh_for_what_is_left() {
    let rig = Rig::std(&[]).await;
    let date = http_date(-600);
    let expires = http_date(30);
    rig.serve(
        "/fr/expires-old-date",
        &[("date", &date), ("expires", &expires)],
    );
    rig.get("/fr/expires-old-date").await;
    assert_hit(&rig.get("/fr/expires-old-date").await, "30 s left");
    assert_eq!(rig.count("/fr/expires-old-date"), 1);
}

// §4.2.1: Expires equal to Date is a zero lifetime.
#[tokio::test(flavor = "multi_thread")]
async fn expires_equal_to_date_is_stale_at_once() {
    let rig = Rig::std(&[]).await;
    let date = http_date(0);
    rig.serve(
        "/fr/expires-eq-date",
        &[("date", &date), ("expires", &date)],
    );
    rig.get("/fr/expires-eq-date").await;
    rig.get("/fr/expires-eq-date").await;
    assert_eq!(rig.count("/fr/expires-eq-date"), 2);
}

// §5.3: "A cache recipient MUST interpret invalid date formats, especially the value "0", as
// representing a time in the past (i.e., "already expired")."
#[tokio::test(flavor = "multi_thread")]
async fn expires_zero_means_already_expired() {
    let rig = Rig::std(&[]).await;
    let date = http_date(0);
    rig.serve("/fr/expires-zero", &[("date", &date), ("expires", "0")]);
    rig.get("/fr/expires-zero").await;
    assert_not_hit(&rig.get("/fr/expires-zero").await, "Expires: 0");
    assert_eq!(rig.count("/fr/expires-zero"), 2);
}

// §5.3: any invalid date in Expires is "already expired".
#[tokio::test(flavor = "multi_thread")]
async fn expires_garbage_means_already_expired() {
    let rig = Rig::std(&[]).await;
    rig.serve("/fr/expires-garbage", &[("expires", "next tuesday")]);
    rig.get("/fr/expires-garbage").await;
    rig.get("/fr/expires-garbage").await;
    assert_eq!(rig.count("/fr/expires-garbage"), 2);
}

// §4.2.3 / RFC 9110 §6.6.1: without Date the receipt time stands in for it, so Expires 60 s
// ahead is fresh.
#[tokio::test(flavor = "multi_thread")]
async fn expires_without_date_counts_from_receipt() {
    let rig = Rig::std(&[]).await;
    let expires = http_date(60);
    rig.serve("/fr/expires-no-date", &[("expires", &expires)]);
    rig.get("/fr/expires-no-date").await;
    assert_hit(&rig.get("/fr/expires-no-date").await, "Expires ahead");
    assert_eq!(rig.count("/fr/expires-no-date"), 1);
}

// §5.2: "Cache directives are identified by a token, to be compared case-insensitively".
#[tokio::test(flavor = "multi_thread")]
async fn cache_directives_are_case_insensitive() {
    let rig = Rig::std(&[]).await;
    rig.serve("/fr/upper-case", &[("cache-control", "MAX-AGE=60")]);
    rig.get("/fr/upper-case").await;
    assert_hit(&rig.get("/fr/upper-case").await, "MAX-AGE is max-age");
    assert_eq!(rig.count("/fr/upper-case"), 1);
}

// §5.2: Cache-Control is a list; directives on separate field lines combine (RFC 9110 §5.3).
#[tokio::test(flavor = "multi_thread")]
async fn cache_control_lines_combine() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/fr/two-lines",
        &[("cache-control", "public"), ("cache-control", "max-age=60")],
    );
    rig.get("/fr/two-lines").await;
    assert_hit(
        &rig.get("/fr/two-lines").await,
        "max-age on the second line",
    );
    assert_eq!(rig.count("/fr/two-lines"), 1);
}

// §5.2.2.5: no-store on a second Cache-Control line still forbids storing.
#[tokio::test(flavor = "multi_thread")]
async fn no_store_on_a_second_line_is_honoured() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/fr/no-store-second-line",
        &[
            ("cache-control", "max-age=60"),
            ("cache-control", "no-store"),
        ],
    );
    rig.get("/fr/no-store-second-line").await;
    rig.get("/fr/no-store-second-line").await;
    assert_eq!(rig.count("/fr/no-store-second-line"), 2);
}

// §5.2.2.5: "The no-store response directive indicates that a cache MUST NOT store any part of
// either the immediate request or the response".
#[tokio::test(flavor = "multi_thread")]
async fn no_store_response_is_not_stored() {
    let rig = Rig::std(&[]).await;
    rig.serve("/fr/no-store", &[("cache-control", "no-store")]);
    let first = rig.get("/fr/no-store").await;
    assert_eq!(first.cache_status(), "knitcache; fwd=miss; detail=no-store");
    assert_not_hit(&rig.get("/fr/no-store").await, "never stored");
    assert_eq!(rig.count("/fr/no-store"), 2);
}

// §4.2.1: "If directives conflict (e.g., both max-age and no-store are present), the most
// restrictive directive should be honored."
#[tokio::test(flavor = "multi_thread")]
async fn no_store_wins_over_max_age() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/fr/no-store-max-age",
        &[("cache-control", "max-age=60, no-store")],
    );
    rig.get("/fr/no-store-max-age").await;
    rig.get("/fr/no-store-max-age").await;
    assert_eq!(rig.count("/fr/no-store-max-age"), 2);
}

// §5.2.2.7: "The unqualified private response directive indicates that a shared cache MUST
// NOT store the response".
#[tokio::test(flavor = "multi_thread")]
async fn private_response_is_not_stored() {
    let rig = Rig::std(&[]).await;
    rig.serve("/fr/private", &[("cache-control", "private, max-age=60")]);
    let first = rig.get("/fr/private").await;
    assert!(
        first.cache_status().contains("fwd=miss; detail="),
        "{}",
        first.cache_status()
    );
    rig.get("/fr/private").await;
    assert_eq!(rig.count("/fr/private"), 2);
}

// §5.2.2.7: a qualified private (`private="X-User"`) is not stored either (the contract: a
// shared cache keeps none of it rather than storing the rest).
#[tokio::test(flavor = "multi_thread")]
async fn qualified_private_is_not_stored() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/fr/private-qualified",
        &[("cache-control", "private=\"X-User\", max-age=60")],
    );
    rig.get("/fr/private-qualified").await;
    rig.get("/fr/private-qualified").await;
    assert_eq!(rig.count("/fr/private-qualified"), 2);
}

// §5.2.2.4: no-cache "indicates that the response MUST NOT be used to satisfy any other request
// without forwarding it for validation and receiving a successful response".
#[tokio::test(flavor = "multi_thread")]
async fn no_cache_response_is_revalidated_on_every_use() {
    let rig = Rig::std(&[]).await;
    rig.origin.on("/fr/no-cache", |req, _| {
        if req.header("if-none-match") == Some("\"nc1\"") {
            Reply::status(304)
                .header("etag", "\"nc1\"")
                .header("cache-control", "max-age=60, no-cache")
        } else {
            Reply::ok("stored body")
                .header("etag", "\"nc1\"")
                .header("cache-control", "max-age=60, no-cache")
        }
    });
    rig.get("/fr/no-cache").await;
    for _ in 0..2 {
        let again = rig.get("/fr/no-cache").await;
        assert_eq!((again.status, again.text().as_str()), (200, "stored body"));
    }
    assert_eq!(rig.count("/fr/no-cache"), 3, "every use is validated");
    let seen = rig.origin.requests("/fr/no-cache");
    assert_eq!(seen[1].header("if-none-match"), Some("\"nc1\""));
    assert_eq!(seen[2].header("if-none-match"), Some("\"nc1\""));
}

// §5.2.2.4 + §4.3.1: a no-cache response with only Last-Modified is validated with
// If-Modified-Since, and the 304 lets the stored body be served.
#[tokio::test(flavor = "multi_thread")]
async fn no_cache_revalidates_with_if_modified_since() {
    let rig = Rig::std(&[]).await;
    let lm = http_date(-3600);
    let lm2 = lm.clone();
    rig.origin.on("/fr/no-cache-lm", move |req, _| {
        if req.header("if-modified-since") == Some(lm2.as_str()) {
            Reply::status(304).header("cache-control", "no-cache")
        } else {
            Reply::ok("by date")
                .header("last-modified", &lm2)
                .header("cache-control", "no-cache")
        }
    });
    rig.get("/fr/no-cache-lm").await;
    let again = rig.get("/fr/no-cache-lm").await;
    assert_eq!((again.status, again.text().as_str()), (200, "by date"));
    assert_eq!(rig.count("/fr/no-cache-lm"), 2);
    assert_eq!(
        rig.origin
            .last("/fr/no-cache-lm")
            .header("if-modified-since"),
        Some(lm.as_str())
    );
}

// §5.2.2.4: the qualified form (`no-cache="Set-Cookie"`) may be treated as the unqualified one;
// the contract: revalidated on every use.
#[tokio::test(flavor = "multi_thread")]
async fn qualified_no_cache_is_revalidated_too() {
    let rig = Rig::std(&[]).await;
    rig.origin.on("/fr/no-cache-qualified", |req, _| {
        let cc = "max-age=60, no-cache=\"X-Secret\"";
        if req.header("if-none-match") == Some("\"q1\"") {
            Reply::status(304)
                .header("etag", "\"q1\"")
                .header("cache-control", cc)
        } else {
            Reply::ok("q")
                .header("etag", "\"q1\"")
                .header("cache-control", cc)
        }
    });
    rig.get("/fr/no-cache-qualified").await;
    let again = rig.get("/fr/no-cache-qualified").await;
    assert_eq!(again.text(), "q");
    assert_eq!(rig.count("/fr/no-cache-qualified"), 2);
    assert_eq!(
        rig.origin
            .last("/fr/no-cache-qualified")
            .header("if-none-match"),
        Some("\"q1\"")
    );
}

// §5.2.2.4: no-cache without validators: nothing to validate with, so every use is a full
// request and each gets the origin's current response.
#[tokio::test(flavor = "multi_thread")]
async fn no_cache_without_validators_always_reaches_the_origin() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/fr/no-cache-bare",
        &[("cache-control", "max-age=60, no-cache")],
    );
    for n in 1..=3 {
        assert_eq!(rig.get("/fr/no-cache-bare").await.text(), format!("v{n}"));
    }
    assert_eq!(rig.count("/fr/no-cache-bare"), 3);
}

// §3: a response is stored only if it has explicit freshness, a heuristically cacheable status
// with something to base a heuristic on, or validators; this one has none of them.
#[tokio::test(flavor = "multi_thread")]
async fn response_without_freshness_or_validators_is_not_stored() {
    let rig = Rig::std(&[]).await;
    let date = http_date(0);
    rig.serve(
        "/fr/nothing",
        &[("date", &date), ("content-type", "text/plain")],
    );
    let first = rig.get("/fr/nothing").await;
    assert!(
        first.cache_status().contains("fwd=miss"),
        "{}",
        first.cache_status()
    );
    assert_eq!(rig.get("/fr/nothing").await.text(), "v2");
    assert_eq!(rig.count("/fr/nothing"), 2);
}

// §4.2.1 / §4.3: max-age=0 is stale on arrival: the next request reaches the origin.
#[tokio::test(flavor = "multi_thread")]
async fn max_age_zero_is_never_reused_without_the_origin() {
    let rig = Rig::std(&[]).await;
    rig.serve("/fr/max-age-zero", &[("cache-control", "max-age=0")]);
    rig.get("/fr/max-age-zero").await;
    assert_eq!(rig.get("/fr/max-age-zero").await.text(), "v2");
    assert_eq!(rig.count("/fr/max-age-zero"), 2);
}

// §1.2.2: delta-seconds is digits only; an invalid max-age gives no lifetime, so with nothing
// else the response is not reused.
#[tokio::test(flavor = "multi_thread")]
async fn invalid_max_age_gives_no_lifetime() {
    let rig = Rig::std(&[]).await;
    rig.serve("/fr/max-age-invalid", &[("cache-control", "max-age=soon")]);
    rig.get("/fr/max-age-invalid").await;
    rig.get("/fr/max-age-invalid").await;
    assert_eq!(rig.count("/fr/max-age-invalid"), 2);
}

// §4: a fresh stored response answers every request until it expires (three reuses, one fill).
#[tokio::test(flavor = "multi_thread")]
async fn fresh_response_answers_every_request_until_expiry() {
    let rig = Rig::std(&[]).await;
    rig.serve("/fr/many", &[("cache-control", "max-age=60")]);
    for _ in 0..5 {
        assert_eq!(rig.get("/fr/many").await.text(), "v1");
    }
    assert_eq!(rig.count("/fr/many"), 1);
}

// §4.1 / §2: the cache key includes the query; another query is another stored response.
#[tokio::test(flavor = "multi_thread")]
async fn a_different_query_is_a_different_response() {
    let rig = Rig::std(&[]).await;
    rig.serve("/fr/query", &[("cache-control", "max-age=60")]);
    assert_eq!(rig.get("/fr/query?a=1").await.text(), "v1");
    assert_eq!(rig.get("/fr/query?a=2").await.text(), "v2");
    assert_eq!(rig.get("/fr/query?a=1").await.text(), "v1");
    assert_eq!(rig.count("/fr/query"), 2);
}

// Route mode (the ERP's): the route's TTL decides and an origin max-age is ignored by default.
#[tokio::test(flavor = "multi_thread")]
async fn route_mode_ttl_overrides_origin_max_age() {
    let rig = Rig::route_mode(&[]).await;
    rig.serve("/fr/route-ttl", &[("cache-control", "max-age=1")]);
    rig.get("/fr/route-ttl").await;
    sleep_ms(2100).await;
    assert_hit(&rig.get("/fr/route-ttl").await, "ttl_secs: 60 decides");
    assert_eq!(rig.count("/fr/route-ttl"), 1);
}

// Route mode with `origin_cache_control: honour`: the origin's max-age decides (§4.2.1).
#[tokio::test(flavor = "multi_thread")]
async fn route_mode_honour_uses_origin_max_age() {
    let rig = Rig::route_mode(&["origin_cache_control: honour"]).await;
    rig.serve("/fr/route-honour", &[("cache-control", "max-age=1")]);
    rig.get("/fr/route-honour").await;
    sleep_ms(2100).await;
    rig.get("/fr/route-honour").await;
    assert_eq!(rig.count("/fr/route-honour"), 2);
}

// Route mode: no-store still forbids storing (§5.2.2.5) ...
#[tokio::test(flavor = "multi_thread")]
async fn route_mode_honours_no_store() {
    let rig = Rig::route_mode(&[]).await;
    rig.serve("/fr/route-no-store", &[("cache-control", "no-store")]);
    let first = rig.get("/fr/route-no-store").await;
    assert_eq!(first.cache_status(), "knitcache; fwd=miss; detail=no-store");
    rig.get("/fr/route-no-store").await;
    assert_eq!(rig.count("/fr/route-no-store"), 2);
}

// ... unless the route says its content is the same for everyone (`ignore_no_store: true`).
#[tokio::test(flavor = "multi_thread")]
async fn route_mode_ignore_no_store_stores_anyway() {
    let rig = Rig::route_mode(&["ignore_no_store: true"]).await;
    rig.serve(
        "/fr/route-ignore-no-store",
        &[("cache-control", "no-store, private")],
    );
    rig.get("/fr/route-ignore-no-store").await;
    assert_hit(
        &rig.get("/fr/route-ignore-no-store").await,
        "ignore_no_store",
    );
    assert_eq!(rig.count("/fr/route-ignore-no-store"), 1);
}
