//! Which route a request takes: the first route in the file whose methods and path match,
//! found for reads with one automaton instead of trying the routes one at a time.
//!
//! Trying 51 routes in order (the shipped table) ran up to a dozen regular expressions before
//! reaching a common exact path, about 5 % of a cache hit's instructions. The routes a GET or
//! a HEAD may take compile into one `RegexSet`; it reports every route whose path matches, and
//! the lowest index is the first in file order, so the order semantics are unchanged. Other
//! methods (writes, which the ERP takes milliseconds to answer) try the routes in order: a set
//! each cost about a MiB of compiled automata.
//!
//! Matching is on the decoded canonical path (`canonical`), the path Werkzeug routes on, so a
//! route applies however the client spelled the URL.

use std::sync::Arc;

use http::Method;
use regex::RegexSet;

use super::model::{PathMatch, Route};
use crate::canonical;

/// Methods with a set; any other method tries the routes in order.
const INDEXED: [Method; 2] = [Method::GET, Method::HEAD];

/// The route table's automata, built once per configuration.
#[derive(Debug, Clone, Default)]
pub struct RouteIndex {
    /// One per method of `INDEXED`, in that order: the set over the paths of the routes the
    /// method may take, and those routes' indices (set pattern `i` is route `routes[i]`).
    /// Methods that may take the same routes share one set. Empty if a set could not be built:
    /// every lookup then tries the routes in order.
    by_method: Vec<Arc<(RegexSet, Vec<usize>)>>,
}

impl RouteIndex {
    /// The index of `routes`.
    pub fn new(routes: &[Route]) -> RouteIndex {
        let mut built: Vec<Arc<(RegexSet, Vec<usize>)>> = Vec::new();
        for method in &INDEXED {
            let ids: Vec<usize> = (0..routes.len())
                .filter(|&i| {
                    routes[i]
                        .methods
                        .as_ref()
                        .is_none_or(|ms| ms.contains(method))
                })
                .collect();
            if let Some(same) = built.iter().find(|b| b.1 == ids) {
                let same = Arc::clone(same);
                built.push(same);
                continue;
            }
            match RegexSet::new(ids.iter().map(|&i| expression(&routes[i].path))) {
                Ok(set) => built.push(Arc::new((set, ids))),
                Err(_) => return RouteIndex::default(),
            }
        }
        RouteIndex { by_method: built }
    }

    /// The index in `routes` (the table this index was built from) of the first route that
    /// matches `method` and `path`. `path` is canonical (`canonical::target`); routes match
    /// the path the ERP's router sees, with its escapes decoded.
    pub fn find(&self, routes: &[Route], method: &Method, path: &str) -> Option<usize> {
        let path = &*canonical::decode(path);
        let indexed = INDEXED
            .iter()
            .position(|m| m == method)
            .and_then(|k| self.by_method.get(k))
            .map(|b| (&b.0, &b.1));
        match indexed {
            Some((set, ids)) => set
                .matches(path)
                .iter()
                .next()
                .and_then(|i| ids.get(i).copied()),
            None => routes.iter().position(|r| r.matches(method, path)),
        }
    }
}

/// The expression a path rule becomes; patterns are already anchored at both ends.
fn expression(path: &PathMatch) -> String {
    match path {
        PathMatch::Exact(p) => format!("^{}$", regex::escape(p)),
        PathMatch::Prefix(p) => format!("^{}", regex::escape(p)),
        PathMatch::Pattern(re) => re.as_str().to_owned(),
    }
}
