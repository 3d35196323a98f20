//! The route table: names, path matchers (exact, prefix, anchored regular expression), methods,
//! tags, and routes that an earlier route makes unreachable. A route's caching keys are
//! `cache_policy.rs`'s, its protection keys `protection.rs`'s.

use std::collections::HashMap;

use http::Method;
use regex::Regex;

use super::super::defaults::*;
use super::super::file::*;
use super::super::model::*;
use super::Problems;
use super::access::route_access;
use super::cache_policy::{Inherited, cache_policy, pass_only};
use super::protection::route_limits;

/// The methods a route may list; extension methods are not part of the ERP's API.
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
];

pub(super) fn routes(
    file: &[FileRoute],
    inherited: &Inherited,
    classes: &[&str],
    access: Option<(&AccessSettings, &FileAccess)>,
    p: &mut Problems,
) -> Vec<Route> {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut built: Vec<(usize, Route)> = Vec::new();
    for (i, r) in file.iter().enumerate() {
        let base = format!("routes[{i}]");
        let name = r.name.as_deref();
        if let Some(name) = name {
            if let Some(first) = names.get(name) {
                let line = p
                    .lines
                    .exact(&format!("routes[{first}]"))
                    .map(|l| format!(" (line {l})"))
                    .unwrap_or_default();
                let msg = format!(
                    "name {name:?} is already used by routes[{first}]{line}; route names label \
                     metrics and logs, so they must be unique"
                );
                p.at(&format!("{base}.name"), Some(name), msg);
            } else {
                names.insert(name, i);
            }
        }
        if let Some(route) = route(r, &base, inherited, classes, access, p) {
            built.push((i, route));
        }
    }
    for (j, (jdx, later)) in built.iter().enumerate() {
        if let Some((idx, earlier)) = built[..j].iter().find(|(_, e)| covers(e, later)) {
            let line = p
                .lines
                .exact(&format!("routes[{idx}]"))
                .map(|l| format!(" (line {l})"))
                .unwrap_or_default();
            let msg = format!(
                "unreachable route: routes[{idx}] {:?}{line} comes first and matches every \
                 request this route could match; move this route above it or remove it",
                earlier.name
            );
            p.at(&format!("routes[{jdx}]"), Some(&later.name), msg);
        }
    }
    built.into_iter().map(|(_, r)| r).collect()
}

/// True if every request `later` matches is matched by `earlier` (so `later` never wins).
/// Decided for exact paths (against any earlier matcher) and for prefixes after prefixes; a
/// regular expression is never proven covered.
fn covers(earlier: &Route, later: &Route) -> bool {
    let methods = match (&earlier.methods, &later.methods) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(e), Some(l)) => l.iter().all(|m| e.contains(m)),
    };
    methods
        && match (&earlier.path, &later.path) {
            (_, PathMatch::Exact(path)) => earlier.path.matches(path),
            (PathMatch::Prefix(e), PathMatch::Prefix(l)) => l.starts_with(e.as_str()),
            _ => false,
        }
}

fn route(
    r: &FileRoute,
    base: &str,
    inherited: &Inherited,
    classes: &[&str],
    access: Option<(&AccessSettings, &FileAccess)>,
    p: &mut Problems,
) -> Option<Route> {
    let name = r.name.as_deref();
    let name_ok = match name {
        None => {
            let msg =
                "has no name; add name: <unique-name>, which labels the route in logs and metrics";
            p.at(base, None, msg.to_owned());
            false
        }
        Some(n) => valid_name(n, base, p),
    };
    let path = path_match(r, base, name, p);
    let methods = methods(r.methods.as_deref(), base, name, p);
    let action = if r.cache.unwrap_or(DEFAULT_ROUTE_CACHE) {
        cache_policy(
            r,
            base,
            name,
            methods.as_ref().and_then(Option::as_ref),
            inherited,
            p,
        )
        .map(RouteAction::Cache)
    } else {
        pass_only(r, base, name, p).then_some(RouteAction::Pass)
    };
    let limits = route_limits(r, base, name, classes, p);
    let tags = r.tags.clone().unwrap_or_default();
    let tags_ok = tags_valid(&tags, &format!("{base}.tags"), name, p);
    // With a broken `access:` section the reference cannot be checked; that section's own
    // problems are reported instead.
    let policy = match access {
        Some((settings, file)) => {
            route_access(r.access.as_deref(), settings, file, base, name, p).ok()
        }
        None => Some(None),
    };
    if !name_ok || !tags_ok {
        return None;
    }
    Some(Route {
        name: name?.to_owned(),
        path: path?,
        methods: methods?,
        action: action?,
        limits: limits?,
        tags,
        access: policy?,
    })
}

/// Names are metric label values and log fields: letters, digits, `-`, `_` and `.` only.
pub(super) fn valid_name(name: &str, base: &str, p: &mut Problems) -> bool {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        let suggestion: String = name
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '.') {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        let suggestion = if suggestion.is_empty() {
            "my-route".to_owned()
        } else {
            suggestion
        };
        let msg = format!(
            "name {name:?} may only use letters, digits, '-', '_' and '.' (it labels metrics and \
             logs); write e.g. name: {suggestion}"
        );
        p.at(&format!("{base}.name"), Some(name), msg);
    }
    ok
}

pub(super) fn path_match(
    r: &FileRoute,
    base: &str,
    name: Option<&str>,
    p: &mut Problems,
) -> Option<PathMatch> {
    let given: Vec<(&str, &str)> = [
        ("exact", &r.exact),
        ("prefix", &r.prefix),
        ("pattern", &r.pattern),
    ]
    .into_iter()
    .filter_map(|(key, v)| v.as_deref().map(|v| (key, v)))
    .collect();
    let (key, value) = match given.as_slice() {
        [] => {
            let msg = "matches no path; add exactly one of exact: /path, prefix: /path/ or \
                       pattern: <regex>";
            p.at(base, name, msg.to_owned());
            return None;
        }
        [one] => *one,
        [_, ..] => {
            let keys: Vec<&str> = given.iter().map(|(k, _)| *k).collect();
            let msg = format!(
                "sets {}; keep exactly one of exact, prefix and pattern",
                keys.join(" and ")
            );
            p.at(&format!("{base}.{}", keys[1]), name, msg);
            return None;
        }
    };
    let at = format!("{base}.{key}");
    if key == "pattern" {
        return match Regex::new(&format!("^(?:{value})$")) {
            Ok(re) => Some(PathMatch::Pattern(re)),
            Err(err) => {
                let msg = format!(
                    "{value:?} is not a valid regular expression: {}; fix the expression (it is \
                     matched against the whole path, without the query)",
                    regex_reason(&err)
                );
                p.at(&at, name, msg);
                None
            }
        };
    }
    let problem = if !value.starts_with('/') {
        Some(format!(
            "{value:?} does not start with /; request paths always do, write {key}: /{}",
            value.trim_start()
        ))
    } else if let Some((path, _)) = value.split_once('?') {
        Some(format!(
            "{value:?} contains a query string, but paths are matched without it; write {key}: \
             {path} and choose parameters with query_key"
        ))
    } else if value.contains(char::is_whitespace) {
        Some(format!(
            "{value:?} contains whitespace, which never appears in a request path; \
             percent-encode it (%20)"
        ))
    } else {
        None
    };
    if let Some(msg) = problem {
        p.at(&at, name, msg);
        return None;
    }
    Some(if key == "exact" {
        PathMatch::Exact(value.to_owned())
    } else {
        PathMatch::Prefix(value.to_owned())
    })
}

/// The one-line reason from the regex crate's multi-line error.
fn regex_reason(err: &regex::Error) -> String {
    let text = err.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or_else(|| text.lines().last().unwrap_or("invalid"))
        .to_owned()
}

/// `Some(None)`: every method; `Some(Some(list))`: these; `None`: invalid.
pub(super) fn methods(
    list: Option<&[String]>,
    base: &str,
    name: Option<&str>,
    p: &mut Problems,
) -> Option<Option<Vec<Method>>> {
    let Some(list) = list else { return Some(None) };
    let path = format!("{base}.methods");
    if list.is_empty() {
        let msg = "methods is empty, so the route matches nothing; list methods, e.g. [GET, HEAD], \
                   or remove methods to match every method";
        p.at(&path, name, msg.to_owned());
        return None;
    }
    let mut out: Vec<Method> = Vec::new();
    let mut ok = true;
    for (j, m) in list.iter().enumerate() {
        let upper = m.to_ascii_uppercase();
        let msg = if KNOWN_METHODS.contains(&m.as_str()) {
            match Method::from_bytes(m.as_bytes()) {
                Ok(method) if !out.contains(&method) => out.push(method),
                _ => {}
            }
            continue;
        } else if KNOWN_METHODS.contains(&upper.as_str()) {
            format!("{m:?}: HTTP methods are case-sensitive; write {upper}")
        } else {
            format!(
                "unknown HTTP method {m:?}; use one of {}",
                KNOWN_METHODS.join(", ")
            )
        };
        p.at(&format!("{path}[{j}]"), name, msg);
        ok = false;
    }
    ok.then_some(Some(out))
}

/// A tag is one word of a tag header: no spaces or commas.
pub(super) fn tags_valid(
    tags: &[String],
    path: &str,
    route: Option<&str>,
    p: &mut Problems,
) -> bool {
    let mut ok = true;
    for (i, tag) in tags.iter().enumerate() {
        if tag.is_empty() || tag.contains(|c: char| c.is_whitespace() || c == ',') {
            let msg =
                format!("tag {tag:?} must be one word without spaces or commas, e.g. inventory");
            p.at(&format!("{path}[{i}]"), route, msg);
            ok = false;
        }
    }
    ok
}
