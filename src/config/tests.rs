//! Tests of the config layer: the shipped files, one test per kind of problem (asserting the key
//! path, the line and the fix in the message), query keys, defaults and first-match order, and
//! each caching key's default, inheritance from `defaults:` and per-route override.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Method;

use super::file::{FileConfig, FileRoute, keys_of};
use super::lines::{self, Lines};
use super::*;

/// The smallest valid file: line 1.
const MINIMAL: &str = "upstream: { address: \"127.0.0.1:5007\" }\n";

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(name)
}

fn ok(yaml: &str) -> Config {
    parse(yaml, "t.yaml")
        .unwrap_or_else(|e| panic!("expected a valid config, got:\n{e}\n---\n{yaml}"))
}

/// All messages, one per line, as `knitcache check` prints them.
fn errors(yaml: &str) -> String {
    match parse(yaml, "t.yaml") {
        Ok(_) => panic!("expected problems, the config was accepted:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

/// `MINIMAL` + `routes:` on line 2; the first route item is on line 3.
fn with_routes(routes: &str) -> String {
    format!("{MINIMAL}routes:\n{routes}")
}

fn assert_has(all: &str, expected: &str) {
    assert!(
        all.contains(expected),
        "expected a line containing\n  {expected}\nin\n{all}"
    );
}

fn route<'a>(c: &'a Config, method: &Method, path: &str) -> Option<&'a Route> {
    c.route_for(method, path).map(|(_, r)| r)
}

// ---- the shipped files ----

#[test]
fn shipped_config_is_valid() {
    let c = load(&shipped("knitcache.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.listen, "0.0.0.0:5006".parse().expect("addr"));
    assert_eq!(c.admin_listen, "127.0.0.1:5009".parse().expect("addr"));
    assert_eq!(c.upstream.address, "127.0.0.1:5007".parse().expect("addr"));
    assert_eq!(c.cache.dir, PathBuf::from("/var/cache/knitcache"));
    assert!(
        c.routes.len() > 40,
        "the shipped table covers every read group"
    );
}

#[test]
fn shipped_config_ttls_follow_the_erps_plan() {
    let c = load(&shipped("knitcache.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let ttl = |path: &str| {
        let r = route(&c, &Method::GET, path).unwrap_or_else(|| panic!("{path} matches no route"));
        let p = r
            .cache_policy()
            .unwrap_or_else(|| panic!("{path} ({}) must cache", r.name));
        p.ttl.as_secs()
    };
    assert_eq!(ttl("/api/comprehensive-kpis"), 180);
    assert_eq!(ttl("/api/yarn-intelligence"), 300);
    assert_eq!(ttl("/api/inventory-intelligence-enhanced"), 300);
    assert_eq!(ttl("/api/v2/yarn"), 300);
    assert_eq!(ttl("/api/production-pipeline"), 60);
    assert_eq!(ttl("/api/production-planning"), 60);
    assert_eq!(ttl("/api/knit-orders"), 60);
    assert_eq!(ttl("/api/ml-forecast-detailed"), 900);
    assert_eq!(ttl("/api/six-phase-planning"), 600);
    assert_eq!(ttl("/api/bom-explosion-net-requirements"), 3600);
    assert_eq!(ttl("/api/inventory/unified"), 300);
    assert_eq!(ttl("/api/production/unified"), 60);
    assert_eq!(ttl("/api/production-flow/status"), 60);
    assert_eq!(ttl("/api/ai/yarn-forecast/18868"), 900);
    assert_eq!(
        ttl("/api/v2/analytics/kpis"),
        60,
        "the dashboard's 404 polls are cached"
    );
    assert_eq!(ttl("/api/kpi-dashboard"), 3600, "redirect-only legacy path");

    let slow = route(&c, &Method::GET, "/api/fabric-forecast-integrated").expect("route");
    let policy = slow.cache_policy().expect("caches");
    assert!(
        policy.stale_while_revalidate >= Duration::from_secs(3600),
        "slow forecast: generous swr"
    );

    let page = route(&c, &Method::GET, "/").expect("the dashboard page has a route");
    let policy = page.cache_policy().expect("caches");
    assert!(
        policy.ignore_no_store,
        "/ is sent with no-store but is the same for everyone"
    );
    assert_eq!(policy.query, QueryKey::Only(vec![]));
    assert_eq!(
        route(&c, &Method::GET, "/consolidated")
            .expect("route")
            .name,
        page.name
    );
}

#[test]
fn shipped_config_passes_side_effects_through() {
    let c = load(&shipped("knitcache.yaml")).unwrap_or_else(|e| panic!("{e}"));
    for path in [
        "/api/reload-data",
        "/api/system/unified",
        "/api/backtest/fabric-comprehensive",
        "/api/backtest/models",
        "/api/admin/feature-flags",
        "/api/cache-stats",
        "/api/cache-clear",
        "/api/execute-planning",
        "/api/planning/execute",
        "/api/v2/health",
        "/api/retrain-ml",
    ] {
        let r = route(&c, &Method::GET, path).unwrap_or_else(|| panic!("{path} matches no route"));
        assert!(
            r.cache_policy().is_none(),
            "{path} must pass through, but {} caches",
            r.name
        );
    }
    // Unlisted paths and the writes next to cached reads are not cached.
    assert!(route(&c, &Method::POST, "/api/knit-orders/generate").is_none());
    assert!(route(&c, &Method::GET, "/api/yarn-requirements-calculation/x").is_none());
}

#[test]
fn shipped_configs_comment_every_value() {
    for name in ["knitcache.yaml", "dev.yaml", "standard.yaml"] {
        let text = std::fs::read_to_string(shipped(name)).expect("read");
        let mut previous = "";
        for (n, line) in text.lines().enumerate() {
            let t = line.trim();
            let is_value = !t.is_empty() && !t.starts_with('#') && !t.ends_with(':');
            // A value is explained on its own line or by the comment line right above it.
            if is_value && !t.contains(" #") && !previous.starts_with('#') {
                panic!("{name} line {}: {t:?} has no comment saying why", n + 1);
            }
            if !t.is_empty() {
                previous = t;
            }
        }
    }
}

#[test]
fn erp_configs_answer_requests_with_cookies_from_the_cache() {
    // The ERP uses no cookies; browsers carry other apps' cookies for the same host.
    for name in ["knitcache.yaml", "dev.yaml"] {
        let c = load(&shipped(name)).unwrap_or_else(|e| panic!("{e}"));
        for r in &c.routes {
            if let Some(p) = r.cache_policy() {
                assert_eq!(
                    p.request_cookies,
                    RequestCookies::Ignore,
                    "{name}: {}",
                    r.name
                );
                assert_eq!(p.set_cookie, SetCookie::Refuse, "{name}: {}", r.name);
                assert_eq!(p.freshness, Freshness::Route, "{name}: {}", r.name);
            }
        }
    }
}

#[test]
fn standard_config_puts_rfc_9111_in_front_of_any_origin() {
    let c = load(&shipped("standard.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.upstream.address, "127.0.0.1:8081".parse().expect("addr"));
    assert!(c.admin_listen.ip().is_loopback());
    assert_eq!(c.routes.len(), 1, "one catch-all route");
    for path in ["/", "/index.html", "/api/x"] {
        assert!(route(&c, &Method::GET, path).is_some(), "{path}");
    }
    let p = c.routes[0].cache_policy().expect("caches");
    assert_eq!(p.freshness, Freshness::Origin);
    assert_eq!(p.statuses, StoredStatuses::Standard);
    assert_eq!(p.request_cookies, RequestCookies::Bypass);
    assert_eq!(p.set_cookie, SetCookie::Refuse);
    assert!(!p.ignore_no_store);
    assert_eq!(p.stale_while_revalidate, Duration::ZERO);
    assert_eq!(
        p.stale_if_error,
        Duration::ZERO,
        "stale only with the origin's say-so"
    );
    let h = p.heuristic.expect("heuristic freshness");
    assert_eq!((h.fraction, h.max), (0.1, Duration::from_secs(86_400)));
    assert_eq!(p.max_variants, 16);
    assert!(!c.warming.enabled);
    assert!(c.protection.rate_limit.is_none());
    assert!(c.invalidation.is_empty());
}

#[test]
fn dev_config_is_valid() {
    let c = load(&shipped("dev.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.listen, "127.0.0.1:5006".parse().expect("addr"));
    assert_eq!(c.cache.dir, PathBuf::from("./target/knitcache-cache"));
    assert!(c.cache.memory_bytes <= 64 * 1024 * 1024, "small tiers");
    assert!(
        route(&c, &Method::GET, "/api/reload-data")
            .expect("route")
            .cache_policy()
            .is_none()
    );
}

#[test]
fn route_table_lists_routes_in_order() {
    let c = load(&shipped("knitcache.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let table = route_table(&c);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with(" #  name"), "{table}");
    assert_eq!(
        lines.len(),
        c.routes.len() + 2,
        "header + one line per route + footer"
    );
    let kpis = lines
        .iter()
        .find(|l| l.contains(" kpis "))
        .expect("kpis row");
    for cell in [
        "cache",
        "3m",
        "1m",
        "1h",
        "all",
        "exact /api/comprehensive-kpis",
    ] {
        assert!(kpis.contains(cell), "{kpis:?} lacks {cell}");
    }
    let reload = lines
        .iter()
        .find(|l| l.contains("reload-data"))
        .expect("row");
    assert!(reload.contains("pass"), "{reload}");
    // Aligned: the match column starts at the same offset on every row.
    let at = lines[0].find("match").expect("header");
    assert!(
        lines[1..=c.routes.len()]
            .iter()
            .all(|l| l[at - 2..at].trim().is_empty())
    );
}

// ---- syntax and shape ----

#[test]
fn invalid_yaml_names_the_line() {
    let all = errors("upstream: { address: \"127.0.0.1:5007\" }\nroutes: [\n");
    assert_has(&all, "t.yaml:3: invalid YAML: ");
}

#[test]
fn unknown_key_names_line_and_valid_keys() {
    let all = errors(&with_routes(
        "  - name: kpis\n    exact: /a\n    ttl: 180\n",
    ));
    assert_has(
        &all,
        "t.yaml:5: routes[0].ttl (route \"kpis\"): unknown key \"ttl\"; did you mean ttl_secs? \
         valid keys here: name, exact, prefix, pattern, methods, cache, ttl_secs, ",
    );
    let all = errors(&format!(
        "{MINIMAL}cache:\n  memory: 64\n  compresion: {{ level: 3 }}\nlisten_addr: x\n"
    ));
    assert_has(
        &all,
        "t.yaml:3: cache.memory: unknown key \"memory\"; did you mean memory_mib?",
    );
    assert_has(
        &all,
        "t.yaml:4: cache.compresion: unknown key \"compresion\"; did you mean compression?",
    );
    assert_has(&all, "t.yaml:5: listen_addr: unknown key \"listen_addr\"; ");
    assert_has(
        &all,
        "valid keys here: listen, admin_listen, upstream, cache, server, defaults, routes",
    );
}

#[test]
fn duration_with_a_unit_says_how_to_write_it() {
    let all = errors(&with_routes(
        "  - name: kpis\n    exact: /a\n    ttl_secs: 3m\n",
    ));
    assert_has(
        &all,
        "t.yaml:5: routes[0].ttl_secs (route \"kpis\"): ttl_secs = 3m is not a whole number of \
         seconds; write a whole number of seconds, e.g. ttl_secs: 180",
    );
    let all = errors("upstream:\n  address: \"127.0.0.1:5007\"\n  read_timeout_ms: 1.5s\n");
    assert_has(
        &all,
        "t.yaml:3: upstream.read_timeout_ms: read_timeout_ms = 1.5s is not a whole number of milliseconds; write a whole number of milliseconds, e.g. read_timeout_ms: 1500 for 1.5s",
    );
    let all = errors(&format!(
        "{MINIMAL}cache: {{ memory_mib: 1G, max_object_bytes: 4 MiB }}\n"
    ));
    assert_has(
        &all,
        "memory_mib = 1G is not a whole number of MiB; write a whole number of MiB, e.g. memory_mib: 1024 for 1G",
    );
    assert_has(&all, "e.g. max_object_bytes: 4194304 for 4 MiB");
    let all = errors(&format!(
        "{MINIMAL}server: {{ threads: two, grace_period_secs: soon }}\n"
    ));
    assert_has(
        &all,
        "t.yaml:2: server.threads: threads = two is not a whole number; write a whole number, e.g. threads: 2",
    );
    assert_has(
        &all,
        "grace_period_secs = soon is not a whole number of seconds; write a whole number of seconds, e.g. grace_period_secs: 10",
    );
}

#[test]
fn quoted_and_empty_numbers_are_explained() {
    let all = errors(&format!(
        "{MINIMAL}defaults:\n  ttl_secs: \"60\"\n  stale_if_error_secs:\n"
    ));
    assert_has(
        &all,
        "t.yaml:3: defaults.ttl_secs: ttl_secs = \"60\" is quoted, which makes it text; write it without quotes: ttl_secs: 60",
    );
    assert_has(
        &all,
        "t.yaml:4: defaults.stale_if_error_secs: stale_if_error_secs has no value; write a whole number of seconds, e.g. stale_if_error_secs: 600, or remove the key to use the default",
    );
}

#[test]
fn repeated_key_is_reported_at_the_repeat() {
    let all = errors(&with_routes(
        "  - name: a\n    exact: /a\n    ttl_secs: 1\n    ttl_secs: 2\n",
    ));
    assert_has(
        &all,
        "t.yaml:6: routes[0].ttl_secs (route \"a\"): ttl_secs appears twice (first on line 5); keep one",
    );
}

#[test]
fn every_shape_problem_is_reported_at_once() {
    let all = errors(&with_routes(
        "  - name: a\n    exact: /a\n    ttl: 1\n  - name: b\n    exact: /b\n    ttl_secs: 2h\n    swr: 1\n",
    ));
    assert_eq!(all.lines().count(), 3, "{all}");
    let lines: Vec<&str> = all.lines().collect();
    assert!(
        lines[0].starts_with("t.yaml:5:")
            && lines[1].starts_with("t.yaml:8:")
            && lines[2].starts_with("t.yaml:9:"),
        "sorted by line:\n{all}"
    );
    assert_has(&all, "e.g. ttl_secs: 7200 for 2h");
}

#[test]
fn wrong_types_are_reported_by_serde_with_line_and_route() {
    let all = errors(&with_routes("  - name: a\n    exact: /a\n    cache: 1\n"));
    assert_has(
        &all,
        "t.yaml:5: routes[0].cache (route \"a\"): invalid type: integer `1`, expected a boolean; write true or false",
    );
    let all = errors(&with_routes(
        "  - name: a\n    exact: /a\n    methods: GET\n",
    ));
    assert_has(
        &all,
        "t.yaml:5: routes[0].methods (route \"a\"): invalid type: string \"GET\", expected a sequence; write a list, e.g. methods: [GET, HEAD]",
    );
}

#[test]
fn address_given_as_a_bare_port_or_host_name() {
    let all = errors("listen: 5006\nupstream: { address: \"127.0.0.1:5007\" }\n");
    assert_has(
        &all,
        "t.yaml:1: listen: listen = 5006 is a port alone; write IP:port, e.g. listen: \"0.0.0.0:5006\"",
    );
    let all = errors(
        "admin_listen: localhost:5009\nupstream: { address: \"10.0.0.7\" }\nlisten: nowhere\n",
    );
    assert_has(
        &all,
        "t.yaml:1: admin_listen: \"localhost:5009\" is not an IP:port address; host names are not resolved; write admin_listen: \"127.0.0.1:5009\"",
    );
    assert_has(
        &all,
        "t.yaml:2: upstream.address: \"10.0.0.7\" is not an IP:port address; add a port, e.g. upstream.address: \"10.0.0.7:5007\"",
    );
    assert_has(
        &all,
        "t.yaml:3: listen: \"nowhere\" is not an IP:port address; write IP:port, e.g. listen: \"0.0.0.0:5006\"",
    );
}

// ---- meaning ----

#[test]
fn upstream_missing() {
    let all = errors("listen: \"0.0.0.0:5006\"\n");
    assert_has(
        &all,
        "t.yaml: upstream: missing; knitcache needs the ERP's address: add upstream: { address: \"127.0.0.1:5007\" }",
    );
    let all = errors("upstream:\n  connect_timeout_ms: 5\n");
    assert_has(
        &all,
        "t.yaml:1: upstream.address: missing; add address: \"127.0.0.1:5007\" under upstream:",
    );
    // An empty file gets the same advice, and nothing else.
    assert_eq!(errors("").lines().count(), 1);
}

#[test]
fn upstream_pointing_at_the_proxy_itself() {
    let all = errors("listen: \"0.0.0.0:5006\"\nupstream: { address: \"127.0.0.1:5006\" }\n");
    assert_has(
        &all,
        "t.yaml:2: upstream.address: 127.0.0.1:5006 is knitcache's own listen address (0.0.0.0:5006), so requests would loop back into the proxy; run the ERP on another port",
    );
    let all = errors("upstream: { address: \"0.0.0.0:5007\" }\n");
    assert_has(
        &all,
        "0.0.0.0:5007 is a listen address, not a destination; write the ERP's address, e.g. \"127.0.0.1:5007\"",
    );
    // The same port on another host is fine.
    ok("listen: \"0.0.0.0:5006\"\nupstream: { address: \"10.1.2.3:5006\" }\n");
}

#[test]
fn admin_listen_clashing_with_listen() {
    let all = errors(&format!(
        "{MINIMAL}listen: \"0.0.0.0:5006\"\nadmin_listen: \"127.0.0.1:5006\"\n"
    ));
    assert_has(
        &all,
        "t.yaml:3: admin_listen: 127.0.0.1:5006 uses the same port as listen = 0.0.0.0:5006; give the admin endpoints a port of their own",
    );
    // Ephemeral ports (tests) never clash.
    ok(&format!(
        "{MINIMAL}listen: \"127.0.0.1:0\"\nadmin_listen: \"127.0.0.1:0\"\n"
    ));
}

#[test]
fn timeouts_of_zero() {
    let all = errors(
        "upstream: { address: \"127.0.0.1:5007\", connect_timeout_ms: 0 }\ncache: { lock_timeout_ms: 0 }\n",
    );
    assert_has(
        &all,
        "t.yaml:1: upstream.connect_timeout_ms: connect_timeout_ms = 0 would expire at once; write a whole number of milliseconds above 0, e.g. connect_timeout_ms: 1000",
    );
    assert_has(
        &all,
        "t.yaml:2: cache.lock_timeout_ms: lock_timeout_ms = 0 sends every waiting request to the ERP at once",
    );
}

#[test]
fn cache_sizes() {
    let all = errors(&format!(
        "{MINIMAL}cache:\n  memory_mib: 0\n  disk_mib: 0\n"
    ));
    assert_has(
        &all,
        "t.yaml:3: cache.memory_mib: memory_mib = 0 leaves no memory tier; set at least 1, e.g. memory_mib: 256",
    );
    assert_has(
        &all,
        "t.yaml:4: cache.disk_mib: disk_mib = 0 leaves no disk tier; set at least 1, e.g. disk_mib: 2048",
    );
    let all = errors(&format!(
        "{MINIMAL}cache:\n  memory_mib: 2\n  max_object_bytes: 4194304\n"
    ));
    assert_has(
        &all,
        "t.yaml:4: cache.max_object_bytes: max_object_bytes = 4194304 is larger than the memory tier (memory_mib = 2 is 2097152 bytes); lower max_object_bytes or raise memory_mib",
    );
    let all = errors(&format!(
        "{MINIMAL}cache:\n  memory_mib: 1024\n  max_object_bytes: 134217728\n"
    ));
    assert_has(
        &all,
        "t.yaml:4: cache.max_object_bytes: max_object_bytes = 134217728 is over the 64 MiB limit (67108864)",
    );
    let all = errors(&format!("{MINIMAL}cache: {{ max_object_bytes: 0 }}\n"));
    assert_has(&all, "max_object_bytes = 0 stores nothing");
}

#[test]
fn compression_level_and_threads() {
    let all = errors(&format!(
        "{MINIMAL}cache:\n  compression: {{ level: 0 }}\nserver:\n  threads: 0\n"
    ));
    assert_has(
        &all,
        "t.yaml:3: cache.compression.level: level = 0 is outside 1..=9; use 1 (fastest) to 9 (smallest), e.g. level: 6",
    );
    assert_has(
        &all,
        "t.yaml:5: server.threads: threads = 0 runs no workers; set at least 1, e.g. threads: 2",
    );
}

#[test]
fn upgrade_socket_path_too_long() {
    let long = format!("/tmp/{}.sock", "x".repeat(120));
    let all = errors(&format!("{MINIMAL}server:\n  upgrade_sock: {long}\n"));
    assert_has(
        &all,
        "t.yaml:3: server.upgrade_sock: upgrade_sock = /tmp/xxx",
    );
    assert_has(&all, "over the 107 bytes a unix socket path may have");
}

#[test]
fn duplicate_route_names() {
    let all = errors(&with_routes(
        "  - name: kpis\n    exact: /a\n  - name: kpis\n    exact: /b\n",
    ));
    assert_has(
        &all,
        "t.yaml:5: routes[1].name (route \"kpis\"): name \"kpis\" is already used by routes[0] (line 3); route names label metrics and logs, so they must be unique",
    );
}

#[test]
fn route_names_must_be_present_and_simple() {
    let all = errors(&with_routes(
        "  - exact: /a\n  - name: \"KPI cards!\"\n    exact: /b\n",
    ));
    assert_has(
        &all,
        "t.yaml:3: routes[0]: has no name; add name: <unique-name>",
    );
    assert_has(
        &all,
        "t.yaml:4: routes[1].name (route \"KPI cards!\"): name \"KPI cards!\" may only use letters, digits, '-', '_' and '.' (it labels metrics and logs); write e.g. name: kpi-cards-",
    );
}

#[test]
fn route_needs_exactly_one_matcher() {
    let all = errors(&with_routes(
        "  - name: none\n    ttl_secs: 5\n  - name: two\n    exact: /a\n    prefix: /a/\n",
    ));
    assert_has(
        &all,
        "t.yaml:3: routes[0] (route \"none\"): matches no path; add exactly one of exact: /path, prefix: /path/ or pattern: <regex>",
    );
    assert_has(
        &all,
        "t.yaml:7: routes[1].prefix (route \"two\"): sets exact and prefix; keep exactly one of exact, prefix and pattern",
    );
}

#[test]
fn paths_must_start_with_a_slash_and_carry_no_query() {
    let all = errors(&with_routes(
        "  - name: a\n    prefix: api/v2/\n  - name: b\n    exact: /api/x?view=1\n",
    ));
    assert_has(
        &all,
        "t.yaml:4: routes[0].prefix (route \"a\"): \"api/v2/\" does not start with /; request paths always do, write prefix: /api/v2/",
    );
    assert_has(
        &all,
        "t.yaml:6: routes[1].exact (route \"b\"): \"/api/x?view=1\" contains a query string, but paths are matched without it; write exact: /api/x and choose parameters with query_key",
    );
}

#[test]
fn invalid_regex() {
    let all = errors(&with_routes("  - name: a\n    pattern: \"/api/(x\"\n"));
    assert_has(
        &all,
        "t.yaml:4: routes[0].pattern (route \"a\"): \"/api/(x\" is not a valid regular expression: unclosed group; fix the expression",
    );
}

#[test]
fn unknown_and_lowercase_methods() {
    let all = errors(&with_routes(
        "  - name: a\n    exact: /a\n    methods: [GET, get, FETCH]\n",
    ));
    assert_has(
        &all,
        "t.yaml:5: routes[0].methods[1] (route \"a\"): \"get\": HTTP methods are case-sensitive; write GET",
    );
    assert_has(
        &all,
        "t.yaml:5: routes[0].methods[2] (route \"a\"): unknown HTTP method \"FETCH\"; use one of GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE, CONNECT",
    );
    let all = errors(&with_routes(
        "  - name: a\n    exact: /a\n    methods: []\n",
    ));
    assert_has(
        &all,
        "routes[0].methods (route \"a\"): methods is empty, so the route matches nothing",
    );
    let all = errors(&with_routes(
        "  - name: a\n    exact: /a\n    methods: [POST]\n",
    ));
    assert_has(
        &all,
        "t.yaml:5: routes[0].methods (route \"a\"): methods = [POST] on a caching route: only GET and HEAD are ever cached, so this route caches nothing; set cache: false, or add GET",
    );
}

#[test]
fn statuses_out_of_range() {
    let all = errors(&with_routes(
        "  - name: a\n    exact: /a\n    statuses: [200, 99, 600]\n",
    ));
    assert_has(
        &all,
        "t.yaml:5: routes[0].statuses[1] (route \"a\"): 99 is not an HTTP status (100..=599); write a status code, e.g. 200 or 404",
    );
    assert_has(
        &all,
        "routes[0].statuses[2] (route \"a\"): 600 is not an HTTP status",
    );
    let all = errors(&format!("{MINIMAL}defaults:\n  statuses: []\n"));
    assert_has(
        &all,
        "t.yaml:3: defaults.statuses: statuses is empty, so nothing would be stored",
    );
}

#[test]
fn cache_keys_on_a_pass_through_route() {
    let all = errors(&with_routes(
        "  - name: reload\n    exact: /api/reload-data\n    cache: false\n    ttl_secs: 60\n    query_key: all\n",
    ));
    assert_has(
        &all,
        "t.yaml:6: routes[0].ttl_secs (route \"reload\"): ttl_secs is set but the route has cache: false (pass-through), so it would do nothing; remove ttl_secs or set cache: true",
    );
    assert_has(
        &all,
        "t.yaml:7: routes[0].query_key (route \"reload\"): query_key is set but the route has cache: false",
    );
}

#[test]
fn zero_ttl_is_valid_with_any_stale_windows() {
    // TTL 0: stored, never fresh, revalidated with the origin on every request.
    for windows in [
        "",
        "    stale_while_revalidate_secs: 30\n",
        "    stale_while_revalidate_secs: 0\n",
        "    stale_while_revalidate_secs: 0\n    stale_if_error_secs: 0\n",
        "    stale_if_error_secs: 0\n",
    ] {
        let c = ok(&with_routes(&format!(
            "  - name: kpis\n    exact: /a\n    ttl_secs: 0\n{windows}"
        )));
        let p = c.routes[0].cache_policy().expect("caches");
        assert_eq!(p.ttl, Duration::ZERO, "{windows}");
    }
    // And in `defaults:`, inherited by a route that sets no window of its own.
    let c = ok(&format!(
        "{MINIMAL}defaults:\n  ttl_secs: 0\n  stale_if_error_secs: 0\nroutes:\n  - name: a\n    exact: /a\n"
    ));
    let p = c.routes[0].cache_policy().expect("caches");
    assert_eq!((p.ttl, p.stale_if_error), (Duration::ZERO, Duration::ZERO));
    assert_eq!(
        p.stale_while_revalidate,
        Duration::from_secs(defaults::DEFAULT_STALE_WHILE_REVALIDATE_SECS)
    );
}

#[test]
fn windows_over_a_year_look_like_milliseconds() {
    let all = errors(&with_routes(
        "  - name: a\n    exact: /a\n    ttl_secs: 180000000\n",
    ));
    assert_has(
        &all,
        "t.yaml:5: routes[0].ttl_secs (route \"a\"): ttl_secs = 180000000 is more than a year (31536000 s); durations here are in seconds; if you meant milliseconds, write ttl_secs: 180000",
    );
}

#[test]
fn unreachable_routes() {
    let all = errors(&with_routes(concat!(
        "  - name: api\n    prefix: /api/\n",                  // 3
        "  - name: v2\n    prefix: /api/v2/\n",                // 5
        "  - name: kpis\n    exact: /api/kpis\n",              // 7
        "  - name: root\n    exact: /\n",                      // 9
        "  - name: root-again\n    exact: /\n",                // 11
        "  - name: html\n    pattern: /(index|home)\\.html\n", // 13
        "  - name: home\n    exact: /home.html\n",             // 15
    )));
    assert_has(
        &all,
        "t.yaml:5: routes[1] (route \"v2\"): unreachable route: routes[0] \"api\" (line 3) comes first and matches every request this route could match; move this route above it or remove it",
    );
    assert_has(
        &all,
        "t.yaml:7: routes[2] (route \"kpis\"): unreachable route: routes[0] \"api\" (line 3)",
    );
    assert_has(
        &all,
        "t.yaml:11: routes[4] (route \"root-again\"): unreachable route: routes[3] \"root\" (line 9)",
    );
    assert_has(
        &all,
        "t.yaml:15: routes[6] (route \"home\"): unreachable route: routes[5] \"html\" (line 13)",
    );
    assert_eq!(all.lines().count(), 4, "{all}");
}

#[test]
fn methods_decide_reachability() {
    // An earlier route limited to POST leaves GET to the later one.
    ok(&with_routes(
        "  - name: writes\n    prefix: /api/\n    methods: [POST]\n    cache: false\n  - name: kpis\n    exact: /api/kpis\n",
    ));
    // An earlier route for every method covers a later one limited to GET.
    let all = errors(&with_routes(
        "  - name: api\n    prefix: /api/\n  - name: kpis\n    exact: /api/kpis\n    methods: [GET]\n",
    ));
    assert_has(&all, "routes[1] (route \"kpis\"): unreachable route");
    // A later exact path under a shorter prefix with a method the prefix lacks is reachable.
    ok(&with_routes(
        "  - name: reads\n    prefix: /api/\n    methods: [GET]\n  - name: kpis\n    exact: /api/kpis\n    methods: [GET, HEAD]\n",
    ));
}

#[test]
fn every_problem_is_reported_in_one_run() {
    let all = errors(concat!(
        "listen: nowhere\n",
        "upstream: { address: \"127.0.0.1:5007\" }\n",
        "cache: { memory_mib: 0 }\n",
        "server: { threads: 0 }\n",
        "routes:\n",
        "  - name: a\n    exact: a\n",
        "  - name: a\n    pattern: \"(\"\n",
    ));
    for line in [
        "t.yaml:1:",
        "t.yaml:3:",
        "t.yaml:4:",
        "t.yaml:7:",
        "t.yaml:8:",
        "t.yaml:9:",
    ] {
        assert!(
            all.lines().any(|l| l.starts_with(line)),
            "no problem on {line}\n{all}"
        );
    }
}

#[test]
fn unreadable_file() {
    let err = load(Path::new("/nonexistent/knitcache.yaml")).expect_err("no such file");
    assert_eq!(err.problems.len(), 1);
    assert!(
        err.to_string()
            .starts_with("/nonexistent/knitcache.yaml: cannot read the file: "),
        "{err}"
    );
}

// ---- defaults, query keys, matching ----

#[test]
fn defaults_fill_what_the_file_leaves_out() {
    let c = ok(MINIMAL);
    assert_eq!(c.listen, defaults::DEFAULT_LISTEN.parse().expect("addr"));
    assert_eq!(
        c.admin_listen,
        defaults::DEFAULT_ADMIN_LISTEN.parse().expect("addr")
    );
    assert_eq!(
        c.upstream.read_timeout,
        Duration::from_millis(defaults::DEFAULT_READ_TIMEOUT_MS)
    );
    assert_eq!(
        c.cache.memory_bytes,
        defaults::DEFAULT_MEMORY_MIB * 1024 * 1024
    );
    assert_eq!(
        c.cache.compression.level,
        defaults::DEFAULT_COMPRESSION_LEVEL
    );
    assert_eq!(c.server.threads, defaults::default_threads());
    assert!(c.routes.is_empty());
}

#[test]
fn unset_threads_are_one_per_cpu_the_process_may_use() {
    // Affinity is per thread, and the standard library reads the calling thread's: pinned to
    // one CPU, the default is one worker; unpinned, one per CPU of the mask.
    let pinned = std::thread::spawn(|| {
        // SAFETY: `set` is a plain bitmask owned by this frame; the calls only read and write it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            let size = std::mem::size_of::<libc::cpu_set_t>();
            assert_eq!(
                libc::sched_getaffinity(0, size, &mut set),
                0,
                "read the mask"
            );
            let first = (0..libc::CPU_SETSIZE as usize)
                .find(|&cpu| libc::CPU_ISSET(cpu, &set))
                .expect("some CPU");
            libc::CPU_ZERO(&mut set);
            libc::CPU_SET(first, &mut set);
            assert_eq!(libc::sched_setaffinity(0, size, &set), 0, "pin to one CPU");
        }
        ok(MINIMAL).server.threads
    })
    .join()
    .expect("pinned thread");
    assert_eq!(pinned, 1, "pinned to one CPU: one worker");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(ok(MINIMAL).server.threads, cpus);
    let set = ok(&format!("{MINIMAL}server: {{ threads: 3 }}\n"));
    assert_eq!(set.server.threads, 3, "a value in the file wins");
}

#[test]
fn routes_inherit_from_the_defaults_section() {
    let c = ok(&format!(
        "{MINIMAL}defaults:\n  ttl_secs: 120\n  origin_cache_control: honour\n  statuses: [404, 200, 200]\n\
         routes:\n  - name: a\n    exact: /a\n  - name: b\n    exact: /b\n    ttl_secs: 5\n    origin_cache_control: override\n"
    ));
    let a = c.routes[0].cache_policy().expect("caches");
    assert_eq!(a.ttl, Duration::from_secs(120));
    assert_eq!(
        a.stale_while_revalidate,
        Duration::from_secs(defaults::DEFAULT_STALE_WHILE_REVALIDATE_SECS)
    );
    assert_eq!(a.origin_cache_control, OriginCacheControl::Honour);
    assert_eq!(
        a.statuses,
        StoredStatuses::Only(vec![200, 404]),
        "sorted and deduplicated"
    );
    assert!(!a.ignore_no_store);
    let b = c.routes[1].cache_policy().expect("caches");
    assert_eq!(b.ttl, Duration::from_secs(5));
    assert_eq!(b.origin_cache_control, OriginCacheControl::Override);
}

#[test]
fn url_form_defaults_to_wsgi_and_takes_rfc3986() {
    use crate::canonical::Form;
    assert_eq!(ok(MINIMAL).upstream.url_form, Form::Wsgi);
    let rfc = "upstream: { address: \"127.0.0.1:5007\", url_form: rfc3986 }\n";
    assert_eq!(ok(rfc).upstream.url_form, Form::Rfc3986);
    let all = errors("upstream: { address: \"127.0.0.1:5007\", url_form: raw }\n");
    assert_has(&all, "t.yaml:1: upstream.url_form: unknown variant `raw`");
    assert_has(&all, "expected `wsgi` or `rfc3986`");
}

#[test]
fn a_partial_query_key_needs_the_wsgi_form() {
    let rfc = "upstream: { address: \"127.0.0.1:5007\", url_form: rfc3986 }\n";
    let all = errors(&format!(
        "{rfc}routes:\n  - name: a\n    exact: /a\n    query_key: {{ only: [view] }}\n  - name: b\n    exact: /b\n    query_key: all\n  - name: c\n    exact: /c\n    query_key: {{ ignore: [_ts] }}\n"
    ));
    assert_has(
        &all,
        "t.yaml:5: routes[0].query_key (route \"a\"): query_key: { only } needs upstream.url_form: wsgi",
    );
    assert_has(
        &all,
        "t.yaml:11: routes[2].query_key (route \"c\"): query_key: { ignore } needs upstream.url_form: wsgi",
    );
    assert_has(
        &all,
        "use query_key: all, or url_form: wsgi if the origin is a WSGI application",
    );
    assert!(!all.contains("routes[1]"), "{all}");
    let all = errors(&format!(
        "{rfc}defaults:\n  query_key: {{ ignore: [_ts] }}\nroutes:\n  - name: a\n    exact: /a\n"
    ));
    assert_has(
        &all,
        "defaults.query_key: query_key: { ignore } needs upstream.url_form: wsgi",
    );
    // The same routes in the WSGI form, and a key of every parameter in either, are fine.
    ok(&with_routes(
        "  - name: a\n    exact: /a\n    query_key: { only: [view] }\n",
    ));
    ok(&format!(
        "{rfc}routes:\n  - name: a\n    exact: /a\n    query_key: all\n"
    ));
}

#[test]
fn query_key_forms() {
    let policy = |q: &str| {
        let c = ok(&with_routes(&format!(
            "  - name: a\n    exact: /a\n    query_key: {q}\n"
        )));
        c.routes[0].cache_policy().expect("caches").query.clone()
    };
    assert_eq!(policy("all"), QueryKey::All);
    assert_eq!(
        policy("{ only: [view, analysis] }"),
        QueryKey::Only(vec!["analysis".into(), "view".into()])
    );
    assert_eq!(
        policy("{ ignore: [_ts] }"),
        QueryKey::Ignore(vec!["_ts".into()])
    );
    assert_eq!(policy("{ only: [] }"), QueryKey::Only(vec![]));
    assert_eq!(
        policy("\n      ignore:\n        - _\n        - _ts"),
        QueryKey::Ignore(vec!["_".into(), "_ts".into()])
    );

    let all = errors(&with_routes(
        "  - name: a\n    exact: /a\n    query_key: some\n",
    ));
    assert_has(
        &all,
        "t.yaml:5: routes[0].query_key (route \"a\"): invalid value: string \"some\", expected `all`, `{ only: [names] }` or `{ ignore: [names] }`",
    );
    let all = errors(&with_routes(
        "  - name: a\n    exact: /a\n    query_key: { only: [a], ignore: [b] }\n",
    ));
    assert_has(
        &all,
        "query_key takes one of `only` or `ignore`, not both; keep one",
    );
    let all = errors(&with_routes(
        "  - name: a\n    exact: /a\n    query_key: { keep: [a] }\n",
    ));
    assert_has(&all, "unknown field `keep`, expected `only` or `ignore`");
    let all = errors(&with_routes(
        "  - name: a\n    exact: /a\n    query_key: { only: [view, \"a=1\"] }\n",
    ));
    assert_has(
        &all,
        "routes[0].query_key.only[1] (route \"a\"): \"a=1\" is not a query parameter name",
    );
}

/// Paths that each route of `c` matches, and some near misses: the exact path and variations
/// of it, a prefix and what follows, and every alternative of a pattern's group.
fn sample_paths(c: &Config) -> Vec<String> {
    let mut paths: Vec<String> = ["/", "/consolidated", "/api/", "/api/unknown", "/x/api/kpis"]
        .map(String::from)
        .to_vec();
    for r in &c.routes {
        match &r.path {
            PathMatch::Exact(p) => paths.extend([p.clone(), format!("{p}/"), format!("{p}x")]),
            PathMatch::Prefix(p) => {
                paths.extend([p.clone(), format!("{p}run"), p[..p.len() - 1].to_owned()])
            }
            PathMatch::Pattern(re) => {
                let s = re.as_str();
                let inner = s.strip_prefix("^(?:").and_then(|s| s.strip_suffix(")$"));
                let Some((head, rest)) = inner.and_then(|s| s.split_once('(')) else {
                    continue;
                };
                let Some((group, tail)) = rest.split_once(')') else {
                    continue;
                };
                let tail = tail.trim_end_matches('?');
                for alt in group.split('|') {
                    let alt = alt.replace("[a-z-]+", "net").replace("[^/]+", "y1");
                    paths.extend([format!("{head}{alt}{tail}"), format!("{head}{alt}{tail}/z")]);
                }
            }
        }
    }
    paths
}

#[test]
fn the_route_index_agrees_with_trying_routes_in_order() {
    let c = load(&shipped("knitcache.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let paths = sample_paths(&c);
    assert!(paths.len() > 200, "{} sample paths", paths.len());
    let methods = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "REPORT",
    ];
    let mut routes_seen = std::collections::HashSet::new();
    for m in methods.map(|m| Method::from_bytes(m.as_bytes()).expect("method")) {
        for p in &paths {
            let in_order = c.routes.iter().position(|r| r.matches(&m, p));
            let indexed = c.route_for(&m, p).map(|(i, _)| i);
            assert_eq!(indexed, in_order, "{m} {p}");
            routes_seen.extend(indexed);
        }
    }
    assert_eq!(
        routes_seen.len(),
        c.routes.len(),
        "every route is taken by some sample"
    );
}

#[test]
fn route_for_takes_the_first_match() {
    let c = ok(&with_routes(concat!(
        "  - name: writes\n    prefix: /api/\n    methods: [POST, PUT]\n    cache: false\n",
        "  - name: kpis\n    exact: /api/kpis\n    ttl_secs: 180\n",
        "  - name: forecast\n    pattern: /api/fabric-forecast(-integrated)?\n",
        "  - name: api\n    prefix: /api/\n",
    )));
    let name = |m: &Method, p: &str| c.route_for(m, p).map(|(i, r)| (i, r.name.as_str()));
    assert_eq!(name(&Method::POST, "/api/kpis"), Some((0, "writes")));
    assert_eq!(name(&Method::GET, "/api/kpis"), Some((1, "kpis")));
    assert_eq!(name(&Method::HEAD, "/api/kpis"), Some((1, "kpis")));
    assert_eq!(
        name(&Method::GET, "/api/fabric-forecast"),
        Some((2, "forecast"))
    );
    assert_eq!(
        name(&Method::GET, "/api/fabric-forecast-integrated"),
        Some((2, "forecast"))
    );
    assert_eq!(
        name(&Method::GET, "/api/fabric-forecast-x"),
        Some((3, "api")),
        "patterns are anchored"
    );
    assert_eq!(
        name(&Method::DELETE, "/api/kpis"),
        Some((1, "kpis")),
        "no methods = every method"
    );
    assert_eq!(name(&Method::GET, "/"), None);
    assert_eq!(
        c.routes[2].path.to_string(),
        "pattern /api/fabric-forecast(-integrated)?"
    );
}

// ---- internals ----

#[test]
fn unknown_key_lists_come_from_the_serde_structs() {
    assert_eq!(
        keys_of::<FileConfig>(),
        [
            "listen",
            "admin_listen",
            "upstream",
            "cache",
            "server",
            "defaults",
            "routes",
            "protection",
            "warming",
            "admin",
            "observability",
            "invalidation",
            "clients",
            "access",
            "listen_tls",
            "tls",
            "h2c",
            "cluster"
        ]
    );
    assert!(keys_of::<FileRoute>().contains(&"ignore_no_store"));
    assert!(keys_of::<FileRoute>().contains(&"total_timeout_ms"));
}

#[test]
fn lines_are_found_in_block_and_flow_style() {
    let yaml = "listen: \"0.0.0.0:5006\"\nupstream: { address: \"127.0.0.1:5007\",\n  read_timeout_ms: 5 }\nroutes:\n  - name: a\n    exact: /a\n  - { name: b,\n      exact: /b }\n";
    let lines = Lines::index(&lines::parse(yaml).expect("parses"));
    assert_eq!(lines.line("listen"), Some(1));
    assert_eq!(lines.line("upstream.read_timeout_ms"), Some(3));
    assert_eq!(lines.line("routes[0]"), Some(5));
    assert_eq!(lines.line("routes[0].exact"), Some(6));
    assert_eq!(lines.line("routes[1].exact"), Some(8));
    assert_eq!(
        lines.line("routes[1].ttl_secs"),
        Some(7),
        "an absent key falls back to its route"
    );
    assert_eq!(lines.exact("routes[1].ttl_secs"), None);
    assert!(lines::parse("a: [").is_none());
}

// ---- protection ----

#[test]
fn protection_defaults_are_on_except_rate_limiting() {
    let c = ok(MINIMAL);
    assert!(c.protection.rate_limit.is_none(), "rate limiting is opt-in");
    assert!(
        c.protection.breaker.is_some(),
        "the breaker is on by default"
    );
    assert_eq!(c.protection.upstream_cap.max_in_flight, 8);
    assert_eq!(c.protection.retry_after, Duration::from_secs(5));
}

#[test]
fn shipped_config_caps_the_forecasts() {
    let c = load(&shipped("knitcache.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let forecast = route(&c, &Method::GET, "/api/fabric-forecast-integrated").expect("route");
    assert_eq!(forecast.limits.max_in_flight, Some(1));
    assert_eq!(forecast.limits.rate_class.as_deref(), Some("heavy"));
    let kpis = route(&c, &Method::GET, "/api/comprehensive-kpis").expect("route");
    assert_eq!(kpis.limits.first_byte_timeout, Some(Duration::from_secs(5)));
}

#[test]
fn protection_problems_name_the_key_and_the_fix() {
    let yaml = format!(
        "{MINIMAL}protection:\n  rate_limit:\n    enabled: true\n    requests_per_sec: 0\n    trusted_proxies: [\"10.0.0.0/33\"]\n  upstream_cap:\n    max_in_flight: 0\n  breaker:\n    error_ratio_percent: 150\nroutes:\n  - name: f\n    prefix: /f\n    rate_limit_class: nope\n    first_byte_timeout_ms: 9000\n    total_timeout_ms: 1000\n"
    );
    let all = errors(&yaml);
    assert_has(
        &all,
        "t.yaml:5: protection.rate_limit.requests_per_sec: requests_per_sec = 0 must be",
    );
    assert_has(
        &all,
        "t.yaml:6: protection.rate_limit.trusted_proxies[0]: \"10.0.0.0/33\" is not an IP address or network",
    );
    assert_has(
        &all,
        "t.yaml:8: protection.upstream_cap.max_in_flight: max_in_flight = 0 would let no request reach the ERP; write e.g. max_in_flight: 8",
    );
    assert_has(
        &all,
        "t.yaml:10: protection.breaker.error_ratio_percent: error_ratio_percent = 150 must be from 1 to 100",
    );
    assert_has(
        &all,
        "routes[0].rate_limit_class (route \"f\"): rate_limit_class \"nope\" is not a class",
    );
    assert_has(
        &all,
        "first_byte_timeout_ms = 9000 is longer than total_timeout_ms = 1000",
    );
}

// ---- health probe, admin and observability ----

#[test]
fn health_probe_defaults_use_a_path_of_both_erp_modes() {
    let c = ok(MINIMAL);
    assert_eq!(c.upstream.health_path, "/hello");
    assert_eq!(c.upstream.health_interval, Duration::from_secs(5));
    assert_eq!(c.upstream.health_timeout, Duration::from_secs(2));
    assert_eq!(c.admin.token, None);
    assert_eq!(c.admin.token_env, "KNITCACHE_ADMIN_TOKEN");
    assert!(c.observability.access_log && c.observability.stats);
}

#[test]
fn bad_health_probe_settings() {
    let all = errors(
        "upstream:\n  address: \"127.0.0.1:5007\"\n  health_path: hello\n  \
         health_interval_ms: 0\n",
    );
    assert_has(
        &all,
        "t.yaml:3: upstream.health_path: \"hello\" does not start with /",
    );
    assert_has(
        &all,
        "t.yaml:4: upstream.health_interval_ms: health_interval_ms = 0",
    );
    let all = errors(
        "upstream:\n  address: \"127.0.0.1:5007\"\n  health_interval_ms: 1000\n  \
         health_timeout_ms: 3000\n",
    );
    assert_has(
        &all,
        "t.yaml:4: upstream.health_timeout_ms: health_timeout_ms = 3000 is longer than \
         health_interval_ms = 1000",
    );
}

#[test]
fn unknown_keys_inside_rate_classes_are_reported() {
    let yaml = format!(
        "{MINIMAL}protection:\n  rate_limit:\n    classes:\n      heavy: {{ requests_per_sec: 1, burst: 2, bursts: 3 }}\n"
    );
    let all = errors(&yaml);
    assert_has(
        &all,
        "t.yaml:5: protection.rate_limit.classes.heavy.bursts: unknown key \"bursts\"; did you mean burst?",
    );
}

#[test]
fn admin_token_must_be_long_and_env_name_valid() {
    let all = errors(&format!(
        "{MINIMAL}admin:\n  token: short\n  token_env: \"1-BAD\"\n"
    ));
    assert_has(&all, "t.yaml:3: admin.token: token is 5 characters long");
    assert_has(
        &all,
        "t.yaml:4: admin.token_env: \"1-BAD\" is not an environment variable name",
    );
    let c = ok(&format!(
        "{MINIMAL}admin:\n  token: \"0123456789abcdef0123\"\n"
    ));
    assert_eq!(
        c.admin.resolve_token().as_deref(),
        Some("0123456789abcdef0123")
    );
}

#[test]
fn protected_reads_need_a_token() {
    // A variable no environment sets: no token at all.
    let all = errors(&format!(
        "{MINIMAL}admin:\n  token_env: KNITCACHE_TEST_UNSET_TOKEN\n  protect_reads: true\n"
    ));
    assert_has(
        &all,
        "admin.protect_reads: protect_reads needs an admin token",
    );
    let c = ok(&format!(
        "{MINIMAL}admin:\n  token: \"0123456789abcdef0123\"\n  protect_reads: true\n"
    ));
    assert!(c.admin.protect_reads);
    assert!(!ok(MINIMAL).admin.protect_reads, "off by default");
}

#[test]
fn the_token_never_shows_in_the_debug_form() {
    let c = ok(&format!(
        "{MINIMAL}admin:\n  token: \"0123456789abcdef0123\"\n"
    ));
    let debug = format!("{c:?}");
    assert!(!debug.contains("0123456789abcdef0123"), "{debug}");
    assert!(debug.contains("<secret>"), "says a token is set: {debug}");
}

#[test]
fn unknown_observability_key_is_named() {
    let all = errors(&format!("{MINIMAL}observability:\n  acces_log: false\n"));
    assert_has(
        &all,
        "t.yaml:3: observability.acces_log: unknown key \"acces_log\"; did you mean access_log?",
    );
    let c = ok(&format!(
        "{MINIMAL}observability:\n  access_log: false\n  stats: false\n"
    ));
    assert!(!c.observability.access_log && !c.observability.stats);
}

#[test]
fn longest_retention_spans_ttl_and_the_longer_stale_window() {
    let c = ok(&with_routes(
        "  - name: a\n    exact: /a\n    ttl_secs: 100\n    stale_if_error_secs: 50\n    \
         stale_while_revalidate_secs: 10\n  - name: b\n    exact: /b\n    ttl_secs: 10\n",
    ));
    // b: 10 + max(30, 600) from the defaults
    assert_eq!(c.longest_retention(), Duration::from_secs(610));
}
// ---- freshness mode, cookies, heuristics, variants ----

/// The policy of the only route of `routes` under `defaults` (`""` for none).
fn policy_of(defaults: &str, routes: &str) -> CachePolicy {
    let defaults = if defaults.is_empty() {
        String::new()
    } else {
        format!("defaults:\n{defaults}")
    };
    let c = ok(&format!("{MINIMAL}{defaults}routes:\n{routes}"));
    c.routes[0].cache_policy().expect("caches").clone()
}

const ROUTE_A: &str = "  - name: a\n    exact: /a\n";

#[test]
fn freshness_defaults_to_route_and_is_inherited_and_overridden() {
    let p = policy_of("", ROUTE_A);
    assert_eq!(p.freshness, Freshness::Route);
    assert_eq!(p.ttl, Duration::from_secs(defaults::DEFAULT_TTL_SECS));
    let p = policy_of("  freshness: origin\n", ROUTE_A);
    assert_eq!(p.freshness, Freshness::Origin);
    assert_eq!(
        p.ttl,
        Duration::ZERO,
        "an origin route has no TTL of its own"
    );
    assert_eq!(
        p.stale_if_error,
        Duration::from_secs(defaults::DEFAULT_STALE_IF_ERROR_SECS),
        "stale windows still apply where the origin gives none"
    );
    let p = policy_of(
        "  freshness: origin\n  ttl_secs: 90\n",
        &format!("{ROUTE_A}    freshness: route\n"),
    );
    assert_eq!(p.freshness, Freshness::Route);
    assert_eq!(
        p.ttl,
        Duration::from_secs(90),
        "defaults.ttl_secs serves route-mode routes"
    );
    let p = policy_of("", &format!("{ROUTE_A}    freshness: origin\n"));
    assert_eq!(p.freshness, Freshness::Origin);
}

#[test]
fn statuses_follow_the_freshness_mode_unless_written() {
    let default_list = StoredStatuses::Only(defaults::DEFAULT_STATUSES.to_vec());
    assert_eq!(policy_of("", ROUTE_A).statuses, default_list);
    let origin = format!("{ROUTE_A}    freshness: origin\n");
    assert_eq!(policy_of("", &origin).statuses, StoredStatuses::Standard);
    assert_eq!(
        policy_of("  freshness: origin\n", ROUTE_A).statuses,
        StoredStatuses::Standard
    );
    // A list written in `defaults:` or on the route wins in either mode.
    assert_eq!(
        policy_of("  statuses: [404, 200]\n", &origin).statuses,
        StoredStatuses::Only(vec![200, 404])
    );
    assert_eq!(
        policy_of("", &format!("{origin}    statuses: [200]\n")).statuses,
        StoredStatuses::Only(vec![200])
    );
    assert_eq!(
        policy_of("  statuses: [200]\n", ROUTE_A).statuses,
        StoredStatuses::Only(vec![200])
    );
    assert_eq!(
        policy_of(
            "  statuses: [200]\n",
            &format!("{ROUTE_A}    statuses: [200, 410]\n")
        )
        .statuses,
        StoredStatuses::Only(vec![200, 410])
    );
}

#[test]
fn ttl_and_origin_cache_control_contradict_origin_freshness() {
    let all = errors(&with_routes(
        "  - name: std\n    prefix: /\n    freshness: origin\n    ttl_secs: 60\n    origin_cache_control: honour\n",
    ));
    assert_has(
        &all,
        "t.yaml:6: routes[0].ttl_secs (route \"std\"): ttl_secs has no effect with freshness: origin: the origin's Cache-Control/Expires (or heuristics) decide; remove ttl_secs, or set freshness: route",
    );
    assert_has(
        &all,
        "t.yaml:7: routes[0].origin_cache_control (route \"std\"): origin_cache_control has no effect with freshness: origin: the origin's Cache-Control/Expires (or heuristics) always decide; remove origin_cache_control, or set freshness: route",
    );
    // The mode inherited from `defaults:` says so.
    let all = errors(&format!(
        "{MINIMAL}defaults:\n  freshness: origin\nroutes:\n  - name: a\n    exact: /a\n    ttl_secs: 0\n"
    ));
    assert_has(
        &all,
        "t.yaml:7: routes[0].ttl_secs (route \"a\"): ttl_secs has no effect with freshness: origin (from defaults): ",
    );
    assert_has(&all, "remove ttl_secs, or set freshness: route");
    // Inherited values are the defaults of route-mode routes, not a contradiction.
    ok(&format!(
        "{MINIMAL}defaults:\n  freshness: origin\n  ttl_secs: 30\n  origin_cache_control: honour\nroutes:\n  - name: a\n    exact: /a\n"
    ));
}

#[test]
fn request_cookies_default_to_bypass_and_are_inherited_and_overridden() {
    assert_eq!(
        policy_of("", ROUTE_A).request_cookies,
        RequestCookies::Bypass
    );
    assert_eq!(
        policy_of("  request_cookies: ignore\n", ROUTE_A).request_cookies,
        RequestCookies::Ignore
    );
    assert_eq!(
        policy_of(
            "  request_cookies: ignore\n",
            &format!("{ROUTE_A}    request_cookies: bypass\n")
        )
        .request_cookies,
        RequestCookies::Bypass
    );
}

#[test]
fn set_cookie_defaults_to_refuse_and_is_inherited_and_overridden() {
    assert_eq!(policy_of("", ROUTE_A).set_cookie, SetCookie::Refuse);
    assert_eq!(
        policy_of("  set_cookie: strip\n", ROUTE_A).set_cookie,
        SetCookie::Strip
    );
    assert_eq!(
        policy_of(
            "  set_cookie: strip\n",
            &format!("{ROUTE_A}    set_cookie: refuse\n")
        )
        .set_cookie,
        SetCookie::Refuse
    );
    // ignore_no_store says nothing about cookies.
    let p = policy_of("", &format!("{ROUTE_A}    ignore_no_store: true\n"));
    assert_eq!((p.ignore_no_store, p.set_cookie), (true, SetCookie::Refuse));
}

#[test]
fn wrong_words_list_the_valid_ones() {
    let all = errors(&format!(
        "{MINIMAL}defaults:\n  freshness: orign\n  request_cookies: Ignore\nroutes:\n  - name: a\n    exact: /a\n    set_cookie: keep\n    origin_cache_control: [honour]\n"
    ));
    assert_has(
        &all,
        "t.yaml:3: defaults.freshness: freshness = orign is not route or origin; did you mean freshness: origin? (route: the route's ttl_secs decides",
    );
    assert_has(
        &all,
        "t.yaml:4: defaults.request_cookies: request_cookies = Ignore is not bypass or ignore; did you mean request_cookies: ignore?",
    );
    assert_has(
        &all,
        "t.yaml:8: routes[0].set_cookie (route \"a\"): set_cookie = keep is not refuse or strip; write set_cookie: refuse or strip (refuse: a response that sets a cookie is not stored; strip: it is stored without its Set-Cookie fields)",
    );
    assert_has(
        &all,
        "t.yaml:9: routes[0].origin_cache_control (route \"a\"): origin_cache_control is a list; write origin_cache_control: override, honour or honor (",
    );
    assert_eq!(all.lines().count(), 4, "{all}");
    let all = errors(&with_routes("  - name: a\n    exact: /a\n    freshness:\n"));
    assert_has(
        &all,
        "t.yaml:5: routes[0].freshness (route \"a\"): freshness has no value; write freshness: route or origin",
    );
}

#[test]
fn heuristics_default_and_are_inherited_and_overridden() {
    let origin = format!("{ROUTE_A}    freshness: origin\n");
    let h = policy_of("", &origin).heuristic.expect("on by default");
    assert_eq!(
        h.fraction,
        defaults::DEFAULT_HEURISTIC_PERCENT as f64 / 100.0
    );
    assert_eq!(
        h.max,
        Duration::from_secs(defaults::DEFAULT_HEURISTIC_MAX_SECS)
    );
    let inherited = "  heuristic_percent: 20\n  heuristic_max_secs: 3600\n";
    let h = policy_of(inherited, &origin).heuristic.expect("on");
    assert_eq!((h.fraction, h.max), (0.2, Duration::from_secs(3600)));
    let h = policy_of(inherited, &format!("{origin}    heuristic_max_secs: 600\n"))
        .heuristic
        .expect("on");
    assert_eq!((h.fraction, h.max), (0.2, Duration::from_secs(600)));
    assert_eq!(
        policy_of(inherited, &format!("{origin}    heuristic_percent: 0\n")).heuristic,
        None,
        "0 turns heuristic freshness off"
    );
    assert_eq!(
        policy_of("  heuristic_percent: 0\n", &origin).heuristic,
        None
    );
    // Set in `defaults:` for the origin routes, they leave route-mode routes alone.
    ok(&format!(
        "{MINIMAL}defaults:\n{inherited}routes:\n  - name: a\n    exact: /a\n"
    ));
}

#[test]
fn heuristic_problems_name_the_key_and_the_fix() {
    let all = errors(&with_routes(
        "  - name: erp\n    prefix: /\n    heuristic_percent: 20\n    heuristic_max_secs: 60\n",
    ));
    assert_has(
        &all,
        "t.yaml:5: routes[0].heuristic_percent (route \"erp\"): heuristic_percent only applies with freshness: origin; remove it or set freshness: origin",
    );
    assert_has(
        &all,
        "t.yaml:6: routes[0].heuristic_max_secs (route \"erp\"): heuristic_max_secs only applies with freshness: origin; remove it or set freshness: origin",
    );
    let all = errors(&format!(
        "{MINIMAL}defaults:\n  heuristic_percent: 150\n  heuristic_max_secs: 40000000\n"
    ));
    assert_has(
        &all,
        "t.yaml:3: defaults.heuristic_percent: heuristic_percent = 150 is over 100; write the share of the time since Last-Modified a response stays fresh, from 0 (no heuristic freshness) to 100, e.g. heuristic_percent: 10",
    );
    assert_has(
        &all,
        "t.yaml:4: defaults.heuristic_max_secs: heuristic_max_secs = 40000000 is more than a year (31536000 s); durations here are in seconds; if you meant milliseconds, write heuristic_max_secs: 40000",
    );
    let all = errors(&with_routes(
        "  - name: std\n    prefix: /\n    freshness: origin\n    heuristic_max_secs: 0\n",
    ));
    assert_has(
        &all,
        "t.yaml:6: routes[0].heuristic_max_secs (route \"std\"): heuristic_max_secs = 0 makes every heuristic lifetime 0; write e.g. heuristic_max_secs: 86400, or heuristic_percent: 0 to turn heuristic freshness off",
    );
    let all = errors(&with_routes(
        "  - name: std\n    prefix: /\n    freshness: origin\n    heuristic_percent: 10%\n    heuristic_max_secs: 1d\n",
    ));
    assert_has(
        &all,
        "t.yaml:6: routes[0].heuristic_percent (route \"std\"): heuristic_percent = 10% is not a whole number (in percent); write a whole number (in percent), e.g. heuristic_percent: 10 for 10%",
    );
    assert_has(&all, "e.g. heuristic_max_secs: 86400 for 1d");
}

#[test]
fn max_variants_default_inherited_overridden_and_bounded() {
    assert_eq!(
        policy_of("", ROUTE_A).max_variants as u64,
        defaults::DEFAULT_MAX_VARIANTS
    );
    assert_eq!(policy_of("  max_variants: 4\n", ROUTE_A).max_variants, 4);
    assert_eq!(
        policy_of(
            "  max_variants: 4\n",
            &format!("{ROUTE_A}    max_variants: 1024\n")
        )
        .max_variants,
        1024
    );
    let all = errors(&format!(
        "{MINIMAL}defaults:\n  max_variants: 0\nroutes:\n  - name: a\n    exact: /a\n    max_variants: 1025\n"
    ));
    assert_has(
        &all,
        "t.yaml:3: defaults.max_variants: max_variants = 0 would store no response at all; write from 1 to 1024, e.g. max_variants: 16",
    );
    assert_has(
        &all,
        "t.yaml:7: routes[0].max_variants (route \"a\"): max_variants = 1025 is over 1024: one URL could crowd the rest out of the cache; write at most 1024, e.g. max_variants: 16",
    );
    let all = errors(&with_routes(
        "  - name: a\n    exact: /a\n    max_variants: \"8\"\n",
    ));
    assert_has(
        &all,
        "max_variants = \"8\" is quoted, which makes it text; write it without quotes: max_variants: 8",
    );
}

#[test]
fn new_cache_keys_are_known_to_the_shape_pass() {
    let all = errors(&with_routes(
        "  - name: a\n    exact: /a\n    heuristic: 10\n    request_cookie: ignore\n    variants: 4\n",
    ));
    assert_has(
        &all,
        "unknown key \"heuristic\"; did you mean heuristic_percent?",
    );
    assert_has(
        &all,
        "unknown key \"request_cookie\"; did you mean request_cookies?",
    );
    assert_has(&all, "unknown key \"variants\"; did you mean max_variants?");
    assert_has(
        &all,
        "ignore_no_store, freshness, request_cookies, set_cookie, heuristic_percent, heuristic_max_secs, max_variants, ",
    );
    let all = errors(&format!("{MINIMAL}defaults:\n  freshnes: origin\n"));
    assert_has(
        &all,
        "t.yaml:3: defaults.freshnes: unknown key \"freshnes\"; did you mean freshness? valid keys here: ttl_secs, ",
    );
    // A pass-through route carries none of them.
    let all = errors(&with_routes(
        "  - name: w\n    exact: /w\n    cache: false\n    freshness: origin\n    request_cookies: ignore\n    set_cookie: strip\n    heuristic_percent: 5\n    heuristic_max_secs: 60\n    max_variants: 2\n",
    ));
    for key in [
        "freshness",
        "request_cookies",
        "set_cookie",
        "heuristic_percent",
        "heuristic_max_secs",
        "max_variants",
    ] {
        assert_has(
            &all,
            &format!("routes[0].{key} (route \"w\"): {key} is set but the route has cache: false"),
        );
    }
}

#[test]
fn route_table_notes_origin_freshness_and_cookie_rules() {
    let c = ok(&with_routes(concat!(
        "  - name: std\n    prefix: /s/\n    freshness: origin\n    request_cookies: ignore\n",
        "  - name: erp\n    prefix: /e/\n    set_cookie: strip\n    max_variants: 2\n",
        "  - name: plain\n    prefix: /p/\n",
        "  - name: off\n    prefix: /o/\n    freshness: origin\n    heuristic_percent: 0\n",
    )));
    let table = route_table(&c);
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no {name} row in\n{table}"))
            .to_owned()
    };
    let std = row("std");
    assert_eq!(
        std.split_whitespace().nth(4),
        Some("origin"),
        "the ttl column: {std}"
    );
    assert!(std.contains("cookies=ignore"), "{std}");
    assert!(
        !std.contains("statuses="),
        "the standard rule is an origin route's own: {std}"
    );
    let erp = row("erp");
    assert!(erp.contains("set-cookie=strip; max-variants=2"), "{erp}");
    assert!(!erp.contains("cookies=ignore"), "{erp}");
    let plain = row("plain");
    assert!(!plain.contains('='), "defaults need no note: {plain}");
    assert!(row("off").contains("no heuristic freshness"), "{table}");
}

/// Every key the file format accepts, as `section.key` paths (`routes[].name`,
/// `protection.rate_limit.classes.<name>.burst`), read from the serde structs themselves.
fn every_key() -> Vec<String> {
    use super::file::*;
    let sections: [(&str, &[&str]); 25] = [
        ("", keys_of::<FileConfig>()),
        ("upstream.", keys_of::<FileUpstream>()),
        ("cache.", keys_of::<FileCache>()),
        ("cache.compression.", keys_of::<FileCompression>()),
        ("server.", keys_of::<FileServer>()),
        ("defaults.", keys_of::<FileDefaults>()),
        ("routes[].", keys_of::<FileRoute>()),
        ("protection.", keys_of::<FileProtection>()),
        ("protection.rate_limit.", keys_of::<FileRateLimit>()),
        (
            "protection.rate_limit.classes.<name>.",
            keys_of::<FileRateClass>(),
        ),
        ("protection.upstream_cap.", keys_of::<FileUpstreamCap>()),
        ("protection.breaker.", keys_of::<FileBreaker>()),
        ("protection.retries.", keys_of::<FileRetries>()),
        ("warming.", keys_of::<FileWarming>()),
        ("admin.", keys_of::<FileAdmin>()),
        ("observability.", keys_of::<FileObservability>()),
        ("invalidation[].", keys_of::<FileInvalidation>()),
        ("invalidation[].purge.", keys_of::<FilePurgeSet>()),
        ("clients.", keys_of::<FileClients>()),
        ("access.", keys_of::<FileAccess>()),
        ("access.policies.<name>.", keys_of::<FileAccessPolicy>()),
        ("access.policies.<name>.basic.", keys_of::<FileBasic>()),
        ("tls.", keys_of::<FileTls>()),
        (
            "access.policies.<name>.forward_auth.",
            keys_of::<FileForwardAuth>(),
        ),
        ("cluster.", keys_of::<FileCluster>()),
    ];
    let keys: Vec<String> = sections
        .iter()
        .flat_map(|(prefix, keys)| keys.iter().map(move |k| format!("{prefix}{k}")))
        .collect();
    assert!(keys.len() > 80, "the key probe saw every struct: {keys:?}");
    keys
}

/// docs/CONFIG.md's reference rows: (key, reload column).
fn documented_keys() -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/CONFIG.md"))
        .expect("docs/CONFIG.md");
    doc.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // | `key` | meaning | unit | default | reload |
            if cells.len() != 7 {
                return None;
            }
            let key = cells[1].strip_prefix('`')?.strip_suffix('`')?;
            Some((key.to_owned(), cells[5].to_owned()))
        })
        .collect()
}

#[test]
fn config_reference_lists_every_key() {
    let keys = every_key();
    let documented = documented_keys();
    let names: Vec<&str> = documented.iter().map(|(k, _)| k.as_str()).collect();
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !names.contains(&k.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/CONFIG.md has no row for {missing:?}: add one (meaning, unit, default, reload)"
    );
    let unknown: Vec<&&str> = names
        .iter()
        .filter(|n| !keys.iter().any(|k| k == *n))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/CONFIG.md documents keys the file format does not have: {unknown:?}"
    );
    for (key, reload) in &documented {
        assert!(
            ["live", "restart", "see keys"].contains(&reload.as_str()),
            "docs/CONFIG.md: {key}: reload column is {reload:?}; use live, restart or see keys"
        );
    }

    // The keys a reload keeps until a restart, as reload.rs's `restart_only` names them.
    let reload_rs = include_str!("reload.rs");
    let body = &reload_rs[reload_rs.find("fn restart_only").expect("restart_only")..];
    let body = &body[..body.find("\n}\n").expect("end of restart_only")];
    let mut restart: Vec<String> = regex::Regex::new(r#"check\(\s*"([^"]+)""#)
        .expect("regex")
        .captures_iter(body)
        .map(|c| c[1].to_owned())
        .collect();
    restart.sort();
    let mut documented_restart: Vec<String> = documented
        .iter()
        .filter(|(_, r)| r == "restart")
        .map(|(k, _)| k.clone())
        .collect();
    documented_restart.sort();
    assert_eq!(
        documented_restart, restart,
        "docs/CONFIG.md's restart rows must be exactly reload.rs's restart_only keys"
    );
}

// ---- negative caching: error_statuses and error_ttl_secs ----

#[test]
fn error_statuses_default_to_none_and_are_inherited_and_overridden() {
    let p = policy_of("", ROUTE_A);
    assert!(p.error_statuses.is_empty(), "unchanged unless configured");
    assert_eq!(
        p.error_ttl,
        Duration::from_secs(defaults::DEFAULT_ERROR_TTL_SECS)
    );
    let inherited = "  error_statuses: [404, 400, 400]\n  error_ttl_secs: 45\n";
    let p = policy_of(inherited, ROUTE_A);
    assert_eq!(p.error_statuses, vec![400, 404], "sorted, deduplicated");
    assert_eq!(p.error_ttl, Duration::from_secs(45));
    let p = policy_of(
        inherited,
        &format!("{ROUTE_A}    error_statuses: [410]\n    error_ttl_secs: 5\n"),
    );
    assert_eq!(p.error_statuses, vec![410], "the route wins");
    assert_eq!(p.error_ttl, Duration::from_secs(5));
    let p = policy_of(inherited, &format!("{ROUTE_A}    error_statuses: []\n"));
    assert!(p.error_statuses.is_empty(), "[] turns it off on one route");
    let p = policy_of(inherited, &format!("{ROUTE_A}    error_ttl_secs: 0\n"));
    assert_eq!(
        p.error_ttl,
        Duration::ZERO,
        "0: listed errors are not stored"
    );
    // In `defaults:`, harmless for origin routes: their origin decides.
    let p = policy_of(inherited, &format!("{ROUTE_A}    freshness: origin\n"));
    assert!(p.error_statuses.is_empty());
    assert_eq!(p.error_ttl, Duration::ZERO);
}

#[test]
fn error_statuses_take_4xx_only_and_say_why_not_5xx() {
    let all = errors(&with_routes(
        "  - name: a\n    exact: /a\n    error_statuses: [400, 503, 200]\n    error_ttl_secs: 40000000\n",
    ));
    assert_has(
        &all,
        "t.yaml:5: routes[0].error_statuses[1] (route \"a\"): 503 is a server error, and error_statuses takes client errors (400..=499) only: when the ERP fails, stale_if_error_secs serves the last good copy instead of an error; remove 503",
    );
    assert_has(
        &all,
        "routes[0].error_statuses[2] (route \"a\"): 200 is not a client error status; error_statuses takes 400..=499 only, e.g. error_statuses: [400, 404]",
    );
    assert_has(
        &all,
        "t.yaml:6: routes[0].error_ttl_secs (route \"a\"): error_ttl_secs = 40000000 is more than a year (31536000 s); durations here are in seconds; if you meant milliseconds, write error_ttl_secs: 40000",
    );
    let all = errors(&format!("{MINIMAL}defaults:\n  error_statuses: [500]\n"));
    assert_has(
        &all,
        "t.yaml:3: defaults.error_statuses[0]: 500 is a server error, and error_statuses takes client errors",
    );
    let all = errors(&format!("{MINIMAL}defaults:\n  error_ttl_secs: 30s\n"));
    assert_has(&all, "e.g. error_ttl_secs: 30 for 30s");
    let all = errors(&with_routes(
        "  - name: a\n    exact: /a\n    error_statuses: 404\n",
    ));
    assert_has(&all, "write a list, e.g. error_statuses: [400, 404]");
}

#[test]
fn error_keys_contradict_origin_freshness_on_the_route() {
    let all = errors(&with_routes(
        "  - name: std\n    prefix: /\n    freshness: origin\n    error_statuses: [404]\n    error_ttl_secs: 10\n",
    ));
    assert_has(
        &all,
        "t.yaml:6: routes[0].error_statuses (route \"std\"): error_statuses has no effect with freshness: origin: the origin's Cache-Control/Expires decide whether an error is stored and for how long; remove error_statuses, or set freshness: route",
    );
    assert_has(
        &all,
        "t.yaml:7: routes[0].error_ttl_secs (route \"std\"): error_ttl_secs has no effect with freshness: origin",
    );
    let all = errors(&format!(
        "{MINIMAL}defaults:\n  freshness: origin\nroutes:\n  - name: std\n    prefix: /\n    error_statuses: [404]\n"
    ));
    assert_has(
        &all,
        "error_statuses has no effect with freshness: origin (from defaults)",
    );
    let all = errors(&with_routes(
        "  - name: w\n    exact: /w\n    cache: false\n    error_statuses: [400]\n    error_ttl_secs: 5\n",
    ));
    for key in ["error_statuses", "error_ttl_secs"] {
        assert_has(
            &all,
            &format!("routes[0].{key} (route \"w\"): {key} is set but the route has cache: false"),
        );
    }
}

#[test]
fn error_rule_shows_in_the_route_table_and_in_retention() {
    let c = ok(&format!(
        "{MINIMAL}defaults:\n  error_statuses: [400, 404]\n  error_ttl_secs: 30\nroutes:\n  - name: errs\n    prefix: /e/\n  - name: off\n    prefix: /o/\n    error_ttl_secs: 0\n  - name: none\n    prefix: /n/\n    error_statuses: []\n  - name: long\n    prefix: /l/\n    ttl_secs: 10\n    stale_while_revalidate_secs: 0\n    stale_if_error_secs: 0\n    error_ttl_secs: 7200\n"
    ));
    let table = route_table(&c);
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no {name} row in\n{table}"))
            .to_owned()
    };
    assert!(row("errs").contains("errors=400,404 for 30s"), "{table}");
    assert!(row("off").contains("errors=400,404 not stored"), "{table}");
    assert!(!row("none").contains("errors="), "{table}");
    assert_eq!(
        c.longest_retention(),
        Duration::from_secs(7200),
        "purge bans outlive a stored error"
    );
}

#[test]
fn shipped_config_caches_the_erps_deterministic_errors_briefly() {
    let c = load(&shipped("knitcache.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let (_, kpis) = c
        .route_for(&Method::GET, "/api/comprehensive-kpis")
        .expect("kpis route");
    let p = kpis.cache_policy().expect("caches");
    assert_eq!(p.error_statuses, vec![400, 404]);
    assert_eq!(p.error_ttl, Duration::from_secs(30));
}

// ---- access: policies, the default, and routes' references ----

#[test]
fn access_policies_are_built_and_routes_get_theirs_or_the_default() {
    let c = ok(&format!(
        "{MINIMAL}access:\n  default: staff\n  policies:\n    admins:\n      allow: [\"127.0.0.0/8\", \"10.1.2.3\"]\n      deny: [\"127.0.0.9\"]\n    staff: {{}}\nroutes:\n  - name: a\n    prefix: /a\n    access: admins\n  - name: b\n    prefix: /b\n"
    ));
    let admins = c.routes[0].access.as_ref().expect("route a names admins");
    assert_eq!(admins.name, "admins");
    assert_eq!(admins.allow.len(), 2);
    assert_eq!(
        admins.deny,
        vec!["127.0.0.9/32".parse::<ipnet::IpNet>().expect("net")]
    );
    assert!(c.routes[1].access.is_none());
    assert_eq!(
        c.access_policy(Some(&c.routes[1])).map(|p| p.name.as_str()),
        Some("staff")
    );
    assert_eq!(
        c.access_policy(None).map(|p| p.name.as_str()),
        Some("staff")
    );
    assert_eq!(
        c.access_policy(Some(&c.routes[0])).map(|p| p.name.as_str()),
        Some("admins")
    );
    assert!(
        ok(MINIMAL).access_policy(None).is_none(),
        "no access section: open"
    );
}

#[test]
fn access_mistakes_name_the_key_and_the_fix() {
    let e = errors(&format!(
        "{MINIMAL}access:\n  default: nobody\n  policies:\n    admins:\n      allow: [\"10.0.0.0/33\"]\n      alow: []\n"
    ));
    assert!(e.contains("access.policies.admins.alow"), "{e}");
    assert!(e.contains("did you mean allow?"), "{e}");
    let e = errors(&format!(
        "{MINIMAL}access:\n  default: nobody\n  policies:\n    admins:\n      allow: [\"10.0.0.0/33\"]\n"
    ));
    assert!(
        e.contains(
            "access.policies.admins.allow[0]: \"10.0.0.0/33\" is not an IP address or network"
        ),
        "{e}"
    );
    let e = errors(&format!(
        "{MINIMAL}access:\n  default: nobody\n  policies:\n    admins: {{}}\n"
    ));
    assert!(
        e.contains("access.default: \"nobody\" is not in access.policies; use one of admins"),
        "{e}"
    );
    let e = errors(&format!(
        "{MINIMAL}routes:\n  - name: a\n    prefix: /a\n    access: admins\n"
    ));
    assert!(e.contains("routes[0].access"), "{e}");
    assert!(
        e.contains("access.policies defines none; add access.policies.admins"),
        "{e}"
    );
    let e = errors(&format!(
        "{MINIMAL}access:\n  policies:\n    \"a b\": {{}}\n"
    ));
    assert!(e.contains("access.policies.a b.name"), "{e}");
}

#[test]
fn trusted_proxies_hold_with_rate_limiting_off() {
    let c = ok(&format!(
        "{MINIMAL}protection:\n  rate_limit:\n    enabled: false\n    trusted_proxies: [\"10.0.0.5\"]\n"
    ));
    assert!(c.protection.rate_limit.is_none());
    assert_eq!(
        c.protection.trusted_proxies,
        vec!["10.0.0.5/32".parse::<ipnet::IpNet>().expect("net")]
    );
}

#[test]
fn basic_logins_read_their_file_and_name_what_is_wrong() {
    let e = errors(&format!(
        "{MINIMAL}access:\n  policies:\n    staff:\n      basic:\n        htpasswd: /nonexistent/htpasswd\n        realm: \"a \\\"b\\\"\"\n        cache_secs: 7200\n"
    ));
    assert!(
        e.contains("access.policies.staff.basic.htpasswd: cannot read /nonexistent/htpasswd"),
        "{e}"
    );
    assert!(e.contains("access.policies.staff.basic.realm"), "{e}");
    assert!(e.contains("cache_secs = 7200"), "{e}");
    let e = errors(&format!(
        "{MINIMAL}access:\n  policies:\n    staff:\n      basic: {{}}\n"
    ));
    assert!(
        e.contains("access.policies.staff.basic: names no htpasswd file"),
        "{e}"
    );

    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("htpasswd");
    let hash = bcrypt::hash("pw", 4).expect("bcrypt");
    std::fs::write(&file, format!("alice:{hash}\n")).expect("write");
    let c = ok(&format!(
        "{MINIMAL}access:\n  default: staff\n  policies:\n    staff:\n      basic:\n        htpasswd: \"{}\"\n",
        file.display()
    ));
    let policy = c.access_policy(None).expect("default");
    assert!(matches!(&policy.login, Some(Login::Basic { realm, .. }) if realm == "knitcache"));
    assert!(!policy.pass_credentials);
    let shown = format!("{c:?}");
    assert!(
        !shown.contains(&hash) && !shown.contains("alice"),
        "no user or hash in Debug"
    );
}

#[test]
fn forward_auth_builds_its_service_from_the_section() {
    let c = ok(&format!(
        "{MINIMAL}access:\n  default: sso\n  policies:\n    sso:\n      forward_auth:\n        url: \"http://127.0.0.1:4180/oauth2/auth?rd=1\"\n        copy_headers: [Remote-User, X-Email]\n        timeout_ms: 750\n        cache_secs: 3600\n        max_body_bytes: 1048576\n"
    ));
    let policy = c.access_policy(None).expect("default");
    let Some(Login::Forward(service)) = &policy.login else {
        panic!("expected a forward login, got {policy:?}");
    };
    assert_eq!(service.copy_headers(), ["remote-user", "x-email"]);
    let shown = format!("{service:?}");
    for part in [
        "http://127.0.0.1:4180/oauth2/auth?rd=1",
        "timeout: 750ms",
        "max_body_bytes: 1048576",
        "remember_for: 3600s",
    ] {
        assert!(shown.contains(part), "{part} in {shown}");
    }
    // The smallest relayed body and the defaults are accepted too.
    let c = ok(&format!(
        "{MINIMAL}access:\n  default: sso\n  policies:\n    sso:\n      forward_auth:\n        url: \"http://127.0.0.1:4180/auth\"\n        max_body_bytes: 1\n"
    ));
    let shown = format!("{:?}", c.access_policy(None).expect("default").login);
    assert!(shown.contains("max_body_bytes: 1,"), "{shown}");
    assert!(shown.contains("remember_for: 30s"), "{shown}");
}

#[test]
fn forward_auth_mistakes_name_the_key_and_the_fix() {
    let policy = |body: &str| {
        format!("{MINIMAL}access:\n  policies:\n    sso:\n      forward_auth:\n{body}")
    };
    let url = "        url: \"http://127.0.0.1:4180/auth\"\n";
    let base = "access.policies.sso.forward_auth";
    for bytes in [0, 1_048_577, 1u64 << 40] {
        let e = errors(&policy(&format!("{url}        max_body_bytes: {bytes}\n")));
        assert_has(
            &e,
            &format!("{base}.max_body_bytes: max_body_bytes = {bytes} must be from 1 to 1048576"),
        );
    }
    let e = errors(&policy(&format!(
        "{url}        copy_headers: [Remote-User, Host, \"bad name\", Content-Length]\n"
    )));
    assert_has(
        &e,
        &format!("{base}.copy_headers[1]: \"Host\" is not a field"),
    );
    assert_has(&e, &format!("{base}.copy_headers[2]: \"bad name\""));
    assert_has(&e, &format!("{base}.copy_headers[3]: \"Content-Length\""));
    assert!(!e.contains("copy_headers[0]"), "{e}");
    let e = errors(&policy(&format!("{url}        cache_secs: 3601\n")));
    assert_has(
        &e,
        &format!("{base}.cache_secs: cache_secs = 3601 would honour"),
    );
    let e = errors(&policy(&format!("{url}        timeout_ms: 0\n")));
    assert_has(&e, &format!("{base}.timeout_ms"));
    let e = errors(&policy("        timeout_ms: 500\n"));
    assert_has(&e, &format!("{base}: names no service; add url:"));
    for (url, why) in [
        ("http://127.0.0.1:4180/a b", "is not a URL"),
        ("https://127.0.0.1:4180/auth", "must start with http://"),
        (
            "http://auth.internal:4180/auth",
            "names a host, not an IP address",
        ),
    ] {
        let e = errors(&policy(&format!("        url: \"{url}\"\n")));
        assert_has(&e, &format!("{base}.url: \"{url}\" {why}"));
    }
    let e = errors(&format!(
        "{MINIMAL}access:\n  policies:\n    sso:\n      basic: {{ htpasswd: /nonexistent }}\n      forward_auth: {{ url: \"http://127.0.0.1:1/\" }}\n"
    ));
    assert_has(&e, &format!("{base}: sets both basic and forward_auth"));
}

// ---- listen_tls, tls: and h2c ----

#[test]
fn tls_is_off_by_default_and_h2c_too() {
    let c = ok(MINIMAL);
    assert!(c.tls.is_none());
    assert!(!c.h2c);
    assert!(ok(&format!("{MINIMAL}h2c: true\n")).h2c);
}

#[test]
fn tls_keys_without_listen_tls_are_an_error_naming_the_fix() {
    let e = errors(&format!(
        "{MINIMAL}tls:\n  cert_file: /x.pem\n  redirect_http: true\n"
    ));
    assert_has(&e, "tls.cert_file");
    assert_has(&e, "add listen_tls: \"0.0.0.0:5443\" to turn HTTPS on");
}

#[test]
fn listen_tls_needs_both_files_and_a_port_of_its_own() {
    let e = errors(&format!("{MINIMAL}listen_tls: \"0.0.0.0:5443\"\n"));
    assert_has(
        &e,
        "t.yaml: tls.cert_file: listen_tls is set but tls.cert_file is not",
    );
    assert_has(
        &e,
        "t.yaml: tls.key_file: listen_tls is set but tls.key_file is not",
    );
    let e = errors(&format!(
        "{MINIMAL}listen: \"0.0.0.0:5006\"\nlisten_tls: \"127.0.0.1:5006\"\n\
         tls: {{ cert_file: /c.pem, key_file: /k.pem }}\n"
    ));
    assert_has(
        &e,
        "listen_tls: 127.0.0.1:5006 uses the same port as listen",
    );
    let e = errors(&format!("{MINIMAL}listen_tls: 5443\n"));
    assert_has(&e, "listen_tls = 5443 is a port alone");
}

#[test]
fn an_unreadable_certificate_file_names_the_key() {
    let e = errors(&format!(
        "{MINIMAL}listen_tls: \"0.0.0.0:5443\"\ntls:\n  cert_file: /nonexistent/c.pem\n  key_file: /nonexistent/k.pem\n"
    ));
    assert_has(
        &e,
        "t.yaml:4: tls.cert_file: cannot read /nonexistent/c.pem",
    );
}
