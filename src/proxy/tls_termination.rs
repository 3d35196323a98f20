//! TLS termination on the proxy's TLS listener: telling its connections from the plain
//! listener's, the handshake (under the head's deadline), and the decrypted connection as the
//! stream type pingora's HTTP/1 and HTTP/2 loops serve.
//!
//! pingora can terminate TLS itself, but its `rustls` build feature makes every connection pay
//! for it, TLS or not: the handshake's state is laid out inside each accepted connection's task
//! and each request's upstream-connect state, which took the memory scenario's peak from 185 to
//! 200 MiB at 1,000 connections (docs/PERFORMANCE.md, "TLS termination and memory"). Here the
//! handshake's state is allocated for a TLS connection only, and only while it runs.
//!
//! Writes gather in rustls' buffer until pingora flushes (see `AsyncWrite` below), so a hit's
//! header and body reach the socket together instead of in a `write` each.

use std::fmt;
use std::io::IoSlice;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::SslDigest;
use pingora_core::protocols::{
    ALPN, GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    Stream, TimingDigest, UniqueID, UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::server::ResolvesServerCert;
use tokio_rustls::rustls::version::{TLS12, TLS13};
use tokio_rustls::rustls::{ServerConfig, ServerConnection};

/// Plaintext gathered before a write goes to the socket without waiting for a flush: one full
/// TLS record. A body streamed with a known length reaches the client at least this often.
const PUSH_AT: usize = 16 * 1024;

/// ALPN on the wire, most preferred first: HTTP/2, then HTTP/1.1 for clients without it.
const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The TLS listener: its address, beside the plain listener's, and its handshake settings.
pub struct TlsListener {
    acceptor: TlsAcceptor,
    tls: SocketAddr,
    plain: SocketAddr,
}

impl TlsListener {
    /// Terminates TLS for connections to `tls` (the plain listener being at `plain`), with
    /// TLS 1.2 and 1.3, rustls' default cipher suites, and the certificate `certs` resolves
    /// at each handshake.
    pub fn new(tls: SocketAddr, plain: SocketAddr, certs: Arc<dyn ResolvesServerCert>) -> Self {
        crate::tls::install_provider();
        let mut config = ServerConfig::builder_with_protocol_versions(&[&TLS12, &TLS13])
            .with_no_client_auth()
            .with_cert_resolver(certs);
        config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
        TlsListener {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            tls,
            plain,
        }
    }

    /// Whether a connection accepted at local address `local` came in on the TLS listener.
    /// Both listeners share one accept path, so the local address is what tells them apart;
    /// where both could match (one bound to every address, the other to one), the more
    /// specific binding is the one the kernel chose.
    pub fn arrived_on(&self, local: SocketAddr) -> bool {
        specificity(self.tls, local) > specificity(self.plain, local)
    }

    /// The handshake, finished by `deadline`. `None` when the client did not complete it in
    /// time or sent something that is not TLS: there is nobody to answer, so the connection is
    /// closed.
    pub async fn accept(&self, stream: Stream, deadline: Instant) -> Option<Stream> {
        let started = std::time::Instant::now();
        // Boxed: the handshake's state is large and lives only until it completes, so it stays
        // out of the connection's own future.
        let handshake = Box::pin(self.acceptor.accept(stream));
        let tls = match timeout_at(deadline, handshake).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return None;
            }
            Err(_) => {
                tracing::debug!("TLS handshake not completed before clients.header_timeout_ms");
                return None;
            }
        };
        Some(Box::new(TlsConnection::new(tls, started.elapsed())))
    }
}

/// The protocol the handshake chose, as the gate reads it: HTTP/2 or, for `http/1.1` and
/// for a client that offered no ALPN, none (HTTP/1.1 is what a connection speaks unless told
/// otherwise).
fn alpn_selected(wire: &[u8]) -> Option<ALPN> {
    (wire == b"h2").then_some(ALPN::H2)
}

/// How closely a listener bound at `bound` matches a connection's local address `local`:
/// 2 for the same address and port, 1 for the same port on a listener bound to every
/// address, 0 otherwise.
fn specificity(bound: SocketAddr, local: SocketAddr) -> u8 {
    if bound.port() != local.port() {
        0
    } else if bound.ip().to_canonical() == local.ip().to_canonical() {
        2
    } else if bound.ip().is_unspecified() {
        1
    } else {
        0
    }
}

/// A client connection after its TLS handshake: reads decrypt, writes encrypt.
pub struct TlsConnection {
    tls: tokio_rustls::server::TlsStream<Stream>,
    digest: Arc<SslDigest>,
    alpn: Option<ALPN>,
    timing: TimingDigest,
    /// Plaintext taken since the last send to the socket.
    unsent: usize,
}

impl TlsConnection {
    fn new(tls: tokio_rustls::server::TlsStream<Stream>, handshake: Duration) -> Self {
        let (_, session) = tls.get_ref();
        let cipher = session
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .unwrap_or_default();
        let version = session
            .protocol_version()
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        // No client certificates are asked for, so the digest names none.
        let digest = Arc::new(SslDigest::new(cipher, version, None, None, Vec::new()));
        let alpn = session.alpn_protocol().and_then(alpn_selected);
        let timing = TimingDigest {
            established_ts: SystemTime::now(),
            establishment_duration: Some(handshake),
            ..TimingDigest::default()
        };
        TlsConnection {
            tls,
            digest,
            alpn,
            timing,
            unsent: 0,
        }
    }

    /// Hands rustls plaintext with `write` (which takes what fits in its buffer), sending to
    /// the socket only when `PUSH_AT` bytes have gathered or the buffer is full.
    fn take(
        &mut self,
        cx: &mut Context<'_>,
        mut write: impl FnMut(&mut ServerConnection) -> std::io::Result<usize>,
    ) -> Poll<std::io::Result<usize>> {
        loop {
            let (io, conn) = self.tls.get_mut();
            let taken = write(conn)?;
            if taken > 0 {
                self.unsent += taken;
                if self.unsent >= PUSH_AT {
                    // Sent now if the socket takes it; else by the next write or the flush,
                    // which wait for it.
                    match send(io, conn, cx) {
                        Poll::Ready(Ok(())) => self.unsent = 0,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => {}
                    }
                }
                return Poll::Ready(Ok(taken));
            }
            // rustls' buffer is full: it must reach the socket before more is taken.
            ready!(send(io, conn, cx))?;
            self.unsent = 0;
        }
    }

    fn tcp(&self) -> &Stream {
        self.tls.get_ref().0
    }
}

impl fmt::Debug for TlsConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnection")
            .field("tcp", self.tcp())
            .field("version", &self.digest.version)
            .field("alpn", &self.alpn)
            .finish()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tls).poll_read(cx, buf)
    }
}

/// Writes encrypt into rustls' outgoing buffer and reach the socket on a flush, when
/// `PUSH_AT` bytes have gathered since the last send, or when the buffer is full. pingora's
/// HTTP/1 writer flushes wherever an unbuffered stream would be needed (after a header with no
/// body, after each chunk of a chunked or close-delimited body, at a body's end), as it does
/// for its own buffered TCP stream, and the HTTP/2 codec flushes after its frames. So a hit's
/// header and body leave in one `writev` rather than one `write` each: one trip through the
/// TCP stack instead of two.
impl AsyncWrite for TlsConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.get_mut().take(cx, |conn| conn.writer().write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        // The HTTP/2 codec writes a frame's header and its payload together.
        self.get_mut()
            .take(cx, |conn| conn.writer().write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let (io, conn) = this.tls.get_mut();
        ready!(send(io, conn, cx))?;
        this.unsent = 0;
        Pin::new(io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        // close_notify, then the TCP shutdown.
        Pin::new(&mut self.tls).poll_shutdown(cx)
    }
}

/// Sends everything rustls holds for the socket. `Pending` (with the waker registered by the
/// socket) while the socket takes no more.
fn send(
    io: &mut Stream,
    conn: &mut ServerConnection,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<()>> {
    while conn.wants_write() {
        let mut socket = SocketWriter { io, cx };
        match conn.write_tls(&mut socket) {
            Ok(0) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
    Poll::Ready(Ok(()))
}

/// The socket as the `std::io::Write` rustls writes its records to: `WouldBlock` where the
/// socket would return `Pending`.
struct SocketWriter<'a, 'b> {
    io: &'a mut Stream,
    cx: &'a mut Context<'b>,
}

impl std::io::Write for SocketWriter<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(std::io::ErrorKind::WouldBlock.into()),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write_vectored(self.cx, bufs) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(std::io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[async_trait]
impl Shutdown for TlsConnection {
    async fn shutdown(&mut self) {
        // What is still buffered, close_notify, then the TCP shutdown; a client already gone
        // is nothing to report.
        if let Err(e) = AsyncWriteExt::shutdown(self).await {
            tracing::debug!(error = %e, "TLS shutdown");
        }
    }
}

impl UniqueID for TlsConnection {
    fn id(&self) -> UniqueIDType {
        self.tcp().id()
    }
}

impl Ssl for TlsConnection {
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        Some(self.digest.clone())
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.alpn.clone()
    }
}

impl GetTimingDigest for TlsConnection {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        let mut layers = self.tcp().get_timing_digest();
        layers.push(Some(self.timing.clone()));
        layers
    }

    fn get_read_pending_time(&self) -> Duration {
        self.tcp().get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.tcp().get_write_pending_time()
    }
}

impl GetProxyDigest for TlsConnection {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.tcp().get_proxy_digest()
    }
}

impl GetSocketDigest for TlsConnection {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.tcp().get_socket_digest()
    }

    fn set_socket_digest(&mut self, socket_digest: SocketDigest) {
        self.tls.get_mut().0.set_socket_digest(socket_digest);
    }
}

/// Peeking under TLS is not offered (pingora's own TLS stream does not either).
impl Peek for TlsConnection {}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_listeners_are_told_apart_by_port() {
        assert_eq!(specificity(addr("0.0.0.0:8443"), addr("10.0.0.5:8443")), 1);
        assert_eq!(specificity(addr("0.0.0.0:8443"), addr("10.0.0.5:8080")), 0);
        assert_eq!(
            specificity(addr("127.0.0.1:8443"), addr("127.0.0.1:8443")),
            2
        );
        assert_eq!(
            specificity(addr("127.0.0.1:8443"), addr("127.0.0.2:8443")),
            0
        );
    }

    #[test]
    fn a_dual_stack_listener_matches_ipv4_clients() {
        assert_eq!(
            specificity(addr("[::]:8443"), addr("[::ffff:10.0.0.5]:8443")),
            1
        );
        assert_eq!(
            specificity(addr("127.0.0.1:8443"), addr("[::ffff:127.0.0.1]:8443")),
            2
        );
    }

    #[test]
    fn the_more_specific_binding_wins_on_a_shared_port() {
        // The config gives each listener a port of its own; should two ever share one, the
        // kernel hands a connection to 127.0.0.1:8443 to the listener bound there, not to
        // the one bound to every address.
        let certs = Arc::new(NoCert);
        let tls_specific =
            TlsListener::new(addr("127.0.0.1:8443"), addr("0.0.0.0:8443"), certs.clone());
        assert!(tls_specific.arrived_on(addr("127.0.0.1:8443")));
        assert!(!tls_specific.arrived_on(addr("10.0.0.5:8443")));
        let plain_specific = TlsListener::new(addr("0.0.0.0:8443"), addr("127.0.0.1:8443"), certs);
        assert!(!plain_specific.arrived_on(addr("127.0.0.1:8443")));
        assert!(plain_specific.arrived_on(addr("10.0.0.5:8443")));
    }

    #[test]
    fn distinct_ports_go_each_to_their_listener() {
        let t = TlsListener::new(addr("0.0.0.0:8443"), addr("0.0.0.0:8080"), Arc::new(NoCert));
        assert!(t.arrived_on(addr("192.168.1.9:8443")));
        assert!(!t.arrived_on(addr("192.168.1.9:8080")));
        // A port neither listener is bound to is no reason to expect TLS.
        assert!(!t.arrived_on(addr("192.168.1.9:9000")));
    }

    /// A transport that counts the writes reaching it: the socket, as `TlsConnection` sees it.
    #[derive(Debug)]
    struct Counting {
        inner: tokio::io::DuplexStream,
        writes: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl AsyncRead for Counting {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Pin::new(&mut self.inner).poll_write(cx, buf)
        }

        /// One `writev`, as a TCP socket takes it.
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut written = 0;
            for buf in bufs {
                match Pin::new(&mut self.inner).poll_write(cx, buf) {
                    Poll::Ready(Ok(n)) if n == buf.len() => written += n,
                    Poll::Ready(Ok(n)) => return Poll::Ready(Ok(written + n)),
                    Poll::Ready(Err(e)) if written == 0 => return Poll::Ready(Err(e)),
                    Poll::Pending if written == 0 => return Poll::Pending,
                    _ => break,
                }
            }
            Poll::Ready(Ok(written))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    #[async_trait]
    impl Shutdown for Counting {
        async fn shutdown(&mut self) {}
    }
    impl UniqueID for Counting {
        fn id(&self) -> UniqueIDType {
            0
        }
    }
    impl Ssl for Counting {}
    impl GetTimingDigest for Counting {
        fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
            Vec::new()
        }
    }
    impl GetProxyDigest for Counting {
        fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
            None
        }
    }
    impl GetSocketDigest for Counting {
        fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
            None
        }
    }
    impl Peek for Counting {}

    /// A finished handshake over an in-memory pipe: the server's connection, its write
    /// counter, and the client's end.
    async fn connected() -> (
        TlsConnection,
        Arc<std::sync::atomic::AtomicUsize>,
        tokio_rustls::client::TlsStream<tokio::io::DuplexStream>,
    ) {
        use tokio_rustls::rustls::{ClientConfig, RootCertStore, pki_types::ServerName};
        crate::tls::install_provider();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let server = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let client = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let (near, far) = tokio::io::duplex(1 << 20);
        let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let socket: Stream = Box::new(Counting {
            inner: near,
            writes: writes.clone(),
        });
        let name = ServerName::try_from("localhost").unwrap();
        let (server, client) = tokio::join!(
            TlsAcceptor::from(Arc::new(server)).accept(socket),
            tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, far)
        );
        (
            TlsConnection::new(server.unwrap(), Duration::ZERO),
            writes,
            client.unwrap(),
        )
    }

    #[tokio::test]
    async fn a_responses_parts_reach_the_socket_together_at_the_flush() {
        use std::sync::atomic::Ordering::Relaxed;
        use tokio::io::AsyncReadExt;
        let (mut server, writes, mut client) = connected().await;
        writes.store(0, Relaxed);
        // A header and a body in parts, well under one record's worth together.
        for part in [b"h".repeat(600), b"b".repeat(600), b"b".repeat(600)] {
            server.write_all(&part).await.unwrap();
        }
        assert_eq!(writes.load(Relaxed), 0, "nothing sent before the flush");
        server.flush().await.unwrap();
        assert_eq!(writes.load(Relaxed), 1, "all of it in one write");
        let mut got = vec![0u8; 1800];
        client.read_exact(&mut got).await.unwrap();
        assert!(got.starts_with(&b"h".repeat(600)) && got.ends_with(&b"b".repeat(1200)));
    }

    #[tokio::test]
    async fn a_long_body_is_sent_as_it_gathers_without_waiting_for_the_flush() {
        use std::sync::atomic::Ordering::Relaxed;
        use tokio::io::AsyncReadExt;
        let (mut server, writes, mut client) = connected().await;
        writes.store(0, Relaxed);
        for _ in 0..10 {
            server.write_all(&[b'x'; 4096]).await.unwrap();
        }
        // 40 KiB taken: sent at each 16 KiB gathered, the rest waits for the flush.
        assert_eq!(writes.load(Relaxed), 2);
        let mut got = vec![0u8; 2 * PUSH_AT];
        client.read_exact(&mut got).await.unwrap();
        server.flush().await.unwrap();
        let mut rest = vec![0u8; 40 * 1024 - 2 * PUSH_AT];
        client.read_exact(&mut rest).await.unwrap();
    }

    #[derive(Debug)]
    struct NoCert;

    impl ResolvesServerCert for NoCert {
        fn resolve(
            &self,
            _: tokio_rustls::rustls::server::ClientHello<'_>,
        ) -> Option<Arc<tokio_rustls::rustls::sign::CertifiedKey>> {
            None
        }
    }
}
