//! The one HTTP/1.1 client of knitcache: the ERP health probe, the warmer (requests through the
//! proxy's own port) and `knitcache report` (the admin `/stats`) all send their requests here.
//!
//! It is hyper's connection-level HTTP/1 client (`hyper::client::conn::http1`) on one fresh TCP
//! connection per request, with what every caller needs around it:
//! * no connection reuse: each [`Get`] connects, sends one request with `Connection: close` and
//!   closes, so a health probe always measures a real connect and no caller can be handed a
//!   connection the peer has half closed;
//! * two time limits: one for the connect, one for the whole exchange (connect, head and body),
//!   so a peer that accepts and stalls, or trickles a byte at a time, cannot hold a caller;
//! * bounded reads: the response head is capped at [`MAX_HEAD_BYTES`], a kept body at the
//!   caller's `max_bytes`, so a hostile or broken peer cannot make us buffer without limit;
//! * errors that say which step failed and with whom ("cannot connect to ...", "no answer from
//!   ... within N ms", "... closed the connection before the whole answer", "... larger than N
//!   bytes").
//!
//! Framing (`Content-Length`, chunked, trailers, a body cut short) is hyper's, not ours.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Request};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Largest response head (status line and header fields) accepted, in bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is malformed (a path or header value that HTTP cannot carry).
    #[error("cannot send {path:?}: {source}")]
    Request {
        /// The request target as given.
        path: String,
        /// What `http` refused.
        source: http::Error,
    },
    /// The name did not resolve.
    #[error("cannot resolve {authority}: {reason}")]
    Resolve {
        /// `host:port` as given.
        authority: String,
        /// Why.
        reason: String,
    },
    /// The TCP connect failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The peer.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TCP connect did not complete in time.
    #[error("cannot connect to {addr} within {} ms", .limit.as_millis())]
    ConnectTimeout {
        /// The peer.
        addr: SocketAddr,
        /// The limit that ran out.
        limit: Duration,
    },
    /// Connected, but no response head arrived in time.
    #[error("no answer from {addr} within {} ms", .limit.as_millis())]
    NoAnswer {
        /// The peer.
        addr: SocketAddr,
        /// The limit that ran out.
        limit: Duration,
    },
    /// The head arrived, but the body did not finish in time.
    #[error("the answer from {addr} did not finish within {} ms", .limit.as_millis())]
    SlowBody {
        /// The peer.
        addr: SocketAddr,
        /// The limit that ran out.
        limit: Duration,
    },
    /// The body is larger than the caller reads.
    #[error("the answer from {addr} is larger than {max_bytes} bytes")]
    TooLarge {
        /// The peer.
        addr: SocketAddr,
        /// The caller's bound.
        max_bytes: usize,
    },
    /// The peer closed the connection before the whole answer (head or body) arrived.
    #[error("{addr} closed the connection before the whole answer")]
    ClosedEarly {
        /// The peer.
        addr: SocketAddr,
    },
    /// The answer is not HTTP/1, or breaks its framing rules.
    #[error("the answer from {addr} is not valid HTTP/1.1: {source}")]
    NotHttp {
        /// The peer.
        addr: SocketAddr,
        /// hyper's reason.
        source: hyper::Error,
    },
    /// Any other failure while talking to the peer (a reset, a write error).
    #[error("talking to {addr}: {reason}")]
    Io {
        /// The peer.
        addr: SocketAddr,
        /// hyper's reason and its causes, `: `-joined (hyper's own text names no cause).
        reason: String,
    },
}

impl Error {
    fn from_hyper(addr: SocketAddr, e: hyper::Error) -> Error {
        // A body cut short reaches us as a body error caused by an unexpected EOF.
        let mut causes = std::iter::successors(std::error::Error::source(&e), |c| c.source());
        let eof = causes.any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof)
        });
        if e.is_incomplete_message() || eof {
            Error::ClosedEarly { addr }
        } else if e.is_parse() {
            Error::NotHttp { addr, source: e }
        } else {
            let mut reason = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                reason.push_str(": ");
                reason.push_str(&c.to_string());
                cause = c.source();
            }
            Error::Io { addr, reason }
        }
    }
}

/// What to do with the response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Do not read it: the status is the answer (the health probe). The connection is closed as
    /// soon as the head has arrived.
    Skip,
    /// Read it to the end and keep none of it (the warmer: the proxy stores what it streams, so
    /// the body must be taken in full; nothing is buffered, the time limit bounds it).
    Drain,
    /// Keep it, up to `max_bytes`; a larger body is [`Error::TooLarge`].
    Keep {
        /// The largest body kept.
        max_bytes: usize,
    },
}

/// A response: status, header fields, and the body if the caller kept it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The header fields.
    pub headers: HeaderMap,
    /// The body with [`Body::Keep`]; empty otherwise.
    pub body: Bytes,
}

/// One `GET` on a fresh connection. Defaults: `Host` is the peer address, both time limits are
/// 10 s, the body is skipped.
#[derive(Debug, Clone)]
pub struct Get {
    addr: SocketAddr,
    path: String,
    host: String,
    headers: Vec<(HeaderName, String)>,
    connect_timeout: Duration,
    timeout: Duration,
    body: Body,
}

impl Get {
    /// A `GET path` (origin form, with its query) to `addr`.
    pub fn new(addr: SocketAddr, path: &str) -> Get {
        Get {
            addr,
            path: path.to_owned(),
            host: addr.to_string(),
            headers: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
            body: Body::Skip,
        }
    }

    /// The `Host` field, when it is a name rather than the address.
    pub fn host(mut self, host: &str) -> Get {
        host.clone_into(&mut self.host);
        self
    }

    /// One more header field. An invalid value fails [`Get::send`], it does not panic.
    pub fn header(mut self, name: HeaderName, value: &str) -> Get {
        self.headers.push((name, value.to_owned()));
        self
    }

    /// The limit for the TCP connect (at most the total).
    pub fn connect_timeout(mut self, limit: Duration) -> Get {
        self.connect_timeout = limit;
        self
    }

    /// The limit for the whole exchange: connect, head and body.
    pub fn timeout(mut self, limit: Duration) -> Get {
        self.timeout = limit;
        self
    }

    /// What to do with the body.
    pub fn body(mut self, body: Body) -> Get {
        self.body = body;
        self
    }

    /// Connects, sends the request and reads the answer, all within the time limits.
    pub async fn send(self) -> Result<Answer, Error> {
        let addr = self.addr;
        let request = self.request()?;
        let deadline = Instant::now() + self.timeout;

        let connect_limit = self.connect_timeout.min(self.timeout);
        let stream = match tokio::time::timeout(connect_limit, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => return Err(Error::Connect { addr, source }),
            Err(_) => {
                return Err(Error::ConnectTimeout {
                    addr,
                    limit: connect_limit,
                });
            }
        };
        // Small requests: send them now rather than waiting for an ACK (Nagle).
        let _ = stream.set_nodelay(true);

        let no_answer = Error::NoAnswer {
            addr,
            limit: self.timeout,
        };
        let (mut sender, connection) = match tokio::time::timeout_at(
            deadline,
            hyper::client::conn::http1::Builder::new()
                .max_header_size(MAX_HEAD_BYTES)
                .handshake::<_, Empty<Bytes>>(TokioIo::new(stream)),
        )
        .await
        {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(Error::from_hyper(addr, e)),
            Err(_) => return Err(no_answer),
        };
        // hyper drives the connection in its own task; it ends, closing the socket, as soon as
        // `sender` and the response are dropped, that is when this call returns, however it
        // returns: nothing outlives the request.
        tokio::spawn(connection);

        let response = match tokio::time::timeout_at(deadline, sender.send_request(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return Err(Error::from_hyper(addr, e)),
            Err(_) => return Err(no_answer),
        };
        let (head, incoming) = response.into_parts();
        let body = match self.body {
            Body::Skip => Bytes::new(),
            Body::Drain | Body::Keep { .. } => {
                let read = read_body(addr, incoming, self.body, &head.headers);
                match tokio::time::timeout_at(deadline, read).await {
                    Ok(result) => result?,
                    Err(_) => {
                        return Err(Error::SlowBody {
                            addr,
                            limit: self.timeout,
                        });
                    }
                }
            }
        };
        Ok(Answer {
            status: head.status.as_u16(),
            headers: head.headers,
            body,
        })
    }

    fn request(&self) -> Result<Request<Empty<Bytes>>, Error> {
        let mut builder = Request::get(self.path.as_str())
            .header(HOST, self.host.as_str())
            .header(CONNECTION, HeaderValue::from_static("close"));
        for (name, value) in &self.headers {
            builder = builder.header(name, value.as_str());
        }
        builder.body(Empty::new()).map_err(|source| Error::Request {
            path: self.path.clone(),
            source,
        })
    }
}

/// Reads `incoming` as `mode` says: kept up to its bound, or drained.
async fn read_body(
    addr: SocketAddr,
    mut incoming: Incoming,
    mode: Body,
    headers: &HeaderMap,
) -> Result<Bytes, Error> {
    let max_bytes = match mode {
        Body::Keep { max_bytes } => Some(max_bytes),
        Body::Skip | Body::Drain => None,
    };
    // A declared length over the bound fails before a byte of the body is read.
    if let Some(max_bytes) = max_bytes {
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max_bytes as u64) {
            return Err(Error::TooLarge { addr, max_bytes });
        }
    }
    let mut kept = BytesMut::new();
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|e| Error::from_hyper(addr, e))?;
        // Trailers carry nothing any caller uses.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if let Some(max_bytes) = max_bytes {
            if kept.len() + data.len() > max_bytes {
                return Err(Error::TooLarge { addr, max_bytes });
            }
            kept.extend_from_slice(&data);
        }
    }
    Ok(kept.freeze())
}

/// Resolves `host:port` to its first address, within `limit`.
pub async fn resolve(authority: &str, limit: Duration) -> Result<SocketAddr, Error> {
    let failed = |reason: String| Error::Resolve {
        authority: authority.to_owned(),
        reason,
    };
    match tokio::time::timeout(limit, tokio::net::lookup_host(authority)).await {
        Ok(Ok(mut addrs)) => addrs.next().ok_or_else(|| failed("no address".to_owned())),
        Ok(Err(e)) => Err(failed(e.to_string())),
        Err(_) => Err(failed(format!("no answer within {} ms", limit.as_millis()))),
    }
}

#[cfg(test)]
mod tests {
    //! Real sockets on loopback: each peer below is a raw `TcpListener` that answers with
    //! exactly the bytes (and the silences) a hostile or broken server would.

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A peer that reads the request head, then plays `script`: bytes to write, or pauses.
    /// Returns its address and the request it received.
    async fn peer(script: Vec<Step>) -> (SocketAddr, tokio::task::JoinHandle<Option<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.ok()?;
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).await.ok()?;
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            for step in script {
                match step {
                    Step::Send(bytes) => {
                        if conn.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                    Step::Pause(d) => tokio::time::sleep(d).await,
                }
            }
            Some(String::from_utf8_lossy(&head).into_owned())
        });
        (addr, task)
    }

    enum Step {
        Send(Vec<u8>),
        Pause(Duration),
    }

    fn send(s: &str) -> Step {
        Step::Send(s.as_bytes().to_vec())
    }

    fn keep(max_bytes: usize) -> Body {
        Body::Keep { max_bytes }
    }

    #[tokio::test]
    async fn a_plain_answer_and_the_request_it_answers() {
        let (addr, seen) = peer(vec![send(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\n{}",
        )])
        .await;
        let answer = Get::new(addr, "/stats?x=1")
            .host("admin.local:9")
            .header(http::header::ACCEPT, "application/json")
            .body(keep(1024))
            .send()
            .await
            .expect("answer");
        assert_eq!(answer.status, 200);
        assert_eq!(&answer.body[..], b"{}");
        assert_eq!(answer.headers["x-a"], "b");
        let head = seen
            .await
            .expect("peer")
            .expect("request")
            .to_ascii_lowercase();
        assert!(head.starts_with("get /stats?x=1 http/1.1\r\n"), "{head}");
        for line in [
            "host: admin.local:9\r\n",
            "accept: application/json\r\n",
            "connection: close\r\n",
        ] {
            assert!(head.contains(line), "{line:?} in {head}");
        }
    }

    #[tokio::test]
    async fn a_chunked_answer_with_extensions_and_trailers_is_decoded() {
        let (addr, _seen) = peer(vec![
            send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\n{\"a"),
            Step::Pause(Duration::from_millis(20)),
            send("\r\n4\r\n\":1}\r\n0\r\nX-Trailer: t\r\n\r\n"),
        ])
        .await;
        let answer = Get::new(addr, "/")
            .body(keep(1024))
            .send()
            .await
            .expect("answer");
        assert_eq!(&answer.body[..], b"{\"a\":1}");
    }

    #[tokio::test]
    async fn a_body_over_the_bound_is_refused_declared_or_chunked() {
        let big = "x".repeat(100);
        let (addr, _seen) = peer(vec![send(&format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{big}"
        ))])
        .await;
        let e = Get::new(addr, "/")
            .body(keep(99))
            .send()
            .await
            .expect_err("too large");
        assert!(matches!(e, Error::TooLarge { max_bytes: 99, .. }), "{e}");
        assert!(e.to_string().contains("larger than 99 bytes"), "{e}");

        // No length declared: the bound holds while the chunks arrive.
        let (addr, _seen) = peer(vec![send(&format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n{big}\r\n0\r\n\r\n"
        ))])
        .await;
        let e = Get::new(addr, "/")
            .body(keep(99))
            .send()
            .await
            .expect_err("too large");
        assert!(matches!(e, Error::TooLarge { .. }), "{e}");

        // Exactly the bound is fine.
        let (addr, _seen) = peer(vec![send(&format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{big}"
        ))])
        .await;
        let answer = Get::new(addr, "/").body(keep(100)).send().await;
        assert_eq!(answer.expect("at the bound").body.len(), 100);
    }

    #[tokio::test]
    async fn a_peer_that_stalls_is_cut_off_by_the_total_limit() {
        // Silent after accepting.
        let (addr, _seen) = peer(vec![Step::Pause(Duration::from_secs(30))]).await;
        let e = Get::new(addr, "/")
            .timeout(Duration::from_millis(200))
            .send()
            .await
            .expect_err("silent");
        assert!(matches!(e, Error::NoAnswer { .. }), "{e}");
        assert!(e.to_string().contains("within 200 ms"), "{e}");

        // The head, then half the body, then nothing: a per-read limit would wait forever on a
        // peer that trickles; the total limit does not.
        let (addr, _seen) = peer(vec![
            send("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345"),
            Step::Pause(Duration::from_secs(30)),
        ])
        .await;
        let e = Get::new(addr, "/")
            .timeout(Duration::from_millis(200))
            .body(Body::Drain)
            .send()
            .await
            .expect_err("stalled body");
        assert!(matches!(e, Error::SlowBody { .. }), "{e}");
    }

    #[tokio::test]
    async fn a_peer_that_closes_early_is_an_error_not_a_short_answer() {
        // Half the declared body, then the connection closes.
        let (addr, _seen) = peer(vec![send(
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345",
        )])
        .await;
        let e = Get::new(addr, "/")
            .body(keep(1024))
            .send()
            .await
            .expect_err("cut short");
        assert!(matches!(e, Error::ClosedEarly { .. }), "{e}");
        // Draining notices it too: the warmer must not count a cut body as warmed.
        let (addr, _seen) = peer(vec![send(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n12345\r\n",
        )])
        .await;
        let e = Get::new(addr, "/")
            .body(Body::Drain)
            .send()
            .await
            .expect_err("cut short");
        assert!(matches!(e, Error::ClosedEarly { .. }), "{e}");

        // Closed before any answer.
        let (addr, _seen) = peer(vec![]).await;
        let e = Get::new(addr, "/").send().await.expect_err("no answer");
        assert!(matches!(e, Error::ClosedEarly { .. }), "{e}");
        assert!(e.to_string().contains("closed the connection"), "{e}");
    }

    #[tokio::test]
    async fn not_http_and_oversized_heads_are_errors() {
        let (addr, _seen) = peer(vec![send("SSH-2.0-OpenSSH_9.6\r\n")]).await;
        let e = Get::new(addr, "/").send().await.expect_err("not HTTP");
        assert!(matches!(e, Error::NotHttp { .. }), "{e}");

        let (addr, _seen) = peer(vec![send("HTTP/1.1 abc OK\r\n\r\n")]).await;
        let e = Get::new(addr, "/").send().await.expect_err("bad status");
        assert!(matches!(e, Error::NotHttp { .. }), "{e}");

        let huge = format!(
            "HTTP/1.1 200 OK\r\nX-Big: {}\r\n\r\n",
            "y".repeat(MAX_HEAD_BYTES)
        );
        let (addr, _seen) = peer(vec![send(&huge)]).await;
        let e = Get::new(addr, "/")
            .send()
            .await
            .expect_err("head too large");
        assert!(matches!(e, Error::NotHttp { .. }), "{e}");
    }

    #[tokio::test]
    async fn refused_connects_and_bad_requests_are_clear() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port");
        let e = Get::new(addr, "/").send().await.expect_err("refused");
        assert!(matches!(e, Error::Connect { .. }), "{e}");
        assert!(
            e.to_string().starts_with("cannot connect to 127.0.0.1:"),
            "{e}"
        );

        let e = Get::new(addr, "/")
            .header(HeaderName::from_static("x-k"), "a\nb")
            .send()
            .await
            .expect_err("bad header");
        assert!(matches!(e, Error::Request { .. }), "{e}");
    }

    #[tokio::test]
    async fn the_connection_is_closed_when_the_call_returns() {
        // Two ways to leave early: taking the head of a long keep-alive answer without its body
        // (the probe), and giving up on a silent peer. Either way the peer must see the
        // connection close, or every probe of a hung ERP would leave a socket behind.
        let head = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 100000\r\n\r\n";
        for (answer, limit) in [(&head[..], 5_000), (&b""[..], 100)] {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let peer = tokio::spawn(async move {
                let (mut conn, _) = listener.accept().await.expect("accept");
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).await;
                conn.write_all(answer).await.expect("write");
                // Bounded, so a connection left open fails here instead of hanging.
                tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await
            });
            let _ = Get::new(addr, "/")
                .timeout(Duration::from_millis(limit))
                .send()
                .await;
            let closed = peer.await.expect("peer");
            assert!(
                matches!(closed, Ok(Ok(0))),
                "answer {:?}: the client closed its end: {closed:?}",
                String::from_utf8_lossy(answer)
            );
        }
    }
}
