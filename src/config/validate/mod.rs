//! Every check of a config file, and the conversion `FileConfig -> Config`.
//!
//! Three passes: the shape (unknown or repeated keys, numbers written with units or quotes), read
//! off the located tree from `lines.rs`, all reported at once; YAML syntax and types (serde_yaml,
//! which stops at its first error); then the meaning (addresses, sizes, routes, unreachable
//! routes), all reported at once. A message names the key path, the offending value, why it is
//! wrong and how to fix it; `lines.rs` supplies the line.
//!
//! This file holds the entry points (`parse`, `validate`) and what every section shares
//! (`Problems`, `positive_ms`, `last_key`); each section of the file has its own module.

mod access;
mod admin;
mod cache;
mod cache_policy;
mod clients;
mod cluster;
mod invalidation;
mod listen;
mod protection;
mod routes;
mod server;
mod shape;
mod tls;
mod upstream;
mod warming;

use std::time::Duration;

use super::Problem;
use super::file::*;
use super::lines::{self, Lines};
use super::model::*;

use self::access::access;
use self::admin::admin;
use self::cache::cache;
use self::cache_policy::inherited;
use self::clients::clients;
pub(crate) use self::cluster::check_url;
use self::cluster::cluster;
use self::invalidation::invalidation;
use self::listen::{address, clash};
use self::protection::protection;
use self::routes::routes;
use self::server::server;
use self::shape::{check_shape, example_value, route_name_for_path, serde_problem};
use self::tls::tls;
use self::upstream::{partial_keys_need_wsgi, upstream};
use self::warming::warming;

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
    let tls = tls(
        file,
        [(listen, "listen"), (admin_listen, "admin_listen")],
        &mut p,
    );
    let cache = cache(&file.cache, &mut p);
    let server = server(&file.server, &mut p);
    let inherited = inherited(&file.defaults, &mut p);
    let protection = protection(&file.protection, &mut p);
    let warming = warming(&file.warming, &mut p);
    let clients = clients(&file.clients, &mut p);
    let classes: Vec<&str> = file
        .protection
        .rate_limit
        .classes
        .keys()
        .map(String::as_str)
        .collect();
    let access = access(&file.access, &mut p);
    let routes = routes(
        &file.routes,
        &inherited,
        &classes,
        access.as_ref().map(|a| (a, &file.access)),
        &mut p,
    );
    if let Some(u) = &upstream {
        partial_keys_need_wsgi(file, u.url_form, &mut p);
    }
    let admin = admin(&file.admin, &mut p);
    let invalidation = invalidation(&file.invalidation, &routes, &mut p);
    let cluster = cluster(&file.cluster, &mut p);
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
        clients,
        access,
        tls,
        cluster,
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
            Some(clients),
            Some(access),
            Some(tls),
            Some(cluster),
        ) if p.list.is_empty() => Ok(Config {
            listen,
            admin_listen,
            tls,
            h2c: file.h2c,
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
            clients,
            access,
            cluster,
        }),
        _ => {
            debug_assert!(!p.list.is_empty(), "a part failed without saying why");
            Err(p.list)
        }
    }
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

/// Checks that `name`, the value of the key `path`, is an environment variable name (letters,
/// digits and `_`, not starting with a digit); `example` is the default to suggest. True if it is.
fn env_name(name: &str, path: &str, example: &str, p: &mut Problems) -> bool {
    let valid = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        let msg = format!(
            "{name:?} is not an environment variable name; use letters, digits and _, e.g. \
             {key}: {example}",
            key = last_key(path)
        );
        p.at(path, None, msg);
    }
    valid
}

fn last_key(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}
