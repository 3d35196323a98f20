//! The `access:` section: named policies (address lists), the default policy, and a route's
//! reference to one (`routes[].access`).

use std::sync::Arc;

use super::super::file::*;
use super::super::model::*;
use super::admin::networks;
use super::routes::valid_name;
use super::{Problems, positive_ms};

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
    let login = match (&f.basic, &f.forward_auth) {
        (None, None) => Some(None),
        (Some(b), None) => basic(b, &format!("{base}.basic"), p).map(Some),
        (None, Some(fa)) => forward_auth(fa, &format!("{base}.forward_auth"), p).map(Some),
        (Some(_), Some(_)) => {
            let msg = "sets both basic and forward_auth; a policy has one login, keep one (an \
                       SSO behind forward_auth can offer its own password login)";
            p.at(&format!("{base}.forward_auth"), None, msg.to_owned());
            None
        }
    };
    Some(AccessPolicy {
        name: name.to_owned(),
        allow: allow?,
        deny: deny?,
        login: login?,
        pass_credentials: f.pass_credentials,
    })
}

/// Longest a successful login check may be remembered: a removed user or a changed password
/// must not keep working for long without a reload.
const MAX_LOGIN_CACHE_SECS: u64 = 3600;

/// `basic:`: the htpasswd file is read now, so `check` and a reload report a bad one.
fn basic(f: &FileBasic, base: &str, p: &mut Problems) -> Option<Login> {
    let realm_ok = realm_ok(&f.realm, &format!("{base}.realm"), p);
    let cache_ok = cache_secs_ok(f.cache_secs, &format!("{base}.cache_secs"), p);
    let Some(path) = &f.htpasswd else {
        let msg = "names no htpasswd file; add htpasswd: /etc/knitcache/htpasswd (make it with \
                   `htpasswd -B -c /etc/knitcache/htpasswd NAME`)";
        p.at(base, None, msg.to_owned());
        return None;
    };
    let remember = std::time::Duration::from_secs(f.cache_secs);
    let users = match crate::access::basic::Htpasswd::load(path, remember) {
        Ok(users) => users,
        Err(msg) => {
            p.at(&format!("{base}.htpasswd"), None, msg);
            return None;
        }
    };
    // The file is read whatever else is wrong, so that its problems are reported too.
    let (true, true) = (realm_ok, cache_ok) else {
        return None;
    };
    Some(Login::Basic {
        realm: f.realm.clone(),
        users: Arc::new(users),
    })
}

/// `forward_auth:`.
fn forward_auth(f: &FileForwardAuth, base: &str, p: &mut Problems) -> Option<Login> {
    let mut ok = cache_secs_ok(f.cache_secs, &format!("{base}.cache_secs"), p);
    let timeout = positive_ms(f.timeout_ms, &format!("{base}.timeout_ms"), p);
    if f.max_body_bytes == 0 || f.max_body_bytes > 1 << 20 {
        let msg = format!(
            "max_body_bytes = {} must be from 1 to 1048576 (a login redirect or error page); \
             write e.g. max_body_bytes: 65536",
            f.max_body_bytes
        );
        p.at(&format!("{base}.max_body_bytes"), None, msg);
        ok = false;
    }
    let mut copy_headers = Vec::new();
    for (i, name) in f.copy_headers.iter().enumerate() {
        let parsed = http::HeaderName::from_bytes(name.as_bytes())
            .ok()
            .filter(|n| {
                ![
                    http::header::HOST,
                    http::header::CONNECTION,
                    http::header::CONTENT_LENGTH,
                    http::header::TRANSFER_ENCODING,
                ]
                .contains(n)
            });
        match parsed {
            Some(n) => copy_headers.push(n),
            None => {
                let msg = format!(
                    "{name:?} is not a field the ERP's request may take from the auth service; \
                     write a header name, e.g. Remote-User (not Host or a framing field)"
                );
                p.at(&format!("{base}.copy_headers[{i}]"), None, msg);
                ok = false;
            }
        }
    }
    let Some(text) = &f.url else {
        let msg = "names no service; add url: http://127.0.0.1:4180/oauth2/auth (the SSO's \
                   forward-auth endpoint)";
        p.at(base, None, msg.to_owned());
        return None;
    };
    let url_problem =
        |why: &str| format!("{text:?} {why}; write e.g. url: http://127.0.0.1:4180/oauth2/auth");
    let url = match text.parse::<http::Uri>() {
        Ok(url) => url,
        Err(_) => {
            p.at(&format!("{base}.url"), None, url_problem("is not a URL"));
            return None;
        }
    };
    let (Some(timeout), true) = (timeout, ok) else {
        return None;
    };
    let settings = crate::access::forward::Settings {
        url,
        copy_headers,
        timeout,
        max_body_bytes: usize::try_from(f.max_body_bytes).unwrap_or(usize::MAX),
        remember_for: std::time::Duration::from_secs(f.cache_secs),
    };
    match crate::access::forward::ForwardAuth::new(settings) {
        Ok(service) => Some(Login::Forward(Arc::new(service))),
        Err(why) => {
            p.at(&format!("{base}.url"), None, url_problem(&why));
            None
        }
    }
}

/// A realm goes into `WWW-Authenticate: Basic realm="…"` as a quoted string.
fn realm_ok(realm: &str, path: &str, p: &mut Problems) -> bool {
    let ok = !realm.is_empty()
        && realm
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\');
    if !ok {
        let msg = format!(
            "realm {realm:?} must be printable ASCII without quotes or backslashes (it is \
             quoted in WWW-Authenticate); write e.g. realm: \"Beverly Knits ERP\""
        );
        p.at(path, None, msg);
    }
    ok
}

fn cache_secs_ok(secs: u64, path: &str, p: &mut Problems) -> bool {
    if secs > MAX_LOGIN_CACHE_SECS {
        let msg = format!(
            "cache_secs = {secs} would honour a revoked login for over an hour; write at most \
             {MAX_LOGIN_CACHE_SECS}, e.g. cache_secs: 60"
        );
        p.at(path, None, msg);
        return false;
    }
    true
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
