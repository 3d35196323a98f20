//! Configuration: the YAML file, its validation, and the typed model the rest of the proxy reads.
//!
//! Precedence, lowest first: built-in defaults (`defaults.rs`) < the file given with `-c` <
//! command-line flags (`--listen`, `--upstream`, `--admin-listen`, `--cache-dir`), which the CLI
//! applies by assigning fields of the loaded [`Config`]. Inside the file, a route's own cache keys
//! win over the `defaults:` section. Loading reports every problem of a file at once, each with
//! its line (`lines.rs`); `route_table` renders the result for `knitcache check`, and
//! `route_index` finds a request's route.

pub mod defaults;
mod file;
mod lines;
pub mod model;
pub mod reload;
mod route_index;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt::{self, Write as _};
use std::path::Path;
use std::time::Duration;

pub use model::*;

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Line in the file (1-based), when the problem has one.
    pub line: Option<usize>,
    /// Key path of the offending key, e.g. `routes[3].ttl_secs`; empty for the file as a whole.
    pub path: String,
    /// Name of the route the key belongs to, when known.
    pub route: Option<String>,
    /// What is wrong, with the offending value, and how to fix it.
    pub message: String,
}

/// Every problem found in one config file. `Display` prints one problem per line, as
/// `origin:line: path (route "name"): message`, in file order.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", render(origin, problems))]
pub struct ConfigErrors {
    /// The file name (or other origin) the problems refer to.
    pub origin: String,
    /// The problems, sorted by line; problems without a line come first.
    pub problems: Vec<Problem>,
}

impl ConfigErrors {
    fn new(origin: &str, mut problems: Vec<Problem>) -> Self {
        problems.sort_by_key(|p| p.line);
        Self {
            origin: origin.to_owned(),
            problems,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match (self.path.is_empty(), &self.route) {
            (true, _) => {}
            (false, None) => write!(f, "{}: ", self.path)?,
            (false, Some(route)) => write!(f, "{} (route {route:?}): ", self.path)?,
        }
        f.write_str(&self.message)
    }
}

fn render(origin: &str, problems: &[Problem]) -> String {
    let mut out = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = match p.line {
            Some(line) => write!(out, "{origin}:{line}: {p}"),
            None => write!(out, "{origin}: {p}"),
        };
    }
    out
}

/// Reads, parses and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(yaml) => parse(&yaml, &origin),
        Err(err) => Err(ConfigErrors::new(
            &origin,
            vec![Problem {
                line: None,
                path: String::new(),
                route: None,
                message: format!("cannot read the file: {err}; check the path given with -c"),
            }],
        )),
    }
}

/// Parses and validates config text; `origin` names it in messages (usually the file name).
pub fn parse(yaml: &str, origin: &str) -> Result<Config, ConfigErrors> {
    validate::parse(yaml).map_err(|problems| ConfigErrors::new(origin, problems))
}

/// A `--cluster` URL, checked as `cluster.url` is: `redis://` or `rediss://`, no password.
pub fn cluster_url(url: &str) -> Result<String, String> {
    validate::check_url(url)
}

/// The route table as aligned text, one route per line in match order, for `knitcache check`.
/// The match comes last because patterns can be long.
pub fn route_table(config: &Config) -> String {
    let header = [
        "#", "name", "methods", "action", "ttl", "swr", "sie", "query", "notes", "match",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for (i, route) in config.routes.iter().enumerate() {
        let methods = match &route.methods {
            None => "*".to_owned(),
            Some(ms) => ms.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(","),
        };
        let mut row = vec![i.to_string(), route.name.clone(), methods];
        match &route.action {
            RouteAction::Pass => {
                row.extend(["pass", "-", "-", "-", "-", ""].map(str::to_owned));
            }
            RouteAction::Cache(p) => {
                let origin = p.freshness == Freshness::Origin;
                let notes = cache_notes(p);
                row.extend([
                    "cache".to_owned(),
                    if origin {
                        "origin".to_owned()
                    } else {
                        human_duration(p.ttl)
                    },
                    human_duration(p.stale_while_revalidate),
                    human_duration(p.stale_if_error),
                    p.query.to_string(),
                    notes.join("; "),
                ]);
            }
        }
        row.push(route.path.to_string());
        rows.push(row);
    }
    let mut widths = vec![0; header.len()];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (col, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if col > 0 {
                line.push_str("  ");
            }
            // The route number is right-aligned, everything else left-aligned.
            let _ = if col == 0 {
                write!(line, "{cell:>w$}")
            } else {
                write!(line, "{cell:<w$}")
            };
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str("unmatched paths and methods pass through uncached\n");
    out
}

/// What a caching route does differently from the defaults, for the notes column. A
/// `freshness: origin` route shows `origin` in the ttl column instead.
fn cache_notes(p: &CachePolicy) -> Vec<String> {
    let origin = p.freshness == Freshness::Origin;
    let mut notes = Vec::new();
    match &p.statuses {
        StoredStatuses::Only(list) if origin || list != &defaults::DEFAULT_STATUSES => {
            let list: Vec<String> = list.iter().map(u16::to_string).collect();
            notes.push(format!("statuses={}", list.join(",")));
        }
        StoredStatuses::Only(_) => {}
        // The rule of every origin route that lists no statuses.
        StoredStatuses::Standard if origin => {}
        StoredStatuses::Standard => notes.push("statuses=standard".to_owned()),
    }
    if !p.error_statuses.is_empty() {
        let list: Vec<String> = p.error_statuses.iter().map(u16::to_string).collect();
        let list = list.join(",");
        notes.push(if p.error_ttl.is_zero() {
            format!("errors={list} not stored")
        } else {
            format!("errors={list} for {}", human_duration(p.error_ttl))
        });
    }
    if origin {
        match p.heuristic {
            None => notes.push("no heuristic freshness".to_owned()),
            Some(h)
                if (h.fraction * 100.0).round() as u64 != defaults::DEFAULT_HEURISTIC_PERCENT
                    || h.max.as_secs() != defaults::DEFAULT_HEURISTIC_MAX_SECS =>
            {
                notes.push(format!(
                    "heuristic={}% up to {}",
                    (h.fraction * 100.0).round(),
                    human_duration(h.max)
                ));
            }
            Some(_) => {}
        }
    } else if p.origin_cache_control == OriginCacheControl::Honour {
        notes.push("honours origin cache-control".to_owned());
    }
    if p.ignore_no_store {
        notes.push("stores no-store".to_owned());
    }
    if p.request_cookies == RequestCookies::Ignore {
        notes.push("cookies=ignore".to_owned());
    }
    if p.set_cookie == SetCookie::Strip {
        notes.push("set-cookie=strip".to_owned());
    }
    if p.max_variants as u64 != defaults::DEFAULT_MAX_VARIANTS {
        notes.push(format!("max-variants={}", p.max_variants));
    }
    notes
}

/// `0`, `45s`, `3m`, `1h`, `2d`; `90s` when no larger unit divides evenly.
fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0".to_owned(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
