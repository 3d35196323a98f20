//! The warmer's request: one GET over loopback to the proxy's own listener, so a refresh takes
//! exactly the path (route, key, TTL, coalescing, ERP cap, breaker) a client request does. It is
//! sent by the one client, [`crate::http_client`].

use std::net::SocketAddr;
use std::time::Duration;

use http::HeaderName;
use http::header::ACCEPT_ENCODING;

use crate::http_client::{self, Body, Get};

/// The marker header: a warm request with the right token forces a refresh of a fresh entry.
pub const WARM_HEADER: &str = "x-knitcache-warm";

/// Sends `GET path_and_query` and returns the response status. The body is read to its end and
/// dropped: the proxy stores what it streams, so a warm request that left early could leave the
/// entry unstored; a body cut short is an error, not a warmed key.
pub async fn get(
    proxy: SocketAddr,
    path_and_query: &str,
    coding: Option<&str>,
    token: &str,
    timeout: Duration,
) -> Result<u16, http_client::Error> {
    let mut request = Get::new(proxy, path_and_query)
        .header(HeaderName::from_static(WARM_HEADER), token)
        .connect_timeout(timeout)
        .timeout(timeout)
        .body(Body::Drain);
    if let Some(c) = coding {
        request = request.header(ACCEPT_ENCODING, c);
    }
    request.send().await.map(|answer| answer.status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A peer that answers one request with `answer`; gives back the request head it read.
    async fn peer(answer: &'static str) -> (SocketAddr, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let Ok((mut conn, _)) = listener.accept().await else {
                return String::new();
            };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = conn.write_all(answer.as_bytes()).await;
            String::from_utf8_lossy(&head).to_ascii_lowercase()
        });
        (addr, task)
    }

    #[tokio::test]
    async fn sends_the_marker_and_coding_and_reads_the_whole_body() {
        let (addr, seen) =
            peer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n").await;
        let status = get(
            addr,
            "/api/x?a=1",
            Some("gzip"),
            "refresh:t",
            Duration::from_secs(5),
        )
        .await
        .expect("warmed");
        assert_eq!(status, 200);
        let head = seen.await.expect("peer");
        assert!(head.starts_with("get /api/x?a=1 http/1.1\r\n"), "{head}");
        assert!(head.contains("x-knitcache-warm: refresh:t\r\n"), "{head}");
        assert!(head.contains("accept-encoding: gzip\r\n"), "{head}");
    }

    #[tokio::test]
    async fn a_body_cut_short_is_not_a_warmed_key() {
        let (addr, _seen) = peer("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this").await;
        let e = get(addr, "/api/x", None, "refresh:t", Duration::from_secs(5))
            .await
            .expect_err("cut short");
        assert!(matches!(e, http_client::Error::ClosedEarly { .. }), "{e}");
    }
}
