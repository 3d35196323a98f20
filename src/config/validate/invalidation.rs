//! The `invalidation:` list: write-triggered purges, their matchers (checked as a route's are)
//! and what each purges.

use std::collections::HashMap;

use http::Method;

use super::super::file::*;
use super::super::model::*;
use super::Problems;
use super::routes::{methods, path_match, tags_valid, valid_name};

pub(super) fn invalidation(
    file: &[FileInvalidation],
    routes: &[Route],
    p: &mut Problems,
) -> Vec<InvalidationRule> {
    let mut out = Vec::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, f) in file.iter().enumerate() {
        let base = format!("invalidation[{i}]");
        let name = f.name.as_deref();
        let name_ok = match name {
            None => {
                p.at(
                    &base,
                    None,
                    "has no name; add name: <unique-name>, used in logs".to_owned(),
                );
                false
            }
            Some(n) => match names.insert(n, i) {
                Some(first) => {
                    let msg = format!(
                        "name {n:?} is already used by invalidation[{first}]; names must be unique"
                    );
                    p.at(&format!("{base}.name"), None, msg);
                    false
                }
                None => valid_name(n, &base, p),
            },
        };
        // The matcher keys and methods are a route's: reuse the route checks.
        let as_route = FileRoute {
            name: f.name.clone(),
            exact: f.exact.clone(),
            prefix: f.prefix.clone(),
            pattern: f.pattern.clone(),
            methods: f.methods.clone(),
            ..FileRoute::default()
        };
        let path = path_match(&as_route, &base, name, p);
        let methods = methods(f.methods.as_deref(), &base, name, p);
        let Some(set) = &f.purge else {
            let msg = "has nothing to purge; add purge: { routes: [...] } (or prefixes, tags, \
                       everything: true)";
            p.at(&base, name, msg.to_owned());
            continue;
        };
        let mut ok = name_ok;
        for (j, route) in set.routes.iter().enumerate() {
            match routes.iter().find(|r| &r.name == route) {
                None => {
                    let msg = format!(
                        "route {route:?} is not in the route table; use the name of a route"
                    );
                    p.at(&format!("{base}.purge.routes[{j}]"), name, msg);
                    ok = false;
                }
                Some(r) if r.cache_policy().is_none() => {
                    let msg = format!(
                        "route {route:?} passes through, so nothing of it is cached to purge"
                    );
                    p.at(&format!("{base}.purge.routes[{j}]"), name, msg);
                    ok = false;
                }
                Some(_) => {}
            }
        }
        for (j, prefix) in set.prefixes.iter().enumerate() {
            if !prefix.starts_with('/') || prefix.contains('?') {
                let msg =
                    format!("prefix {prefix:?} must be a path starting with / and without a query");
                p.at(&format!("{base}.purge.prefixes[{j}]"), name, msg);
                ok = false;
            }
        }
        ok &= tags_valid(&set.tags, &format!("{base}.purge.tags"), name, p);
        if set.routes.is_empty()
            && set.prefixes.is_empty()
            && set.tags.is_empty()
            && !set.everything
        {
            let msg = "purge lists nothing; add routes, prefixes, tags or everything: true";
            p.at(&format!("{base}.purge"), name, msg.to_owned());
            ok = false;
        }
        let methods = methods.map(|m| {
            m.unwrap_or_else(|| vec![Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
        });
        if let (true, Some(name), Some(path), Some(methods)) = (ok, name, path, methods) {
            out.push(InvalidationRule {
                name: name.to_owned(),
                path,
                methods,
                purge: PurgeSet {
                    routes: set.routes.clone(),
                    prefixes: set.prefixes.clone(),
                    tags: set.tags.clone(),
                    everything: set.everything,
                },
                rewarm: f.rewarm,
            });
        }
    }
    out
}
