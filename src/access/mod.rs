//! Access control per route: who may use a route, decided before anything else looks at the
//! request. The proxy asks here in `request_filter`, after the route is matched and before the
//! cache (the direct hit path and pingora's lookup alike), so a stored response never reaches
//! a client the route refuses, and a refused request never reaches the ERP.
//!
//! A route's policy is its own `access`, else `access.default` (which also covers paths no
//! route matches). A policy checks, in order:
//! * the client's address (`limits::client::client_ip`, so `trusted_proxies` decide who the
//!   client is, as for rate limits): `deny` wins, then a non-empty `allow` must contain it;
//!   refused with `403`;
//! * then its login, if the policy has one: HTTP Basic against an htpasswd file (`basic`),
//!   refused with `401` and a `Basic` challenge; or an external service (`forward`), whose
//!   refusal is relayed and whose failure is a `503`. What the login consumed
//!   (`Authorization`, and `Cookie` for a service) is removed before the cache and the ERP see
//!   the request, unless `pass_credentials`, so every client that passes shares the route's
//!   cached responses.
//!
//! Refusals say nothing about the rule that refused (no "your address is not allowed"): a
//! prober learns only that it may not pass, and an unknown user the same as a wrong password.

pub mod basic;
pub mod forward;

use std::net::IpAddr;

use crate::config::AccessPolicy;

/// The kinds of rule a policy applies, the `rule` label of `knitcache_access_total`.
pub const RULES: [&str; 3] = [RULE_ADDRESS, RULE_BASIC, RULE_FORWARD];
/// The address allow/deny lists.
pub const RULE_ADDRESS: &str = "address";
/// HTTP Basic against an htpasswd file.
pub const RULE_BASIC: &str = "basic";
/// Forward authentication to an external service.
pub const RULE_FORWARD: &str = "forward";

/// Whether `client` may pass `policy`'s address lists: not in `deny`, and in `allow` unless
/// `allow` is empty (every address).
pub fn address_allowed(policy: &AccessPolicy, client: IpAddr) -> bool {
    let client = client.to_canonical();
    if policy.deny.iter().any(|net| net.contains(&client)) {
        return false;
    }
    policy.allow.is_empty() || policy.allow.iter().any(|net| net.contains(&client))
}

/// Whether `policy` checks addresses at all (otherwise no address decision is counted).
pub fn checks_address(policy: &AccessPolicy) -> bool {
    !policy.allow.is_empty() || !policy.deny.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> AccessPolicy {
        let nets = |l: &[&str]| l.iter().map(|n| n.parse().expect("net")).collect();
        AccessPolicy {
            name: "p".into(),
            allow: nets(allow),
            deny: nets(deny),
            login: None,
            pass_credentials: false,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn an_empty_allow_list_admits_everyone_not_denied() {
        let p = policy(&[], &["10.0.0.0/8"]);
        assert!(address_allowed(&p, ip("192.0.2.1")));
        assert!(!address_allowed(&p, ip("10.1.2.3")));
        assert!(checks_address(&p));
        assert!(!checks_address(&policy(&[], &[])));
        assert!(address_allowed(&policy(&[], &[]), ip("192.0.2.1")));
    }

    #[test]
    fn allow_admits_only_its_networks_and_deny_wins_inside_them() {
        let p = policy(&["127.0.0.0/8", "10.0.0.0/8"], &["10.9.0.0/16"]);
        assert!(address_allowed(&p, ip("127.0.0.1")));
        assert!(address_allowed(&p, ip("10.1.2.3")));
        assert!(!address_allowed(&p, ip("10.9.1.1")), "deny wins over allow");
        assert!(!address_allowed(&p, ip("192.0.2.1")));
        assert!(checks_address(&p));
    }

    #[test]
    fn ipv4_mapped_ipv6_clients_are_judged_as_ipv4() {
        let p = policy(&["127.0.0.0/8"], &[]);
        assert!(address_allowed(&p, ip("::ffff:127.0.0.1")));
        let p = policy(&[], &["127.0.0.2/32"]);
        assert!(!address_allowed(&p, ip("::ffff:127.0.0.2")));
    }
}
