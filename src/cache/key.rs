//! Cache keys: which parts of a request select a stored response.
//!
//! The key is the method class (GET and HEAD share entries, so a HEAD is served from a cached
//! GET), the path, and the query parameters the route names, sorted so that parameter order
//! never splits an entry. The request sent to the ERP is never rewritten; only the key is
//! normalised. Content negotiation (the stored encodings) is handled as a variance on top of
//! this key, see `encoding`.

use pingora_cache::CacheKey;

use crate::config::QueryKey;

/// The primary key for `path` + `query` under a route's query rule.
pub fn primary_key(path: &str, query: Option<&str>, rule: &QueryKey) -> String {
    let mut key = String::with_capacity(4 + path.len() + query.map_or(0, str::len) + 1);
    key.push_str("GET ");
    key.push_str(path);
    let mut params: Vec<&str> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| keeps(rule, param_name(p)))
        .collect();
    if !params.is_empty() {
        // Sort by name first, then by the whole pair, so repeated names keep a stable order.
        params.sort_by(|a, b| param_name(a).cmp(param_name(b)).then(a.cmp(b)));
        key.push('?');
        for (i, p) in params.iter().enumerate() {
            if i > 0 {
                key.push('&');
            }
            key.push_str(p);
        }
    }
    key
}

/// The pingora cache key. The 128-bit hash is computed once here, instead of on every
/// `primary_bin()` call pingora makes during a lookup.
pub fn cache_key(path: &str, query: Option<&str>, rule: &QueryKey) -> CacheKey {
    let primary = primary_key(path, query, rule);
    let hash = pingora_cache::key::hash_key(&primary);
    let mut key = CacheKey::new(primary, "");
    key.set_primary_bin_override(hash);
    key
}

fn param_name(pair: &str) -> &str {
    pair.split_once('=').map_or(pair, |(name, _)| name)
}

fn keeps(rule: &QueryKey, name: &str) -> bool {
    match rule {
        QueryKey::All => true,
        QueryKey::Only(names) => names.iter().any(|n| n == name),
        QueryKey::Ignore(names) => !names.iter().any(|n| n == name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_cache::key::CacheHashKey;

    #[test]
    fn parameter_order_does_not_matter() {
        let a = primary_key("/api/x", Some("b=2&a=1"), &QueryKey::All);
        let b = primary_key("/api/x", Some("a=1&b=2"), &QueryKey::All);
        assert_eq!(a, b);
        assert_eq!(a, "GET /api/x?a=1&b=2");
    }

    #[test]
    fn empty_query_and_no_query_are_the_same_entry() {
        assert_eq!(
            primary_key("/p", Some(""), &QueryKey::All),
            primary_key("/p", None, &QueryKey::All)
        );
        assert_eq!(primary_key("/p", Some("&&"), &QueryKey::All), "GET /p");
    }

    #[test]
    fn only_list_keeps_named_parameters() {
        let rule = QueryKey::Only(vec!["view".into()]);
        assert_eq!(
            primary_key("/p", Some("_=123&view=full"), &rule),
            "GET /p?view=full"
        );
        assert_eq!(primary_key("/p", Some("_=999"), &rule), "GET /p");
    }

    #[test]
    fn ignore_list_drops_named_parameters() {
        let rule = QueryKey::Ignore(vec!["_".into(), "ts".into()]);
        assert_eq!(primary_key("/p", Some("ts=1&a=2&_=3"), &rule), "GET /p?a=2");
    }

    #[test]
    fn repeated_names_keep_a_stable_order() {
        let a = primary_key("/p", Some("x=2&x=1"), &QueryKey::All);
        let b = primary_key("/p", Some("x=1&x=2"), &QueryKey::All);
        assert_eq!(a, b);
    }

    #[test]
    fn distinct_values_are_distinct_keys() {
        let a = cache_key("/p", Some("a=1"), &QueryKey::All);
        let b = cache_key("/p", Some("a=2"), &QueryKey::All);
        assert_ne!(a.combined_bin(), b.combined_bin());
        // the override must equal what pingora would have computed itself
        let plain = CacheKey::new(primary_key("/p", Some("a=1"), &QueryKey::All), "");
        assert_eq!(a.combined_bin(), plain.combined_bin());
    }
}
