//! The cache key (`cache::key`): which parts of a request select a stored response.
//!
//! Input: a first line naming the route's query rule (`all`, `only:a,b`, `ignore:_,ts`), then
//! a request target, keyed in its canonical form as the proxy keys it (targets the proxy
//! refuses are skipped). Invariants: the key is `GET ` + the path, then the kept parameters;
//! it is a canonical form (keying the key's own query again gives the same key); it keeps
//! exactly the parameters whose decoded names the rule keeps; the order of distinct names
//! never matters, the order of a repeated name's values always does (the ERP reads the first);
//! the precomputed hash equals the one pingora computes itself.
#![no_main]

use knitcache::cache::key::{cache_key, primary_key};
use knitcache::canonical::{Form, decode, params, target};
use knitcache::config::QueryKey;
use libfuzzer_sys::fuzz_target;
use pingora_cache::CacheKey;
use pingora_cache::key::CacheHashKey;

fn rule(line: &str) -> QueryKey {
    let names = |list: &str| list.split(',').map(str::to_owned).collect();
    match line.split_once(':') {
        Some(("only", list)) => QueryKey::Only(names(list)),
        Some(("ignore", list)) => QueryKey::Ignore(names(list)),
        _ => QueryKey::All,
    }
}

fn kept(rule: &QueryKey, name: &str) -> bool {
    let name = &*decode(name);
    match rule {
        QueryKey::All => true,
        QueryKey::Only(names) => names.iter().any(|n| n == name),
        QueryKey::Ignore(names) => !names.iter().any(|n| n == name),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (rule_line, raw) = text.split_once('\n').unwrap_or(("all", text));
    let rule = rule(rule_line);
    let Ok(t) = target(raw.as_bytes(), Form::Wsgi) else {
        return;
    };
    let (path, query) = (t.path(), t.query());
    let key = primary_key(path, query, &rule);

    let rest = key
        .strip_prefix("GET ")
        .and_then(|k| k.strip_prefix(path))
        .expect("the key starts with GET and the path");
    let key_query = match rest.strip_prefix('?') {
        Some(q) => {
            assert!(!q.is_empty(), "a key ends in a bare '?'");
            Some(q)
        }
        None => {
            assert!(rest.is_empty(), "the key has more than the path: {key:?}");
            None
        }
    };
    assert_eq!(
        primary_key(path, key_query, &rule),
        key,
        "the key is not a fixed point"
    );

    // Exactly the kept parameters, as a multiset.
    let all: Vec<(&str, &str)> = params(query.unwrap_or("")).collect();
    let mut expected: Vec<&str> = all
        .iter()
        .filter(|(name, _)| kept(&rule, name))
        .map(|(_, pair)| *pair)
        .collect();
    let mut got: Vec<&str> = key_query.map_or(Vec::new(), |q| q.split('&').collect());
    expected.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, expected, "kept parameters differ");

    // Distinct names in reverse order of first appearance, each name's values in their order:
    // the same key.
    let mut names: Vec<&str> = Vec::new();
    for (name, _) in &all {
        if !names.contains(name) {
            names.push(name);
        }
    }
    let regrouped: Vec<&str> = names
        .iter()
        .rev()
        .flat_map(|n| {
            all.iter()
                .filter(move |(name, _)| name == n)
                .map(|(_, p)| *p)
        })
        .collect();
    assert_eq!(
        primary_key(path, Some(&regrouped.join("&")), &rule),
        key,
        "the order of distinct names split an entry"
    );

    // A kept name's values in another order (the ERP reads another first): another key.
    if let Some((name, first)) = all.iter().find(|(name, _)| kept(&rule, name))
        && let Some((_, later)) = all
            .iter()
            .find(|(other, pair)| other == name && pair != first)
    {
        let swapped: Vec<&str> = all
            .iter()
            .map(|(_, p)| match *p {
                p if p == *first => *later,
                p if p == *later => *first,
                p => p,
            })
            .collect();
        assert_ne!(
            primary_key(path, Some(&swapped.join("&")), &rule),
            key,
            "{name}'s values reordered share an entry"
        );
    }

    let hashed = cache_key(path, query, &rule);
    let plain = CacheKey::new(key, "");
    assert_eq!(hashed.combined_bin(), plain.combined_bin());
});
