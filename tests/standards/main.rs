//! RFC 9111 caching through the real proxy in front of a standards-speaking origin
//! (`common::origin`), one file per area. Every test proves storage by counting the requests
//! that reached the origin, and cites the rule it checks.
//!
//! Most tests use one catch-all `freshness: origin` route (`std_route`); the ERP's mode is a
//! route with a TTL (`route_mode`). Each test uses paths of its own.

#[path = "../common/mod.rs"]
mod common;

mod age;
mod auth_cookies;
mod freshening;
mod freshness;
mod head;
mod heuristics;
mod invalidation;
mod requests;
mod stale;
mod statuses;
mod targeted;
mod targets;
mod transform;
mod validators;
mod vary;

use std::time::Duration;

pub use common::origin::{Origin, Reply, SeenRequest, http_date};
pub use common::*;

/// A catch-all `freshness: origin` route with `extra` route keys (`"key: value"` lines, which
/// replace a default of the same key). Stale windows default to 0 here, so that an expired
/// response is never served stale unless the test asks for it.
pub fn std_route(extra: &[&str]) -> String {
    route(
        "std",
        &[
            "freshness: origin",
            "stale_while_revalidate_secs: 0",
            "stale_if_error_secs: 0",
        ],
        extra,
    )
}

/// A catch-all route in the ERP's mode (`ttl_secs: 60`, no stale windows), with `extra` keys.
pub fn route_mode(extra: &[&str]) -> String {
    route(
        "erp",
        &[
            "ttl_secs: 60",
            "stale_while_revalidate_secs: 0",
            "stale_if_error_secs: 0",
        ],
        extra,
    )
}

fn route(name: &str, base: &[&str], extra: &[&str]) -> String {
    let key = |line: &str| line.split(':').next().unwrap_or("").trim().to_owned();
    let mut yaml = format!("  - name: {name}\n    prefix: /\n");
    let kept = base
        .iter()
        .filter(|line| !extra.iter().any(|e| key(e) == key(line)));
    for line in kept.chain(extra) {
        yaml.push_str("    ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    yaml
}

/// An origin, a proxy in front of it and a client.
pub struct Rig {
    pub origin: Origin,
    pub proxy: TestProxy,
    pub c: reqwest::Client,
}

impl Rig {
    /// Starts an origin and the proxy with `routes`.
    pub async fn new(routes: &str) -> Rig {
        Rig::with_sections("", routes).await
    }

    /// As `new`, plus top-level config sections.
    pub async fn with_sections(sections: &str, routes: &str) -> Rig {
        let origin = Origin::start().await;
        let proxy = TestProxy::in_front_of_origin_with(origin.addr(), sections, routes);
        Rig {
            origin,
            proxy,
            c: client(),
        }
    }

    /// The standard rig with `upstream.url_form: rfc3986`, as the generic config has it.
    pub async fn rfc3986(extra: &[&str]) -> Rig {
        let origin = Origin::start().await;
        let proxy = TestProxy::in_front_of_origin_upstream(
            origin.addr(),
            "url_form: rfc3986",
            &std_route(extra),
        );
        Rig {
            origin,
            proxy,
            c: client(),
        }
    }

    /// The standard rig: one `freshness: origin` route with `extra` keys.
    pub async fn std(extra: &[&str]) -> Rig {
        Rig::new(&std_route(extra)).await
    }

    /// A rig with one route in the ERP's mode with `extra` keys.
    pub async fn route_mode(extra: &[&str]) -> Rig {
        Rig::new(&route_mode(extra)).await
    }

    /// Answers `path` with `versioned(headers)`.
    pub fn serve(&self, path: &str, headers: &[(&str, &str)]) {
        self.origin.on(path, versioned(headers));
    }

    /// GET `path` through the proxy.
    pub async fn get(&self, path: &str) -> Resp {
        send(self.c.get(self.proxy.url(path))).await
    }

    /// GET `path` with these request header fields.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = self.c.get(self.proxy.url(path));
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        send(req).await
    }

    /// Any method, with header fields and a body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Resp {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.c.request(method, self.proxy.url(path));
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        if !body.is_empty() {
            req = req.body(body.to_owned());
        }
        send(req).await
    }

    /// `PURGE path` on the proxy port (allowed from loopback by default).
    pub async fn purge(&self, path: &str) -> Resp {
        let r = self.request("PURGE", path, &[], "").await;
        assert_eq!(r.status, 200, "PURGE {path}: {}", r.text());
        r
    }

    /// Requests the origin received for `path`.
    pub fn count(&self, path: &str) -> usize {
        self.origin.count(path)
    }

    /// Waits until the origin has received `n` requests for `path` (a background refresh).
    pub async fn until_count(&self, path: &str, n: usize) {
        eventually(&format!("{n} origin requests for {path}"), || {
            self.origin.count(path) >= n
        })
        .await;
    }
}

/// A handler answering `200` with body `v1`, `v2`, ... (one more per request) and `headers`.
pub fn versioned(
    headers: &[(&str, &str)],
) -> impl Fn(&SeenRequest, usize) -> Reply + Send + Sync + 'static {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    move |_, n| {
        headers
            .iter()
            .fold(Reply::ok(format!("v{}", n + 1)), |r, (name, value)| {
                r.header(name, value)
            })
    }
}

/// The sum of every sample of the metric `name` (all label sets) on the proxy's `/metrics`.
pub async fn metric_sum(proxy: &TestProxy, name: &str) -> f64 {
    let text = get(&client(), &proxy.admin_url("/metrics")).await.text();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (sample, value) = l.rsplit_once(' ')?;
            let bare = sample.split('{').next()?;
            (bare == name).then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// `Age` of a response as a number (panics if absent or not a number).
pub fn age(r: &Resp) -> u64 {
    r.header("age")
        .parse()
        .unwrap_or_else(|_| panic!("no numeric Age: {:?}", r.headers))
}

/// Sleeps `ms` milliseconds (expiry must pass).
pub async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Asserts `r` was answered from the cache.
#[track_caller]
pub fn assert_hit(r: &Resp, why: &str) {
    assert!(
        r.is_hit(),
        "{why}: expected a hit, got {:?}",
        r.cache_status()
    );
}

/// Asserts `r` was not answered from the cache.
#[track_caller]
pub fn assert_not_hit(r: &Resp, why: &str) {
    assert!(
        !r.is_hit(),
        "{why}: expected no hit, got {:?}",
        r.cache_status()
    );
}

// The origin itself: what every other test relies on.

#[tokio::test(flavor = "multi_thread")]
async fn origin_answers_counts_and_records_requests() {
    let origin = Origin::start().await;
    origin.on("/o/x", |req, n| {
        Reply::ok(format!("{n} {}", req.header("x-echo").unwrap_or("-")))
            .header("x-a", "1")
            .header("x-a", "2")
    });
    let c = client();
    let url = format!("http://{}/o/x?q=1", origin.addr());
    let r = send(c.get(&url).header("x-echo", "hi")).await;
    assert_eq!((r.status, r.text().as_str()), (200, "0 hi"));
    let values: Vec<_> = r.headers.get_all("x-a").iter().collect();
    assert_eq!(values, ["1", "2"], "repeated lines in order");
    assert!(
        r.headers.get("date").is_none(),
        "no Date unless the handler sets it"
    );
    let r = get(&c, &format!("http://{}/o/x", origin.addr())).await;
    assert_eq!(r.text(), "1 -");
    let missing = get(&c, &format!("http://{}/o/none", origin.addr())).await;
    assert_eq!(missing.status, 404);
    assert_eq!(origin.count("/o/x"), 2);
    assert_eq!(origin.requests("/o/x")[0].uri, "/o/x?q=1");
    assert_eq!(origin.count("/o/none"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn origin_drop_closes_without_an_answer() {
    let origin = Origin::start().await;
    origin.always("/o/drop", Reply::drop());
    let r = client()
        .get(format!("http://{}/o/drop", origin.addr()))
        .send()
        .await;
    assert!(r.is_err(), "no response: {r:?}");
    assert_eq!(origin.count("/o/drop"), 1);
}
