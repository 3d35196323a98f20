//! Who the client is, for rate limiting: the peer's IP, or, when the peer is a trusted proxy
//! (a load balancer in front of knitcache), the first untrusted address in `X-Forwarded-For`
//! read from the right. An untrusted client's own `X-Forwarded-For` is never believed, so it
//! cannot pick the bucket it is charged to.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// The client address requests are charged to.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    if !is_trusted(peer, trusted) {
        return peer;
    }
    // Each proxy appends the address it received from, so the rightmost untrusted entry is the
    // last hop nobody we trust vouches for: everything left of it may be forged.
    let mut client = peer;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(text) = value.to_str() else {
            return client;
        };
        for hop in text.rsplit(',') {
            match parse_hop(hop) {
                Some(ip) if is_trusted(ip, trusted) => client = ip,
                Some(ip) => return ip,
                // garbage in the chain: stop at the last address we could vouch for
                None => return client,
            }
        }
    }
    client
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// One `X-Forwarded-For` entry: an IP, possibly bracketed IPv6 or with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Ok(sock) = hop.parse::<std::net::SocketAddr>() {
        return Some(sock.ip());
    }
    hop.strip_prefix('[')?.split(']').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().expect("value"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().expect("net")).collect()
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let h = headers(&["1.2.3.4"]);
        assert_eq!(
            client_ip(ip("203.0.113.9"), &h, &nets(&["10.0.0.0/8"])),
            ip("203.0.113.9")
        );
        assert_eq!(client_ip(ip("203.0.113.9"), &h, &[]), ip("203.0.113.9"));
    }

    #[test]
    fn trusted_peer_names_the_client() {
        let h = headers(&["198.51.100.7"]);
        assert_eq!(
            client_ip(ip("10.0.0.5"), &h, &nets(&["10.0.0.0/8"])),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn forged_entries_left_of_the_real_client_are_ignored() {
        // The client sent "X-Forwarded-For: 6.6.6.6" itself; the trusted balancer appended its
        // real address.
        let h = headers(&["6.6.6.6, 198.51.100.7"]);
        assert_eq!(
            client_ip(ip("10.0.0.5"), &h, &nets(&["10.0.0.0/8"])),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn chains_of_trusted_proxies_are_walked() {
        let h = headers(&["198.51.100.7, 10.0.0.9", "10.0.0.8"]);
        assert_eq!(
            client_ip(ip("10.0.0.5"), &h, &nets(&["10.0.0.0/8"])),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn garbage_stops_at_the_last_vouched_address() {
        let h = headers(&["not-an-ip, 10.0.0.9"]);
        assert_eq!(
            client_ip(ip("10.0.0.5"), &h, &nets(&["10.0.0.0/8"])),
            ip("10.0.0.9")
        );
        assert_eq!(
            client_ip(ip("10.0.0.5"), &HeaderMap::new(), &nets(&["10.0.0.0/8"])),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn ports_and_brackets_are_accepted() {
        let h = headers(&["[2001:db8::1]:443"]);
        assert_eq!(
            client_ip(ip("10.0.0.5"), &h, &nets(&["10.0.0.0/8"])),
            ip("2001:db8::1")
        );
        let h = headers(&["198.51.100.7:5555"]);
        assert_eq!(
            client_ip(ip("10.0.0.5"), &h, &nets(&["10.0.0.0/8"])),
            ip("198.51.100.7")
        );
    }
}
