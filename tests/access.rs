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

// ---- HTTP Basic against an htpasswd file ----

/// An htpasswd file of `alice` (bcrypt) and `bob` (argon2) at `path`, hashed cheaply: the
/// verification is the same code whatever the cost.
fn write_htpasswd(path: &std::path::Path, users: &[&str]) {
    use argon2::PasswordHasher;
    let mut text = String::from("# written by the test\n");
    for user in users {
        let line = match *user {
            "alice" => format!("alice:{}\n", bcrypt::hash("wonderland", 4).expect("bcrypt")),
            "bob" => {
                let salt = argon2::password_hash::SaltString::encode_b64(b"0123456789abcdef")
                    .expect("salt");
                let params = argon2::Params::new(8, 1, 1, None).expect("params");
                let argon = argon2::Argon2::new(
                    argon2::Algorithm::Argon2id,
                    argon2::Version::V0x13,
                    params,
                );
                let hash = argon.hash_password(b"builder", &salt).expect("argon2");
                format!("bob:{hash}\n")
            }
            other => panic!("no password for {other}"),
        };
        text.push_str(&line);
    }
    std::fs::write(path, text).expect("write htpasswd");
}

fn basic_sections(htpasswd: &std::path::Path, extra: &str) -> String {
    format!(
        "access:\n  default: staff\n  policies:\n    staff:\n{extra}      basic:\n        htpasswd: \"{}\"\n        realm: \"Test ERP\"\n",
        htpasswd.display()
    )
}

const BASIC_ROUTES: &str = r#"  - name: writes
    prefix: /w/
    cache: false
  - name: cached
    prefix: /cached/
    ttl_secs: 60
"#;

#[tokio::test(flavor = "multi_thread")]
async fn basic_admits_its_users_and_refuses_everyone_else_for_every_method() {
    let origin = Origin::start().await;
    origin.always("/w/order", Reply::ok("done"));
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("htpasswd");
    write_htpasswd(&file, &["alice", "bob"]);
    let proxy =
        TestProxy::in_front_of_origin_with(origin.addr(), &basic_sections(&file, ""), BASIC_ROUTES);
    let c = client();
    let url = proxy.url("/w/order");
    let with = |method: &str, user: Option<(&str, &str)>| {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let req = c.request(m, &url).body("");
        match user {
            Some((u, p)) => req.basic_auth(u, Some(p)),
            None => req,
        }
    };

    for method in METHODS {
        let mut admitted = 0;
        for user in [("alice", "wonderland"), ("bob", "builder")] {
            let r = send(with(method, Some(user))).await;
            assert_eq!(r.status, 200, "{method} as {}", user.0);
            admitted += 1;
            let seen = origin.last("/w/order");
            assert_eq!(
                seen.header("authorization"),
                None,
                "the ERP never sees the login"
            );
        }
        let before = origin.count("/w/order");
        let refusals = [
            send(with(method, None)).await,
            send(with(method, Some(("alice", "wrong")))).await,
            send(with(method, Some(("mallory", "wonderland")))).await,
            send(with(method, Some(("bob", "wonderland")))).await,
        ];
        for r in &refusals {
            assert_eq!(r.status, 401, "{method}");
            assert_eq!(
                r.header("www-authenticate"),
                "Basic realm=\"Test ERP\", charset=\"UTF-8\""
            );
        }
        // An unknown user and a wrong password look exactly alike.
        let (wrong, unknown) = (&refusals[1], &refusals[2]);
        assert_eq!(wrong.body, unknown.body);
        let names = |r: &Resp| {
            let mut h: Vec<(String, String)> = r
                .headers
                .iter()
                .filter(|(n, _)| *n != "date")
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_owned()))
                .collect();
            h.sort();
            h
        };
        assert_eq!(names(wrong), names(unknown));
        assert_eq!(
            origin.count("/w/order"),
            before,
            "refused {method}s never reach the ERP"
        );
        assert_eq!(admitted, 2);
    }
    let refused = metric(
        &proxy,
        r#"knitcache_access_total{result="refused",route="writes",rule="basic"}"#,
    )
    .await;
    assert_eq!(refused, 28.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn logged_in_users_share_the_cache_and_the_anonymous_get_none_of_it() {
    let origin = Origin::start().await;
    const SECRET: &str = "margin-by-customer-91b2";
    origin.always("/cached/report", Reply::ok(SECRET));
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("htpasswd");
    write_htpasswd(&file, &["alice", "bob"]);
    let proxy =
        TestProxy::in_front_of_origin_with(origin.addr(), &basic_sections(&file, ""), BASIC_ROUTES);
    let c = client();
    let url = proxy.url("/cached/report");

    let alice = send(c.get(&url).basic_auth("alice", Some("wonderland"))).await;
    assert_eq!((alice.status, alice.text().as_str()), (200, SECRET));
    let bob = send(c.get(&url).basic_auth("bob", Some("builder"))).await;
    assert!(
        bob.is_hit(),
        "bob shares alice's copy: {}",
        bob.cache_status()
    );
    assert_eq!(origin.count("/cached/report"), 1);
    assert_eq!(origin.last("/cached/report").header("authorization"), None);

    for r in [
        send(c.get(&url)).await,
        send(c.get(&url).header("range", "bytes=0-5")).await,
        send(c.get(&url).basic_auth("bob", Some("wonderland"))).await,
    ] {
        assert_eq!(r.status, 401);
        assert!(!r.text().contains("margin"), "no byte of the stored body");
        assert_eq!(r.header("cache-status"), "");
    }
    assert_eq!(origin.count("/cached/report"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn pass_credentials_hands_the_login_to_the_erp() {
    let origin = Origin::start().await;
    origin.always("/w/order", Reply::ok("done"));
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("htpasswd");
    write_htpasswd(&file, &["alice"]);
    let sections = basic_sections(&file, "      pass_credentials: true\n");
    let proxy = TestProxy::in_front_of_origin_with(origin.addr(), &sections, BASIC_ROUTES);
    let r = send(
        client()
            .post(proxy.url("/w/order"))
            .basic_auth("alice", Some("wonderland")),
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = origin.last("/w/order");
    assert!(
        seen.header("authorization")
            .is_some_and(|v| v.starts_with("Basic "))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_reads_the_htpasswd_file_again_and_forgets_remembered_logins() {
    let origin = Origin::start().await;
    origin.always("/w/order", Reply::ok("done"));
    let tmp = tempfile::tempdir().expect("tmp");
    let users = tmp.path().join("htpasswd");
    write_htpasswd(&users, &["alice", "bob"]);
    let (_cache_tmp, dir) = cache_dir();
    let config = tmp.path().join("knitcache.yaml");
    let yaml = config_yaml_sections(
        origin.addr(),
        &dir,
        &basic_sections(&users, ""),
        BASIC_ROUTES,
    );
    std::fs::write(&config, &yaml).expect("write config");
    let proxy = TestProxy::start_file(&config, &dir);
    let c = client();
    let as_bob = || {
        send(
            c.post(proxy.url("/w/order"))
                .basic_auth("bob", Some("builder")),
        )
    };

    assert_eq!(as_bob().await.status, 200);
    assert_eq!(as_bob().await.status, 200, "remembered");
    write_htpasswd(&users, &["alice"]);
    proxy.reloads.trigger();
    eventually("the reload applied", || proxy.reloads.version() == 2).await;
    assert_eq!(
        as_bob().await.status,
        401,
        "bob was removed: his remembered login is gone"
    );
    let alice = send(
        c.post(proxy.url("/w/order"))
            .basic_auth("alice", Some("wonderland")),
    )
    .await;
    assert_eq!(alice.status, 200);

    // A file that cannot be used is refused, and the running policy stays.
    std::fs::write(&users, "alice:$apr1$salt$hash\n").expect("write");
    proxy.reloads.trigger();
    eventually("the reload was judged", || {
        matches!(
            proxy.reloads.last(),
            Some(knitcache::config::reload::Outcome::Rejected { .. })
        )
    })
    .await;
    let alice = send(
        c.post(proxy.url("/w/order"))
            .basic_auth("alice", Some("wonderland")),
    )
    .await;
    assert_eq!(alice.status, 200);
}

// ---- forward auth against an auth server in a process of its own ----

/// Set in the environment of the auth server's process.
const AUTH_CHILD: &str = "KNITCACHE_TEST_AUTH_SERVER";

/// Not a test: the body of the auth server's process. [`AuthServer::start`] runs this test
/// binary again with only this function selected and `AUTH_CHILD` set; run any other way it
/// returns at once.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "the process of the forward-auth tests' auth server"]
async fn auth_server_process() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    if std::env::var_os(AUTH_CHILD).is_none() {
        return;
    }
    let server = Origin::start().await;
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    server.on("/auth", move |req, _| {
        count.fetch_add(1, Ordering::SeqCst);
        let auth = req.header("authorization").unwrap_or("");
        let cookie = req.header("cookie").unwrap_or("");
        let seen = |name: &str| req.header(name).unwrap_or("-").to_owned();
        match auth {
            "Bearer alice" | "Bearer alice2" => {}
            _ if cookie.split("; ").any(|c| c == "sso=alice") => {}
            "Bearer slow" => return Reply::ok("late").delay(Duration::from_secs(5)),
            "Bearer huge" => return Reply::status(401).body(vec![b'x'; 100_000]),
            "Bearer nobody" => {
                return Reply::status(403)
                    .header("www-authenticate", "Bearer error=\"insufficient_scope\"")
                    .header("content-type", "application/json")
                    .body("{\"error\":\"not yours\"}");
            }
            _ => {
                let back = seen("x-forwarded-uri");
                return Reply::status(302)
                    .header("location", &format!("http://sso.test/login?rd={back}"))
                    .header("set-cookie", "csrf=abc; HttpOnly")
                    .body("login first");
            }
        }
        let what = [
            "x-forwarded-method",
            "x-forwarded-uri",
            "x-forwarded-host",
            "x-forwarded-for",
            "x-forwarded-proto",
        ]
        .map(seen)
        .join(" ");
        Reply::status(200)
            .header("remote-user", "alice")
            .header("x-seen", &what)
            .header("x-not-copied", "1")
    });
    let count = asked.clone();
    server.on("/asked", move |_, _| {
        Reply::ok(count.load(Ordering::SeqCst).to_string())
    });
    println!("auth server listening on {}", server.addr());
    std::future::pending::<()>().await;
}

/// The auth server's process; killed when dropped.
struct AuthServer {
    addr: std::net::SocketAddr,
    _process: Reap,
}

impl AuthServer {
    fn start() -> AuthServer {
        use std::io::BufRead;
        let exe = std::env::current_exe().expect("test binary");
        let mut child = std::process::Command::new(exe)
            .args(["auth_server_process", "--exact", "--ignored", "--nocapture"])
            .env(AUTH_CHILD, "1")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the auth server process");
        let stdout = child.stdout.take().expect("stdout");
        let process = Reap(child);
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.expect("auth server output");
            if let Some(addr) = line.strip_prefix("auth server listening on ") {
                return AuthServer {
                    addr: addr.parse().expect("addr"),
                    _process: process,
                };
            }
        }
        panic!("the auth server process ended without listening");
    }

    /// How many `/auth` requests it has answered.
    async fn asked(&self) -> usize {
        let r = get(&client(), &format!("http://{}/asked", self.addr)).await;
        r.text().parse().expect("a count")
    }
}

fn forward_sections(url: &str, cache_secs: u64) -> String {
    format!(
        "access:\n  default: sso\n  policies:\n    sso:\n      forward_auth:\n        url: \"{url}\"\n        copy_headers: [Remote-User, X-Seen]\n        timeout_ms: 300\n        cache_secs: {cache_secs}\n        max_body_bytes: 1024\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_admits_relays_refusals_and_never_opens_on_failure_for_every_method() {
    let auth = AuthServer::start();
    let origin = Origin::start().await;
    origin.always("/w/order", Reply::ok("done"));
    let sections = forward_sections(&format!("http://{}/auth", auth.addr), 0);
    let proxy = TestProxy::in_front_of_origin_with(origin.addr(), &sections, BASIC_ROUTES);
    let c = client();
    let url = proxy.url("/w/order?x=1");
    let req = |method: &str, auth: Option<&str>| {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let r = c.request(m, &url).body("");
        match auth {
            Some(a) => r.header("authorization", a),
            None => r,
        }
    };

    for method in METHODS {
        // Admitted by a bearer token, and by a session cookie.
        let forged = req(method, Some("Bearer alice")).header("remote-user", "mallory");
        assert_eq!(send(forged).await.status, 200, "{method}");
        let seen = origin.last("/w/order");
        assert_eq!(seen.method, method);
        let users: Vec<&str> = seen
            .headers
            .iter()
            .filter(|(n, _)| n == "remote-user")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(
            users,
            ["alice"],
            "the service names the user, not the client"
        );
        let host = proxy.addrs.proxy.to_string();
        assert_eq!(
            seen.header("x-seen"),
            Some(format!("{method} /w/order?x=1 {host} 127.0.0.1 http").as_str()),
            "the service saw the original request"
        );
        assert_eq!(
            seen.header("x-not-copied"),
            None,
            "only the configured fields"
        );
        assert_eq!(
            seen.header("authorization"),
            None,
            "the credentials were consumed"
        );
        let by_cookie = req(method, None).header("cookie", "theme=dark; sso=alice");
        assert_eq!(send(by_cookie).await.status, 200, "{method}");
        assert_eq!(origin.last("/w/order").header("cookie"), None);

        let reached = origin.count("/w/order");
        let login = send(req(method, None)).await;
        assert_eq!(login.status, 302, "{method}");
        assert_eq!(
            login.header("location"),
            "http://sso.test/login?rd=/w/order?x=1"
        );
        assert_eq!(login.header("set-cookie"), "csrf=abc; HttpOnly");
        let nobody = send(req(method, Some("Bearer nobody"))).await;
        assert_eq!(nobody.status, 403, "{method}");
        assert_eq!(
            nobody.header("www-authenticate"),
            "Bearer error=\"insufficient_scope\""
        );
        if method != "HEAD" {
            assert_eq!(login.text(), "login first");
            assert_eq!(nobody.text(), "{\"error\":\"not yours\"}");
        }
        for failing in ["Bearer slow", "Bearer huge"] {
            let r = send(req(method, Some(failing))).await;
            assert_eq!(r.status, 503, "{method} with {failing}: never 200");
            assert!(!r.text().contains("done"));
        }
        assert_eq!(
            origin.count("/w/order"),
            reached,
            "refused {method}s never reach the ERP"
        );
    }
    let unavailable = metric(
        &proxy,
        r#"knitcache_access_total{result="unavailable",route="writes",rule="forward"}"#,
    )
    .await;
    assert_eq!(unavailable, 14.0);
    let refusals = metric(
        &proxy,
        r#"knitcache_refusals_total{reason="auth_unavailable",route="writes"}"#,
    )
    .await;
    assert_eq!(refusals, 14.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_auth_service_that_is_down_shuts_the_gate() {
    let origin = Origin::start().await;
    origin.always("/w/order", Reply::ok("done"));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let sections = forward_sections(&format!("http://127.0.0.1:{port}/auth"), 30);
    let proxy = TestProxy::in_front_of_origin_with(origin.addr(), &sections, BASIC_ROUTES);
    for method in METHODS {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let r = send(
            client()
                .request(m, proxy.url("/w/order"))
                .header("authorization", "Bearer alice"),
        )
        .await;
        assert_eq!(r.status, 503, "{method}");
        assert_eq!(r.header("retry-after"), "5");
    }
    assert_eq!(origin.count("/w/order"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_admissions_are_remembered_and_users_share_the_cache() {
    let auth = AuthServer::start();
    let origin = Origin::start().await;
    const SECRET: &str = "open-orders-4a1d";
    origin.always("/cached/orders", Reply::ok(SECRET));
    origin.always("/cached/other", Reply::ok("other"));
    let sections = forward_sections(&format!("http://{}/auth", auth.addr), 30);
    let proxy = TestProxy::in_front_of_origin_with(origin.addr(), &sections, BASIC_ROUTES);
    let c = client();
    let url = proxy.url("/cached/orders");

    let first = send(c.get(&url).header("authorization", "Bearer alice")).await;
    assert_eq!((first.status, first.text().as_str()), (200, SECRET));
    let again = send(c.get(&url).header("authorization", "Bearer alice")).await;
    assert!(again.is_hit());
    assert_eq!(auth.asked().await, 1, "the admission was remembered");
    // Another user (another credential) is asked about, and then shares the stored copy.
    let other = send(c.get(&url).header("authorization", "Bearer alice2")).await;
    assert!(other.is_hit(), "{}", other.cache_status());
    assert_eq!(auth.asked().await, 2);
    // Another path is another question.
    let path = send(
        c.get(proxy.url("/cached/other"))
            .header("authorization", "Bearer alice"),
    )
    .await;
    assert_eq!(path.status, 200);
    assert_eq!(auth.asked().await, 3);
    assert_eq!(origin.count("/cached/orders"), 1);
    // Nobody else gets a byte of the stored copy.
    let anonymous = send(c.get(&url)).await;
    assert_eq!(anonymous.status, 302);
    assert!(!anonymous.text().contains("open-orders"));
    let anonymous = send(c.get(&url).header("range", "bytes=0-3")).await;
    assert_eq!(anonymous.status, 302);
    assert_eq!(auth.asked().await, 5, "refusals are not remembered");
}

#[tokio::test(flavor = "multi_thread")]
async fn over_https_and_http2_the_service_is_told_the_scheme_and_the_host() {
    use common::tls::{self as tls_client, H2, TestCa};
    let auth = AuthServer::start();
    let origin = Origin::start().await;
    origin.always("/w/order", Reply::ok("done"));
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("access test CA");
    let leaf = ca.leaf(dir.path(), "server");
    let sections = format!(
        "listen_tls: \"127.0.0.1:0\"\ntls:\n  cert_file: \"{}\"\n  key_file: \"{}\"\n{}",
        leaf.cert_file.display(),
        leaf.key_file.display(),
        forward_sections(&format!("http://{}/auth", auth.addr), 0)
    );
    let proxy = TestProxy::in_front_of_origin_with(origin.addr(), &sections, BASIC_ROUTES);
    let tls_addr = proxy.addrs.tls.expect("the TLS listener is bound");
    let stream = tls_client::connect(tls_addr, &ca.der(), &[b"h2"]).await;
    let h2 = H2::on(stream).await;

    let admitted = h2
        .request("POST", "/w/order", &[("authorization", "Bearer alice")])
        .await;
    assert_eq!(admitted.status, 200);
    assert_eq!(
        origin.last("/w/order").header("x-seen"),
        Some("POST /w/order localhost 127.0.0.1 https"),
        "HTTP/2 has no Host field: the service gets the :authority"
    );
    // HTTP/2 clients send each cookie as a field of its own (RFC 9113 §8.2.3): the service
    // gets them joined into the one `Cookie` of HTTP/1.1, and finds its session among them.
    let by_cookie = h2
        .request(
            "POST",
            "/w/order",
            &[("cookie", "theme=dark"), ("cookie", "sso=alice")],
        )
        .await;
    assert_eq!(by_cookie.status, 200, "{}", by_cookie.text());
    assert_eq!(origin.last("/w/order").header("cookie"), None);
    let refused = h2.request("POST", "/w/order", &[]).await;
    assert_eq!(refused.status, 302);
    assert_eq!(refused.text(), "login first");
    assert_eq!(origin.count("/w/order"), 2);
}
