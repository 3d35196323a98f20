//! Keeping the cache right: write-triggered invalidation, tags, and `PURGE` on the proxy port.
//!
//! * When a request matching an `invalidation` rule succeeds (2xx), the rule's routes,
//!   prefixes, tags (or everything) are banned: every stored response made before the ban is
//!   refetched on its next request. With `rewarm`, the hot keys it covers are refreshed at once.
//! * A stored response's tags are its route's `tags` plus the words of the ERP's tag header
//!   (`cache.tag_header`, `Surrogate-Key` by default), read from the stored header on a hit.
//! * `PURGE /path?query` on the proxy port, as Varnish users expect, purges that URL's stored
//!   variants, from the clients in `admin.purge_from` only.
//! * Every URL here is taken in its canonical form (`canonical`), as requests are stored: a
//!   `Location: /api/orders/%37` invalidates what `/api/orders/7` stored.
//! * Whatever the rules say, a non-error response to an unsafe method (POST, PUT, PATCH,
//!   DELETE, ...) removes the stored responses of its target URI and of the same-origin
//!   `Location` and `Content-Location` it names (RFC 9111 §4.4): the write changed them.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, Method};
use pingora_error::Result;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use crate::admin::purge::{self, PurgeRequest};
use crate::cache::HybridStorage;
use crate::cache::bans::{BanMatch, Bans};
use crate::cache::encoding::{self, Coding};
use crate::cache::key;
use crate::canonical;
use crate::cluster::Outbox;
use crate::cluster::event::Invalidation;
use crate::config::{CachePolicy, Config, PurgeSet};
use crate::warming::Warming;

/// The `PURGE` method.
pub fn is_purge(method: &Method) -> bool {
    method.as_str() == "PURGE"
}

/// Whether a stored response carries `tag`: one of its route's tags, or a word of its tag
/// header.
pub fn has_tag(
    route_tags: &[String],
    stored: &pingora_http::HMap,
    header: Option<&HeaderName>,
    tag: &str,
) -> bool {
    route_tags.iter().any(|t| t == tag)
        || header.is_some_and(|h| {
            stored
                .get_all(h)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(|c: char| c.is_whitespace() || c == ','))
                .any(|word| word == tag)
        })
}

/// Applies the invalidation rules.
pub struct Invalidator {
    bans: Arc<Bans>,
    warming: Arc<Warming>,
    storage: &'static HybridStorage,
    fired: IntCounterVec,
    by_method: IntCounter,
}

impl Invalidator {
    /// Rules ban into `bans`; `rewarm` rules hand their purge to the warmer.
    pub fn new(
        bans: Arc<Bans>,
        warming: Arc<Warming>,
        storage: &'static HybridStorage,
        registry: &Registry,
    ) -> prometheus::Result<Self> {
        let fired = IntCounterVec::new(
            Opts::new(
                "knitcache_invalidations_total",
                "Write-triggered invalidations, by rule",
            ),
            &["rule"],
        )?;
        registry.register(Box::new(fired.clone()))?;
        let by_method = IntCounter::new(
            "knitcache_method_invalidations_total",
            "Stored URLs invalidated by a successful unsafe request (RFC 9111 section 4.4): its \
             target, Location and Content-Location",
        )?;
        registry.register(Box::new(by_method.clone()))?;
        Ok(Invalidator {
            bans,
            warming,
            storage,
            fired,
            by_method,
        })
    }

    /// RFC 9111 §4.4: a non-error (2xx, 3xx) response to an unsafe method invalidates the
    /// stored responses of the target URI, and of `Location` and `Content-Location` when they
    /// name the same origin (another host's URLs are never touched: a response must not be
    /// able to purge what it does not own). Returns how many stored entries it removed.
    pub fn after_unsafe(
        &self,
        config: &Config,
        req: &RequestHeader,
        resp: &ResponseHeader,
    ) -> usize {
        if is_safe(&req.method) || !(200..400).contains(&resp.status.as_u16()) {
            return 0;
        }
        let client_host = req
            .uri
            .authority()
            .map(http::uri::Authority::as_str)
            .or_else(|| req.headers.get(http::header::HOST)?.to_str().ok());
        // The ERP is sent its own address as `Host` (`proxy::headers`), so the absolute URLs it
        // builds name that; the client's name for this origin is as good.
        let erp = config.upstream.address.to_string();
        let hosts: Vec<&str> = client_host.into_iter().chain([erp.as_str()]).collect();
        let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let mut urls = vec![target.to_owned()];
        for field in [http::header::LOCATION, http::header::CONTENT_LOCATION] {
            let Some(value) = resp.headers.get(&field).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            if let Some(url) = same_origin(value.trim(), req.uri.path(), &hosts) {
                urls.push(url);
            }
        }
        // The ERP may spell a URL it names in any way; the stored entry is under the canonical
        // form. One it cannot have stored (no canonical form) needs no invalidation.
        let mut targets: Vec<canonical::Target> = urls
            .iter()
            .filter_map(|url| canonical::target(url.as_bytes(), config.upstream.url_form).ok())
            .collect();
        targets.dedup();
        let mut total = 0;
        for target in targets {
            let path = target.path();
            let Some(policy) = config
                .route_for(&Method::GET, path)
                .and_then(|(_, r)| r.cache_policy())
            else {
                continue;
            };
            match remove_url(&target, policy, config, self.storage, self.bans.outbox()) {
                Ok(removed) => {
                    self.by_method.inc();
                    total += removed;
                    tracing::debug!(method = %req.method, path, removed, "invalidated by method");
                }
                Err(e) => tracing::warn!(error = %e, path, "invalidation by method failed"),
            }
        }
        total
    }

    /// Waits (for at most `purge::WRITTEN_WITHIN`) until the removals made so far are on disk,
    /// where a crash cannot undo them; one that does not get there in time makes the next start
    /// distrust the disk tier instead (`HybridStorage::written`).
    pub async fn written(&self) {
        if !self.storage.written(purge::WRITTEN_WITHIN).await {
            tracing::warn!(
                "a write's invalidation is not on disk yet (the disk tier is degraded or slow): \
                 the next start empties the disk tier rather than serve the old copy"
            );
        }
    }

    /// Called once a response is complete: fires every rule the request matches if it
    /// succeeded. `path` is canonical (the request's, after `canonical::apply`); rules match it
    /// decoded, as routes do.
    pub fn after_response(&self, config: &Config, method: &Method, path: &str, status: u16) {
        if !(200..300).contains(&status) {
            return;
        }
        let decoded = canonical::decode(path);
        for rule in config
            .invalidation
            .iter()
            .filter(|r| r.methods.contains(method) && r.path.matches(&decoded))
        {
            let n = self.ban(&rule.purge);
            self.fired.with_label_values(&[&rule.name]).inc();
            tracing::info!(rule = %rule.name, method = %method, path, bans = n, "invalidation fired");
            if rule.rewarm {
                self.warming.rewarm(rule.purge.clone());
            }
        }
    }

    fn ban(&self, set: &PurgeSet) -> usize {
        let mut matchers: Vec<BanMatch> = Vec::new();
        if set.everything {
            matchers.push(BanMatch::Prefix("/".to_owned()));
        } else {
            matchers.extend(set.routes.iter().cloned().map(BanMatch::Route));
            matchers.extend(set.prefixes.iter().cloned().map(BanMatch::Prefix));
            matchers.extend(set.tags.iter().cloned().map(BanMatch::Tag));
        }
        let n = matchers.len();
        for m in matchers {
            if let Err(e) = self.bans.add(m) {
                tracing::error!(error = %e, "invalidation ban in force but not saved; it ends at restart");
            }
        }
        n
    }
}

/// Safe methods (RFC 9110 §9.2.1) change nothing at the origin; everything else may.
fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The path and query `reference` (a `Location` or `Content-Location` value) names, if it is
/// on the request's own origin: an absolute path, a relative path (resolved against
/// `base_path`), or an absolute `http(s)` URL whose authority is one of `hosts`.
fn same_origin(reference: &str, base_path: &str, hosts: &[&str]) -> Option<String> {
    // Fragments never reach the origin or a key.
    let reference = reference.split('#').next().unwrap_or_default();
    if reference.starts_with("//") {
        return None;
    }
    for scheme in ["http://", "https://"] {
        let Some(rest) = reference
            .get(..scheme.len())
            .filter(|s| s.eq_ignore_ascii_case(scheme))
            .map(|_| &reference[scheme.len()..])
        else {
            continue;
        };
        let (authority, path) = rest
            .find(['/', '?'])
            .map_or((rest, "/"), |i| rest.split_at(i));
        if !hosts.iter().any(|h| authority.eq_ignore_ascii_case(h)) {
            return None;
        }
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        return Some(path);
    }
    if reference.contains(':') && !reference.starts_with('/') {
        // Another scheme (`mailto:`, `ftp:`): not a URL of this origin. (A relative path with
        // a colon in its first segment is not a valid reference either.)
        return None;
    }
    if reference.starts_with('/') {
        return Some(reference.to_owned());
    }
    if reference.is_empty() {
        return None;
    }
    let dir = base_path.rsplit_once('/').map_or("", |(d, _)| d);
    Some(format!("{dir}/{reference}"))
}

/// Removes every stored variant of `target` as keyed under `policy`: its primary slot and
/// each coding's slot. Variants selected by `Vary` live in slots of their own; removing the
/// primary retires them too, since a variant older than its primary is never served (pingora's
/// provenance rule, which `proxy::fast_hit` follows). Returns how many slots held an entry.
///
/// Every URL purge and standards invalidation goes through here, so this is where it is
/// announced to the other replicas (`outbox`; `Outbox::off()` for one that came from them).
pub fn remove_url(
    target: &canonical::Target,
    policy: &CachePolicy,
    config: &Config,
    storage: &HybridStorage,
    outbox: &Outbox,
) -> Result<usize> {
    // Announced first: a local storage failure must not keep the other replicas stale.
    outbox.announce(Invalidation::Url(target.as_str().to_owned()));
    let cache_key = key::cache_key(target.path(), target.query(), &policy.query);
    let compression = config.cache.compression.enabled;
    let mut hashes = vec![pingora_cache::key::CacheHashKey::combined_bin(&cache_key)];
    for coding in Coding::ALL {
        if let Some(variance) = encoding::variance(coding, compression) {
            let mut variant = cache_key.clone();
            variant.set_variance_key(variance);
            hashes.push(pingora_cache::key::CacheHashKey::combined_bin(&variant));
        }
    }
    storage.purge_url(
        pingora_cache::key::CacheHashKey::primary_bin(&cache_key),
        &hashes,
    )
}

/// Answers a `PURGE` request on the proxy port: the URL's stored variants are removed if the
/// client is allowed; `403` otherwise.
pub async fn purge_request(
    session: &mut Session,
    config: &Config,
    storage: &HybridStorage,
    bans: &Bans,
) -> Result<()> {
    let allowed = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .is_some_and(|a| {
            config
                .admin
                .purge_from
                .iter()
                .any(|net| net.contains(&a.ip()))
        });
    let (status, body) = if !allowed {
        (
            403,
            "{\"error\":\"PURGE is accepted only from admin.purge_from\"}\n".to_owned(),
        )
    } else {
        let url = session
            .req_header()
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        let req = PurgeRequest {
            url: Some(url),
            ..PurgeRequest::default()
        };
        match purge::execute(req, config, storage, bans).await {
            Ok(outcome) => (
                200,
                serde_json::to_string(&outcome).unwrap_or_default() + "\n",
            ),
            Err(refusal) => {
                let (status, reason) = refusal.status_and_reason();
                (
                    status,
                    serde_json::json!({ "error": reason }).to_string() + "\n",
                )
            }
        }
    };
    let mut h = ResponseHeader::build(status, Some(3))?;
    h.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    h.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    session.write_response_header(Box::new(h), false).await?;
    session
        .write_response_body(Some(Bytes::from(body)), true)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_references_resolve_and_others_do_not() {
        let hosts = ["erp:5006", "127.0.0.1:5007"];
        let so = |r: &str| same_origin(r, "/api/orders/7", &hosts);
        assert_eq!(so("/api/orders").as_deref(), Some("/api/orders"));
        assert_eq!(
            so("/api/orders?page=2#top").as_deref(),
            Some("/api/orders?page=2")
        );
        assert_eq!(so("8").as_deref(), Some("/api/orders/8"));
        assert_eq!(
            so("http://erp:5006/api/x?a=1").as_deref(),
            Some("/api/x?a=1")
        );
        assert_eq!(so("HTTP://ERP:5006").as_deref(), Some("/"));
        assert_eq!(so("http://erp:5006?a=1").as_deref(), Some("/?a=1"));
        assert_eq!(
            so("http://127.0.0.1:5007/api/y").as_deref(),
            Some("/api/y"),
            "the ERP's own address, which it is sent as Host"
        );
        assert_eq!(so("http://other:5006/api/x"), None);
        assert_eq!(
            so("http://erp:5007/api/x"),
            None,
            "another port is another origin"
        );
        assert_eq!(so("//other/api/x"), None);
        assert_eq!(so("mailto:a@b"), None);
        assert_eq!(so(""), None);
        assert_eq!(
            same_origin("http://erp/x", "/", &[]),
            None,
            "no host to compare"
        );
    }

    #[test]
    fn only_unsafe_methods_invalidate() {
        for m in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
            assert!(is_safe(&m), "{m}");
        }
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(!is_safe(&m), "{m}");
        }
        assert!(!is_safe(&Method::from_bytes(b"PROPPATCH").expect("method")));
    }

    #[test]
    fn tags_come_from_the_route_and_the_header() {
        let mut h = ResponseHeader::build(200, None).expect("header");
        h.append_header("surrogate-key", "yarn inventory,po")
            .expect("h");
        let header = HeaderName::from_static("surrogate-key");
        let route = vec!["production".to_owned()];
        assert!(has_tag(&route, &h.headers, Some(&header), "production"));
        assert!(has_tag(&route, &h.headers, Some(&header), "inventory"));
        assert!(has_tag(&route, &h.headers, Some(&header), "po"));
        assert!(!has_tag(&route, &h.headers, Some(&header), "inv"));
        assert!(
            !has_tag(&route, &h.headers, None, "yarn"),
            "no tag header configured"
        );
    }
}
