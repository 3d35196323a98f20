//! Access control per route, through the real proxy and a real origin: every rule from both
//! sides (allowed, refused) for every method, counting the origin's requests to prove that a
//! refused request never reaches it, and that a stored response never reaches a refused client.
//! Clients differ by source address: Linux routes all of 127/8 to loopback, so a client bound
//! to 127.0.0.2 is a second host without any proxy in between.

mod common;

use std::net::IpAddr;

use common::origin::{Origin, Reply};
use common::*;

const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// The first client address (allowed by the policies below).
const ALICE: &str = "127.0.0.1";
/// The second client address (refused by them).
const MALLORY: &str = "127.0.0.2";

/// A client whose connections come from `addr`.
fn client_from(addr: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .local_address(addr.parse::<IpAddr>().expect("ip"))
        .build()
        .expect("client")
}

async fn call(c: &reqwest::Client, method: &str, url: &str) -> Resp {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    send(c.request(method, url).body("")).await
}

const SECTIONS: &str = r#"access:
  policies:
    admins:
      allow: ["127.0.0.1/32", "::1/128"]
    no-mallory:
      deny: ["127.0.0.2/32"]
    open: {}
"#;

const ROUTES: &str = r#"  - name: admin
    prefix: /admin/
    cache: false
    access: admins
  - name: reports
    prefix: /reports/
    cache: false
    access: no-mallory
  - name: cached
    prefix: /cached/
    ttl_secs: 60
    access: admins
  - name: public
    prefix: /public/
    cache: false
"#;

#[tokio::test(flavor = "multi_thread")]
async fn allow_and_deny_lists_admit_and_refuse_every_method() {
    let origin = Origin::start().await;
    origin.always("/admin/flags", Reply::ok("flags"));
    origin.always("/reports/r", Reply::ok("report"));
    let proxy = TestProxy::in_front_of_origin_with(origin.addr(), SECTIONS, ROUTES);
    let (alice, mallory) = (client_from(ALICE), client_from(MALLORY));

    for path in ["/admin/flags", "/reports/r"] {
        for method in METHODS {
            let before = origin.count(path);
            let r = call(&alice, method, &proxy.url(path)).await;
            assert_eq!(r.status, 200, "{method} {path} from {ALICE}");
            assert_eq!(
                origin.count(path),
                before + 1,
                "{method} {path} reached the origin"
            );

            let r = call(&mallory, method, &proxy.url(path)).await;
            assert_eq!(r.status, 403, "{method} {path} from {MALLORY}");
            assert_eq!(
                origin.count(path),
                before + 1,
                "a refused {method} {path} must never reach the origin"
            );
            if method != "HEAD" {
                assert_eq!(r.text(), "{\"error\":\"forbidden\"}\n", "says nothing more");
            }
            assert_eq!(r.header("cache-control"), "no-store");
        }
    }
    let refused = metric(
        &proxy,
        r#"knitcache_access_total{result="refused",route="admin",rule="address"}"#,
    )
    .await;
    let allowed = metric(
        &proxy,
        r#"knitcache_access_total{result="allowed",route="admin",rule="address"}"#,
    )
    .await;
    assert_eq!((allowed, refused), (7.0, 7.0));
    let denied = metric(
        &proxy,
        r#"knitcache_refusals_total{reason="access_denied",route="reports"}"#,
    )
    .await;
    assert_eq!(denied, 7.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cached_response_never_reaches_a_refused_client() {
    let origin = Origin::start().await;
    const SECRET: &str = "payroll-figures-7f3a9c";
    origin.always("/cached/report", Reply::ok(SECRET));
    let proxy = TestProxy::in_front_of_origin_with(origin.addr(), SECTIONS, ROUTES);
    let (alice, mallory) = (client_from(ALICE), client_from(MALLORY));
    let url = proxy.url("/cached/report");

    let first = get(&alice, &url).await;
    assert_eq!((first.status, first.text().as_str()), (200, SECRET));
    let hit = get(&alice, &url).await;
    assert!(hit.is_hit(), "primed: {}", hit.cache_status());
    assert_eq!(origin.count("/cached/report"), 1);

    // The direct hit path, pingora's lookup (a range request skips the direct path), and HEAD.
    let plain = send(mallory.get(&url)).await;
    let ranged = send(mallory.get(&url).header("range", "bytes=0-5")).await;
    let head = send(mallory.head(&url)).await;
    for r in [&plain, &ranged, &head] {
        assert_eq!(r.status, 403);
        assert!(!r.text().contains("payroll"), "no byte of the stored body");
        assert_eq!(
            r.header("cache-status"),
            "",
            "no word about the cache either"
        );
        assert_eq!(r.header("age"), "");
    }
    assert_eq!(
        origin.count("/cached/report"),
        1,
        "refusals never reach the origin"
    );
    let again = get(&alice, &url).await;
    assert!(
        again.is_hit(),
        "the allowed client still gets the stored copy"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_policy_covers_unmatched_paths_and_routes_can_opt_out() {
    let origin = Origin::start().await;
    for path in ["/elsewhere", "/public/p", "/reports/r"] {
        origin.always(path, Reply::ok("x"));
    }
    let sections = SECTIONS.replace("access:\n", "access:\n  default: admins\n");
    let proxy = TestProxy::in_front_of_origin_with(origin.addr(), &sections, ROUTES);
    let (alice, mallory) = (client_from(ALICE), client_from(MALLORY));

    // An unmatched path and a route that names no policy fall under the default.
    for path in ["/elsewhere", "/public/p"] {
        assert_eq!(get(&alice, &proxy.url(path)).await.status, 200, "{path}");
        assert_eq!(get(&mallory, &proxy.url(path)).await.status, 403, "{path}");
        assert_eq!(origin.count(path), 1, "{path}");
    }
    let refused = metric(
        &proxy,
        r#"knitcache_access_total{result="refused",route="unmatched",rule="address"}"#,
    )
    .await;
    assert_eq!(refused, 1.0);
    // A route's own policy replaces the default; an empty one admits everyone.
    let routes = ROUTES.replace("access: no-mallory", "access: open");
    let proxy = TestProxy::in_front_of_origin_with(origin.addr(), &sections, &routes);
    assert_eq!(get(&mallory, &proxy.url("/reports/r")).await.status, 200);
    assert_eq!(get(&mallory, &proxy.url("/elsewhere")).await.status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_a_trusted_proxy_the_forwarded_client_is_judged() {
    let origin = Origin::start().await;
    origin.always("/admin/flags", Reply::ok("flags"));
    // Rate limiting stays off: the trusted proxies still name the client for access rules.
    let sections = r#"protection:
  rate_limit:
    enabled: false
    trusted_proxies: ["127.0.0.1/32"]
access:
  policies:
    admins:
      allow: ["10.20.0.0/16"]
"#;
    let routes = "  - name: admin\n    prefix: /admin/\n    cache: false\n    access: admins\n";
    let proxy = TestProxy::in_front_of_origin_with(origin.addr(), sections, routes);
    let (lb, stranger) = (client_from(ALICE), client_from(MALLORY));
    let url = proxy.url("/admin/flags");

    let from_admin_net = send(lb.post(&url).header("x-forwarded-for", "10.20.3.4")).await;
    assert_eq!(from_admin_net.status, 200);
    let from_elsewhere = send(lb.post(&url).header("x-forwarded-for", "192.0.2.9")).await;
    assert_eq!(from_elsewhere.status, 403);
    assert_eq!(
        send(lb.post(&url)).await.status,
        403,
        "the balancer itself is not admitted"
    );
    // Anyone else's X-Forwarded-For is not believed.
    let forged = send(stranger.post(&url).header("x-forwarded-for", "10.20.3.4")).await;
    assert_eq!(forged.status, 403);
    assert_eq!(origin.count("/admin/flags"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_config_keeps_erp_admin_paths_to_loopback_and_the_admin_network() {
    let origin = Origin::start().await;
    let admin_paths = [
        ("POST", "/api/admin/feature-flags"),
        ("GET", "/api/admin/deprecation-report"),
        ("POST", "/api/cache-clear"),
        ("GET", "/api/reload-data"),
        ("POST", "/api/system/unified"),
        ("POST", "/api/retrain-ml"),
    ];
    for (_, path) in admin_paths {
        origin.always(path, Reply::ok("done"));
    }
    origin.always("/api/production-planning", Reply::ok("plan"));
    let (_tmp, dir) = cache_dir();
    let mut config = shipped_config(origin.addr(), &dir);
    // Loopback stands in for a load balancer, so a forwarded address plays a remote client.
    config.protection.trusted_proxies = vec!["127.0.0.1/32".parse().expect("net")];
    let proxy = TestProxy::start(config, &dir);
    let c = client_from(ALICE);

    for (method, path) in admin_paths {
        let url = proxy.url(path);
        let remote = |ip: &'static str| {
            let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            c.request(m, &url).header("x-forwarded-for", ip)
        };
        assert_eq!(
            send(remote("192.0.2.7")).await.status,
            403,
            "{method} {path}"
        );
        assert_eq!(origin.count(path), 0, "{path} never reached the ERP");
        assert_eq!(call(&c, method, &url).await.status, 200, "loopback: {path}");
        assert_eq!(
            send(remote("10.0.0.7")).await.status,
            200,
            "admin network: {path}"
        );
        assert_eq!(origin.count(path), 2, "{path}");
    }
    // Everything else stays open as shipped.
    let r = send(
        c.get(proxy.url("/api/production-planning"))
            .header("x-forwarded-for", "192.0.2.7"),
    )
    .await;
    assert_eq!(r.status, 200);
}
