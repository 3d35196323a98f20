//! Header rules of a proxy. On the way back (RFC 9110 §7.6.1): connection-specific fields of
//! the ERP's connection never reach the client or the cache (pingora already strips them from
//! requests and writes its own `Connection` for the client's connection). On the way in
//! (`for_erp`): the ERP gets a `Host` and forwarding fields no client can choose.
//!
//! * `Host` is the ERP's own address (`upstream.address`), whatever the client sent. The key has
//!   no host in it (one site), so a client-chosen `Host` that the ERP reflects into a body (as
//!   Flask's `url_for(_external=True)` does) would be stored for everyone.
//! * `X-Forwarded-For`, `X-Forwarded-Proto` and `Forwarded` (RFC 7239): a client's own values
//!   are replaced by what knitcache saw (its peer address, `http` or `https`), unless the peer is in
//!   `protection.rate_limit.trusted_proxies` (a load balancer in front of knitcache), whose
//!   values are kept and appended to, as each hop appends its own.
//! * `X-Forwarded-Host` carries a `Host` a client chose: removed, except from a trusted proxy,
//!   which is trusted to have checked it. knitcache never sets one (it would reopen what
//!   pinning `Host` closes).

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use pingora_error::Result;
use pingora_http::{RequestHeader, ResponseHeader};

/// Fields that only describe one hop.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "proxy-authenticate",
];

/// Removes hop-by-hop fields, including any the `Connection` header nominates.
pub fn strip_hop_by_hop(resp: &mut ResponseHeader) {
    let nominated: Vec<String> = resp
        .headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && t != "close" && t != "keep-alive")
        .collect();
    for name in nominated.iter().map(String::as_str).chain(HOP_BY_HOP) {
        resp.remove_header(name);
    }
}

/// Sets `Host` and the forwarding fields of `req`, the request about to go to the ERP at
/// `erp`, for a client connected from `peer`, over TLS if `tls`.
pub fn for_erp(
    req: &mut RequestHeader,
    erp: SocketAddr,
    peer: Option<IpAddr>,
    trusted: &[IpNet],
    tls: bool,
) -> Result<()> {
    req.insert_header(http::header::HOST, erp.to_string())?;
    let from_trusted = peer.is_some_and(|ip| trusted.iter().any(|net| net.contains(&ip)));
    // Values knitcache itself vouches for: the peer it accepted, and how it connected.
    let proto = if tls { "https" } else { "http" };
    let (xff, node) = match peer {
        Some(IpAddr::V4(ip)) => (ip.to_string(), ip.to_string()),
        Some(IpAddr::V6(ip)) => (ip.to_string(), format!("\"[{ip}]\"")),
        None => ("unknown".to_owned(), "unknown".to_owned()),
    };
    let ours = [
        ("x-forwarded-for", xff),
        ("x-forwarded-proto", proto.to_owned()),
        ("forwarded", format!("for={node};proto={proto}")),
    ];
    for (name, value) in ours {
        let value = match joined(req, name).filter(|_| from_trusted) {
            Some(earlier) => format!("{earlier}, {value}"),
            None => value,
        };
        req.insert_header(name, value)?;
    }
    if !from_trusted {
        req.remove_header("x-forwarded-host");
    }
    Ok(())
}

/// Every line of `name`, joined as one list; `None` if there is none or one is not text.
fn joined(req: &RequestHeader, name: &str) -> Option<String> {
    let values: Option<Vec<&str>> = req
        .headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().ok())
        .collect();
    values.filter(|v| !v.is_empty()).map(|v| v.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ERP: &str = "127.0.0.1:5007";

    fn request(fields: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/p", None).expect("req");
        for (n, v) in fields {
            req.append_header(n.to_string(), *v).expect("field");
        }
        req
    }

    fn field(req: &RequestHeader, name: &str) -> Option<String> {
        joined(req, name)
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().expect("net")).collect()
    }

    const FORGED: [(&str, &str); 5] = [
        ("host", "evil.example"),
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
        ("forwarded", "for=6.6.6.6;host=evil.example"),
    ];

    #[test]
    fn a_client_chooses_none_of_them() {
        let mut req = request(&FORGED);
        let peer = "203.0.113.9".parse().ok();
        for_erp(
            &mut req,
            ERP.parse().expect("addr"),
            peer,
            &nets(&["10.0.0.0/8"]),
            false,
        )
        .expect("ok");
        assert_eq!(field(&req, "host").as_deref(), Some(ERP));
        assert_eq!(
            field(&req, "x-forwarded-for").as_deref(),
            Some("203.0.113.9")
        );
        assert_eq!(field(&req, "x-forwarded-proto").as_deref(), Some("http"));
        assert_eq!(field(&req, "x-forwarded-host"), None);
        assert_eq!(
            field(&req, "forwarded").as_deref(),
            Some("for=203.0.113.9;proto=http")
        );
    }

    #[test]
    fn over_tls_the_protocol_is_https() {
        let mut req = request(&FORGED);
        for_erp(
            &mut req,
            ERP.parse().expect("addr"),
            "203.0.113.9".parse().ok(),
            &[],
            true,
        )
        .expect("ok");
        assert_eq!(field(&req, "x-forwarded-proto").as_deref(), Some("https"));
        assert_eq!(
            field(&req, "forwarded").as_deref(),
            Some("for=203.0.113.9;proto=https")
        );
    }

    #[test]
    fn a_trusted_proxy_is_appended_to() {
        let mut req = request(&FORGED);
        req.append_header("x-forwarded-for", "198.51.100.7")
            .expect("field");
        let peer = "10.0.0.5".parse().ok();
        for_erp(
            &mut req,
            ERP.parse().expect("addr"),
            peer,
            &nets(&["10.0.0.0/8"]),
            false,
        )
        .expect("ok");
        assert_eq!(
            field(&req, "host").as_deref(),
            Some(ERP),
            "Host is pinned all the same"
        );
        assert_eq!(
            field(&req, "x-forwarded-for").as_deref(),
            Some("6.6.6.6, 198.51.100.7, 10.0.0.5")
        );
        assert_eq!(
            field(&req, "x-forwarded-proto").as_deref(),
            Some("https, http")
        );
        assert_eq!(
            field(&req, "x-forwarded-host").as_deref(),
            Some("evil.example")
        );
        assert_eq!(
            field(&req, "forwarded").as_deref(),
            Some("for=6.6.6.6;host=evil.example, for=10.0.0.5;proto=http")
        );
    }

    #[test]
    fn ipv6_peers_are_quoted_in_forwarded() {
        let mut req = request(&[]);
        let peer = "2001:db8::1".parse().ok();
        for_erp(
            &mut req,
            "[::1]:5007".parse().expect("addr"),
            peer,
            &[],
            false,
        )
        .expect("ok");
        assert_eq!(field(&req, "host").as_deref(), Some("[::1]:5007"));
        assert_eq!(
            field(&req, "x-forwarded-for").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(
            field(&req, "forwarded").as_deref(),
            Some("for=\"[2001:db8::1]\";proto=http")
        );
    }

    #[test]
    fn removes_standard_and_nominated_fields() {
        let mut r = ResponseHeader::build(200, None).expect("header");
        r.append_header("connection", "close, x-erp-hop")
            .expect("h");
        r.append_header("keep-alive", "timeout=5").expect("h");
        r.append_header("x-erp-hop", "1").expect("h");
        r.append_header("content-type", "application/json")
            .expect("h");
        r.append_header("access-control-allow-origin", "*")
            .expect("h");
        strip_hop_by_hop(&mut r);
        assert!(r.headers.get("connection").is_none());
        assert!(r.headers.get("keep-alive").is_none());
        assert!(r.headers.get("x-erp-hop").is_none());
        assert_eq!(
            r.headers.get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/json"[..])
        );
        assert!(r.headers.get("access-control-allow-origin").is_some());
    }
}
