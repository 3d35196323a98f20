//! What the proxy says about HTTPS when `listen_tls` is on: plain-HTTP requests redirected to
//! the HTTPS port (`tls.redirect_http`), and `Strict-Transport-Security` on HTTPS responses
//! (`tls.hsts_max_age_secs`).

use bytes::Bytes;
use http::header;
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use crate::config::{Config, TlsSettings};

/// The response field that tells browsers to use HTTPS only (RFC 6797).
pub const HSTS: &str = "strict-transport-security";

/// Whether the request arrived over TLS (HTTP/1.1 or HTTP/2).
pub fn is_tls(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

/// The `Strict-Transport-Security` value for this request's response, if it has one: only on
/// HTTPS (RFC 6797 §7.2: a plain-HTTP response must not carry it).
pub fn hsts(session: &Session, config: &Config) -> Option<String> {
    let max_age = config.tls.as_ref()?.hsts_max_age?;
    is_tls(session).then(|| format!("max-age={}", max_age.as_secs()))
}

/// The TLS settings when this plain-HTTP request must be redirected to HTTPS.
pub fn redirects<'c>(session: &Session, config: &'c Config) -> Option<&'c TlsSettings> {
    config
        .tls
        .as_ref()
        .filter(|t| t.redirect_http && !is_tls(session))
}

/// Answers `308 Permanent Redirect` to the same host, path and query on the HTTPS port
/// (`308` keeps the method and body, unlike `301`), or `400` without a `Host` to name.
pub async fn redirect(session: &mut Session, tls: &TlsSettings) -> Result<()> {
    let req = session.req_header();
    let host = req
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.host());
    let target = req
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let (status, location) = match host.and_then(|h| location(h, tls.listen.port(), &target)) {
        Some(location) => (308, Some(location)),
        None => (400, None),
    };
    let mut resp = ResponseHeader::build(status, Some(4))?;
    if let Some(location) = location {
        resp.insert_header(header::LOCATION, location)?;
    }
    resp.insert_header(header::CONTENT_LENGTH, "0")?;
    resp.insert_header(header::CACHE_CONTROL, "no-store")?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(Bytes::new()), true).await
}

/// `https://host[:port]target`: the request's host without its port, and the HTTPS port unless
/// it is 443. `None` for a host that is not a host.
fn location(host: &str, port: u16, target: &str) -> Option<String> {
    let name = match host.strip_prefix('[') {
        // An IPv6 literal keeps its brackets: `[::1]:5006` -> `[::1]`.
        Some(rest) => &host[..rest.find(']')? + 2],
        None => host.split(':').next()?,
    };
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:_".contains(&b));
    if !valid {
        return None;
    }
    Some(if port == 443 {
        format!("https://{name}{target}")
    } else {
        format!("https://{name}:{port}{target}")
    })
}

#[cfg(test)]
mod tests {
    use super::location;

    #[test]
    fn the_location_keeps_host_path_and_query_and_names_the_https_port() {
        assert_eq!(
            location("erp.example:5006", 5443, "/api/a?x=1").as_deref(),
            Some("https://erp.example:5443/api/a?x=1")
        );
        assert_eq!(
            location("erp.example", 443, "/").as_deref(),
            Some("https://erp.example/")
        );
        assert_eq!(
            location("[::1]:5006", 5443, "/p").as_deref(),
            Some("https://[::1]:5443/p")
        );
        assert_eq!(location("evil/x", 5443, "/"), None);
        assert_eq!(location("", 5443, "/"), None);
    }
}
