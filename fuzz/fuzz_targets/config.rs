//! The config loader (`config::parse`): YAML text to a validated `Config`, or every problem.
//!
//! Invariants: never a panic, whatever the text; a rejected file has at least one problem, each
//! with a message, on a line of the file; an accepted one renders its route table, and its
//! route index finds, for a few methods and paths, the route that trying them in order finds.
#![no_main]

use http::Method;
use knitcache::canonical::decode;
use knitcache::config::{parse, route_table};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(yaml) = std::str::from_utf8(data) else {
        return;
    };
    match parse(yaml, "fuzz.yaml") {
        Err(errors) => {
            assert!(!errors.problems.is_empty(), "rejected without a problem");
            // A line past the end is the end of the file (a missing key), never further. YAML
            // breaks lines at `\n`, `\r\n` and a lone `\r` alike.
            let last = yaml
                .replace("\r\n", "\n")
                .replace('\r', "\n")
                .split('\n')
                .count()
                + 1;
            for p in &errors.problems {
                assert!(!p.message.is_empty(), "a problem without a message: {p:?}");
                if let Some(line) = p.line {
                    assert!((1..=last).contains(&line), "line {line} of {last}: {p:?}");
                }
            }
            assert!(!errors.to_string().is_empty());
        }
        Ok(config) => {
            assert!(!route_table(&config).is_empty());
            let mut paths: Vec<&str> = vec!["/", "/api/x", ""];
            for route in &config.routes {
                paths.push(route.name.as_str());
            }
            for method in [Method::GET, Method::HEAD, Method::POST, Method::DELETE] {
                for path in &paths {
                    let indexed = config.route_for(&method, path).map(|(i, _)| i);
                    let decoded = decode(path);
                    let in_order = config
                        .routes
                        .iter()
                        .position(|r| r.matches(&method, &decoded));
                    assert_eq!(indexed, in_order, "{method} {path:?}");
                }
            }
        }
    }
});
