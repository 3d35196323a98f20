//! Who the client is, for rate limiting: the peer's IP, or, when the peer is a trusted proxy
//! (a load balancer in front of knitcache), the first untrusted address in `X-Forwarded-For`
//! read from the right. An untrusted client's own `X-Forwarded-For` is never believed, so it
//! cannot pick the bucket it is charged to.
//!
//! An IPv6 client is charged per /64 ([`bucket_key`]): a /64 is the smallest network handed to a
//! site or a host (RFC 6177; SLAAC needs a whole /64), and any host on it may use every one of
//! its 2^64 addresses, which privacy extensions (RFC 8981) rotate on their own. Per-address
//! buckets would give one IPv6 host as many buckets as it cares to make, and fill the table
//! with them. Wider prefixes (/56, /48) are often whole customers of one provider, each with
//! its own hosts, so they are not grouped.

use std::net::{IpAddr, Ipv6Addr};

use http::HeaderMap;
use ipnet::IpNet;

/// The client address requests are charged to. IPv4 addresses that arrive mapped into IPv6
/// (`::ffff:a.b.c.d`, from a dual-stack listener or a proxy) are taken as the IPv4 address.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
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
    let ip: IpAddr = if let Ok(ip) = hop.parse() {
        ip
    } else if let Ok(sock) = hop.parse::<std::net::SocketAddr>() {
        sock.ip()
    } else {
        hop.strip_prefix('[')?.split(']').next()?.parse().ok()?
    };
    Some(ip.to_canonical())
}

/// The key of the bucket `client` is charged to: an IPv4 address itself, an IPv6 address's /64.
pub fn bucket_key(client: IpAddr) -> IpAddr {
    match client.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        v4 => v4,
    }
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
    fn ipv6_clients_are_charged_per_64() {
        let key = |s: &str| bucket_key(ip(s));
        assert_eq!(key("2001:db8:1:2:aaaa::1"), ip("2001:db8:1:2::"));
        assert_eq!(
            key("2001:db8:1:2:aaaa::1"),
            key("2001:db8:1:2:ffff:ffff:ffff:ffff"),
            "one /64, one bucket"
        );
        assert_ne!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:3::1"),
            "another /64"
        );
        assert_eq!(
            key("198.51.100.7"),
            ip("198.51.100.7"),
            "IPv4 is per address"
        );
        assert_eq!(
            key("::ffff:198.51.100.7"),
            ip("198.51.100.7"),
            "a mapped IPv4 client is not lumped into ::ffff:0:0/64 with every other"
        );
    }

    #[test]
    fn mapped_ipv4_peers_and_hops_are_ipv4() {
        let h = headers(&["::ffff:198.51.100.7"]);
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.5"), &h, &nets(&["10.0.0.0/8"])),
            ip("198.51.100.7")
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
