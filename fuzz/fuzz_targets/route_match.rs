//! Route matching (`Config::route_for`, the route index): the first route in file order whose
//! methods and path match.
//!
//! Input: a first line `METHOD /target` (the request, routed in its canonical form as the proxy
//! routes it; targets the proxy refuses are skipped), then the route table, one route a line as
//! `exact VALUE`, `prefix VALUE` or `pattern VALUE`, each kind optionally with methods
//! (`prefix@GET,POST /api/`). Without routes, the request goes against each shipped config.
//! Invariant: the index finds exactly the route that trying the routes in order on the decoded
//! path finds, for the request's method and for GET, HEAD and POST; the route found matches.
#![no_main]

use std::fmt::Write as _;
use std::sync::OnceLock;

use http::Method;
use knitcache::canonical::{Form, decode, target};
use knitcache::config::{Config, parse};
use libfuzzer_sys::fuzz_target;

fn shipped() -> &'static [Config] {
    static SHIPPED: OnceLock<Vec<Config>> = OnceLock::new();
    SHIPPED.get_or_init(|| {
        [
            include_str!("../../config/knitcache.yaml"),
            include_str!("../../config/standard.yaml"),
            include_str!("../../config/dev.yaml"),
        ]
        .iter()
        .map(|yaml| parse(yaml, "shipped").expect("the shipped configs are valid"))
        .collect()
    })
}

/// A config file with the routes described by `lines`, or `None` if a line is not a route.
fn table<'a>(lines: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut yaml = String::from("upstream: { address: \"127.0.0.1:5007\" }\nroutes:\n");
    for (i, line) in lines.enumerate() {
        let (kind, value) = line.split_once(' ')?;
        let (kind, methods) = kind.split_once('@').unwrap_or((kind, ""));
        if !["exact", "prefix", "pattern"].contains(&kind) {
            return None;
        }
        // JSON strings are YAML double-quoted scalars: any value survives the trip.
        let value = serde_json::to_string(value).ok()?;
        let _ = writeln!(yaml, "  - name: r{i}\n    {kind}: {value}");
        if !methods.is_empty() {
            let list: Vec<String> = methods
                .split(',')
                .map(|m| serde_json::to_string(m).unwrap_or_default())
                .collect();
            let _ = writeln!(yaml, "    methods: [{}]", list.join(", "));
        }
    }
    Some(yaml)
}

/// `path` is canonical; routes match it decoded, as the ERP's router sees it.
fn check(config: &Config, method: &Method, path: &str) {
    let decoded = decode(path);
    for m in [method, &Method::GET, &Method::HEAD, &Method::POST] {
        let indexed = config.route_for(m, path);
        let in_order = config.routes.iter().position(|r| r.matches(m, &decoded));
        assert_eq!(indexed.map(|(i, _)| i), in_order, "{m} {path:?}");
        if let Some((_, route)) = indexed {
            assert!(route.matches(m, &decoded));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let request = lines.next().unwrap_or_default();
    let (method, path) = request.split_once(' ').unwrap_or(("GET", request));
    let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
    let Ok(canonical) = target(path.as_bytes(), Form::Wsgi) else {
        return;
    };
    let path = canonical.path();
    let mut routes = lines.filter(|l| !l.is_empty()).peekable();
    if routes.peek().is_none() {
        for config in shipped() {
            check(config, &method, path);
        }
        return;
    }
    let Some(yaml) = table(routes) else {
        return;
    };
    if let Ok(config) = parse(&yaml, "fuzz.yaml") {
        check(&config, &method, path);
    }
});
