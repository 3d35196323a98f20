//! The admin API as documented: docs/openapi.yaml against the code's table of endpoints
//! (`admin::ENDPOINTS`, which the router reads and nothing else) and against the running admin
//! listener of the real proxy in front of the simulator. Every documented path and method
//! answers with a documented status, content type, headers and body (JSON checked against its
//! schema, whose objects allow no undocumented property), every documented status is seen (a few
//! that need a failing disk or a remote client are named below), every endpoint the code serves
//! is documented, and docs/ADMIN_API.md names each one.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::*;
use knitcache::admin::{Access, ENDPOINTS};
use serde_json::{Value, json};

/// Documented statuses the test cannot provoke, and why. Each must still be documented.
const UNOBSERVED: &[(&str, &str, &str, &str)] = &[
    ("/readyz", "GET", "503", "only while the process shuts down"),
    (
        "/readyz",
        "HEAD",
        "503",
        "only while the process shuts down",
    ),
    (
        "/purge",
        "POST",
        "403",
        "needs a client off loopback (purge::tests)",
    ),
    ("/purge", "POST", "500", "needs a failing cache"),
];

const TOKEN: &str = "admin-api-test-token-0123456789";

/// Methods asked of every documented path; those it does not document must answer 405.
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn spec() -> Value {
    let path = root().join("docs/openapi.yaml");
    let text = std::fs::read_to_string(&path).expect("docs/openapi.yaml");
    // Status codes are quoted in the file ('200'), as OpenAPI asks, so every key is a string.
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("docs/openapi.yaml: {e}"))
}

/// `v`, or what its `$ref` (`#/...` within the document) points at.
fn resolve<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let target = r
                .strip_prefix('#')
                .and_then(|p| spec.pointer(p))
                .unwrap_or_else(|| panic!("$ref {r} points nowhere"));
            resolve(spec, target)
        }
        None => v,
    }
}

/// Every documented (path, METHOD).
fn documented(spec: &Value) -> BTreeSet<(String, String)> {
    let ops = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let paths = spec["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let item = item.as_object().expect("path item");
            item.keys()
                .filter(|k| ops.contains(&k.as_str()))
                .map(|k| (path.clone(), k.to_uppercase()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn operation<'a>(spec: &'a Value, path: &str, method: &str) -> &'a Value {
    spec["paths"]
        .get(path)
        .and_then(|item| item.get(method.to_lowercase()))
        .unwrap_or_else(|| panic!("{method} {path} is not documented"))
}

// ---- a JSON Schema subset: what docs/openapi.yaml uses, and nothing it uses is ignored ----------

/// Keywords that only annotate.
const ANNOTATIONS: [&str; 4] = ["description", "title", "examples", "default"];

fn has_type(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "null" => v.is_null(),
        other => panic!("unknown type {other:?} in docs/openapi.yaml"),
    }
}

/// Appends to `errors` every way `v` (at `at`) breaks `schema`.
fn validate(spec: &Value, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(spec, schema);
    let Some(keywords) = schema.as_object() else {
        panic!("a schema is an object: {schema} at {at}");
    };
    for (k, rule) in keywords {
        match k.as_str() {
            "type" => {
                let types: Vec<&str> = match rule {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                    _ => panic!("type {rule} at {at}"),
                };
                if !types.iter().any(|t| has_type(v, t)) {
                    errors.push(format!("{at}: {v} is not of type {rule}"));
                }
            }
            "enum" => {
                if !rule.as_array().is_some_and(|vs| vs.contains(v)) {
                    errors.push(format!("{at}: {v} is not one of {rule}"));
                }
            }
            "const" => {
                if rule != v {
                    errors.push(format!("{at}: {v:?} is not {rule:?}"));
                }
            }
            "minimum" => {
                if let (Some(n), Some(min)) = (v.as_f64(), rule.as_f64())
                    && n < min
                {
                    errors.push(format!("{at}: {n} < {min}"));
                }
            }
            "required" => {
                if let Some(obj) = v.as_object() {
                    for name in rule.as_array().expect("required list") {
                        let name = name.as_str().expect("required name");
                        if !obj.contains_key(name) {
                            errors.push(format!("{at}: required property {name} missing"));
                        }
                    }
                }
            }
            "properties" => {
                if let Some(obj) = v.as_object() {
                    for (name, sub) in rule.as_object().expect("properties") {
                        if let Some(value) = obj.get(name) {
                            validate(spec, sub, value, &format!("{at}.{name}"), errors);
                        }
                    }
                }
            }
            "additionalProperties" => {
                let Some(obj) = v.as_object() else { continue };
                let known = keywords.get("properties").and_then(Value::as_object);
                for (name, value) in obj {
                    if known.is_some_and(|p| p.contains_key(name)) {
                        continue;
                    }
                    match rule {
                        Value::Bool(false) => errors.push(format!(
                            "{at}: property {name} is not documented (docs/openapi.yaml)"
                        )),
                        Value::Bool(true) => {}
                        sub => validate(spec, sub, value, &format!("{at}.{name}"), errors),
                    }
                }
            }
            "items" => {
                if let Some(items) = v.as_array() {
                    for (i, item) in items.iter().enumerate() {
                        validate(spec, rule, item, &format!("{at}[{i}]"), errors);
                    }
                }
            }
            "oneOf" => {
                let subs = rule.as_array().expect("oneOf list");
                let matching = subs
                    .iter()
                    .filter(|sub| {
                        let mut e = Vec::new();
                        validate(spec, sub, v, at, &mut e);
                        e.is_empty()
                    })
                    .count();
                if matching != 1 {
                    errors.push(format!("{at}: {v} matches {matching} of oneOf, not 1"));
                }
            }
            a if ANNOTATIONS.contains(&a) => {}
            other => panic!(
                "docs/openapi.yaml uses {other:?} at {at}, which this test does not check; \
                 teach `validate` the keyword"
            ),
        }
    }
}

// ---- the documentation and the code's table ----------------------------------------------------

#[test]
fn every_endpoint_the_code_serves_is_documented_and_nothing_else() {
    let spec = spec();
    let served: BTreeSet<(String, String)> = ENDPOINTS
        .iter()
        .flat_map(|e| e.methods().map(|m| (e.path.to_owned(), m.to_owned())))
        .collect();
    let documented = documented(&spec);
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let not_served: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served but not in docs/openapi.yaml: {undocumented:?}"
    );
    assert!(
        not_served.is_empty(),
        "in docs/openapi.yaml but not served (admin::ENDPOINTS): {not_served:?}"
    );
    assert_eq!(
        spec["openapi"].as_str().map(|v| v.starts_with("3.1.")),
        Some(true),
        "an OpenAPI 3.1 document"
    );
    assert_eq!(spec["info"]["version"], env!("CARGO_PKG_VERSION"));

    let prose = std::fs::read_to_string(root().join("docs/ADMIN_API.md")).expect("ADMIN_API.md");
    for e in ENDPOINTS {
        for m in e.methods().filter(|m| *m != "HEAD") {
            assert!(
                prose.contains(&format!("`{m} {}`", e.path)),
                "docs/ADMIN_API.md does not name `{m} {}`",
                e.path
            );
        }
    }
}

/// The security requirements written for each operation say what `Access` the code enforces.
#[test]
fn documented_security_matches_each_endpoints_access() {
    let spec = spec();
    for e in ENDPOINTS {
        for m in e.methods() {
            let security = operation(&spec, e.path, m)["security"]
                .as_array()
                .unwrap_or_else(|| panic!("{m} {}: no security list", e.path));
            let schemes: BTreeSet<String> = security
                .iter()
                .map(|req| {
                    let keys: Vec<&String> = req.as_object().expect("requirement").keys().collect();
                    keys.first()
                        .map_or("anonymous".to_owned(), |k| (*k).clone())
                })
                .collect();
            let expected: BTreeSet<String> = match e.access {
                Access::Open => BTreeSet::new(),
                Access::Read => ["anonymous", "adminBearer", "adminBasic"]
                    .map(String::from)
                    .into(),
                Access::Token => ["anonymous", "adminBearer"].map(String::from).into(),
            };
            assert_eq!(schemes, expected, "{m} {}: {:?}", e.path, e.access);
        }
    }
}

// ---- the running admin listener ----------------------------------------------------------------

/// One request and what it must provoke.
struct Call {
    method: String,
    path: String,
    auth: Option<String>,
    body: Option<Vec<u8>>,
}

impl Call {
    fn new(method: &str, path: &str) -> Self {
        Call {
            method: method.to_owned(),
            path: path.to_owned(),
            auth: None,
            body: None,
        }
    }

    fn bearer(mut self, token: &str) -> Self {
        self.auth = Some(format!("Bearer {token}"));
        self
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    async fn send(&self, c: &reqwest::Client, proxy: &TestProxy) -> Resp {
        let method = reqwest::Method::from_bytes(self.method.as_bytes()).expect("method");
        let mut req = c.request(method, proxy.admin_url(&self.path));
        if let Some(a) = &self.auth {
            req = req.header("authorization", a);
        }
        if let Some(b) = &self.body {
            req = req
                .header("content-type", "application/json")
                .body(b.clone());
        }
        send(req).await
    }
}

/// Checks one answer against the document; returns its status as the document keys it.
fn check_answer(spec: &Value, call: &Call, r: &Resp) -> String {
    let what = format!("{} {} -> {}", call.method, call.path, r.status);
    let status = r.status.to_string();
    let op = operation(spec, &call.path, &call.method);
    let documented = op["responses"]
        .get(&status)
        .unwrap_or_else(|| panic!("{what}: status not documented ({})", r.text()));
    let response = resolve(spec, documented);
    let content_type = r.header("content-type");
    if let Some(content) = response.get("content").and_then(Value::as_object) {
        let media = content.get(&content_type).unwrap_or_else(|| {
            panic!(
                "{what}: content type {content_type:?} is not documented ({:?})",
                content.keys().collect::<Vec<_>>()
            )
        });
        if call.method == "HEAD" {
            assert!(r.body.is_empty(), "{what}: HEAD answered a body");
        } else {
            let body: Value = if content_type.starts_with("application/json") {
                serde_json::from_slice(&r.body)
                    .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", r.text()))
            } else {
                Value::String(r.text())
            };
            let mut errors = Vec::new();
            validate(spec, &media["schema"], &body, "body", &mut errors);
            assert!(errors.is_empty(), "{what}:\n{}", errors.join("\n"));
        }
    } else {
        assert!(
            r.body.is_empty(),
            "{what}: an undocumented body: {}",
            r.text()
        );
    }
    for (name, header) in response
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let header = resolve(spec, header);
        let values: Vec<&str> = r
            .headers
            .get_all(name.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert!(
            !values.is_empty(),
            "{what}: documented header {name} missing"
        );
        let mut errors = Vec::new();
        for v in values {
            validate(
                spec,
                &header["schema"],
                &Value::String(v.to_owned()),
                name,
                &mut errors,
            );
        }
        assert!(errors.is_empty(), "{what}:\n{}", errors.join("\n"));
    }
    assert_eq!(
        r.header("cache-control"),
        "no-store",
        "{what}: admin answers are never stored"
    );
    status
}

/// The request examples documented for an operation, as bodies.
fn request_examples(spec: &Value, path: &str, method: &str) -> Vec<Vec<u8>> {
    let op = operation(spec, path, method);
    let Some(body) = op.get("requestBody") else {
        return Vec::new();
    };
    let media = &resolve(spec, body)["content"]["application/json"];
    let examples = media["examples"]
        .as_object()
        .unwrap_or_else(|| panic!("{method} {path}: a request body without examples"));
    examples
        .values()
        .map(|ex| {
            let value = &resolve(spec, ex)["value"];
            let mut errors = Vec::new();
            validate(spec, &media["schema"], value, "example", &mut errors);
            assert!(errors.is_empty(), "{method} {path}: {errors:?}");
            serde_json::to_vec(value).expect("JSON")
        })
        .collect()
}

/// The shipped config in front of `sim`, caching in `dir`, with the admin settings given.
fn start(sim: &erp_sim::ErpSim, dir: &Path, token: Option<&str>, protect_reads: bool) -> TestProxy {
    let mut config = shipped_config(sim.addr(), dir);
    config.admin.token = token.map(str::to_owned);
    // Never a token from the test's environment.
    config.admin.token_env = "KNITCACHE_ADMIN_API_TEST_NO_TOKEN".to_owned();
    config.admin.protect_reads = protect_reads;
    TestProxy::start(config, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_running_admin_listener_answers_as_documented() {
    let spec = spec();
    let sim = start_sim(0.01).await;
    let c = client();
    let mut seen: BTreeSet<(String, String, String)> = BTreeSet::new();
    let mut record = |call: &Call, status: String| {
        seen.insert((call.path.clone(), call.method.clone(), status));
    };

    // Reads open, no token: purge from loopback.
    let (_open_dir, dir) = cache_dir();
    let open = start(&sim, &dir, None, false);
    wait_ready(&c, &open).await;
    // Traffic, so /stats has hot keys, slow routes and latencies to show.
    for _ in 0..2 {
        get(&c, &open.url("/api/comprehensive-kpis")).await;
    }
    // Each documented operation, the documented request examples (which work on the shipped
    // config), then bodies that must be refused.
    let mut calls: Vec<(Call, Option<u16>)> = Vec::new();
    for (path, method) in documented(&spec) {
        let examples = request_examples(&spec, &path, &method);
        if examples.is_empty() {
            calls.push((Call::new(&method, &path), None));
        }
        for body in examples {
            calls.push((Call::new(&method, &path).body(body), Some(200)));
        }
    }
    for (body, status) in [
        ("{}".as_bytes().to_vec(), 400),
        (br#"{"url": "/api/x", "route": "kpis"}"#.to_vec(), 400),
        (br#"{"route": "reload-data"}"#.to_vec(), 400),
        (br#"{"tag": "two words"}"#.to_vec(), 400),
        (br#"{"route": "no-such-route"}"#.to_vec(), 404),
        (vec![b' '; 65 * 1024], 413),
    ] {
        calls.push((Call::new("POST", "/purge").body(body), Some(status)));
    }
    for (call, expected) in &calls {
        let r = call.send(&c, &open).await;
        if let Some(expected) = expected {
            assert_eq!(
                r.status,
                *expected,
                "{} {}: {}",
                call.method,
                call.path,
                r.text()
            );
        }
        record(call, check_answer(&spec, call, &r));
    }

    // The prose shows `GET /` as it answers.
    let index = get(&c, &open.admin_url("/")).await.text();
    let prose = std::fs::read_to_string(root().join("docs/ADMIN_API.md")).expect("ADMIN_API.md");
    assert!(
        prose.contains(&index),
        "docs/ADMIN_API.md's example of `GET /` differs from its answer:\n{index}"
    );

    // HEAD answers carry no body: nothing follows the head before the connection closes.
    for (path, _) in documented(&spec).into_iter().filter(|(_, m)| m == "HEAD") {
        let mut raw = raw::Raw::connect(open.addrs.admin).await;
        raw.send(
            format!("HEAD {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        let head = raw.response(true).await.expect("an answer to HEAD");
        assert_eq!(head.status, 200, "HEAD {path}");
        let after = raw.until_closed().await;
        assert!(
            after.is_empty(),
            "HEAD {path} answered {} body bytes: {}",
            after.len(),
            String::from_utf8_lossy(&after)
        );
    }

    // A documented path asked with a method it does not document: 405 naming the documented
    // ones. An undocumented path: 404.
    let by_path: BTreeMap<String, BTreeSet<String>> =
        documented(&spec)
            .into_iter()
            .fold(BTreeMap::new(), |mut m, (p, meth)| {
                m.entry(p).or_default().insert(meth);
                m
            });
    for (path, methods) in &by_path {
        for m in METHODS.iter().filter(|m| !methods.contains(**m)) {
            let r = Call::new(m, path).send(&c, &open).await;
            let allow: BTreeSet<String> = r
                .header("allow")
                .split(',')
                .map(|s| s.trim().to_owned())
                .collect();
            assert_eq!(
                (r.status, &allow),
                (405, methods),
                "{m} {path}: {}",
                r.text()
            );
        }
    }
    for path in ["/nope", "/stats/", "/healthz/x", "/purge/"] {
        assert_eq!(get(&c, &open.admin_url(path)).await.status, 404, "{path}");
    }

    // Token and protected reads: what needs the token refuses without it and answers with it.
    let (_guarded_dir, dir) = cache_dir();
    let guarded = start(&sim, &dir, Some(TOKEN), true);
    wait_ready(&c, &guarded).await;
    for e in ENDPOINTS {
        for method in e.methods() {
            let examples = request_examples(&spec, e.path, method);
            let body = examples.first().cloned();
            let with_body = |call: Call| match &body {
                Some(b) => call.body(b.clone()),
                None => call,
            };
            let calls = [
                with_body(Call::new(method, e.path)),
                with_body(Call::new(method, e.path).bearer("not-the-token-0123456789")),
                with_body(Call::new(method, e.path).bearer(TOKEN)),
            ];
            for (i, call) in calls.iter().enumerate() {
                let r = call.send(&c, &guarded).await;
                let expected = match (e.access, i) {
                    (Access::Open, _) | (_, 2) => 200,
                    _ => 401,
                };
                assert_eq!(
                    r.status,
                    expected,
                    "{method} {} ({i}): {}",
                    e.path,
                    r.text()
                );
                record(call, check_answer(&spec, call, &r));
            }
        }
    }

    // Every documented status was seen, but for the few the test cannot provoke.
    for (path, method) in documented(&spec) {
        let op = operation(&spec, &path, &method);
        for status in op["responses"].as_object().expect("responses").keys() {
            let key = (path.clone(), method.clone(), status.clone());
            let excused = UNOBSERVED
                .iter()
                .any(|(p, m, s, _)| (*p, *m, *s) == (&path[..], &method[..], &status[..]));
            assert!(
                seen.contains(&key) || excused,
                "{method} {path} documents {status}, never answered here"
            );
        }
    }
    for (p, m, s, why) in UNOBSERVED {
        assert!(
            operation(&spec, p, m)["responses"].get(*s).is_some(),
            "{m} {p} {s} ({why}) is excused but not documented"
        );
    }
}

#[test]
fn the_schema_check_refuses_what_it_should() {
    let spec = spec();
    let stats = json!({"$ref": "#/components/schemas/Percentiles"});
    let good = json!({"count": 1, "p50_ms": 0.1, "p95_ms": 0.2, "p99_ms": 0.3, "max_ms": 1.0});
    let mut errors = Vec::new();
    validate(&spec, &stats, &good, "p", &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    for bad in [
        json!({"count": 1, "p50_ms": 0.1, "p95_ms": 0.2, "p99_ms": 0.3}),
        json!({"count": 1, "p50_ms": 0.1, "p95_ms": 0.2, "p99_ms": 0.3, "max_ms": 1.0, "p999_ms": 2.0}),
        json!({"count": -1, "p50_ms": 0.1, "p95_ms": 0.2, "p99_ms": 0.3, "max_ms": 1.0}),
        json!({"count": 1.5, "p50_ms": 0.1, "p95_ms": 0.2, "p99_ms": 0.3, "max_ms": 1.0}),
    ] {
        let mut errors = Vec::new();
        validate(&spec, &stats, &bad, "p", &mut errors);
        assert!(!errors.is_empty(), "{bad} passed");
    }
    let purge = json!({"$ref": "#/components/schemas/PurgeRequest"});
    for (body, ok) in [
        (json!({"url": "/a"}), true),
        (json!({"tag": "t"}), true),
        (json!({"url": "/a", "route": "r"}), false),
        (json!({}), false),
    ] {
        let mut errors = Vec::new();
        validate(&spec, &purge, &body, "purge", &mut errors);
        assert_eq!(errors.is_empty(), ok, "{body}: {errors:?}");
    }
}

/// The states the first test never meets: a cache that runs memory-only (its directory cannot be
/// created) answers `/readyz` and `/stats` as documented too.
#[tokio::test(flavor = "multi_thread")]
async fn a_memory_only_cache_answers_as_documented() {
    let spec = spec();
    let sim = start_sim(0.01).await;
    let (tmp, _) = cache_dir();
    // The cache directory's parent is a file: no disk tier can be created or moved aside.
    let blocker = tmp.path().join("blocker");
    std::fs::write(&blocker, b"a file").expect("write file");
    let proxy = start(&sim, &blocker.join("cache"), None, false);
    let c = client();
    wait_ready(&c, &proxy).await;
    for _ in 0..2 {
        get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    }
    for path in ["/readyz", "/stats"] {
        let call = Call::new("GET", path);
        let r = call.send(&c, &proxy).await;
        assert_eq!(check_answer(&spec, &call, &r), "200");
        let doc: Value = serde_json::from_slice(&r.body).expect("JSON");
        let disk = if path == "/readyz" {
            &doc["disk"]
        } else {
            &doc["cache"]["disk"]["state"]
        };
        assert_eq!(disk, "memory-only", "{path}: {doc}");
    }
}
