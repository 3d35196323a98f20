//! Passes 1 and 2: the shape of the file and serde's own errors.
//!
//! The shape pass walks the located tree from `lines.rs` before serde sees the file: unknown keys
//! (with a "did you mean" from the key lists of the `File*` structs and an edit distance),
//! repeated keys, numbers written with units, quotes or no value (the unit is read off the key's
//! name), and addresses written as a bare port. serde_yaml's first error, if any, is turned into
//! a problem with a key path and a hint.

use std::collections::HashMap;

use super::super::Problem;
use super::super::defaults::*;
use super::super::file::*;
use super::super::lines::{Kind, Lines, Node};
use super::{Problems, last_key};

/// Turns a serde_yaml error into a problem: its location becomes the line, its key path (which
/// serde_yaml writes first, as `routes[2].cache: `) becomes the path.
pub(super) fn serde_problem(err: &serde_yaml::Error) -> Problem {
    let mut text = err.to_string();
    let line = err.location().map(|loc| {
        text = text.replacen(
            &format!(" at line {} column {}", loc.line(), loc.column()),
            "",
            1,
        );
        loc.line()
    });
    let (path, message) = match text.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') => (path.to_owned(), rest.to_owned()),
        _ => (String::new(), text),
    };
    // The File* type names mean nothing to the reader of the file.
    let message = [
        "FileConfig",
        "FileUpstream",
        "FileCache",
        "FileCompression",
        "FileServer",
        "FileDefaults",
        "FileRoute",
        "FileAdmin",
        "FileObservability",
        "FileClients",
        "FileTls",
    ]
    .iter()
    .fold(message, |m, name| {
        m.replace(&format!("struct {name}"), "a mapping of keys")
    });
    let list_example = match last_key(&path) {
        "methods" => "; write a list, e.g. methods: [GET, HEAD]",
        "statuses" => "; write a list, e.g. statuses: [200, 404]",
        "error_statuses" => "; write a list, e.g. error_statuses: [400, 404]",
        "routes" => "; write one `- name: ...` item per route",
        _ => "; write a list, e.g. [a, b]",
    };
    let hint = if message.contains("expected a boolean") {
        "; write true or false"
    } else if message.contains("expected a sequence") {
        list_example
    } else if message.contains("expected u16") {
        "; write a status code, e.g. 200"
    } else {
        ""
    };
    Problem {
        line,
        path,
        route: None,
        message: format!("{message}{hint}"),
    }
}

/// The `name` of the route a key path like `routes[3].cache` belongs to.
pub(super) fn route_name_for_path(tree: &Node, path: &str) -> Option<String> {
    let index: usize = path
        .strip_prefix("routes[")?
        .split(']')
        .next()?
        .parse()
        .ok()?;
    match &tree.get("routes")?.kind {
        Kind::Seq(items) => items.get(index)?.get("name")?.scalar().map(str::to_owned),
        _ => None,
    }
}

/// The sections of the file that have a fixed set of keys.
#[derive(Debug, Clone, Copy)]
enum Section {
    Root,
    Upstream,
    Cache,
    Compression,
    Server,
    Defaults,
    Route,
    Protection,
    RateLimit,
    RateClasses,
    RateClass,
    UpstreamCap,
    Breaker,
    Retries,
    Warming,
    Invalidation,
    PurgeSet,
    Admin,
    Observability,
    Clients,
    Access,
    AccessPolicies,
    AccessPolicy,
    Basic,
    Tls,
    ForwardAuth,
    Cluster,
}

impl Section {
    fn keys(self) -> &'static [&'static str] {
        match self {
            Section::Root => keys_of::<FileConfig>(),
            Section::Upstream => keys_of::<FileUpstream>(),
            Section::Cache => keys_of::<FileCache>(),
            Section::Compression => keys_of::<FileCompression>(),
            Section::Server => keys_of::<FileServer>(),
            Section::Defaults => keys_of::<FileDefaults>(),
            Section::Route => keys_of::<FileRoute>(),
            Section::Protection => keys_of::<FileProtection>(),
            Section::RateLimit => keys_of::<FileRateLimit>(),
            // class names are the operator's own; their entries are checked one by one
            Section::RateClasses => &[],
            Section::RateClass => keys_of::<FileRateClass>(),
            Section::UpstreamCap => keys_of::<FileUpstreamCap>(),
            Section::Breaker => keys_of::<FileBreaker>(),
            Section::Retries => keys_of::<FileRetries>(),
            Section::Warming => keys_of::<FileWarming>(),
            Section::Invalidation => keys_of::<FileInvalidation>(),
            Section::PurgeSet => keys_of::<FilePurgeSet>(),
            Section::Admin => keys_of::<FileAdmin>(),
            Section::Observability => keys_of::<FileObservability>(),
            Section::Clients => keys_of::<FileClients>(),
            Section::Access => keys_of::<FileAccess>(),
            // policy names are the operator's own; each policy is checked on its own
            Section::AccessPolicies => &[],
            Section::AccessPolicy => keys_of::<FileAccessPolicy>(),
            Section::Basic => keys_of::<FileBasic>(),
            Section::Tls => keys_of::<FileTls>(),
            Section::ForwardAuth => keys_of::<FileForwardAuth>(),
            Section::Cluster => keys_of::<FileCluster>(),
        }
    }

    fn child(self, key: &str) -> Option<Section> {
        match (self, key) {
            (Section::Root, "upstream") => Some(Section::Upstream),
            (Section::Root, "cache") => Some(Section::Cache),
            (Section::Root, "server") => Some(Section::Server),
            (Section::Root, "defaults") => Some(Section::Defaults),
            (Section::Cache, "compression") => Some(Section::Compression),
            (Section::Root, "protection") => Some(Section::Protection),
            (Section::Root, "warming") => Some(Section::Warming),
            (Section::Invalidation, "purge") => Some(Section::PurgeSet),
            (Section::Protection, "rate_limit") => Some(Section::RateLimit),
            (Section::Protection, "upstream_cap") => Some(Section::UpstreamCap),
            (Section::Protection, "breaker") => Some(Section::Breaker),
            (Section::Protection, "retries") => Some(Section::Retries),
            (Section::RateLimit, "classes") => Some(Section::RateClasses),
            (Section::RateClasses, _) => Some(Section::RateClass),
            (Section::Root, "admin") => Some(Section::Admin),
            (Section::Root, "observability") => Some(Section::Observability),
            (Section::Root, "clients") => Some(Section::Clients),
            (Section::Root, "access") => Some(Section::Access),
            (Section::Access, "policies") => Some(Section::AccessPolicies),
            (Section::AccessPolicies, _) => Some(Section::AccessPolicy),
            (Section::AccessPolicy, "basic") => Some(Section::Basic),
            (Section::Root, "tls") => Some(Section::Tls),
            (Section::AccessPolicy, "forward_auth") => Some(Section::ForwardAuth),
            (Section::Root, "cluster") => Some(Section::Cluster),
            _ => None,
        }
    }
}

/// Unknown keys, repeated keys, and numbers that serde would refuse with a less helpful
/// message, everywhere in the file. Wrong node types are left to serde.
pub(super) fn check_shape(root: &Node, lines: &Lines) -> Vec<Problem> {
    let mut p = Problems::new(lines);
    check_section(root, "", Section::Root, None, &mut p);
    if let Some(Kind::Seq(items)) = root.get("routes").map(|n| &n.kind) {
        for (i, item) in items.iter().enumerate() {
            let name = item.get("name").and_then(Node::scalar);
            check_section(item, &format!("routes[{i}]"), Section::Route, name, &mut p);
        }
    }
    if let Some(Kind::Seq(items)) = root.get("invalidation").map(|n| &n.kind) {
        for (i, item) in items.iter().enumerate() {
            let name = item.get("name").and_then(Node::scalar);
            let at = format!("invalidation[{i}]");
            check_section(item, &at, Section::Invalidation, name, &mut p);
        }
    }
    p.list
}

fn check_section(node: &Node, path: &str, section: Section, route: Option<&str>, p: &mut Problems) {
    let Kind::Map(entries) = &node.kind else {
        return;
    };
    let keys = section.keys();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for e in entries {
        let at = if path.is_empty() {
            e.key.clone()
        } else {
            format!("{path}.{}", e.key)
        };
        if let Some(first) = seen.get(e.key.as_str()) {
            let msg = format!("{} appears twice (first on line {first}); keep one", e.key);
            p.on_line(Some(e.line), &at, route, msg);
            continue;
        }
        seen.insert(&e.key, e.line);
        if !matches!(section, Section::RateClasses | Section::AccessPolicies)
            && !keys.contains(&e.key.as_str())
        {
            p.on_line(Some(e.line), &at, route, unknown_key(&e.key, keys));
            continue;
        }
        if let Some(unit) = Unit::of_key(&e.key)
            && let Some(msg) = whole_number(&e.key, &e.value, unit)
        {
            p.on_line(Some(e.line), &at, route, msg);
        }
        if matches!(section, Section::Defaults | Section::Route)
            && let Some(msg) = enum_value(&e.key, &e.value)
        {
            p.on_line(Some(e.line), &at, route, msg);
        }
        if matches!(
            e.key.as_str(),
            "listen" | "admin_listen" | "listen_tls" | "address"
        ) && let Some(msg) = bare_port(&e.key, &e.value)
        {
            p.on_line(Some(e.line), &at, route, msg);
        }
        if let Some(child) = section.child(&e.key) {
            check_section(&e.value, &at, child, route, p);
        }
    }
}

fn unknown_key(key: &str, keys: &[&str]) -> String {
    let hint = closest(key, keys)
        .map(|k| format!("did you mean {k}? "))
        .unwrap_or_default();
    format!(
        "unknown key {key:?}; {hint}valid keys here: {}",
        keys.join(", ")
    )
}

/// The valid key a typo most likely meant: one that extends it (`ttl` -> `ttl_secs`,
/// `variants` -> `max_variants`) or is within a few edits of it.
fn closest<'k>(key: &str, keys: &[&'k str]) -> Option<&'k str> {
    let extends = |k: &&&str| {
        (k.starts_with(key) && k[key.len()..].starts_with('_'))
            || (k.ends_with(key) && k[..k.len() - key.len()].ends_with('_'))
    };
    if let Some(k) = keys.iter().find(extends) {
        return Some(k);
    }
    let limit = (key.len() / 3).max(2);
    keys.iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance, by bytes (keys are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The keys of `defaults:` and routes that take one of a few words: the words, and what each
/// means (said in the message when another word is written).
const ENUM_KEYS: [(&str, &[&str], &str); 4] = [
    (
        "freshness",
        &["route", "origin"],
        "route: the route's ttl_secs decides how long a response is fresh; origin: the origin's \
         Cache-Control/Expires decide, as RFC 9111 says",
    ),
    (
        "request_cookies",
        &["bypass", "ignore"],
        "bypass: a request with a Cookie header goes to the origin and skips the cache; ignore: \
         Cookie changes nothing, for origins that use no cookies",
    ),
    (
        "set_cookie",
        &["refuse", "strip"],
        "refuse: a response that sets a cookie is not stored; strip: it is stored without its \
         Set-Cookie fields",
    ),
    (
        "origin_cache_control",
        &["override", "honour", "honor"],
        "override: the route's ttl_secs decides; honour (or honor): the origin's \
         max-age/Expires win when present",
    ),
];

/// A message if `key` takes one of a few words and `value` is none of them.
fn enum_value(key: &str, value: &Node) -> Option<String> {
    let (_, words, meaning) = ENUM_KEYS.iter().find(|(k, _, _)| *k == key)?;
    let list = match words {
        [one, two] => format!("{one} or {two}"),
        [first @ .., last] => format!("{} or {last}", first.join(", ")),
        [] => String::new(),
    };
    let problem = match &value.kind {
        Kind::Scalar { text, .. } if words.contains(&text.as_str()) => return None,
        Kind::Alias => return None,
        Kind::Scalar { text, plain }
            if text.is_empty()
                || (*plain && matches!(text.as_str(), "~" | "null" | "Null" | "NULL")) =>
        {
            format!("{key} has no value")
        }
        Kind::Scalar { text, plain } => {
            let shown = if *plain {
                text.clone()
            } else {
                format!("{text:?}")
            };
            let problem = format!("{key} = {shown} is not {list}");
            if let Some(word) = closest(&text.to_ascii_lowercase(), words) {
                return Some(format!(
                    "{problem}; did you mean {key}: {word}? ({meaning})"
                ));
            }
            problem
        }
        Kind::Map(_) => format!("{key} is a mapping"),
        Kind::Seq(_) => format!("{key} is a list"),
    };
    Some(format!("{problem}; write {key}: {list} ({meaning})"))
}

/// What a numeric key counts, read off its name (units are in key names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Secs,
    Millis,
    Mib,
    Bytes,
    Percent,
    Count,
}

impl Unit {
    fn of_key(key: &str) -> Option<Unit> {
        if key.ends_with("_secs") {
            Some(Unit::Secs)
        } else if key.ends_with("_ms") {
            Some(Unit::Millis)
        } else if key.ends_with("_mib") {
            Some(Unit::Mib)
        } else if key.ends_with("_bytes") {
            Some(Unit::Bytes)
        } else if key.ends_with("_percent") {
            Some(Unit::Percent)
        } else if matches!(
            key,
            "threads" | "level" | "max_variants" | "max_headers" | "max_connections_per_address"
        ) {
            Some(Unit::Count)
        } else {
            None
        }
    }

    /// "a whole number of seconds", "a whole number".
    fn phrase(self) -> &'static str {
        match self {
            Unit::Secs => "a whole number of seconds",
            Unit::Millis => "a whole number of milliseconds",
            Unit::Mib => "a whole number of MiB",
            Unit::Bytes => "a whole number of bytes",
            Unit::Percent => "a whole number (in percent)",
            Unit::Count => "a whole number",
        }
    }
}

/// A typical value of `key`, for the "e.g." of a message.
pub(super) fn example_value(key: &str) -> u64 {
    match key {
        "ttl_secs" => 180,
        "stale_while_revalidate_secs" => DEFAULT_STALE_WHILE_REVALIDATE_SECS,
        "stale_if_error_secs" => DEFAULT_STALE_IF_ERROR_SECS,
        "error_ttl_secs" => DEFAULT_ERROR_TTL_SECS,
        "connect_timeout_ms" => DEFAULT_CONNECT_TIMEOUT_MS,
        "read_timeout_ms" => DEFAULT_READ_TIMEOUT_MS,
        "write_timeout_ms" => DEFAULT_WRITE_TIMEOUT_MS,
        "health_interval_ms" => DEFAULT_HEALTH_INTERVAL_MS,
        "health_timeout_ms" => DEFAULT_HEALTH_TIMEOUT_MS,
        "lock_timeout_ms" => DEFAULT_LOCK_TIMEOUT_MS,
        "header_timeout_ms" => DEFAULT_HEADER_TIMEOUT_MS,
        "idle_timeout_ms" => DEFAULT_IDLE_TIMEOUT_MS,
        "body_timeout_ms" => DEFAULT_BODY_TIMEOUT_MS,
        "send_timeout_ms" => DEFAULT_SEND_TIMEOUT_MS,
        "timeout_ms" => DEFAULT_CLUSTER_TIMEOUT_MS,
        "lease_ms" => DEFAULT_CLUSTER_LEASE_MS,
        "memory_mib" => DEFAULT_MEMORY_MIB,
        "disk_mib" => DEFAULT_DISK_MIB,
        "max_object_bytes" => DEFAULT_MAX_OBJECT_BYTES,
        "grace_period_secs" => DEFAULT_GRACE_PERIOD_SECS,
        "graceful_shutdown_timeout_secs" => DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT_SECS,
        // One per core on the 2-core machines knitcache is sized for.
        "threads" => 2,
        "level" => u64::from(DEFAULT_COMPRESSION_LEVEL),
        "heuristic_percent" => DEFAULT_HEURISTIC_PERCENT,
        "heuristic_max_secs" => DEFAULT_HEURISTIC_MAX_SECS,
        "max_variants" => DEFAULT_MAX_VARIANTS,
        "error_ratio_percent" => DEFAULT_BREAKER_ERROR_PERCENT,
        "budget_percent" => DEFAULT_RETRY_BUDGET_PERCENT,
        _ => 1,
    }
}

/// A message if `value` of numeric `key` is not written as a plain whole number.
fn whole_number(key: &str, value: &Node, unit: Unit) -> Option<String> {
    let phrase = unit.phrase();
    let example = example_value(key);
    let (text, plain) = match &value.kind {
        Kind::Scalar { text, plain } => (text.as_str(), *plain),
        Kind::Map(_) => {
            return Some(format!(
                "{key} is a mapping; write {phrase}, e.g. {key}: {example}"
            ));
        }
        Kind::Seq(_) => {
            return Some(format!(
                "{key} is a list; write {phrase}, e.g. {key}: {example}"
            ));
        }
        Kind::Alias => return None,
    };
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if plain && digits {
        return None;
    }
    if plain && matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Some(format!(
            "{key} has no value; write {phrase}, e.g. {key}: {example}, or remove the key to use \
             the default"
        ));
    }
    if digits {
        return Some(format!(
            "{key} = {text:?} is quoted, which makes it text; write it without quotes: \
             {key}: {text}"
        ));
    }
    let shown = if plain {
        text.to_owned()
    } else {
        format!("{text:?}")
    };
    Some(match convert(text, unit) {
        Some(n) => format!(
            "{key} = {shown} is not {phrase}; write {phrase}, e.g. {key}: {n} for {}",
            text.trim()
        ),
        None => format!("{key} = {shown} is not {phrase}; write {phrase}, e.g. {key}: {example}"),
    })
}

/// The whole number of `unit` meant by text such as `3m`, `1.5h`, `500ms`, `1G`, `4 MiB` or
/// `10_000`, if it is one.
fn convert(text: &str, unit: Unit) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let ungrouped: String = t.chars().filter(|c| *c != '_' && *c != ',').collect();
    if !ungrouped.is_empty() && ungrouped.bytes().all(|b| b.is_ascii_digit()) {
        return ungrouped.parse().ok();
    }
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let number: f64 = t[..split].parse().ok()?;
    let suffix = t[split..].trim();
    // Factors to the smallest unit of each family: milliseconds or bytes.
    let (from, to) = match unit {
        Unit::Secs | Unit::Millis => {
            let from = match suffix {
                "ms" | "msec" | "msecs" | "millis" => 1.0,
                "s" | "sec" | "secs" | "second" | "seconds" => 1e3,
                "m" | "min" | "mins" | "minute" | "minutes" => 60e3,
                "h" | "hr" | "hrs" | "hour" | "hours" => 3_600e3,
                "d" | "day" | "days" => 86_400e3,
                _ => return None,
            };
            (from, if unit == Unit::Secs { 1e3 } else { 1.0 })
        }
        Unit::Mib | Unit::Bytes => {
            let from = match suffix {
                "b" => 1.0,
                "k" | "kb" | "kib" => 1024.0,
                "m" | "mb" | "mib" => 1024.0 * 1024.0,
                "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
                _ => return None,
            };
            (
                from,
                if unit == Unit::Mib {
                    1024.0 * 1024.0
                } else {
                    1.0
                },
            )
        }
        Unit::Percent if suffix == "%" => (1.0, 1.0),
        Unit::Percent | Unit::Count => return None,
    };
    let value = number * from / to;
    let whole = value.fract() == 0.0 && (1.0..9e15).contains(&value);
    // The range check above makes the cast exact.
    whole.then_some(value as u64)
}

/// A message if an address key holds a bare port such as `5006`.
fn bare_port(key: &str, value: &Node) -> Option<String> {
    let Kind::Scalar { text, plain: true } = &value.kind else {
        return None;
    };
    let port: u16 = text.parse().ok()?;
    let ip = if key == "listen" {
        "0.0.0.0"
    } else {
        "127.0.0.1"
    };
    Some(format!(
        "{key} = {port} is a port alone; write IP:port, e.g. {key}: \"{ip}:{port}\""
    ))
}
