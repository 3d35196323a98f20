//! Personal responses: `Authorization` (RFC 9111 §3.5), request cookies and `Set-Cookie`
//! (RFC 9111 §7.3 advice; RFC 6265 §8), in the standards mode and in the ERP's route mode.

use crate::*;

const AUTH: (&str, &str) = ("authorization", "Bearer secret-token");

// §3.5: "A shared cache MUST NOT use a cached response to a request with an Authorization
// header field ... unless" public, s-maxage or must-revalidate: not stored, detail
// `authorization`, and the next request without credentials reaches the origin.
#[tokio::test(flavor = "multi_thread")]
async fn response_to_an_authorized_request_is_not_stored() {
    let rig = Rig::std(&[]).await;
    rig.serve("/au/private", &[("cache-control", "max-age=60")]);
    let first = rig.get_with("/au/private", &[AUTH]).await;
    assert_eq!(first.text(), "v1");
    assert_eq!(
        first.cache_status(),
        "knitcache; fwd=miss; detail=authorization"
    );
    let anon = rig.get("/au/private").await;
    assert_eq!(anon.text(), "v2", "the credentialed answer is not reused");
    assert_eq!(rig.count("/au/private"), 2);
}

// §3.5: the same credentials again still reach the origin (nothing was stored).
#[tokio::test(flavor = "multi_thread")]
async fn authorized_requests_always_reach_the_origin() {
    let rig = Rig::std(&[]).await;
    rig.serve("/au/again", &[("cache-control", "max-age=60")]);
    for n in 1..=3 {
        assert_eq!(
            rig.get_with("/au/again", &[AUTH]).await.text(),
            format!("v{n}")
        );
    }
    assert_eq!(rig.count("/au/again"), 3);
    assert_eq!(
        rig.origin.last("/au/again").header("authorization"),
        Some("Bearer secret-token"),
        "credentials are passed on"
    );
}

// §3.5 / §5.2.2.9: `public` allows storing a response to an authorized request.
#[tokio::test(flavor = "multi_thread")]
async fn authorized_response_with_public_is_stored() {
    let rig = Rig::std(&[]).await;
    rig.serve("/au/public", &[("cache-control", "public, max-age=60")]);
    rig.get_with("/au/public", &[AUTH]).await;
    let anon = rig.get("/au/public").await;
    assert_hit(&anon, "public");
    assert_eq!(anon.text(), "v1");
    assert_eq!(rig.count("/au/public"), 1);
}

// §3.5 / §5.2.2.10: `s-maxage` allows it too.
#[tokio::test(flavor = "multi_thread")]
async fn authorized_response_with_s_maxage_is_stored() {
    let rig = Rig::std(&[]).await;
    rig.serve("/au/s-maxage", &[("cache-control", "s-maxage=60")]);
    rig.get_with("/au/s-maxage", &[AUTH]).await;
    assert_hit(&rig.get("/au/s-maxage").await, "s-maxage");
    assert_eq!(rig.count("/au/s-maxage"), 1);
}

// §3.5 / §5.2.2.2: and so does `must-revalidate`.
#[tokio::test(flavor = "multi_thread")]
async fn authorized_response_with_must_revalidate_is_stored() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/au/must-revalidate",
        &[("cache-control", "max-age=60, must-revalidate")],
    );
    rig.get_with("/au/must-revalidate", &[AUTH]).await;
    assert_hit(&rig.get("/au/must-revalidate").await, "must-revalidate");
    assert_eq!(rig.count("/au/must-revalidate"), 1);
}

// §3.5: other directives (here `proxy-revalidate`, not in the list) do not lift the rule.
#[tokio::test(flavor = "multi_thread")]
async fn authorized_response_with_only_proxy_revalidate_is_not_stored() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/au/proxy-revalidate",
        &[("cache-control", "max-age=60, proxy-revalidate")],
    );
    rig.get_with("/au/proxy-revalidate", &[AUTH]).await;
    rig.get("/au/proxy-revalidate").await;
    assert_eq!(rig.count("/au/proxy-revalidate"), 2);
}

// §3.5 in the ERP's route mode: the route's TTL does not make a credentialed answer shared.
#[tokio::test(flavor = "multi_thread")]
async fn authorized_response_is_not_stored_in_route_mode() {
    let rig = Rig::route_mode(&[]).await;
    rig.serve("/au/route", &[]);
    let first = rig.get_with("/au/route", &[AUTH]).await;
    assert_eq!(
        first.cache_status(),
        "knitcache; fwd=miss; detail=authorization"
    );
    assert_eq!(rig.get("/au/route").await.text(), "v2");
    assert_eq!(rig.count("/au/route"), 2);
}

// §3.5 in route mode: `public` still allows it.
#[tokio::test(flavor = "multi_thread")]
async fn authorized_public_response_is_stored_in_route_mode() {
    let rig = Rig::route_mode(&[]).await;
    rig.serve("/au/route-public", &[("cache-control", "public")]);
    rig.get_with("/au/route-public", &[AUTH]).await;
    assert_hit(&rig.get("/au/route-public").await, "public");
    assert_eq!(rig.count("/au/route-public"), 1);
}

// `request_cookies: bypass` (the default): a request with Cookie reaches the origin even when
// a stored response exists (its answer may be personal), with `fwd=bypass; detail=cookie`.
#[tokio::test(flavor = "multi_thread")]
async fn cookie_request_is_not_served_from_the_cache_by_default() {
    let rig = Rig::std(&[]).await;
    rig.serve("/ck/bypass", &[("cache-control", "max-age=60")]);
    rig.get("/ck/bypass").await;
    assert_hit(&rig.get("/ck/bypass").await, "stored");
    let with_cookie = rig.get_with("/ck/bypass", &[("cookie", "sid=1")]).await;
    assert_eq!(with_cookie.text(), "v2");
    assert_eq!(
        with_cookie.cache_status(),
        "knitcache; fwd=bypass; detail=cookie"
    );
    assert_eq!(rig.count("/ck/bypass"), 2);
    assert_eq!(
        rig.origin.last("/ck/bypass").header("cookie"),
        Some("sid=1"),
        "the cookie is passed on"
    );
}

// `request_cookies: bypass`: the answer to a Cookie request is not stored for others.
#[tokio::test(flavor = "multi_thread")]
async fn cookie_request_response_is_not_stored_by_default() {
    let rig = Rig::std(&[]).await;
    rig.serve("/ck/not-stored", &[("cache-control", "max-age=60")]);
    rig.get_with("/ck/not-stored", &[("cookie", "sid=1")]).await;
    let anon = rig.get("/ck/not-stored").await;
    assert_eq!(anon.text(), "v2", "not the cookie request's answer");
    assert_eq!(rig.count("/ck/not-stored"), 2);
}

// `request_cookies: bypass` is the default in route mode too.
#[tokio::test(flavor = "multi_thread")]
async fn cookie_request_bypasses_in_route_mode() {
    let rig = Rig::route_mode(&[]).await;
    rig.serve("/ck/route", &[]);
    rig.get("/ck/route").await;
    let c = rig.get_with("/ck/route", &[("cookie", "sid=2")]).await;
    assert_eq!(c.text(), "v2");
    rig.get_with("/ck/route", &[("cookie", "sid=2")]).await;
    assert_eq!(rig.count("/ck/route"), 3);
    assert_hit(&rig.get("/ck/route").await, "anonymous still served v1");
}

// `request_cookies: ignore`: Cookie requests are cached like any other.
#[tokio::test(flavor = "multi_thread")]
async fn cookie_requests_are_cached_when_ignored() {
    let rig = Rig::std(&["request_cookies: ignore"]).await;
    rig.serve("/ck/ignore", &[("cache-control", "max-age=60")]);
    rig.get_with("/ck/ignore", &[("cookie", "sid=1")]).await;
    let other = rig.get_with("/ck/ignore", &[("cookie", "sid=2")]).await;
    assert_hit(&other, "cookies ignored");
    assert_hit(&rig.get("/ck/ignore").await, "and served without one");
    assert_eq!(rig.count("/ck/ignore"), 1);
}

// `request_cookies: ignore` in route mode (the ERP, which uses no cookies).
#[tokio::test(flavor = "multi_thread")]
async fn cookie_requests_are_cached_when_ignored_in_route_mode() {
    let rig = Rig::route_mode(&["request_cookies: ignore"]).await;
    rig.serve("/ck/route-ignore", &[]);
    rig.get("/ck/route-ignore").await;
    assert_hit(
        &rig.get_with("/ck/route-ignore", &[("cookie", "sid=3")])
            .await,
        "cookies ignored",
    );
    assert_eq!(rig.count("/ck/route-ignore"), 1);
}

// `set_cookie: refuse` (the default): a response setting a cookie is meant for one client and
// is not stored (detail `set-cookie`).
#[tokio::test(flavor = "multi_thread")]
async fn set_cookie_response_is_not_stored_by_default() {
    let rig = Rig::std(&[]).await;
    rig.serve(
        "/ck/set-cookie",
        &[("cache-control", "max-age=60"), ("set-cookie", "sid=abc")],
    );
    let first = rig.get("/ck/set-cookie").await;
    assert_eq!(
        first.cache_status(),
        "knitcache; fwd=miss; detail=set-cookie"
    );
    assert_eq!(first.header("set-cookie"), "sid=abc");
    let second = rig.get("/ck/set-cookie").await;
    assert_eq!(second.text(), "v2");
    assert_eq!(rig.count("/ck/set-cookie"), 2);
}

// `set_cookie: refuse` in route mode.
#[tokio::test(flavor = "multi_thread")]
async fn set_cookie_response_is_not_stored_in_route_mode() {
    let rig = Rig::route_mode(&[]).await;
    rig.serve("/ck/route-set-cookie", &[("set-cookie", "sid=abc")]);
    let first = rig.get("/ck/route-set-cookie").await;
    assert_eq!(
        first.cache_status(),
        "knitcache; fwd=miss; detail=set-cookie"
    );
    rig.get("/ck/route-set-cookie").await;
    assert_eq!(rig.count("/ck/route-set-cookie"), 2);
}

// `set_cookie: refuse` holds even with `ignore_no_store: true` (which is about no-store and
// private only).
#[tokio::test(flavor = "multi_thread")]
async fn set_cookie_is_refused_even_with_ignore_no_store() {
    let rig = Rig::route_mode(&["ignore_no_store: true"]).await;
    rig.serve("/ck/ignore-no-store", &[("set-cookie", "sid=abc")]);
    rig.get("/ck/ignore-no-store").await;
    rig.get("/ck/ignore-no-store").await;
    assert_eq!(rig.count("/ck/ignore-no-store"), 2);
}

// `set_cookie: strip`: stored without Set-Cookie; the client that caused the fill gets its
// cookie, later hits carry none.
#[tokio::test(flavor = "multi_thread")]
async fn set_cookie_strip_stores_the_response_without_the_cookie() {
    let rig = Rig::std(&["set_cookie: strip"]).await;
    rig.serve(
        "/ck/strip",
        &[
            ("cache-control", "max-age=60"),
            ("set-cookie", "sid=abc"),
            ("set-cookie", "theme=dark"),
        ],
    );
    let first = rig.get("/ck/strip").await;
    let cookies: Vec<_> = first.headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["sid=abc", "theme=dark"], "the filler gets both");
    let hit = rig.get("/ck/strip").await;
    assert_hit(&hit, "stored without the cookies");
    assert!(
        hit.headers.get("set-cookie").is_none(),
        "a hit carries no Set-Cookie: {:?}",
        hit.headers
    );
    assert_eq!(hit.text(), "v1");
    assert_eq!(rig.count("/ck/strip"), 1);
}

// `set_cookie: strip` in route mode.
#[tokio::test(flavor = "multi_thread")]
async fn set_cookie_strip_works_in_route_mode() {
    let rig = Rig::route_mode(&["set_cookie: strip"]).await;
    rig.serve("/ck/route-strip", &[("set-cookie", "sid=xyz")]);
    assert_eq!(
        rig.get("/ck/route-strip").await.header("set-cookie"),
        "sid=xyz"
    );
    let hit = rig.get("/ck/route-strip").await;
    assert_hit(&hit, "stored");
    assert!(hit.headers.get("set-cookie").is_none());
    assert_eq!(rig.count("/ck/route-strip"), 1);
}

// `set_cookie: strip` does not override no-store (§5.2.2.5).
#[tokio::test(flavor = "multi_thread")]
async fn set_cookie_strip_still_honours_no_store() {
    let rig = Rig::std(&["set_cookie: strip"]).await;
    rig.serve(
        "/ck/strip-no-store",
        &[("cache-control", "no-store"), ("set-cookie", "sid=abc")],
    );
    rig.get("/ck/strip-no-store").await;
    rig.get("/ck/strip-no-store").await;
    assert_eq!(rig.count("/ck/strip-no-store"), 2);
}
