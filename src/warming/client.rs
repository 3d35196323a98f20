//! The warmer's HTTP client: one GET over loopback to the proxy's own listener, so a refresh
//! takes exactly the path (route, key, TTL, coalescing, ERP cap, breaker) a client request does.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The marker header: a warm request with the right token forces a refresh of a fresh entry.
pub const WARM_HEADER: &str = "x-knitcache-warm";

/// Largest response head read, in bytes; the body is read and dropped.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Sends `GET path_and_query` and returns the response status.
pub async fn get(
    proxy: SocketAddr,
    path_and_query: &str,
    coding: Option<&str>,
    token: &str,
    timeout: Duration,
) -> std::io::Result<u16> {
    tokio::time::timeout(timeout, async {
        let mut conn = TcpStream::connect(proxy).await?;
        let mut req = format!("GET {path_and_query} HTTP/1.1\r\nHost: {proxy}\r\n");
        if let Some(c) = coding {
            req.push_str(&format!("Accept-Encoding: {c}\r\n"));
        }
        req.push_str(&format!(
            "{WARM_HEADER}: {token}\r\nConnection: close\r\n\r\n"
        ));
        conn.write_all(req.as_bytes()).await?;
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 8192];
        loop {
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            if buf.len() < MAX_HEAD_BYTES {
                buf.extend_from_slice(&chunk[..n]);
            }
        }
        parse_status(&buf).ok_or_else(|| std::io::Error::other("no HTTP status line in the answer"))
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "warm request timed out"))?
}

fn parse_status(resp: &[u8]) -> Option<u16> {
    let line = resp.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\nx: y\r\n\r\n"), Some(200));
        assert_eq!(
            parse_status(b"HTTP/1.1 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(parse_status(b"garbage"), None);
        assert_eq!(parse_status(b""), None);
    }
}
