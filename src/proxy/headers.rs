//! Header rules a proxy must apply on the way back (RFC 9110 §7.6.1): connection-specific
//! fields of the ERP's connection never reach the client or the cache. pingora already strips
//! them from requests and writes its own `Connection` for the client's connection.

use pingora_http::ResponseHeader;

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

#[cfg(test)]
mod tests {
    use super::*;

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
