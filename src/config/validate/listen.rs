//! The proxy's own addresses: `listen` and `admin_listen`, how an `IP:port` is read (and what
//! to say when it is a host name or a bare port), and when two addresses clash or an upstream
//! address would loop back into the proxy.

use std::net::{IpAddr, SocketAddr};

use super::Problems;

/// Two listeners clash when they share a port and one of them binds every address or both bind
/// the same one. Port 0 (an ephemeral port, used by tests) never clashes.
pub(super) fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// True if connecting to `upstream` would reach our own listener `own`: same port, and the same
/// IP or a loopback IP while we listen on every address. Another host on the same port is fine.
pub(super) fn loops_back(own: SocketAddr, upstream: SocketAddr) -> bool {
    own.port() != 0
        && own.port() == upstream.port()
        && (own.ip() == upstream.ip() || (own.ip().is_unspecified() && upstream.ip().is_loopback()))
}

pub(super) fn address(
    text: &str,
    key: &str,
    example: &str,
    p: &mut Problems,
) -> Option<SocketAddr> {
    match text.trim().parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            p.at(key, None, address_message(text, key, example));
            None
        }
    }
}

fn address_message(text: &str, key: &str, example: &str) -> String {
    let t = text.trim();
    let example_ip = example.rsplit_once(':').map_or(example, |(ip, _)| ip);
    let fix = if let Some(port) = t.strip_prefix("localhost:") {
        format!("host names are not resolved; write {key}: \"127.0.0.1:{port}\"")
    } else if let Ok(ip) = t.parse::<IpAddr>() {
        let port = example.rsplit_once(':').map_or("5006", |(_, port)| port);
        let with_port = if ip.is_ipv6() {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        };
        format!("add a port, e.g. {key}: \"{with_port}\"")
    } else if t.parse::<u16>().is_ok() {
        format!("add an IP, e.g. {key}: \"{example_ip}:{t}\"")
    } else {
        format!(
            "write IP:port, e.g. {key}: \"{example}\" (IPv6 as \"[::1]:5006\"); host names are \
             not resolved"
        )
    };
    format!("{text:?} is not an IP:port address; {fix}")
}
