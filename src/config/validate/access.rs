//! The `access:` section: named policies (address lists), the default policy, and a route's
//! reference to one (`routes[].access`).

use std::sync::Arc;

use super::super::file::*;
use super::super::model::*;
use super::Problems;
use super::admin::networks;
use super::routes::valid_name;

/// The `access:` section. The default must name a policy.
pub(super) fn access(f: &FileAccess, p: &mut Problems) -> Option<AccessSettings> {
    let mut ok = true;
    let mut policies = Vec::new();
    for (name, policy) in &f.policies {
        let base = format!("access.policies.{name}");
        if !valid_name(name, &base, p) {
            ok = false;
            continue;
        }
        match access_policy(name, policy, &base, p) {
            Some(built) => policies.push(Arc::new(built)),
            None => ok = false,
        }
    }
    let default = match &f.default {
        None => None,
        Some(name) => {
            let found = find(&policies, name);
            if found.is_none() && ok {
                p.at("access.default", None, unknown_policy(name, &f.policies));
                ok = false;
            }
            found
        }
    };
    ok.then_some(AccessSettings { policies, default })
}

fn access_policy(
    name: &str,
    f: &FileAccessPolicy,
    base: &str,
    p: &mut Problems,
) -> Option<AccessPolicy> {
    let allow = networks(&f.allow, &format!("{base}.allow"), p);
    let deny = networks(&f.deny, &format!("{base}.deny"), p);
    Some(AccessPolicy {
        name: name.to_owned(),
        allow: allow?,
        deny: deny?,
    })
}

/// `routes[i].access`: the policy it names. `Err(())` when it names none (reported).
pub(super) fn route_access(
    named: Option<&str>,
    access: &AccessSettings,
    file: &FileAccess,
    base: &str,
    route: Option<&str>,
    p: &mut Problems,
) -> Result<Option<Arc<AccessPolicy>>, ()> {
    let Some(name) = named else {
        return Ok(None);
    };
    match find(&access.policies, name) {
        Some(policy) => Ok(Some(policy)),
        None => {
            p.at(
                &format!("{base}.access"),
                route,
                unknown_policy(name, &file.policies),
            );
            Err(())
        }
    }
}

fn find(policies: &[Arc<AccessPolicy>], name: &str) -> Option<Arc<AccessPolicy>> {
    policies.iter().find(|p| p.name == name).cloned()
}

fn unknown_policy<V>(name: &str, policies: &std::collections::BTreeMap<String, V>) -> String {
    if policies.is_empty() {
        format!(
            "{name:?} is not a policy, and access.policies defines none; add access.policies.\
             {name}: {{ allow: [\"127.0.0.0/8\"] }} (or remove the reference)"
        )
    } else {
        let names: Vec<&str> = policies.keys().map(String::as_str).collect();
        format!(
            "{name:?} is not in access.policies; use one of {}",
            names.join(", ")
        )
    }
}
