//! Wiring: one pingora `Server` with the proxy service, the admin service and the cache,
//! built from a validated `Config`. `main` and the integration tests both go through here.
//!
//! Listeners are bound here, before pingora starts, and handed to pingora as ready file
//! descriptors (the same path pingora uses for sockets inherited in a graceful upgrade). A
//! busy port is then a clear startup error instead of pingora's 30 retries and a panic, and
//! `127.0.0.1:0` works: the bound port is known before the first request.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{IntoRawFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{
    ListenFds, RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch,
};
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use pingora_core::services::{ServiceReadyNotifier, ServiceWithDependents};

use crate::admin::Admin;
use crate::cache::bans::Bans;
use crate::cache::{Cache, CacheError, Closer, DiskTier};
use crate::cluster::{Cluster, Outbox};
use crate::config::Config;
use crate::config::reload::{Adjust, OnApply, Reloader, Reloads};
use crate::drain::{Drain, Drained};
use crate::health::{HealthProbe, HealthState};
use crate::invalidation::Invalidator;
use crate::limits::{Limits, Upkeep};
use crate::metrics::{ClusterMetrics, Metrics};
use crate::proxy::Proxy;
use crate::proxy::client_limits::gate::Gate;
use crate::proxy::tls_termination::TlsListener;
use crate::stats::Stats;
use crate::tls::{LiveCert, TlsError};
use crate::warming::{Warmer, Warming, WarmingError};

/// Why the server could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Which listener.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The cache could not be opened at all.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The TLS certificate or key cannot be used.
    #[error("cannot serve HTTPS: {0}")]
    Tls(#[from] TlsError),
    /// Metrics could not be registered.
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The warmer could not be set up.
    #[error(transparent)]
    Warming(#[from] WarmingError),
}

/// What a client connection buffers before writing to its socket: nothing. Fresh hits are
/// written straight to the socket, header and body in one `writev` (`proxy::socket_write`);
/// what is left for pingora's writer (misses, pass-through, hits from disk or stale) sends its
/// header and body in separate writes, which costs microseconds beside the ERP's
/// milliseconds. A buffer would be held by every connection for its life: 4 KiB is 4 MiB at
/// 1,000 connections, against the memory budget (docs/PERFORMANCE.md, "Memory").
pub const CLIENT_WRITE_BUFFER_BYTES: usize = 0;

/// What a client connection buffers on the read side: nothing. pingora's default is 64 KiB
/// per connection in front of the HTTP parser's own 4 KiB header buffer, which then copies out
/// of it; with none, a request is read straight into the parser's buffer (pingora 0.9 reads
/// unbuffered at zero, and pipelined bytes stay in the parser's buffer).
pub const CLIENT_READ_BUFFER_BYTES: usize = 0;

/// The addresses the server really listens on (ports resolved when `:0` was asked for).
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    /// Client traffic.
    pub proxy: SocketAddr,
    /// Admin endpoints.
    pub admin: SocketAddr,
    /// HTTPS client traffic, when `listen_tls` is set.
    pub tls: Option<SocketAddr>,
}

/// Sockets bound before the server starts.
pub struct Listeners {
    proxy: TcpListener,
    admin: TcpListener,
    tls: Option<TcpListener>,
}

impl Listeners {
    /// Binds the proxy and admin addresses of `config`.
    pub fn bind(config: &Config) -> Result<Listeners, AppError> {
        let bind = |addr: SocketAddr, what: &'static str| {
            TcpListener::bind(addr)
                // tokio adopts the socket as is and needs it non-blocking
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|source| AppError::Bind { addr, what, source })
        };
        Ok(Listeners {
            proxy: bind(config.listen, "proxy")?,
            admin: bind(config.admin_listen, "admin")?,
            tls: config
                .tls
                .as_ref()
                .map(|t| bind(t.listen, "proxy, TLS"))
                .transpose()?,
        })
    }

    /// The bound addresses.
    pub fn addrs(&self) -> std::io::Result<Addrs> {
        Ok(Addrs {
            proxy: self.proxy.local_addr()?,
            admin: self.admin.local_addr()?,
            tls: self.tls.as_ref().map(TcpListener::local_addr).transpose()?,
        })
    }
}

/// A built server, ready to run.
pub struct App {
    server: Server,
    cache: Cache,
    /// Where it listens.
    pub addrs: Addrs,
    /// The live configuration (replaced whole on reload).
    pub config: Arc<ArcSwap<Config>>,
    /// The metrics `/metrics` serves.
    pub metrics: Arc<Metrics>,
    /// The configuration's version and reload outcomes; `trigger()` reloads.
    pub reloads: Arc<Reloads>,
    limits: Arc<Limits>,
    /// What the ERP health probe last found.
    pub health: HealthState,
    /// The proxy's requests in flight and its listeners' switch (a graceful stop).
    drain: Arc<Drain>,
    /// The certificate the TLS listener presents, reloaded with the configuration.
    cert: Option<Arc<LiveCert>>,
}

/// The pingora settings derived from our configuration. Everything not set here keeps
/// pingora's default.
pub fn server_conf(config: &Config) -> ServerConf {
    let s = &config.server;
    ServerConf {
        threads: s.threads,
        grace_period_seconds: Some(s.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(s.graceful_shutdown_timeout.as_secs()),
        pid_file: s.pid_file.display().to_string(),
        upgrade_sock: s.upgrade_sock.display().to_string(),
        ..ServerConf::default()
    }
}

/// Builds the server: opens the cache, creates the services on `listeners`. Call it outside
/// any tokio runtime: opening the cache drives the cache's own runtime.
pub fn build(config: Config, listeners: Listeners) -> Result<App, AppError> {
    let addrs = listeners.addrs().map_err(|source| AppError::Bind {
        addr: config.listen,
        what: "proxy",
        source,
    })?;
    let metrics = Arc::new(Metrics::new(config.routes.iter().map(|r| r.name.as_str()))?);
    let cache = Cache::open(&config.cache, &metrics.registry)?;
    let mut server = Server::new_with_opt_and_conf(None, server_conf(&config));
    server.bootstrap();
    assemble(config, server, cache, metrics, addrs, Some(listeners))
}

/// Builds the server that takes over from a running one (pingora's graceful upgrade): it
/// receives the running process's listening sockets through `server.upgrade_sock` (the running
/// process sends them on SIGQUIT; pingora gives up after about five seconds), then opens the
/// cache, which the running process closes as it hands over.
pub fn build_upgrade(config: Config) -> Result<App, AppError> {
    let addrs = Addrs {
        proxy: config.listen,
        admin: config.admin_listen,
        tls: config.tls.as_ref().map(|t| t.listen),
    };
    let opt = Opt {
        upgrade: true,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), server_conf(&config));
    server.bootstrap();
    let metrics = Arc::new(Metrics::new(config.routes.iter().map(|r| r.name.as_str()))?);
    let cache = Cache::open(&config.cache, &metrics.registry)?;
    assemble(config, server, cache, metrics, addrs, None)
}

/// The services of a server, on `listeners` if given, else on sockets pingora already holds.
fn assemble(
    config: Config,
    mut server: Server,
    cache: Cache,
    metrics: Arc<Metrics>,
    addrs: Addrs,
    listeners: Option<Listeners>,
) -> Result<App, AppError> {
    let mut cache = cache;
    let has_disk = !matches!(cache.disk, DiskTier::MemoryOnly { .. });
    // Cluster mode: every ban and URL purge is announced through the outbox, kept in the cache
    // directory with a disk tier (so purges waiting for Redis survive a stop), else in memory.
    let cluster = match &config.cluster {
        Some(settings) => {
            let m = Arc::new(ClusterMetrics::new(&metrics.registry)?);
            let (outbox, rx) = Outbox::channel(m.clone(), has_disk.then_some(&*config.cache.dir));
            Some((settings.clone(), m, outbox, rx))
        }
        None => None,
    };
    let bans = if has_disk {
        Bans::load(&config.cache.dir, config.longest_retention())
    } else {
        Bans::in_memory(config.longest_retention())
    };
    let bans = bans.unsaved_to(cache.storage.trust().clone());
    if has_disk {
        cache
            .storage
            .remember_purges_in(&config.cache.dir, config.longest_retention());
    }
    cache.bans = Arc::new(match &cluster {
        Some((_, _, outbox, _)) => bans.with_outbox(outbox.clone()),
        None => bans,
    });
    let cache_dir = has_disk.then(|| config.cache.dir.clone());
    metrics.set_capacities(
        config.cache.memory_bytes,
        has_disk.then_some(config.cache.disk_bytes),
    );
    let mut config = config;
    if let (Some(tls), Some(bound)) = (config.tls.as_mut(), addrs.tls) {
        // The bound address (port 0 resolved): redirects name the port clients can reach.
        tls.listen = bound;
    }
    let stats = Arc::new(Stats::new(&config));
    let health = HealthState::new();
    let admin_token = config.admin.resolve_token();
    if admin_token.is_none() {
        tracing::info!(
            env = %config.admin.token_env,
            "no admin token configured; purge answers loopback clients only"
        );
    }
    let probe = HealthProbe::new(
        config.upstream.address,
        config.upstream.health_path.clone(),
        config.upstream.health_interval,
        config.upstream.health_timeout,
        health.clone(),
        metrics.clone(),
    );
    let limits = Arc::new(Limits::new(&config, &metrics.registry)?);
    let idle = config.protection.rate_limit.as_ref().map(|r| r.idle);
    server.add_service(background_service(
        "knitcache limits",
        Upkeep::new(limits.clone(), idle).with_health(health.subscribe()),
    ));
    let warming = Arc::new(Warming::new(config.warming.hot_keys, &metrics.registry)?);
    let invalidator = Arc::new(Invalidator::new(
        cache.bans.clone(),
        warming.clone(),
        cache.storage,
        &metrics.registry,
    )?);
    let live = Arc::new(ArcSwap::from_pointee(config));
    if let Some((settings, m, _, rx)) = cluster {
        let follower = Cluster::new(
            settings,
            m,
            rx,
            cache.bans.clone(),
            cache.storage,
            live.clone(),
            cache_dir,
        );
        if let Some(tier) = follower.shared_tier() {
            cache.storage.attach_shared(tier);
        }
        follower.catch_up();
        server.add_service(background_service("knitcache cluster", follower));
    }
    let warmer = Warmer::new(warming.clone(), live.clone(), limits.clone(), addrs.proxy);
    server.add_service(background_service("knitcache warmer", warmer));
    let proxy = Proxy::new(
        live.clone(),
        &cache,
        metrics.clone(),
        limits.clone(),
        warming,
    )
    .with_stats(stats.clone())
    .with_invalidator(invalidator);
    let reloads = Arc::new(Reloads::new(&metrics.registry)?);
    let drain = Arc::new(Drain::default());
    // The client limits read each request's head before pingora's proxy sees it.
    let gated = Gate::new(
        pingora_proxy::http_proxy(&server.configuration, proxy),
        live.clone(),
        metrics.clone(),
        drain.clone(),
    );
    let buffers = L4BufferSettings::new(CLIENT_READ_BUFFER_BYTES, CLIENT_WRITE_BUFFER_BYTES);
    // The TLS listener serves the same application: the gate, the proxy, the cache. Its port
    // is a plain TCP listener to pingora; the gate does the handshake.
    let tls = live.load().tls.clone();
    let (gated, cert, tls_listen) = match (&tls, addrs.tls) {
        (Some(t), Some(tls_addr)) => {
            // The resolver presents the live certificate; a reload swaps it in place.
            let cert = LiveCert::load(&t.cert_file, &t.key_file)?;
            let listener = TlsListener::new(tls_addr, addrs.proxy, cert.clone());
            (gated.with_tls(listener), Some(cert), Some(tls_addr))
        }
        _ => (gated, None, None),
    };
    let mut proxy_service = Service::new("knitcache proxy".to_string(), gated);
    for addr in std::iter::once(addrs.proxy).chain(tls_listen) {
        proxy_service.add_listener(ListenerConfig::tcp(addr.to_string()).l4_buffer(buffers));
    }
    let (proxy_listener, admin_listener, tls_listener) = match listeners {
        Some(l) => (Some(l.proxy), Some(l.admin), l.tls),
        None => (None, None, None),
    };
    let mut bound = vec![(addrs.proxy, proxy_listener)];
    if let Some(tls_addr) = addrs.tls {
        bound.push((tls_addr, tls_listener));
    }
    server.add_service(PreBound::new(proxy_service, bound, drain.clone()));

    let mut admin_service = Service::new(
        "knitcache admin".to_string(),
        Admin::new(
            live.clone(),
            metrics.clone(),
            stats,
            health.clone(),
            &cache,
            admin_token,
        ),
    );
    admin_service.threads = Some(1);
    admin_service.add_tcp(&addrs.admin.to_string());
    server.add_service(PreBound::new(
        admin_service,
        vec![(addrs.admin, admin_listener)],
        drain.clone(),
    ));
    server.add_service(background_service("knitcache erp health", probe));

    Ok(App {
        server,
        cache,
        addrs,
        config: live,
        metrics,
        reloads,
        limits,
        health,
        drain,
        cert,
    })
}

impl App {
    /// Reloads the configuration from `path` on SIGHUP, on `reloads.trigger()`, and, with
    /// `watch`, whenever the file's modification time changes (polled at that interval).
    /// `adjust` re-applies what overrode the file at startup (the command line's flags).
    pub fn reload_from(&mut self, path: PathBuf, adjust: Adjust, watch: Option<Duration>) {
        let limits = self.limits.clone();
        let on_apply: Vec<OnApply> = vec![Box::new(move |c: &Config| limits.apply(c))];
        let mut reloader = Reloader::new(
            path,
            self.config.clone(),
            self.reloads.clone(),
            adjust,
            on_apply,
            watch,
        );
        if let Some(cert) = self.cert.clone() {
            // The certificate files are read again on every reload (a renewed certificate
            // replaces the files in place); a pair that cannot be used rejects the reload and
            // the running certificate stays.
            reloader = reloader.taking(Box::new(move |c: &Config| match &c.tls {
                Some(t) => cert
                    .reload(&t.cert_file, &t.key_file)
                    .map_err(|e| e.to_string()),
                None => Ok(()),
            }));
        }
        self.server
            .add_service(background_service("knitcache config reloader", reloader));
    }

    /// Runs until `shutdown` fires, then closes the cache (flushing the disk tier). On a
    /// graceful stop the listeners close at once and the process ends as soon as the requests
    /// in flight are answered, or after `server.grace_period_secs` at the latest.
    pub fn run(self, shutdown: Box<dyn ShutdownSignalWatch + Send + Sync>) {
        let grace = self.config.load().server.grace_period;
        let App {
            server,
            cache,
            drain,
            ..
        } = self;
        let draining = Draining {
            inner: shutdown,
            drain,
            closer: cache.closer(),
            grace,
        };
        server.run(RunArgs {
            shutdown_signal: Box::new(draining),
        });
        cache.close();
    }

    /// Runs until SIGTERM (graceful), SIGINT (fast) or SIGQUIT (graceful upgrade: the cache
    /// is closed first, so the next process can open it while this one drains).
    pub fn run_until_signal(self) {
        let signals = Signals {
            closer: self.cache.closer(),
        };
        // pingora writes its pid file only when it daemonizes; operators and the upgrade
        // procedure need it in the foreground too.
        let pid_file = self.config.load().server.pid_file.clone();
        let pid = std::process::id().to_string();
        if let Err(e) = std::fs::write(&pid_file, &pid) {
            tracing::warn!(file = %pid_file.display(), error = %e, "cannot write the pid file");
        }
        self.run(Box::new(signals));
        // After an upgrade the file names the new process: leave it alone then.
        if std::fs::read_to_string(&pid_file).is_ok_and(|p| p == pid) {
            let _ = std::fs::remove_file(&pid_file);
        }
    }
}

/// pingora's signals (SIGTERM graceful, SIGINT fast, SIGQUIT graceful upgrade), plus one step
/// of ours on SIGQUIT: the cache is closed and its directory released before pingora hands the
/// sockets over, so the new process never waits for this one's grace period.
struct Signals {
    closer: Closer,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut quit), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot listen for signals; stopping");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = quit.recv() => {
                tracing::info!("SIGQUIT: closing the cache, then handing the sockets over");
                self.closer.close().await;
                ShutdownSignal::GracefulUpgrade
            }
            _ = term.recv() => ShutdownSignal::GracefulTerminate,
            _ = int.recv() => ShutdownSignal::FastShutdown,
        }
    }
}

/// A graceful stop (SIGTERM) done by knitcache rather than pingora, around the signals of
/// `inner`: close the listeners, wait for the requests in flight (at most `grace`), flush and
/// close the cache, then let pingora stop the runtimes at once. pingora's own graceful
/// terminate would sleep its whole grace period even with nothing in flight. The other
/// signals go to pingora unchanged (a graceful upgrade keeps pingora's sequence: it must hand
/// the sockets over before the listeners close).
struct Draining {
    inner: Box<dyn ShutdownSignalWatch + Send + Sync>,
    drain: Arc<Drain>,
    closer: Closer,
    grace: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for Draining {
    async fn recv(&self) -> ShutdownSignal {
        match self.inner.recv().await {
            ShutdownSignal::GracefulTerminate => {
                self.drain.stop_accepting();
                let in_flight = self.drain.in_flight();
                tracing::info!(
                    in_flight,
                    grace_secs = self.grace.as_secs(),
                    "stopping: listeners closed, waiting for the requests in flight"
                );
                let started = std::time::Instant::now();
                match self.drain.idle(self.grace).await {
                    Drained::Idle => tracing::info!(
                        took_ms = started.elapsed().as_millis() as u64,
                        "stopping: every request answered; closing the cache"
                    ),
                    Drained::GaveUp(left) => tracing::warn!(
                        left,
                        grace_secs = self.grace.as_secs(),
                        "stopping: grace period over with requests still in flight; they are cut"
                    ),
                }
                self.closer.close().await;
                // Nothing is left to wait for: pingora's fast path stops the runtimes without
                // sleeping a grace period (it logs this as a fast shutdown).
                ShutdownSignal::FastShutdown
            }
            other => other,
        }
    }
}

/// A listening service whose socket is already bound: its fd is put into pingora's listen-fd
/// table under the service's address before the service builds its listeners. The service
/// stops accepting when `drain` says so, or when pingora broadcasts its own shutdown (a
/// graceful upgrade).
struct PreBound<S> {
    inner: S,
    /// The service's addresses, each with its bound socket until it is handed to pingora.
    fds: Vec<(String, Option<RawFd>)>,
    drain: Arc<Drain>,
}

impl<S> PreBound<S> {
    /// An address without a listener is bound (or inherited) by the service itself.
    fn new(inner: S, bound: Vec<(SocketAddr, Option<TcpListener>)>, drain: Arc<Drain>) -> Self {
        PreBound {
            inner,
            fds: bound
                .into_iter()
                .map(|(addr, l)| (addr.to_string(), l.map(IntoRawFd::into_raw_fd)))
                .collect(),
            drain,
        }
    }
}

#[async_trait]
impl<S: ServiceWithDependents> ServiceWithDependents for PreBound<S> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
        ready: ServiceReadyNotifier,
    ) {
        if let Some(table) = &fds {
            for (addr, fd) in &mut self.fds {
                if let Some(fd) = fd.take() {
                    table.lock().add(addr.clone(), fd);
                }
            }
        }
        // pingora's own shutdown (after a graceful upgrade's handover) closes the listeners too.
        let drain = self.drain.clone();
        let mut pingora = shutdown;
        tokio::spawn(async move {
            if pingora.wait_for(|stopping| *stopping).await.is_ok() {
                drain.stop_accepting();
            }
        });
        self.inner
            .start_service(fds, self.drain.listeners(), listeners_per_fd, ready)
            .await
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn threads(&self) -> Option<usize> {
        self.inner.threads()
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.inner.listen_addresses()
    }
}

impl<S> Drop for PreBound<S> {
    fn drop(&mut self) {
        // Never handed to pingora (the server did not start): close the sockets ourselves.
        for fd in self.fds.iter_mut().filter_map(|(_, fd)| fd.take()) {
            use std::os::fd::FromRawFd;
            // SAFETY: the fd came from `into_raw_fd` above and nothing else owns it.
            drop(unsafe { TcpListener::from_raw_fd(fd) });
        }
    }
}
