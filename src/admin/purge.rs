//! `POST /purge`: by exact URL, by path prefix, by route name or by tag.
//!
//! An exact URL purge removes every stored variant of the URL's cache key at once (the primary
//! slot and one slot per stored coding, keyed as the proxy keys them: from the URL's canonical
//! form, so any spelling of it hits). Prefix, route and tag purges
//! cannot enumerate keys (foyer has no iteration), so they record a ban (`cache::bans`) that the
//! proxy checks on every hit. Who may purge: the holder of the bearer token when one is
//! configured, else loopback clients only.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::cache::bans::{BanMatch, Bans};
use crate::cache::key;
use crate::cache::storage::HybridStorage;
use crate::canonical;
use crate::config::Config;

/// The purge request body: exactly one of the four keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// A URL as clients request it: `/path?query` (an absolute `http://host/path` works too).
    pub url: Option<String>,
    /// Every stored response whose path starts with this.
    pub prefix: Option<String>,
    /// Every stored response of the route with this name.
    pub route: Option<String>,
    /// Every stored response carrying this tag (route `tags`, or the ERP's tag header).
    pub tag: Option<String>,
}

/// What a purge did.
#[derive(Debug, Serialize)]
pub struct PurgeOutcome {
    /// `url`, `prefix`, `route` or `tag`.
    pub purged: &'static str,
    /// The URL, prefix, route name or tag purged.
    pub target: String,
    /// For a URL: the route whose policy keyed it, and the cache key (credentials masked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// For a URL: the cache key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// For a URL: stored variants removed (0 if none was stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<usize>,
    /// For a prefix, route or tag: when the ban took effect (ms since the unix epoch); responses
    /// stored before it are refetched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ban_at_unix_ms: Option<u64>,
    /// For a prefix, route or tag: whether the ban was saved and so survives a restart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persisted: Option<bool>,
}

/// Why a purge was refused: the status and a plain reason.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 401: a token is configured and the request did not carry it.
    Unauthorized(&'static str),
    /// 403: no token is configured and the client is not on loopback.
    Forbidden(&'static str),
    /// 400: the body is wrong.
    BadRequest(String),
    /// 404: the named route does not exist.
    NotFound(String),
    /// 500: the cache failed.
    Internal(String),
}

impl Refusal {
    /// The HTTP status and the plain reason.
    pub fn status_and_reason(&self) -> (u16, &str) {
        match self {
            Refusal::Unauthorized(why) => (401, why),
            Refusal::Forbidden(why) => (403, why),
            Refusal::BadRequest(why) => (400, why),
            Refusal::NotFound(why) => (404, why),
            Refusal::Internal(why) => (500, why),
        }
    }
}

/// Checks who is asking. `token` is the configured token, `authorization` the request's header
/// value, `client` the peer's address.
pub fn authorize(
    token: Option<&str>,
    authorization: Option<&[u8]>,
    client: Option<IpAddr>,
) -> Result<(), Refusal> {
    match token {
        Some(expected) => {
            let given = authorization
                .and_then(|v| {
                    v.strip_prefix(b"Bearer ")
                        .or_else(|| v.strip_prefix(b"bearer "))
                })
                .ok_or(Refusal::Unauthorized(
                    "purge needs Authorization: Bearer <admin token>",
                ))?;
            if constant_time_eq(given, expected.as_bytes()) {
                Ok(())
            } else {
                Err(Refusal::Unauthorized("wrong admin token"))
            }
        }
        None if client.is_some_and(|ip| ip.is_loopback()) => Ok(()),
        None => Err(Refusal::Forbidden(
            "purge is open to loopback clients only while no admin token is configured \
             (set admin.token_env's variable, KNITCACHE_ADMIN_TOKEN by default)",
        )),
    }
}

/// Compares without stopping at the first difference, so timing does not reveal a prefix.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses the JSON body.
pub fn parse(body: &[u8]) -> Result<PurgeRequest, Refusal> {
    let req: PurgeRequest = serde_json::from_slice(body).map_err(|e| {
        Refusal::BadRequest(format!(
            "body is not a purge request ({e}); send {{\"url\": \"/api/x?a=1\"}}, \
             {{\"prefix\": \"/api/yarn\"}}, {{\"route\": \"kpis\"}} or {{\"tag\": \"inventory\"}}"
        ))
    })?;
    let given = [&req.url, &req.prefix, &req.route, &req.tag]
        .iter()
        .filter(|v| v.is_some())
        .count();
    if given != 1 {
        return Err(Refusal::BadRequest(
            "give exactly one of url, prefix, route and tag".to_owned(),
        ));
    }
    Ok(req)
}

/// How long a URL purge waits for its removal to reach the disk tier before it answers (and a
/// replica for the removals it applied from the cluster stream, before it saves its position).
pub const WRITTEN_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Carries out a parsed purge. A URL purge answers once its removal is on disk, so a crash
/// right after the answer cannot bring the entry back.
pub async fn execute(
    req: PurgeRequest,
    config: &Config,
    storage: &HybridStorage,
    bans: &Bans,
) -> Result<PurgeOutcome, Refusal> {
    if let Some(url) = req.url {
        let outcome = purge_url(&url, config, storage, bans)?;
        if !storage.written(WRITTEN_WITHIN).await {
            tracing::error!(
                url = %outcome.target,
                "purge answered, but its removal is not on disk (the disk tier is degraded, or \
                 took over {WRITTEN_WITHIN:?}): the next start empties the disk tier rather \
                 than serve the entry again (unless its trust file could not be removed: see \
                 knitcache_cache_purges_not_on_disk_total)"
            );
        }
        return Ok(outcome);
    }
    let (kind, matcher, target) = match (req.prefix, req.route, req.tag) {
        (None, None, Some(tag)) => {
            if tag.is_empty() || tag.contains(|c: char| c.is_whitespace() || c == ',') {
                return Err(Refusal::BadRequest(format!(
                    "tag {tag:?} must be one word without spaces or commas"
                )));
            }
            ("tag", BanMatch::Tag(tag.clone()), tag)
        }
        (Some(prefix), _, _) => {
            // Bans compare with the canonical paths requests are stored under.
            let canonical = match canonical::target(prefix.as_bytes(), config.upstream.url_form) {
                Ok(t) if t.query().is_none() && !prefix.contains('?') => t.path().to_owned(),
                _ => {
                    return Err(Refusal::BadRequest(format!(
                        "prefix {prefix:?} must be a path starting with / and without a query, \
                         without dot segments or malformed escapes"
                    )));
                }
            };
            ("prefix", BanMatch::Prefix(canonical.clone()), canonical)
        }
        (None, Some(route), _) => {
            match config.routes.iter().find(|r| r.name == route) {
                None => return Err(Refusal::NotFound(format!("no route named {route:?}"))),
                Some(r) if r.cache_policy().is_none() => {
                    return Err(Refusal::BadRequest(format!(
                        "route {route:?} passes through; nothing of it is cached"
                    )));
                }
                Some(_) => {}
            }
            ("route", BanMatch::Route(route.clone()), route)
        }
        (None, None, None) => {
            return Err(Refusal::BadRequest(
                "give exactly one of url, prefix, route and tag".to_owned(),
            ));
        }
    };
    let (at, persisted) = match bans.add(matcher.clone()) {
        Ok(ban) => (ban.at_unix_ms, true),
        Err(e) => {
            tracing::error!(error = %e, "purge ban in force but not saved; it ends at restart");
            let at = bans
                .list()
                .iter()
                .find(|b| b.matcher == matcher)
                .map_or(0, |b| b.at_unix_ms);
            (at, false)
        }
    };
    tracing::info!(kind, target = %target, "purge ban recorded");
    Ok(PurgeOutcome {
        purged: kind,
        target,
        route: None,
        key: None,
        removed: None,
        ban_at_unix_ms: Some(at),
        persisted: Some(persisted),
    })
}

fn purge_url(
    url: &str,
    config: &Config,
    storage: &HybridStorage,
    bans: &Bans,
) -> Result<PurgeOutcome, Refusal> {
    let target = strip_origin(url);
    if !target.starts_with('/') {
        return Err(Refusal::BadRequest(format!(
            "url {url:?} must be a path (/api/x?a=1) or an absolute http URL"
        )));
    }
    // Keyed as the proxy keys requests: a purge hits the entry however the URL is spelled.
    let target = canonical::target(target.as_bytes(), config.upstream.url_form)
        .map_err(|why| Refusal::BadRequest(format!("url {url:?} cannot be cached: {why}")))?;
    let (path, query) = (target.path(), target.query());
    let Some((_, route)) = config.route_for(&http::Method::GET, path) else {
        return Err(Refusal::BadRequest(format!(
            "{path} matches no route, so it is never cached"
        )));
    };
    let Some(policy) = route.cache_policy() else {
        return Err(Refusal::BadRequest(format!(
            "{path} belongs to route {:?}, which passes through; nothing is cached",
            route.name
        )));
    };
    let removed = crate::invalidation::remove_url(&target, policy, config, storage, bans.outbox())
        .map_err(|e| Refusal::Internal(format!("cache purge failed: {e}")))?;
    let shown =
        crate::access_log::mask_key(&key::primary_key(path, query, &policy.query)).into_owned();
    tracing::info!(route = %route.name, removed, "purge by url");
    Ok(PurgeOutcome {
        purged: "url",
        target: crate::access_log::mask_key(target.as_str()).into_owned(),
        route: Some(route.name.clone()),
        key: Some(shown),
        removed: Some(removed),
        ban_at_unix_ms: None,
        persisted: None,
    })
}

/// `http://host:5006/a?b` -> `/a?b`; anything else unchanged.
fn strip_origin(url: &str) -> &str {
    for scheme in ["http://", "https://"] {
        if let Some(rest) = url.strip_prefix(scheme) {
            return rest.find('/').map_or("/", |i| &rest[i..]);
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOPBACK: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    const REMOTE: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7)));

    #[test]
    fn token_rules() {
        let t = Some("0123456789abcdef");
        assert!(matches!(
            authorize(t, None, LOOPBACK),
            Err(Refusal::Unauthorized(_))
        ));
        assert_eq!(
            authorize(t, Some(b"Bearer nope"), LOOPBACK),
            Err(Refusal::Unauthorized("wrong admin token"))
        );
        assert_eq!(
            authorize(t, Some(b"Bearer 0123456789abcdef"), REMOTE),
            Ok(())
        );
        assert_eq!(authorize(None, None, LOOPBACK), Ok(()));
        assert!(matches!(
            authorize(None, None, REMOTE),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            authorize(None, None, None),
            Err(Refusal::Forbidden(_))
        ));
    }

    #[test]
    fn bodies_name_exactly_one_target() {
        assert_eq!(
            parse(br#"{"url": "/a"}"#).expect("ok").url.as_deref(),
            Some("/a")
        );
        assert!(matches!(parse(br#"{}"#), Err(Refusal::BadRequest(_))));
        assert!(matches!(
            parse(br#"{"url": "/a", "route": "r"}"#),
            Err(Refusal::BadRequest(_))
        ));
        assert!(matches!(
            parse(br#"{"uri": "/a"}"#),
            Err(Refusal::BadRequest(_))
        ));
        assert!(matches!(parse(b"not json"), Err(Refusal::BadRequest(_))));
    }

    #[test]
    fn absolute_urls_lose_their_origin() {
        assert_eq!(strip_origin("http://erp:5006/api/x?a=1"), "/api/x?a=1");
        assert_eq!(strip_origin("https://erp"), "/");
        assert_eq!(strip_origin("/api/x"), "/api/x");
    }
}
