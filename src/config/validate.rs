//! Every check of a config file, and the conversion `FileConfig -> Config`.
//!
//! Three passes: the shape (unknown or repeated keys, numbers written with units or quotes), read
//! off the located tree from `lines.rs`, all reported at once; YAML syntax and types (serde_yaml,
//! which stops at its first error); then the meaning (addresses, sizes, routes, unreachable
//! routes), all reported at once. A message names the key path, the offending value, why it is
//! wrong and how to fix it; `lines.rs` supplies the line.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::Method;
use regex::Regex;

use super::Problem;
use super::defaults::*;
use super::file::*;
use super::lines::{self, Kind, Lines, Node};
use super::model::*;

/// Largest storable body, in bytes (64 MiB): bigger bodies would each evict many small entries
/// and are better proxied than stored.
const MAX_OBJECT_BYTES_LIMIT: u64 = 64 * 1024 * 1024;

/// Longest TTL or stale window, in seconds (one year). Anything longer is taken as a unit slip.
const MAX_WINDOW_SECS: u64 = 365 * 24 * 3600;

/// Longest unix socket path, in bytes (`sun_path` is 108 bytes including the final NUL).
const MAX_UNIX_SOCKET_PATH_BYTES: usize = 107;

/// The methods a route may list; extension methods are not part of the ERP's API.
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
];

/// Parses, shape-checks and validates config text.
pub(crate) fn parse(yaml: &str) -> Result<Config, Vec<Problem>> {
    let tree = lines::parse(yaml);
    let lines = tree.as_ref().map(Lines::index).unwrap_or_default();
    if let Some(tree) = &tree {
        let shape = check_shape(tree, &lines);
        if !shape.is_empty() {
            return Err(shape);
        }
    }
    // serde_yaml is the parser of record: its syntax errors win over the shape of the data.
    if let Err(err) = serde_yaml::from_str::<serde_yaml::Value>(yaml) {
        let mut problem = serde_problem(&err);
        problem.message = format!("invalid YAML: {}", problem.message);
        return Err(vec![problem]);
    }
    let file: FileConfig = serde_yaml::from_str(yaml).map_err(|err| {
        let mut problem = serde_problem(&err);
        problem.route = tree
            .as_ref()
            .and_then(|t| route_name_for_path(t, &problem.path));
        vec![problem]
    })?;
    validate(&file, &lines)
}

/// Problems found so far, with the line of each key path looked up as they are added.
struct Problems<'a> {
    lines: &'a Lines,
    list: Vec<Problem>,
}

impl<'a> Problems<'a> {
    fn new(lines: &'a Lines) -> Self {
        Self {
            lines,
            list: Vec::new(),
        }
    }

    /// Adds a problem about `path`, at the line of `path` or of its nearest ancestor.
    fn at(&mut self, path: &str, route: Option<&str>, message: String) {
        let line = self.lines.line(path);
        self.on_line(line, path, route, message);
    }

    fn on_line(&mut self, line: Option<usize>, path: &str, route: Option<&str>, message: String) {
        self.list.push(Problem {
            line,
            path: path.to_owned(),
            route: route.map(str::to_owned),
            message,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Pass 1 and 2: syntax and shape.
// ---------------------------------------------------------------------------------------------

/// Turns a serde_yaml error into a problem: its location becomes the line, its key path (which
/// serde_yaml writes first, as `routes[2].cache: `) becomes the path.
fn serde_problem(err: &serde_yaml::Error) -> Problem {
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
    ]
    .iter()
    .fold(message, |m, name| {
        m.replace(&format!("struct {name}"), "a mapping of keys")
    });
    let list_example = match last_key(&path) {
        "methods" => "; write a list, e.g. methods: [GET, HEAD]",
        "statuses" => "; write a list, e.g. statuses: [200, 404]",
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
fn route_name_for_path(tree: &Node, path: &str) -> Option<String> {
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
            _ => None,
        }
    }
}

/// Unknown keys, repeated keys, and numbers that serde would refuse with a less helpful
/// message, everywhere in the file. Wrong node types are left to serde.
fn check_shape(root: &Node, lines: &Lines) -> Vec<Problem> {
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
        if !matches!(section, Section::RateClasses) && !keys.contains(&e.key.as_str()) {
            p.on_line(Some(e.line), &at, route, unknown_key(&e.key, keys));
            continue;
        }
        if let Some(unit) = Unit::of_key(&e.key)
            && let Some(msg) = whole_number(&e.key, &e.value, unit)
        {
            p.on_line(Some(e.line), &at, route, msg);
        }
        if matches!(e.key.as_str(), "listen" | "admin_listen" | "address")
            && let Some(msg) = bare_port(&e.key, &e.value)
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

/// The valid key a typo most likely meant: one that extends it (`ttl` -> `ttl_secs`) or is within
/// a few edits of it.
fn closest<'k>(key: &str, keys: &[&'k str]) -> Option<&'k str> {
    if let Some(k) = keys
        .iter()
        .find(|k| k.starts_with(key) && k[key.len()..].starts_with('_'))
    {
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

/// What a numeric key counts, read off its name (units are in key names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Secs,
    Millis,
    Mib,
    Bytes,
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
        } else if key == "threads" || key == "level" {
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
            Unit::Count => "a whole number",
        }
    }
}

/// A typical value of `key`, for the "e.g." of a message.
fn example_value(key: &str) -> u64 {
    match key {
        "ttl_secs" => 180,
        "stale_while_revalidate_secs" => DEFAULT_STALE_WHILE_REVALIDATE_SECS,
        "stale_if_error_secs" => DEFAULT_STALE_IF_ERROR_SECS,
        "connect_timeout_ms" => DEFAULT_CONNECT_TIMEOUT_MS,
        "read_timeout_ms" => DEFAULT_READ_TIMEOUT_MS,
        "write_timeout_ms" => DEFAULT_WRITE_TIMEOUT_MS,
        "health_interval_ms" => DEFAULT_HEALTH_INTERVAL_MS,
        "health_timeout_ms" => DEFAULT_HEALTH_TIMEOUT_MS,
        "lock_timeout_ms" => DEFAULT_LOCK_TIMEOUT_MS,
        "memory_mib" => DEFAULT_MEMORY_MIB,
        "disk_mib" => DEFAULT_DISK_MIB,
        "max_object_bytes" => DEFAULT_MAX_OBJECT_BYTES,
        "grace_period_secs" => DEFAULT_GRACE_PERIOD_SECS,
        "graceful_shutdown_timeout_secs" => DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT_SECS,
        "threads" => DEFAULT_THREADS as u64,
        "level" => u64::from(DEFAULT_COMPRESSION_LEVEL),
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
        Unit::Count => return None,
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

// ---------------------------------------------------------------------------------------------
// Pass 3: meaning.
// ---------------------------------------------------------------------------------------------

/// Validates a deserialized file into the runtime model, collecting every problem.
pub(crate) fn validate(file: &FileConfig, lines: &Lines) -> Result<Config, Vec<Problem>> {
    let mut p = Problems::new(lines);
    let listen = address(&file.listen, "listen", "0.0.0.0:5006", &mut p);
    let admin_listen = address(&file.admin_listen, "admin_listen", "127.0.0.1:5009", &mut p);
    let upstream = upstream(file.upstream.as_ref(), [listen, admin_listen], &mut p);
    if let (Some(listen), Some(admin)) = (listen, admin_listen)
        && clash(listen, admin)
    {
        let msg = format!(
            "{admin} uses the same port as listen = {listen}; give the admin endpoints a port \
             of their own, e.g. admin_listen: \"127.0.0.1:5009\""
        );
        p.at("admin_listen", None, msg);
    }
    let cache = cache(&file.cache, &mut p);
    let server = server(&file.server, &mut p);
    let inherited = inherited(&file.defaults, &mut p);
    let protection = protection(&file.protection, &mut p);
    let warming = warming(&file.warming, &mut p);
    let classes: Vec<&str> = file
        .protection
        .rate_limit
        .classes
        .keys()
        .map(String::as_str)
        .collect();
    let routes = routes(&file.routes, &inherited, &classes, &mut p);
    let admin = admin(&file.admin, &mut p);
    let invalidation = invalidation(&file.invalidation, &routes, &mut p);
    let observability = ObservabilitySettings {
        access_log: file.observability.access_log,
        stats: file.observability.stats,
    };

    match (
        listen,
        admin_listen,
        upstream,
        cache,
        server,
        protection,
        warming,
        admin,
    ) {
        (
            Some(listen),
            Some(admin_listen),
            Some(upstream),
            Some(cache),
            Some(server),
            Some(protection),
            Some(warming),
            Some(admin),
        ) if p.list.is_empty() => Ok(Config {
            listen,
            admin_listen,
            upstream,
            cache,
            server,
            route_index: super::route_index::RouteIndex::new(&routes),
            routes,
            protection,
            warming,
            admin,
            observability,
            invalidation,
        }),
        _ => {
            debug_assert!(!p.list.is_empty(), "a part failed without saying why");
            Err(p.list)
        }
    }
}

/// Two listeners clash when they share a port and one of them binds every address or both bind
/// the same one. Port 0 (an ephemeral port, used by tests) never clashes.
fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// True if connecting to `upstream` would reach our own listener `own`: same port, and the same
/// IP or a loopback IP while we listen on every address. Another host on the same port is fine.
fn loops_back(own: SocketAddr, upstream: SocketAddr) -> bool {
    own.port() != 0
        && own.port() == upstream.port()
        && (own.ip() == upstream.ip() || (own.ip().is_unspecified() && upstream.ip().is_loopback()))
}

fn address(text: &str, key: &str, example: &str, p: &mut Problems) -> Option<SocketAddr> {
    match text.trim().parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            p.at(key, None, address_message(text, key, example));
            None
        }
    }
}

fn address_message(text: &str, key: &str, example: &str) -> String {
    let t = text.trim();
    let example_ip = example.rsplit_once(':').map_or(example, |(ip, _)| ip);
    let fix = if let Some(port) = t.strip_prefix("localhost:") {
        format!("host names are not resolved; write {key}: \"127.0.0.1:{port}\"")
    } else if let Ok(ip) = t.parse::<IpAddr>() {
        let port = example.rsplit_once(':').map_or("5006", |(_, port)| port);
        let with_port = if ip.is_ipv6() {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        };
        format!("add a port, e.g. {key}: \"{with_port}\"")
    } else if t.parse::<u16>().is_ok() {
        format!("add an IP, e.g. {key}: \"{example_ip}:{t}\"")
    } else {
        format!(
            "write IP:port, e.g. {key}: \"{example}\" (IPv6 as \"[::1]:5006\"); host names are \
             not resolved"
        )
    };
    format!("{text:?} is not an IP:port address; {fix}")
}

/// The `upstream:` section; `own` are the proxy's listen and admin addresses, which the ERP's
/// address must not be.
fn upstream(
    file: Option<&FileUpstream>,
    own: [Option<SocketAddr>; 2],
    p: &mut Problems,
) -> Option<UpstreamSettings> {
    let Some(u) = file else {
        let msg = "missing; knitcache needs the ERP's address: add upstream: { address: \
                   \"127.0.0.1:5007\" } (the port the ERP listens on, its APP_PORT)";
        p.at("upstream", None, msg.to_owned());
        return None;
    };
    let address = match &u.address {
        None => {
            let msg = "missing; add address: \"127.0.0.1:5007\" under upstream: (the port the ERP \
                       listens on, its APP_PORT)";
            p.at("upstream.address", None, msg.to_owned());
            None
        }
        Some(text) => address(text, "upstream.address", "127.0.0.1:5007", p),
    };
    let address = address.filter(|a| {
        let problem = if a.ip().is_unspecified() {
            Some(format!(
                "{a} is a listen address, not a destination; write the ERP's address, e.g. \
                 \"127.0.0.1:{}\"",
                a.port()
            ))
        } else if a.port() == 0 {
            Some(format!(
                "{a} has port 0, which no server listens on; write the ERP's port"
            ))
        } else if let Some((key, own)) = ["listen", "admin_listen"]
            .into_iter()
            .zip(own)
            .find_map(|(key, own)| own.filter(|own| loops_back(*own, *a)).map(|own| (key, own)))
        {
            Some(format!(
                "{a} is knitcache's own {key} address ({own}), so requests would loop back into \
                 the proxy; run the ERP on another port (its APP_PORT, e.g. 5007) and point \
                 upstream.address there"
            ))
        } else {
            None
        };
        let ok = problem.is_none();
        if let Some(msg) = problem {
            p.at("upstream.address", None, msg);
        }
        ok
    });
    let connect = positive_ms(u.connect_timeout_ms, "upstream.connect_timeout_ms", p);
    let read = positive_ms(u.read_timeout_ms, "upstream.read_timeout_ms", p);
    let write = positive_ms(u.write_timeout_ms, "upstream.write_timeout_ms", p);
    let health_path = health_path(&u.health_path, p);
    let interval = positive_ms(u.health_interval_ms, "upstream.health_interval_ms", p);
    let timeout = positive_ms(u.health_timeout_ms, "upstream.health_timeout_ms", p);
    if let (Some(i), Some(t)) = (interval, timeout)
        && t > i
    {
        let msg = format!(
            "health_timeout_ms = {} is longer than health_interval_ms = {}, so probes would \
             overlap; set health_timeout_ms at most {}",
            t.as_millis(),
            i.as_millis(),
            i.as_millis()
        );
        p.at("upstream.health_timeout_ms", None, msg);
    }
    Some(UpstreamSettings {
        address: address?,
        connect_timeout: connect?,
        read_timeout: read?,
        write_timeout: write?,
        health_path: health_path?,
        health_interval: interval?,
        health_timeout: timeout?,
    })
}

/// The health probe's path: an absolute path (a query is allowed), printable ASCII, no spaces.
fn health_path(path: &str, p: &mut Problems) -> Option<String> {
    let problem = if !path.starts_with('/') {
        Some(format!(
            "{path:?} does not start with /; write a path the ERP answers in both of its modes, \
             e.g. health_path: {DEFAULT_HEALTH_PATH}"
        ))
    } else if !path.bytes().all(|b| b.is_ascii_graphic()) {
        Some(format!(
            "{path:?} contains spaces or characters that cannot appear in a request line; \
             percent-encode them, e.g. health_path: {DEFAULT_HEALTH_PATH}"
        ))
    } else {
        None
    };
    match problem {
        Some(msg) => {
            p.at("upstream.health_path", None, msg);
            None
        }
        None => Some(path.to_owned()),
    }
}

/// Shortest admin token accepted: anything shorter can be guessed.
const MIN_ADMIN_TOKEN_CHARS: usize = 16;

/// The `admin:` section.
fn admin(a: &FileAdmin, p: &mut Problems) -> Option<AdminSettings> {
    let mut ok = true;
    if let Some(token) = &a.token {
        let problem = if token.chars().count() < MIN_ADMIN_TOKEN_CHARS {
            Some(format!(
                "token is {} characters long; use at least {MIN_ADMIN_TOKEN_CHARS} random \
                 characters (e.g. from `openssl rand -hex 24`), or remove it and set the \
                 environment variable named by token_env instead",
                token.chars().count()
            ))
        } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
            Some(
                "token contains spaces or non-ASCII characters, which an Authorization header \
                 cannot carry; use letters, digits and punctuation only"
                    .to_owned(),
            )
        } else {
            None
        };
        if let Some(msg) = problem {
            p.at("admin.token", None, msg);
            ok = false;
        }
    }
    let env = &a.token_env;
    let valid_env = env
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && env.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid_env {
        let msg = format!(
            "{env:?} is not an environment variable name; use letters, digits and _, e.g. \
             token_env: {DEFAULT_ADMIN_TOKEN_ENV}"
        );
        p.at("admin.token_env", None, msg);
        ok = false;
    }
    let purge_from = networks(&a.purge_from, "admin.purge_from", p);
    (ok && purge_from.is_some()).then(|| AdminSettings {
        token: a.token.clone(),
        token_env: env.clone(),
        purge_from: purge_from.unwrap_or_default(),
    })
}

/// A timeout in milliseconds that must not be 0 (it would expire at once).
fn positive_ms(ms: u64, path: &str, p: &mut Problems) -> Option<Duration> {
    if ms > 0 {
        return Some(Duration::from_millis(ms));
    }
    let key = last_key(path);
    let msg = format!(
        "{key} = 0 would expire at once; write a whole number of milliseconds above 0, e.g. \
         {key}: {}",
        example_value(key)
    );
    p.at(path, None, msg);
    None
}

fn last_key(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

fn cache(c: &FileCache, p: &mut Problems) -> Option<CacheSettings> {
    let mut ok = true;
    if c.dir.as_os_str().is_empty() {
        p.at(
            "cache.dir",
            None,
            format!("is empty; set the disk tier's directory, e.g. dir: {DEFAULT_CACHE_DIR}"),
        );
        ok = false;
    }
    let memory_bytes = mib("cache.memory_mib", c.memory_mib, "memory", p);
    let disk_bytes = mib("cache.disk_mib", c.disk_mib, "disk", p);
    let max = c.max_object_bytes;
    if max == 0 {
        p.at(
            "cache.max_object_bytes",
            None,
            format!(
                "max_object_bytes = 0 stores nothing; set e.g. max_object_bytes: \
                 {DEFAULT_MAX_OBJECT_BYTES} (4 MiB)"
            ),
        );
        ok = false;
    } else if max > MAX_OBJECT_BYTES_LIMIT {
        p.at(
            "cache.max_object_bytes",
            None,
            format!(
                "max_object_bytes = {max} is over the 64 MiB limit ({MAX_OBJECT_BYTES_LIMIT}); \
                 bodies that large would each evict many small entries and are better proxied \
                 than stored; set at most {MAX_OBJECT_BYTES_LIMIT}"
            ),
        );
        ok = false;
    } else if let Some(memory) = memory_bytes.filter(|m| max > *m) {
        p.at(
            "cache.max_object_bytes",
            None,
            format!(
                "max_object_bytes = {max} is larger than the memory tier (memory_mib = {} is \
                 {memory} bytes); lower max_object_bytes or raise memory_mib",
                c.memory_mib
            ),
        );
        ok = false;
    }
    let lock_timeout = if c.lock_timeout_ms == 0 {
        p.at(
            "cache.lock_timeout_ms",
            None,
            format!(
                "lock_timeout_ms = 0 sends every waiting request to the ERP at once, which \
                 defeats request coalescing; set e.g. lock_timeout_ms: {DEFAULT_LOCK_TIMEOUT_MS}"
            ),
        );
        None
    } else {
        Some(Duration::from_millis(c.lock_timeout_ms))
    };
    let level = c.compression.level;
    if !(1..=9).contains(&level) {
        p.at(
            "cache.compression.level",
            None,
            format!(
                "level = {level} is outside 1..=9; use 1 (fastest) to 9 (smallest), e.g. \
                 level: {DEFAULT_COMPRESSION_LEVEL}"
            ),
        );
        ok = false;
    }
    let tag_header = match c.tag_header.trim() {
        "" => Some(None),
        name => match http::HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => Some(Some(h)),
            Err(_) => {
                let msg = format!(
                    "{name:?} is not a header name; write e.g. tag_header: surrogate-key (or \
                     cache-tag), or \"\" to tag by route only"
                );
                p.at("cache.tag_header", None, msg);
                None
            }
        },
    };
    if !ok {
        return None;
    }
    Some(CacheSettings {
        dir: c.dir.clone(),
        memory_bytes: memory_bytes?,
        disk_bytes: disk_bytes?,
        max_object_bytes: max,
        lock_timeout: lock_timeout?,
        compression: CompressionSettings {
            enabled: c.compression.enabled,
            level,
        },
        tag_header: tag_header?,
    })
}

/// MiB to bytes; 0 and overflowing sizes are problems.
fn mib(path: &str, value: u64, tier: &str, p: &mut Problems) -> Option<u64> {
    let key = last_key(path);
    let example = example_value(key);
    if value == 0 {
        p.at(
            path,
            None,
            format!("{key} = 0 leaves no {tier} tier; set at least 1, e.g. {key}: {example}"),
        );
        return None;
    }
    let bytes = value.checked_mul(1024 * 1024);
    if bytes.is_none() {
        p.at(
            path,
            None,
            format!("{key} = {value} is too large to count in bytes; set e.g. {key}: {example}"),
        );
    }
    bytes
}

fn server(s: &FileServer, p: &mut Problems) -> Option<ServerSettings> {
    let mut ok = true;
    if s.threads == 0 {
        let msg = format!(
            "threads = 0 runs no workers; set at least 1, e.g. threads: {DEFAULT_THREADS} (one \
             per core)"
        );
        p.at("server.threads", None, msg);
        ok = false;
    }
    for (key, path) in [("pid_file", &s.pid_file), ("upgrade_sock", &s.upgrade_sock)] {
        if path.as_os_str().is_empty() {
            p.at(
                &format!("server.{key}"),
                None,
                format!("{key} is empty; set a file path or remove the key to use the default"),
            );
            ok = false;
        }
    }
    let sock_len = s.upgrade_sock.as_os_str().len();
    if sock_len > MAX_UNIX_SOCKET_PATH_BYTES {
        p.at(
            "server.upgrade_sock",
            None,
            format!(
                "upgrade_sock = {} is {sock_len} bytes long, over the {MAX_UNIX_SOCKET_PATH_BYTES} \
                 bytes a unix socket path may have; use a shorter path, e.g. \
                 {DEFAULT_UPGRADE_SOCK}",
                s.upgrade_sock.display()
            ),
        );
        ok = false;
    }
    ok.then(|| ServerSettings {
        threads: s.threads,
        grace_period: Duration::from_secs(s.grace_period_secs),
        graceful_shutdown_timeout: Duration::from_secs(s.graceful_shutdown_timeout_secs),
        pid_file: s.pid_file.clone(),
        upgrade_sock: s.upgrade_sock.clone(),
    })
}

// ---------------------------------------------------------------------------------------------
// Routes.
// ---------------------------------------------------------------------------------------------

/// The `defaults:` section; routes take from it what they do not set. Its problems are reported
/// once, here; an invalid list is `None`, so routes that inherit it build no policy.
struct Inherited {
    ttl: u64,
    swr: u64,
    sie: u64,
    statuses: Option<Vec<u16>>,
    origin: OriginCacheControl,
    query: Option<QueryKey>,
}

fn inherited(d: &FileDefaults, p: &mut Problems) -> Inherited {
    let windows = [
        ("ttl_secs", d.ttl_secs),
        ("stale_while_revalidate_secs", d.stale_while_revalidate_secs),
        ("stale_if_error_secs", d.stale_if_error_secs),
    ];
    for (key, value) in windows {
        window(value, &format!("defaults.{key}"), None, p);
    }
    let pair = Pair {
        ttl: (d.ttl_secs, true),
        swr: (d.stale_while_revalidate_secs, true),
        sie: (d.stale_if_error_secs, true),
    };
    pair.check("defaults", None, p);
    Inherited {
        ttl: d.ttl_secs,
        swr: d.stale_while_revalidate_secs,
        sie: d.stale_if_error_secs,
        statuses: statuses(&d.statuses, "defaults.statuses", None, p),
        origin: origin(d.origin_cache_control),
        query: query_key(&d.query_key, "defaults.query_key", None, p),
    }
}

fn origin(o: FileOriginCacheControl) -> OriginCacheControl {
    match o {
        FileOriginCacheControl::Honour => OriginCacheControl::Honour,
        FileOriginCacheControl::Override => OriginCacheControl::Override,
    }
}

/// A TTL or stale window must stay within a year; longer values are usually milliseconds
/// written into a `_secs` key.
fn window(secs: u64, path: &str, route: Option<&str>, p: &mut Problems) -> bool {
    if secs <= MAX_WINDOW_SECS {
        return true;
    }
    let key = last_key(path);
    let hint = if secs / 1000 <= MAX_WINDOW_SECS {
        format!("; if you meant milliseconds, write {key}: {}", secs / 1000)
    } else {
        String::new()
    };
    let msg = format!(
        "{key} = {secs} is more than a year ({MAX_WINDOW_SECS} s); durations here are in \
         seconds{hint}"
    );
    p.at(path, route, msg);
    false
}

/// TTL and stale windows of one route (or of `defaults:`), each with whether the route itself
/// set it (`false`: inherited from `defaults:`).
struct Pair {
    ttl: (u64, bool),
    swr: (u64, bool),
    sie: (u64, bool),
}

impl Pair {
    /// TTL 0 means "always stale": that only makes sense as a stale-if-error fallback.
    fn check(&self, base: &str, route: Option<&str>, p: &mut Problems) -> bool {
        let from = |own: bool| if own { "" } else { " (from defaults)" };
        let (ttl, ttl_own) = self.ttl;
        let (swr, swr_own) = self.swr;
        let (sie, sie_own) = self.sie;
        if ttl != 0 {
            return true;
        }
        let path = format!("{base}.ttl_secs");
        if swr > 0 {
            let fix = if swr_own {
                "remove stale_while_revalidate_secs".to_owned()
            } else {
                "set stale_while_revalidate_secs: 0 on this route".to_owned()
            };
            let msg = format!(
                "ttl_secs = 0{} but stale_while_revalidate_secs = {swr}{}; set ttl_secs > 0 or \
                 {fix}",
                from(ttl_own),
                from(swr_own)
            );
            p.at(&path, route, msg);
            return false;
        }
        if sie == 0 {
            let msg = format!(
                "ttl_secs = 0{} and stale_if_error_secs = 0{}: nothing stored would ever be \
                 served; \
                 set ttl_secs > 0, or cache: false to pass the route through",
                from(ttl_own),
                from(sie_own)
            );
            p.at(&path, route, msg);
            return false;
        }
        true
    }
}

fn statuses(list: &[u16], path: &str, route: Option<&str>, p: &mut Problems) -> Option<Vec<u16>> {
    if list.is_empty() {
        let msg = "statuses is empty, so nothing would be stored; list the statuses to store, e.g. \
                   [200, 301, 308], or set cache: false";
        p.at(path, route, msg.to_owned());
        return None;
    }
    let mut ok = true;
    for (j, s) in list.iter().enumerate() {
        if !(100..=599).contains(s) {
            let msg = format!(
                "{s} is not an HTTP status (100..=599); write a status code, e.g. 200 or 404"
            );
            p.at(&format!("{path}[{j}]"), route, msg);
            ok = false;
        }
    }
    let mut list = list.to_vec();
    list.sort_unstable();
    list.dedup();
    ok.then_some(list)
}

fn query_key(
    q: &FileQueryKey,
    path: &str,
    route: Option<&str>,
    p: &mut Problems,
) -> Option<QueryKey> {
    let (names, kind) = match q {
        FileQueryKey::All => return Some(QueryKey::All),
        FileQueryKey::Only(names) => (names, "only"),
        FileQueryKey::Ignore(names) => (names, "ignore"),
    };
    let mut ok = true;
    for (j, name) in names.iter().enumerate() {
        if name.trim().is_empty() || name.contains(['&', '=']) {
            let msg =
                format!("{name:?} is not a query parameter name; write the name alone, e.g. view");
            p.at(&format!("{path}.{kind}[{j}]"), route, msg);
            ok = false;
        }
    }
    let mut names = names.clone();
    names.sort_unstable();
    names.dedup();
    ok.then(|| {
        if kind == "only" {
            QueryKey::Only(names)
        } else {
            QueryKey::Ignore(names)
        }
    })
}

fn routes(
    file: &[FileRoute],
    inherited: &Inherited,
    classes: &[&str],
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
        if let Some(route) = route(r, &base, inherited, classes, p) {
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
    })
}

/// Names are metric label values and log fields: letters, digits, `-`, `_` and `.` only.
fn valid_name(name: &str, base: &str, p: &mut Problems) -> bool {
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

fn path_match(
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
fn methods(
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

/// A `cache: false` route must not carry cache keys: they would silently do nothing.
fn pass_only(r: &FileRoute, base: &str, name: Option<&str>, p: &mut Problems) -> bool {
    let set = [
        ("ttl_secs", r.ttl_secs.is_some()),
        (
            "stale_while_revalidate_secs",
            r.stale_while_revalidate_secs.is_some(),
        ),
        ("stale_if_error_secs", r.stale_if_error_secs.is_some()),
        ("query_key", r.query_key.is_some()),
        ("statuses", r.statuses.is_some()),
        ("origin_cache_control", r.origin_cache_control.is_some()),
        ("ignore_no_store", r.ignore_no_store.is_some()),
    ];
    let mut ok = true;
    for (key, is_set) in set {
        if is_set {
            let msg = format!(
                "{key} is set but the route has cache: false (pass-through), so it would do \
                 nothing; remove {key} or set cache: true"
            );
            p.at(&format!("{base}.{key}"), name, msg);
            ok = false;
        }
    }
    ok
}

fn cache_policy(
    r: &FileRoute,
    base: &str,
    name: Option<&str>,
    methods: Option<&Vec<Method>>,
    d: &Inherited,
    p: &mut Problems,
) -> Option<CachePolicy> {
    let mut ok = true;
    if let Some(ms) = methods
        && !ms.contains(&Method::GET)
        && !ms.contains(&Method::HEAD)
    {
        let list: Vec<&str> = ms.iter().map(Method::as_str).collect();
        let msg = format!(
            "methods = [{}] on a caching route: only GET and HEAD are ever cached, so this route \
             caches nothing; set cache: false, or add GET",
            list.join(", ")
        );
        p.at(&format!("{base}.methods"), name, msg);
        ok = false;
    }
    for (key, value) in [
        ("ttl_secs", r.ttl_secs),
        ("stale_while_revalidate_secs", r.stale_while_revalidate_secs),
        ("stale_if_error_secs", r.stale_if_error_secs),
    ] {
        if let Some(v) = value {
            ok &= window(v, &format!("{base}.{key}"), name, p);
        }
    }
    let statuses = match &r.statuses {
        Some(list) => statuses(list, &format!("{base}.statuses"), name, p),
        None => d.statuses.clone(),
    };
    let query = match &r.query_key {
        Some(q) => query_key(q, &format!("{base}.query_key"), name, p),
        None => d.query.clone(),
    };
    let pair = Pair {
        ttl: (r.ttl_secs.unwrap_or(d.ttl), r.ttl_secs.is_some()),
        swr: (
            r.stale_while_revalidate_secs.unwrap_or(d.swr),
            r.stale_while_revalidate_secs.is_some(),
        ),
        sie: (
            r.stale_if_error_secs.unwrap_or(d.sie),
            r.stale_if_error_secs.is_some(),
        ),
    };
    // Pairs made only of inherited values were checked once, on `defaults:`.
    if pair.ttl.1 || pair.swr.1 || pair.sie.1 {
        ok &= pair.check(base, name, p);
    }
    if !ok {
        return None;
    }
    Some(CachePolicy {
        ttl: Duration::from_secs(pair.ttl.0),
        stale_while_revalidate: Duration::from_secs(pair.swr.0),
        stale_if_error: Duration::from_secs(pair.sie.0),
        query: query?,
        statuses: StoredStatuses::Only(statuses?),
        freshness: DEFAULT_FRESHNESS,
        origin_cache_control: r.origin_cache_control.map_or(d.origin, origin),
        ignore_no_store: r.ignore_no_store.unwrap_or(DEFAULT_IGNORE_NO_STORE),
        request_cookies: RequestCookies::Ignore,
        set_cookie: DEFAULT_SET_COOKIE,
        heuristic: Some(Heuristic {
            fraction: DEFAULT_HEURISTIC_PERCENT as f64 / 100.0,
            max: Duration::from_secs(DEFAULT_HEURISTIC_MAX_SECS),
        }),
        max_variants: DEFAULT_MAX_VARIANTS as usize,
    })
}

// ---------------------------------------------------------------------------------------------
// Protection: rate limits, the concurrency cap, the breaker, retries.
// ---------------------------------------------------------------------------------------------

fn protection(f: &FileProtection, p: &mut Problems) -> Option<Protection> {
    let mut ok = true;
    let retry_after = match f.retry_after_secs {
        0 => {
            let msg = "retry_after_secs = 0 tells clients to retry at once, which is what a \
                       struggling ERP needs least; write e.g. retry_after_secs: 5";
            p.at("protection.retry_after_secs", None, msg.to_owned());
            ok = false;
            Duration::ZERO
        }
        s if s > 3600 => {
            let msg = format!(
                "retry_after_secs = {s} asks clients to stay away for over an hour; write at \
                 most 3600, e.g. retry_after_secs: 5"
            );
            p.at("protection.retry_after_secs", None, msg);
            ok = false;
            Duration::ZERO
        }
        s => Duration::from_secs(s),
    };
    let rate_limit = rate_limit(&f.rate_limit, p);
    let upstream_cap = upstream_cap(&f.upstream_cap, p);
    let breaker = breaker(&f.breaker, p);
    let retries = retries(&f.retries, p);
    if !ok {
        return None;
    }
    Some(Protection {
        rate_limit: rate_limit?,
        upstream_cap: upstream_cap?,
        breaker: breaker?,
        retries: retries?,
        retry_after,
    })
}

fn rate_class(per_sec: u64, burst: u64, path: &str, p: &mut Problems) -> Option<RateClass> {
    let mut ok = true;
    if per_sec == 0 || per_sec > u64::from(u32::MAX) {
        let msg = format!(
            "requests_per_sec = {per_sec} must be a whole number from 1 to {}; write e.g. \
             requests_per_sec: 20 (to turn limiting off, set protection.rate_limit.enabled: false)",
            u32::MAX
        );
        p.at(&format!("{path}.requests_per_sec"), None, msg);
        ok = false;
    }
    if burst == 0 || burst > u64::from(u32::MAX) {
        let msg = format!(
            "burst = {burst} must be a whole number from 1 to {}; write e.g. burst: 60 (at \
             least the requests one page load sends at once)",
            u32::MAX
        );
        p.at(&format!("{path}.burst"), None, msg);
        ok = false;
    }
    ok.then_some(RateClass {
        per_sec: per_sec as u32,
        burst: burst as u32,
    })
}

/// `Some(None)`: valid and off.
fn rate_limit(f: &FileRateLimit, p: &mut Problems) -> Option<Option<RateLimitSettings>> {
    let base = "protection.rate_limit";
    let default = rate_class(f.requests_per_sec, f.burst, base, p);
    let mut classes = Vec::new();
    let mut ok = default.is_some();
    for (name, c) in &f.classes {
        let path = format!("{base}.classes.{name}");
        match rate_class(c.requests_per_sec, c.burst, &path, p) {
            Some(class) => classes.push((name.clone(), class)),
            None => ok = false,
        }
    }
    let mut trusted_proxies = Vec::new();
    for (i, text) in f.trusted_proxies.iter().enumerate() {
        let parsed = text
            .parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(net) => trusted_proxies.push(net),
            Err(_) => {
                let msg = format!(
                    "{text:?} is not an IP address or network; write e.g. \"10.0.0.5\" or \
                     \"10.0.0.0/24\" (the load balancer in front of knitcache)"
                );
                p.at(&format!("{base}.trusted_proxies[{i}]"), None, msg);
                ok = false;
            }
        }
    }
    if f.max_clients == 0 {
        let msg = "max_clients = 0 would put every client in one shared bucket; write e.g. \
                   max_clients: 10000";
        p.at(&format!("{base}.max_clients"), None, msg.to_owned());
        ok = false;
    }
    if f.idle_secs == 0 {
        let msg = "idle_secs = 0 forgets clients at once, which resets their buckets; write e.g. \
                   idle_secs: 300";
        p.at(&format!("{base}.idle_secs"), None, msg.to_owned());
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(f.enabled.then(|| RateLimitSettings {
        default: default.unwrap_or(RateClass {
            per_sec: 1,
            burst: 1,
        }),
        classes,
        trusted_proxies,
        max_clients: usize::try_from(f.max_clients).unwrap_or(usize::MAX),
        idle: Duration::from_secs(f.idle_secs),
    }))
}

fn upstream_cap(f: &FileUpstreamCap, p: &mut Problems) -> Option<ConcurrencySettings> {
    let base = "protection.upstream_cap";
    let mut ok = true;
    if f.max_in_flight == 0 {
        let msg = "max_in_flight = 0 would let no request reach the ERP; write e.g. \
                   max_in_flight: 8";
        p.at(&format!("{base}.max_in_flight"), None, msg.to_owned());
        ok = false;
    }
    let timeout = positive_ms(f.queue_timeout_ms, &format!("{base}.queue_timeout_ms"), p);
    if !ok {
        return None;
    }
    Some(ConcurrencySettings {
        max_in_flight: usize::try_from(f.max_in_flight).unwrap_or(usize::MAX),
        queue: usize::try_from(f.queue).unwrap_or(usize::MAX),
        queue_timeout: timeout?,
    })
}

/// `Some(None)`: valid and off.
fn breaker(f: &FileBreaker, p: &mut Problems) -> Option<Option<BreakerSettings>> {
    let base = "protection.breaker";
    let mut ok = true;
    let mut nonzero = |key: &str, value: u64, example: u64, why: &str| {
        if value == 0 {
            let msg = format!("{key} = 0 {why}; write e.g. {key}: {example}");
            p.at(&format!("{base}.{key}"), None, msg);
            ok = false;
        }
    };
    nonzero(
        "consecutive_failures",
        f.consecutive_failures,
        5,
        "would open the breaker on no failure at all",
    );
    nonzero(
        "window_secs",
        f.window_secs,
        30,
        "leaves no window to count failures in",
    );
    nonzero(
        "min_requests",
        f.min_requests,
        20,
        "would open the breaker on a single failed request",
    );
    nonzero(
        "open_secs",
        f.open_secs,
        10,
        "would close the breaker again at once",
    );
    nonzero(
        "half_open_probes",
        f.half_open_probes,
        1,
        "would never let a probe through, so the breaker could never close",
    );
    if f.error_ratio_percent == 0 || f.error_ratio_percent > 100 {
        let msg = format!(
            "error_ratio_percent = {} must be from 1 to 100; write e.g. error_ratio_percent: 50",
            f.error_ratio_percent
        );
        p.at(&format!("{base}.error_ratio_percent"), None, msg);
        ok = false;
    }
    if !ok {
        return None;
    }
    let count = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    Some(f.enabled.then(|| BreakerSettings {
        consecutive_failures: count(f.consecutive_failures),
        error_ratio: f.error_ratio_percent as f64 / 100.0,
        window: Duration::from_secs(f.window_secs),
        min_requests: count(f.min_requests),
        open_for: Duration::from_secs(f.open_secs),
        half_open_probes: count(f.half_open_probes),
        trip_on_5xx: f.trip_on_5xx,
    }))
}

fn retries(f: &FileRetries, p: &mut Problems) -> Option<RetrySettings> {
    if f.budget_percent > 100 {
        let msg = format!(
            "budget_percent = {} would let retries more than double the traffic a failing ERP \
             sees; write at most 100, e.g. budget_percent: 10",
            f.budget_percent
        );
        p.at("protection.retries.budget_percent", None, msg);
        return None;
    }
    if f.max_per_request > 10 {
        let msg = format!(
            "max_per_request = {} retries of one request; write at most 10, e.g. \
             max_per_request: 1",
            f.max_per_request
        );
        p.at("protection.retries.max_per_request", None, msg);
        return None;
    }
    Some(RetrySettings {
        max_per_request: f.max_per_request as u32,
        budget_ratio: f.budget_percent as f64 / 100.0,
    })
}

fn route_limits(
    r: &FileRoute,
    base: &str,
    name: Option<&str>,
    classes: &[&str],
    p: &mut Problems,
) -> Option<RouteLimits> {
    let mut ok = true;
    if let Some(class) = &r.rate_limit_class
        && !classes.contains(&class.as_str())
    {
        let known = if classes.is_empty() {
            "none are defined; add it under protection.rate_limit.classes".to_owned()
        } else {
            format!("defined classes: {}", classes.join(", "))
        };
        let msg = format!(
            "rate_limit_class {class:?} is not a class in protection.rate_limit.classes; {known}"
        );
        p.at(&format!("{base}.rate_limit_class"), name, msg);
        ok = false;
    }
    if r.max_in_flight == Some(0) {
        let msg = "max_in_flight = 0 would let no request of this route reach the ERP; write e.g. \
                   max_in_flight: 1, or remove it to use only the global cap";
        p.at(&format!("{base}.max_in_flight"), name, msg.to_owned());
        ok = false;
    }
    let mut timeout = |key: &str, value: Option<u64>| match value {
        None => Some(None),
        Some(ms) => positive_ms(ms, &format!("{base}.{key}"), p).map(Some),
    };
    let connect = timeout("connect_timeout_ms", r.connect_timeout_ms);
    let first_byte = timeout("first_byte_timeout_ms", r.first_byte_timeout_ms);
    let total = timeout("total_timeout_ms", r.total_timeout_ms);
    if let (Some(Some(first)), Some(Some(total))) = (first_byte, total)
        && first > total
    {
        let msg = format!(
            "first_byte_timeout_ms = {} is longer than total_timeout_ms = {}, so it can never \
             fire; make total_timeout_ms the larger",
            first.as_millis(),
            total.as_millis()
        );
        p.at(&format!("{base}.first_byte_timeout_ms"), name, msg);
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(RouteLimits {
        rate_class: r.rate_limit_class.clone(),
        rate_limit_hits: r.rate_limit_hits.unwrap_or(DEFAULT_RATE_LIMIT_HITS),
        max_in_flight: r
            .max_in_flight
            .map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
        connect_timeout: connect?,
        first_byte_timeout: first_byte?,
        total_timeout: total?,
    })
}

// ---------------------------------------------------------------------------------------------
// Warming.
// ---------------------------------------------------------------------------------------------

fn warming(f: &FileWarming, p: &mut Problems) -> Option<WarmingSettings> {
    let base = "warming";
    let mut ok = true;
    let mut nonzero = |key: &str, value: u64, example: u64, why: &str| {
        if value == 0 {
            let msg =
                format!("{key} = 0 {why}; write e.g. {key}: {example}, or set enabled: false");
            p.at(&format!("{base}.{key}"), None, msg);
            ok = false;
        }
    };
    nonzero(
        "hot_keys",
        f.hot_keys,
        256,
        "tracks no key, so nothing is ever refreshed",
    );
    nonzero(
        "lead_secs",
        f.lead_secs,
        10,
        "refreshes only after expiry, when clients already wait",
    );
    nonzero("active_secs", f.active_secs, 120, "counts no key as in use");
    nonzero("concurrency", f.concurrency, 2, "lets no warm request run");
    nonzero(
        "interval_secs",
        f.interval_secs,
        60,
        "would fetch the warm list without pause",
    );
    for (i, entry) in f.list.iter().enumerate() {
        if !entry.starts_with('/') {
            let msg = format!(
                "{entry:?} is not a path; write the path and query the dashboard requests, e.g. \
                 \"/api/comprehensive-kpis\""
            );
            p.at(&format!("{base}.list[{i}]"), None, msg);
            ok = false;
        } else if entry
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            let msg =
                format!("{entry:?} contains spaces or control characters; percent-encode them");
            p.at(&format!("{base}.list[{i}]"), None, msg);
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    let count = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    Some(WarmingSettings {
        enabled: f.enabled,
        hot_keys: count(f.hot_keys),
        lead: Duration::from_secs(f.lead_secs),
        active: Duration::from_secs(f.active_secs),
        concurrency: count(f.concurrency),
        interval: Duration::from_secs(f.interval_secs),
        list: f.list.clone(),
    })
}

// ---------------------------------------------------------------------------------------------
// Tags, invalidation rules, PURGE clients.
// ---------------------------------------------------------------------------------------------

/// A tag is one word of a tag header: no spaces or commas.
fn tags_valid(tags: &[String], path: &str, route: Option<&str>, p: &mut Problems) -> bool {
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

/// `IP` or `IP/prefix` entries.
fn networks(list: &[String], path: &str, p: &mut Problems) -> Option<Vec<ipnet::IpNet>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (i, text) in list.iter().enumerate() {
        match text
            .parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(ipnet::IpNet::from))
        {
            Ok(net) => out.push(net),
            Err(_) => {
                let msg =
                    format!("{text:?} is not an IP address or network; write e.g. \"127.0.0.0/8\"");
                p.at(&format!("{path}[{i}]"), None, msg);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn invalidation(
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
