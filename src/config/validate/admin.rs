//! The `admin:` section: the admin token, the variable it may come from (checked as the file's
//! token is), whether the read endpoints need it, and the clients allowed to send `PURGE`.

use std::net::IpAddr;

use super::super::defaults::*;
use super::super::file::*;
use super::super::model::*;
use super::{Problems, env_name};

/// Shortest admin token accepted: anything shorter can be guessed.
const MIN_ADMIN_TOKEN_CHARS: usize = 16;

/// The `admin:` section.
pub(super) fn admin(a: &FileAdmin, p: &mut Problems) -> Option<AdminSettings> {
    let mut ok = true;
    if let Some(token) = &a.token {
        let fix = "or remove it and set the environment variable named by token_env instead";
        if let Some(msg) = token_problem("token", token, fix) {
            p.at("admin.token", None, msg);
            ok = false;
        }
    }
    let env = &a.token_env;
    let valid_env = env_name(env, "admin.token_env", DEFAULT_ADMIN_TOKEN_ENV, p);
    if !valid_env {
        ok = false;
    }
    // The file's token wins; otherwise the variable's is the one in force (as
    // `AdminSettings::resolve_token` reads it), and it gets the same checks.
    let env_token = (valid_env && a.token.is_none())
        .then(|| std::env::var(env).ok())
        .flatten()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    if let Some(token) = &env_token {
        let subject = format!("the token in the environment variable {env}");
        if let Some(msg) = token_problem(&subject, token, &format!("and put them in {env}")) {
            p.at("admin.token_env", None, msg);
            ok = false;
        }
    }
    if a.protect_reads && a.token.is_none() && env_token.is_none() {
        let msg = format!(
            "protect_reads needs an admin token, and none is set; set the environment variable \
             {env} (token_env) to at least {MIN_ADMIN_TOKEN_CHARS} random characters, or turn \
             protect_reads off"
        );
        p.at("admin.protect_reads", None, msg);
        ok = false;
    }
    let purge_from = networks(&a.purge_from, "admin.purge_from", p);
    (ok && purge_from.is_some()).then(|| AdminSettings {
        token: a.token.clone(),
        token_env: env.clone(),
        purge_from: purge_from.unwrap_or_default(),
        protect_reads: a.protect_reads,
    })
}

/// What is wrong with `token` as an admin token, if anything. `subject` names where it came
/// from; `fix` ends the advice on length.
fn token_problem(subject: &str, token: &str, fix: &str) -> Option<String> {
    if token.chars().count() < MIN_ADMIN_TOKEN_CHARS {
        Some(format!(
            "{subject} is {} characters long; use at least {MIN_ADMIN_TOKEN_CHARS} random \
             characters (e.g. from `openssl rand -hex 24`), {fix}",
            token.chars().count()
        ))
    } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
        Some(format!(
            "{subject} contains spaces or non-ASCII characters, which an Authorization header \
             cannot carry; use letters, digits and punctuation only"
        ))
    } else {
        None
    }
}

/// `IP` or `IP/prefix` entries.
pub(super) fn networks(list: &[String], path: &str, p: &mut Problems) -> Option<Vec<ipnet::IpNet>> {
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
