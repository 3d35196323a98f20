//! Age and Date (RFC 9111 §4.2.3, §5.1; RFC 9110 §6.6.1): the current age counts the upstream
//! `Age`, the apparent age from `Date`, the response delay and the time spent in the cache;
//! every response from the cache says it in `Age`, and the origin's `Date` is kept.

use std::time::Duration;

use crate::*;

// §5.1: "The presence of an Age header field implies that the response was not generated or
// validated by the origin server for this request."
#[tokio::test(flavor = "multi_thread")]
async fn a_hit_carries_age() {
    let rig = Rig::std(&[]).await;
    rig.serve("/age/present", &[("cache-control", "max-age=60")]);
    rig.get("/age/present").await;
    let hit = rig.get("/age/present").await;
    assert_hit(&hit, "stored");
    assert!(age(&hit) < 5, "just stored: {}", age(&hit));
    assert_eq!(rig.count("/age/present"), 1);
}

// §4.2.3: current_age = corrected_initial_age + resident_time: Age grows while stored.
#[tokio::test(flavor = "multi_thread")]
async fn age_grows_with_the_time_in_the_cache() {
    let rig = Rig::std(&[]).await;
    rig.serve("/age/resident", &[("cache-control", "max-age=60")]);
    rig.get("/age/resident").await;
    sleep_ms(1200).await;
    let hit = rig.get("/age/resident").await;
    assert_hit(&hit, "still fresh");
    assert!(age(&hit) >= 1, "resident for 1.2 s: Age {}", age(&hit));
    assert_eq!(rig.count("/age/resident"), 1);
}

// §4.2.3: corrected_age_value = age_value + response_delay: `Age: 1800` under max-age=3600 is
// fresh, and the hit's Age is at least 1800.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_age_is_part_of_the_current_age() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/age/upstream",
        &[("cache-control", "max-age=3600"), ("age", "1800")],
    );
    rig.get("/age/upstream").await;
    let hit = rig.get("/age/upstream").await;
    assert_hit(&hit, "1800 of 3600 s used");
    let a = age(&hit);
    assert!((1800..1810).contains(&a), "Age {a}");
    assert_eq!(rig.count("/age/upstream"), 1);
}

// §4.2: "response_is_fresh = (freshness_lifetime > current_age)": max-age=3600 with Age: 7200
// is stale on arrival; the next request reaches the origin.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_age_beyond_max_age_is_stale_on_arrival() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/age/too-old",
        &[("cache-control", "max-age=3600"), ("age", "7200")],
    );
    rig.get("/age/too-old").await;
    let second = rig.get("/age/too-old").await;
    assert_not_hit(&second, "older than its lifetime");
    assert_eq!(second.text(), "v2");
    assert_eq!(rig.count("/age/too-old"), 2);
}

// §4.2.3: the upstream Age counts against an Expires − Date lifetime as well.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_age_counts_against_an_expires_lifetime() {
    let rig = Rig::std(&[]).await;
    let date = http_date(0);
    let expires = http_date(3600);
    rig.serve(
        "/age/expires",
        &[("date", &date), ("expires", &expires), ("age", "7200")],
    );
    rig.get("/age/expires").await;
    rig.get("/age/expires").await;
    assert_eq!(rig.count("/age/expires"), 2);
}

// §4.2.3: apparent_age = max(0, response_time − date_value): a Date 30 minutes old makes the
// hit's Age at least 1800.
#[tokio::test(flavor = "multi_thread")]
async fn apparent_age_from_date_counts() {
    let rig = Rig::std(&[]).await;
    let date = http_date(-1800);
    rig.serve(
        "/age/apparent",
        &[("cache-control", "max-age=3600"), ("date", &date)],
    );
    rig.get("/age/apparent").await;
    let hit = rig.get("/age/apparent").await;
    assert_hit(&hit, "1800 of 3600 s used");
    let a = age(&hit);
    assert!((1800..1810).contains(&a), "Age {a}");
    assert_eq!(rig.count("/age/apparent"), 1);
}

// §4.2.3: an apparent age beyond max-age is stale on arrival.
#[tokio::test(flavor = "multi_thread")]
async fn apparent_age_beyond_max_age_is_stale() {
    let rig = Rig::std(&[]).await;
    let date = http_date(-7200);
    rig.serve(
        "/age/apparent-old",
        &[("cache-control", "max-age=3600"), ("date", &date)],
    );
    rig.get("/age/apparent-old").await;
    rig.get("/age/apparent-old").await;
    assert_eq!(rig.count("/age/apparent-old"), 2);
}

// §4.2.3: apparent_age is never negative: a Date in the future is age 0, not a longer life.
#[tokio::test(flavor = "multi_thread")]
async fn a_future_date_gives_no_negative_age() {
    let rig = Rig::std(&[]).await;
    let date = http_date(3600);
    rig.serve(
        "/age/future-date",
        &[("cache-control", "max-age=2"), ("date", &date)],
    );
    rig.get("/age/future-date").await;
    let hit = rig.get("/age/future-date").await;
    // Stored lifetimes keep whole seconds: max-age=2 is fresh for more than one.
    assert_hit(&hit, "fresh for its 2 s");
    assert!(age(&hit) < 2, "Age {}", age(&hit));
    sleep_ms(2100).await;
    rig.get("/age/future-date").await;
    assert_eq!(rig.count("/age/future-date"), 2, "max-age=2 still expires");
}

// §4.2.3: corrected_initial_age = max(apparent_age, corrected_age_value): Age: 1000 with a Date
// 100 s old gives at least 1000 ...
#[tokio::test(flavor = "multi_thread")]
async fn the_larger_of_age_and_apparent_age_wins_age() {
    let rig = Rig::std(&[]).await;
    let date = http_date(-100);
    rig.serve(
        "/age/max-age-field",
        &[
            ("cache-control", "max-age=3600"),
            ("date", &date),
            ("age", "1000"),
        ],
    );
    rig.get("/age/max-age-field").await;
    let a = age(&rig.get("/age/max-age-field").await);
    assert!((1000..1010).contains(&a), "Age {a}");
    assert_eq!(rig.count("/age/max-age-field"), 1);
}

// ... and a Date 1000 s old with Age: 100 gives at least 1000 too.
#[tokio::test(flavor = "multi_thread")]
async fn the_larger_of_age_and_apparent_age_wins_date() {
    let rig = Rig::std(&[]).await;
    let date = http_date(-1000);
    rig.serve(
        "/age/max-date",
        &[
            ("cache-control", "max-age=3600"),
            ("date", &date),
            ("age", "100"),
        ],
    );
    rig.get("/age/max-date").await;
    let a = age(&rig.get("/age/max-date").await);
    assert!((1000..1010).contains(&a), "Age {a}");
    assert_eq!(rig.count("/age/max-date"), 1);
}

// §4.2.3: corrected_age_value = age_value + response_delay: an origin that takes 1.2 s to
// answer with Age: 10 makes the stored response at least 11 s old.
#[tokio::test(flavor = "multi_thread")]
async fn the_response_delay_is_added_to_the_upstream_age() {
    let rig = Rig::std(&[]).await;
    rig.origin.on("/age/delay", |_, _| {
        Reply::ok("slow")
            .header("cache-control", "max-age=3600")
            .header("age", "10")
            .delay(Duration::from_millis(1200))
    });
    rig.get("/age/delay").await;
    let a = age(&rig.get("/age/delay").await);
    assert!((11..20).contains(&a), "Age {a}");
    assert_eq!(rig.count("/age/delay"), 1);
}

// §5.1: "a cache encountering a message with a list-based Age field value SHOULD use the first
// member": `Age: 7200, 5` is 7200, stale under max-age=3600.
#[tokio::test(flavor = "multi_thread")]
async fn a_list_age_uses_its_first_member() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/age/list",
        &[("cache-control", "max-age=3600"), ("age", "7200, 5")],
    );
    rig.get("/age/list").await;
    rig.get("/age/list").await;
    assert_eq!(rig.count("/age/list"), 2);
}

// §5.1: "If the field value ... is invalid (e.g., it contains something other than a
// non-negative integer), a cache SHOULD ignore the field."
#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_age_is_ignored() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/age/invalid",
        &[("cache-control", "max-age=60"), ("age", "old")],
    );
    rig.get("/age/invalid").await;
    let hit = rig.get("/age/invalid").await;
    assert_hit(&hit, "Age ignored, fresh");
    assert!(age(&hit) < 5, "Age {}", age(&hit));
    assert_eq!(rig.count("/age/invalid"), 1);
}

// RFC 9111 §4.2.3 with a replaced Date: knitcache's HTTP writers (pingora's) set Date to the
// time of sending (a documented deviation), so the age the origin's Date implied must travel
// in Age: a downstream cache then computes the same current age.
#[tokio::test(flavor = "multi_thread")]
async fn a_replaced_date_is_made_up_for_in_age() {
    let rig = Rig::std(&[]).await;
    let date = http_date(-30);
    rig.serve(
        "/age/date-kept",
        &[("cache-control", "max-age=60"), ("date", &date)],
    );
    rig.get("/age/date-kept").await;
    sleep_ms(1100).await;
    let hit = rig.get("/age/date-kept").await;
    assert_hit(&hit, "stored");
    let sent = httpdate::parse_http_date(&hit.header("date")).expect("a valid Date");
    let origin = httpdate::parse_http_date(&date).expect("origin Date");
    assert!(sent > origin, "Date is the time of sending");
    assert!(age(&hit) >= 31, "Age {}", age(&hit));
    assert_eq!(rig.count("/age/date-kept"), 1);
}

// §5.1: Age on a hit is a non-negative integer (delta-seconds), never a fraction.
#[tokio::test(flavor = "multi_thread")]
async fn age_is_whole_seconds() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/age/integer",
        &[("cache-control", "max-age=60"), ("age", "3")],
    );
    rig.get("/age/integer").await;
    sleep_ms(300).await;
    let hit = rig.get("/age/integer").await;
    let raw = hit.header("age");
    assert!(
        !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()),
        "Age {raw:?}"
    );
    assert!(age(&hit) >= 3);
}
