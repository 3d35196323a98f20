//! Keeping the cache right: write-triggered invalidation, tags, and `PURGE` on the proxy port.
//!
//! * When a request matching an `invalidation` rule succeeds (2xx), the rule's routes,
//!   prefixes, tags (or everything) are banned: every stored response made before the ban is
//!   refetched on its next request. With `rewarm`, the hot keys it covers are refreshed at once.
//! * A stored response's tags are its route's `tags` plus the words of the ERP's tag header
//!   (`cache.tag_header`, `Surrogate-Key` by default), read from the stored header on a hit.
//! * `PURGE /path?query` on the proxy port, as Varnish users expect, purges that URL's stored
//!   variants, from the clients in `admin.purge_from` only.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, Method};
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use prometheus::{IntCounterVec, Opts, Registry};

use crate::admin::purge::{self, PurgeRequest};
use crate::cache::HybridStorage;
use crate::cache::bans::{BanMatch, Bans};
use crate::config::{Config, PurgeSet};
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
    fired: IntCounterVec,
}

impl Invalidator {
    /// Rules ban into `bans`; `rewarm` rules hand their purge to the warmer.
    pub fn new(
        bans: Arc<Bans>,
        warming: Arc<Warming>,
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
        Ok(Invalidator {
            bans,
            warming,
            fired,
        })
    }

    /// Called once a response is complete: fires every rule the request matches if it
    /// succeeded.
    pub fn after_response(&self, config: &Config, method: &Method, path: &str, status: u16) {
        if !(200..300).contains(&status) {
            return;
        }
        for rule in config
            .invalidation
            .iter()
            .filter(|r| r.methods.contains(method) && r.path.matches(path))
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
        match purge::execute(req, config, storage, bans) {
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
