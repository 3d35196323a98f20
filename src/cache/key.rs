//! Cache keys: which parts of a request select a stored response.
//!
//! The key is the method class (GET and HEAD share entries, so a HEAD is served from a cached
//! GET), the path, and the query parameters the route names, built from the canonical target
//! (`canonical`: the form the ERP is sent, one spelling per URL). Parameters are ordered by
//! name so that the order of distinct names never splits an entry; repeated names keep the
//! client's order (the ERP reads the first, so `?x=1&x=2` and `?x=2&x=1` differ). `only` and
//! `ignore` compare decoded names, as the ERP reads them. Content negotiation (the stored
//! encodings) is handled as a variance on top of this key, see `encoding`.

use pingora_cache::CacheKey;

use crate::canonical;
use crate::config::QueryKey;

/// The primary key for the canonical `path` + `query` (`canonical::Target`) under a route's
/// query rule.
pub fn primary_key(path: &str, query: Option<&str>, rule: &QueryKey) -> String {
    let mut key = String::with_capacity(4 + path.len() + query.map_or(0, str::len) + 1);
    key.push_str("GET ");
    key.push_str(path);
    let mut params: Vec<(&str, &str)> = canonical::params(query.unwrap_or(""))
        .filter(|(name, _)| keeps(rule, name))
        .collect();
    if !params.is_empty() {
        // A stable sort: repeated names stay in the client's order.
        params.sort_by_key(|(name, _)| *name);
        key.push('?');
        for (i, (_, p)) in params.iter().enumerate() {
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

/// Whether the parameter named `name` (canonical, still encoded) is part of the key.
fn keeps(rule: &QueryKey, name: &str) -> bool {
    let name = &*canonical::decode(name);
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
    fn repeated_names_keep_their_order() {
        // The ERP reads the first `x`: these are two different answers.
        let a = primary_key("/p", Some("x=2&x=1"), &QueryKey::All);
        let b = primary_key("/p", Some("x=1&x=2"), &QueryKey::All);
        assert_ne!(a, b);
        assert_eq!(
            primary_key("/p", Some("x=2&b=0&x=1&a=9"), &QueryKey::All),
            "GET /p?a=9&b=0&x=2&x=1"
        );
    }

    #[test]
    fn only_and_ignore_compare_decoded_names() {
        // `filter[status]` is `filter%5Bstatus%5D` in a canonical query.
        let only = QueryKey::Only(vec!["filter[status]".into()]);
        assert_eq!(
            primary_key("/p", Some("filter%5Bstatus%5D=open&_=1"), &only),
            "GET /p?filter%5Bstatus%5D=open"
        );
        let ignore = QueryKey::Ignore(vec!["a b".into()]);
        assert_eq!(
            primary_key("/p", Some("a%20b=1&c=2"), &ignore),
            "GET /p?c=2"
        );
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
