//! The proxy port's connection loop: pingora's HTTP/1 loop, with each request's head read here
//! (`head::read_head`) under the `clients:` limits, and connections counted per address.
//!
//! pingora's own loop (`ServerApp` for an `HttpServerApp`) reads each head in its parser, with
//! no deadline once a connection has been kept alive. This loop reads the head itself, then
//! hands pingora a session whose first bytes are that head (`set_pipelined_prefix`): pingora
//! parses them without reading, and its proxy runs as before. Refusals are answered here, with
//! a bare status and `Connection: close`; they never reach the proxy's phases, and are counted
//! in `knitcache_client_refusals_total`.
//!
//! The same loop serves the TLS listener, once its handshake is done here
//! (`proxy::tls_termination`) under the same deadline as a request head. HTTP/2 connections,
//! chosen by ALPN on TLS or opened with the HTTP/2 preface on the plain port when `h2c` is on,
//! go to pingora's HTTP/2 loop instead (`h2`). Pipelining stays off (pingora's default), so a
//! reused connection never carries bytes of its own into the next request.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::{ALPN, Stream};
use pingora_core::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, timeout, timeout_at};

use super::Refusal;
use super::h2::H2;
use super::head::{self, Read, Wait};
use super::per_address::PerAddress;
use crate::config::{ClientSettings, Config};
use crate::drain::Drain;
use crate::metrics::Metrics;
use crate::proxy::ctx::InFlight;
use crate::proxy::tls_termination::TlsListener;

/// After a refusal, how long the connection is read and discarded before it is closed, so the
/// client reads the answer instead of a reset (closing a socket with unread input resets it).
const LINGER: Duration = Duration::from_secs(2);

/// The most bytes read and discarded while lingering.
const LINGER_BYTES: usize = 64 * 1024;

/// The proxy port's application: the client limits in front of pingora's HTTP proxy `A`.
pub struct Gate<A> {
    inner: Arc<A>,
    h2: Arc<H2<A>>,
    config: Arc<ArcSwap<Config>>,
    metrics: Arc<Metrics>,
    per_address: Arc<PerAddress>,
    drain: Arc<Drain>,
    /// The TLS listener, when `listen_tls` is set: its connections are decrypted here first.
    tls: Option<TlsListener>,
}

impl<A> Gate<A> {
    /// `inner` behind the live `config`'s `clients:` limits; each request is counted in
    /// `drain` from its head to its answer's end, so a graceful stop waits for it.
    pub fn new(
        inner: A,
        config: Arc<ArcSwap<Config>>,
        metrics: Arc<Metrics>,
        drain: Arc<Drain>,
    ) -> Self {
        let inner = Arc::new(inner);
        Gate {
            h2: Arc::new(H2::new(inner.clone(), config.clone(), drain.clone())),
            inner,
            config,
            metrics,
            per_address: Arc::new(PerAddress::default()),
            drain,
            tls: None,
        }
    }

    /// Terminates TLS for the connections `tls` says arrived on its listener.
    pub fn with_tls(mut self, tls: TlsListener) -> Self {
        self.tls = Some(tls);
        self
    }

    /// `stream` as the application reads it: decrypted when it arrived on the TLS listener.
    /// `None` when it is closed instead: a failed handshake, or a connection whose local
    /// address cannot be read while a TLS listener exists, as which port it came in on cannot
    /// be told and plain HTTP must never be served on the TLS port.
    async fn terminate_tls(&self, stream: Stream, clients: &ClientSettings) -> Option<Stream> {
        let Some(tls) = &self.tls else {
            return Some(stream);
        };
        let local = stream
            .get_socket_digest()
            .and_then(|d| d.local_addr().and_then(|a| a.as_inet()).copied());
        match local {
            Some(local) if tls.arrived_on(local) => {
                tls.accept(stream, Instant::now() + clients.header_timeout)
                    .await
            }
            Some(_) => Some(stream),
            None => None,
        }
    }
}

/// The client's IP address, if the connection has one (not a unix socket).
fn peer_ip(stream: &Stream) -> Option<IpAddr> {
    let digest = stream.get_socket_digest()?;
    Some(digest.peer_addr()?.as_inet()?.ip())
}

/// pingora's keep-alive setting that bounds a read of the head, should its parser ever need
/// more than was handed to it: whole seconds, at least one (0 would mean no limit at all).
fn bounded_keepalive(clients: &ClientSettings) -> u64 {
    clients.header_timeout.as_secs_f64().ceil().max(1.0) as u64
}

impl<A> Gate<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    /// Serves one connection until it closes.
    async fn serve(&self, mut stream: Stream, shutdown: &ShutdownWatch) {
        let clients = self.config.load().clients;
        let mut wait = Wait::Fresh(Instant::now() + clients.header_timeout);
        let mut persistent: Option<HttpPersistentSettings> = None;
        let mut first = true;
        loop {
            let clients = self.config.load().clients;
            let head = match head::read_head(&mut stream, wait, &clients, shutdown).await {
                Read::Head(head) if first && clients_h2c(&self.config) && is_h2_preface(&head) => {
                    // HTTP/2 with prior knowledge: pingora's HTTP/2 loop reads the preface
                    // again, so the bytes read go back in front of the stream.
                    // Only a plain TCP stream can carry h2c (TLS connections chose by ALPN).
                    let Some(mut plain) = stream.into_any().downcast::<L4Stream>().ok() else {
                        return;
                    };
                    plain.rewind(&head);
                    ServerApp::process_new(&self.h2, plain, shutdown).await;
                    return;
                }
                Read::Head(head) => head,
                Read::Gone => return,
                Read::Refused(refusal) => {
                    self.metrics.observe_client_refusal(refusal.reason());
                    refuse(stream, refusal, clients.send_timeout).await;
                    return;
                }
            };
            first = false;
            let mut session = ServerSession::new_http1(stream);
            if let Some(persistent) = persistent.take() {
                persistent.apply_to_session(&mut session);
            }
            session.set_pipelined_prefix(head);
            session.set_keepalive(if *shutdown.borrow() {
                None
            } else {
                Some(bounded_keepalive(&clients))
            });
            // pingora applies its read timeout to each read of a body, the drain timeout to
            // the body left unread after a response, the write timeout to each write it makes.
            session.set_read_timeout(Some(clients.body_timeout));
            session.set_total_drain_timeout(Some(clients.body_timeout));
            session.set_write_timeout(Some(clients.send_timeout));
            let request = self.drain.request();
            let reused = self.inner.process_new_http(session, shutdown).await;
            drop(request);
            let Some(reused) = reused else {
                return;
            };
            let (next, settings) = reused.consume();
            stream = next;
            persistent = settings;
            wait = Wait::Idle(clients.idle_timeout);
        }
    }
}

#[async_trait]
impl<A> ServerApp for Gate<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _open = InFlight::new(&self.metrics.client_connections);
        let clients = self.config.load().clients;
        let _slot = match (clients.max_connections_per_address, peer_ip(&stream)) {
            (Some(max), Some(ip)) => match self.per_address.open(ip, max) {
                Some(slot) => Some(slot),
                None => {
                    let refusal = Refusal::TooManyConnections;
                    self.metrics.observe_client_refusal(refusal.reason());
                    tracing::debug!(client = %ip, max, "connection over the per-address cap");
                    refuse(stream, refusal, clients.send_timeout).await;
                    return None;
                }
            },
            _ => None,
        };
        let stream = self.terminate_tls(stream, &clients).await?;
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            ServerApp::process_new(&self.h2, stream, shutdown).await;
        } else {
            self.serve(stream, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await;
    }
}

/// The connection preface of HTTP/2 (RFC 9113 §3.4), as the head reader sees it: a request
/// line `PRI * HTTP/2.0` and an empty header section.
const H2_PREFACE_HEAD: &[u8] = b"PRI * HTTP/2.0\r\n\r\n";

fn is_h2_preface(head: &[u8]) -> bool {
    head.starts_with(H2_PREFACE_HEAD)
}

fn clients_h2c(config: &ArcSwap<Config>) -> bool {
    config.load().h2c
}

/// Answers `refusal` with its bare status and closes the connection.
async fn refuse(mut stream: Stream, refusal: Refusal, send_timeout: Duration) {
    let (status, phrase) = refusal.status();
    let answer = format!(
        "HTTP/1.1 {status} {phrase}\r\nContent-Length: 0\r\nCache-Control: no-store\r\n\
         Connection: close\r\n\r\n"
    );
    let sent = timeout(send_timeout, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.flush().await?;
        AsyncWriteExt::shutdown(&mut stream).await
    })
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        return;
    }
    // Lingering close: the client may still be sending (a head too large, a dribble).
    let until = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        match timeout_at(until, stream.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => discarded += n,
            _ => break,
        }
    }
}
