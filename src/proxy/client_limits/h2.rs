//! HTTP/2 connections on the proxy's ports: TLS clients that chose `h2` by ALPN, and, with
//! `h2c: true`, plain clients that open with the HTTP/2 preface (prior knowledge).
//!
//! pingora's own HTTP/2 loop runs the connection (its handshake, streams, GOAWAY on shutdown);
//! this application sits between it and the proxy, so that each stream is counted as a request
//! in flight for a graceful stop and gets the `clients:` timeouts pingora applies to HTTP/2.
//! A request's head arrives in HEADERS frames that the h2 codec decodes whole, so the gate's
//! head reader does not apply: `clients.max_header_bytes` bounds the decoded header list
//! instead (the h2 `SETTINGS_MAX_HEADER_LIST_SIZE`), streams are capped at
//! `MAX_CONCURRENT_STREAMS` per connection, and `clients.idle_timeout_ms` closes an idle
//! connection. `max_uri_bytes` and `max_headers` are checked on the decoded request
//! (`client_limits::check_request`, in `early_request_filter`, as the body limits are, for both
//! versions); `header_timeout_ms` is an HTTP/1 limit.

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::http::v2::server::{H2Options, default_h2_options};
use pingora_core::server::ShutdownWatch;

use crate::config::Config;
use crate::drain::Drain;

/// Streams open at once on one HTTP/2 connection (pingora's default, and nginx's).
pub const MAX_CONCURRENT_STREAMS: u32 = 100;

/// The HTTP/2 side of the proxy port's application, around pingora's HTTP proxy `A`.
pub struct H2<A> {
    inner: Arc<A>,
    config: Arc<ArcSwap<Config>>,
    drain: Arc<Drain>,
    options: HttpServerOptions,
}

impl<A> H2<A> {
    /// `inner` for HTTP/2 connections, under the live `config`'s `clients:` limits.
    pub fn new(inner: Arc<A>, config: Arc<ArcSwap<Config>>, drain: Arc<Drain>) -> Self {
        let idle = config.load().clients.idle_timeout;
        let mut options = HttpServerOptions::default();
        // Only connections already known to be HTTP/2 come here: on a plain connection this
        // makes pingora read the preface the gate has seen (on TLS, ALPN decides).
        options.h2c = true;
        options.h2_idle_timeout = Some(idle);
        H2 {
            inner,
            config,
            drain,
            options,
        }
    }
}

#[async_trait]
impl<A> HttpServerApp for H2<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let clients = self.config.load().clients;
        session.set_read_timeout(Some(clients.body_timeout));
        session.set_total_drain_timeout(Some(clients.body_timeout));
        session.set_write_timeout(Some(clients.send_timeout));
        let _request = self.drain.request();
        // An HTTP/2 stream is never reused: the connection stays with pingora's loop.
        self.inner.process_new_http(session, shutdown).await
    }

    fn h2_options(&self) -> Option<H2Options> {
        let clients = self.config.load().clients;
        let mut options = default_h2_options();
        options.max_header_list_size(u32::try_from(clients.max_header_bytes).unwrap_or(u32::MAX));
        options.max_concurrent_streams(MAX_CONCURRENT_STREAMS);
        Some(options)
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.options)
    }

    async fn http_cleanup(&self) {
        self.inner.http_cleanup().await;
    }
}
