//! Hot reload: on SIGHUP, on a change of the file (when watched), or on `Reloads::trigger`, the
//! file is loaded and validated, and only then does one `ArcSwap::store` replace the live
//! configuration, so every request sees one whole configuration, old or new. A rejected file
//! changes nothing: the errors are logged, counted (`knitcache_config_reloads_total`) and kept
//! in `Reloads::last`, and the running configuration stays. Settings that cannot change in a running process (listen addresses,
//! the cache's directory and sizes, process settings) keep their running values and are
//! reported as needing a restart, never silently ignored.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use parking_lot::Mutex;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use prometheus::{IntCounterVec, Opts, Registry};
use tokio::sync::Notify;

use super::{Config, load};

/// What the last reload did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The new file is live. `restart_needed` lists changed settings that keep their running
    /// values until the next restart.
    Applied {
        /// When.
        at: SystemTime,
        /// Changed keys that only a restart applies.
        restart_needed: Vec<&'static str>,
    },
    /// The file was refused; the running configuration stays.
    Rejected {
        /// When.
        at: SystemTime,
        /// Every problem, as `knitcache check` prints them.
        errors: String,
    },
}

/// Reload state shared by the reloader and whoever holds the app: the version (1 at startup, +1
/// per applied reload), the last outcome, and a trigger. Nothing on the admin listener reloads:
/// operators send SIGHUP (`systemctl reload`, `deploy/knitcache-reload`) or run with
/// `--watch-config`.
pub struct Reloads {
    version: AtomicU64,
    last: Mutex<Option<Outcome>>,
    trigger: Notify,
    counter: IntCounterVec,
}

impl Reloads {
    /// Registers `knitcache_config_reloads_total{result}` in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Reloads> {
        let counter = IntCounterVec::new(
            Opts::new(
                "knitcache_config_reloads_total",
                "Configuration reloads, by result (applied, rejected)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(counter.clone()))?;
        for result in ["applied", "rejected"] {
            counter.with_label_values(&[result]);
        }
        Ok(Reloads {
            version: AtomicU64::new(1),
            last: Mutex::new(None),
            trigger: Notify::new(),
            counter,
        })
    }

    /// The running configuration's version.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// What the last reload did, if one happened.
    pub fn last(&self) -> Option<Outcome> {
        self.last.lock().clone()
    }

    /// Asks the reloader to reload now, as SIGHUP does. Tests use it: a signal would reach every
    /// proxy in the test process.
    pub fn trigger(&self) {
        self.trigger.notify_one();
    }
}

/// The settings a running process cannot change, by key; a reload keeps their running values.
fn restart_only(running: &Config, next: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |key: &'static str, differs: bool| {
        if differs {
            changed.push(key);
        }
    };
    check("listen", running.listen != next.listen);
    check("admin_listen", running.admin_listen != next.admin_listen);
    check(
        "listen_tls",
        running.tls.as_ref().map(|t| t.listen) != next.tls.as_ref().map(|t| t.listen),
    );
    let (a, b) = (&running.cache, &next.cache);
    check("cache.dir", a.dir != b.dir);
    check("cache.memory_mib", a.memory_bytes != b.memory_bytes);
    check("cache.disk_mib", a.disk_bytes != b.disk_bytes);
    check(
        "cache.max_object_bytes",
        a.max_object_bytes != b.max_object_bytes,
    );
    let (a, b) = (&running.server, &next.server);
    check("server.threads", a.threads != b.threads);
    check("server.grace_period_secs", a.grace_period != b.grace_period);
    check(
        "server.graceful_shutdown_timeout_secs",
        a.graceful_shutdown_timeout != b.graceful_shutdown_timeout,
    );
    check("server.pid_file", a.pid_file != b.pid_file);
    check("server.upgrade_sock", a.upgrade_sock != b.upgrade_sock);
    check(
        "warming.hot_keys",
        running.warming.hot_keys != next.warming.hot_keys,
    );
    check(
        "warming.concurrency",
        running.warming.concurrency != next.warming.concurrency,
    );
    // The health probe, the admin token and what it guards are set up once, at startup.
    let (a, b) = (&running.upstream, &next.upstream);
    check("upstream.health_path", a.health_path != b.health_path);
    check(
        "upstream.health_interval_ms",
        a.health_interval != b.health_interval,
    );
    check(
        "upstream.health_timeout_ms",
        a.health_timeout != b.health_timeout,
    );
    check("admin.token", running.admin.token != next.admin.token);
    check(
        "admin.token_env",
        running.admin.token_env != next.admin.token_env,
    );
    check(
        "admin.protect_reads",
        running.admin.protect_reads != next.admin.protect_reads,
    );
    // The cluster connection is made once, at startup.
    let (a, b) = (running.cluster.as_ref(), next.cluster.as_ref());
    check("cluster.url", a.map(|c| &c.url) != b.map(|c| &c.url));
    check(
        "cluster.password_env",
        a.map(|c| &c.password_env) != b.map(|c| &c.password_env),
    );
    check(
        "cluster.key_prefix",
        a.map(|c| &c.key_prefix) != b.map(|c| &c.key_prefix),
    );
    check(
        "cluster.timeout_ms",
        a.map(|c| c.timeout) != b.map(|c| c.timeout),
    );
    check(
        "cluster.shared_max_object_bytes",
        a.map(|c| c.shared_max_object_bytes) != b.map(|c| c.shared_max_object_bytes),
    );
    check("cluster.lease_ms", a.map(|c| c.lease) != b.map(|c| c.lease));
    changed
}

/// `next` with the running values of the settings only a restart can change.
fn keep_running(running: &Config, mut next: Config) -> Config {
    next.listen = running.listen;
    next.admin_listen = running.admin_listen;
    // The certificate, the redirect and HSTS follow the file; the TLS listener itself (its
    // address, or whether there is one) stays as it was bound.
    next.tls = match (&running.tls, next.tls.take()) {
        (Some(r), Some(mut n)) => {
            n.listen = r.listen;
            Some(n)
        }
        (running, _) => running.clone(),
    };
    next.cache.dir = running.cache.dir.clone();
    next.cache.memory_bytes = running.cache.memory_bytes;
    next.cache.disk_bytes = running.cache.disk_bytes;
    next.cache.max_object_bytes = running.cache.max_object_bytes;
    next.server = running.server.clone();
    next.warming.hot_keys = running.warming.hot_keys;
    next.warming.concurrency = running.warming.concurrency;
    next.upstream.health_path = running.upstream.health_path.clone();
    next.upstream.health_interval = running.upstream.health_interval;
    next.upstream.health_timeout = running.upstream.health_timeout;
    next.admin.token = running.admin.token.clone();
    next.admin.token_env = running.admin.token_env.clone();
    next.admin.protect_reads = running.admin.protect_reads;
    next.cluster = running.cluster.clone();
    next
}

/// Something that must follow the configuration when it changes (the limits' snapshot).
pub type OnApply = Box<dyn Fn(&Config) + Send + Sync>;

/// A part of the running process that takes a new configuration before it goes live and may
/// refuse it (the TLS certificate files): on `Err` the reload is rejected. It must change
/// nothing when it refuses.
pub type Take = Box<dyn Fn(&Config) -> Result<(), String> + Send + Sync>;

/// Adjusts a freshly loaded file the way startup did (command-line flags win over the file).
pub type Adjust = Box<dyn Fn(&mut Config) + Send + Sync>;

/// The background service that reloads the configuration.
pub struct Reloader {
    path: PathBuf,
    live: Arc<ArcSwap<Config>>,
    reloads: Arc<Reloads>,
    adjust: Adjust,
    on_apply: Vec<OnApply>,
    /// Run before the new configuration goes live; any refusal rejects the reload.
    takes: Vec<Take>,
    /// Poll the file's modification time this often; `None`: only SIGHUP and the trigger.
    watch: Option<Duration>,
}

impl Reloader {
    /// Reloads `path` into `live`; `adjust` applies the command line's overrides to each
    /// loaded file, `on_apply` runs after each applied reload.
    pub fn new(
        path: PathBuf,
        live: Arc<ArcSwap<Config>>,
        reloads: Arc<Reloads>,
        adjust: Adjust,
        on_apply: Vec<OnApply>,
        watch: Option<Duration>,
    ) -> Self {
        Reloader {
            path,
            live,
            reloads,
            adjust,
            on_apply,
            takes: Vec::new(),
            watch,
        }
    }

    /// Adds a part that takes each new configuration first and may refuse it.
    pub fn taking(mut self, take: Take) -> Self {
        self.takes.push(take);
        self
    }

    fn rejected(&self, at: SystemTime, errors: String) -> Outcome {
        tracing::warn!(file = %self.path.display(), errors = %errors, "configuration reload rejected; keeping the running configuration");
        self.reloads.counter.with_label_values(&["rejected"]).inc();
        Outcome::Rejected { at, errors }
    }

    /// Loads, validates and applies the file once.
    pub fn reload(&self) -> Outcome {
        let at = SystemTime::now();
        let outcome = match load(&self.path) {
            Err(errors) => self.rejected(at, errors.to_string()),
            Ok(mut next) => 'apply: {
                (self.adjust)(&mut next);
                let running = self.live.load_full();
                let restart_needed = restart_only(&running, &next);
                let next = keep_running(&running, next);
                for take in &self.takes {
                    if let Err(errors) = take(&next) {
                        break 'apply self.rejected(at, errors);
                    }
                }
                for apply in &self.on_apply {
                    apply(&next);
                }
                self.live.store(Arc::new(next));
                let version = self.reloads.version.fetch_add(1, Ordering::AcqRel) + 1;
                self.reloads.counter.with_label_values(&["applied"]).inc();
                if restart_needed.is_empty() {
                    tracing::info!(file = %self.path.display(), version, "configuration reloaded");
                } else {
                    tracing::warn!(
                        file = %self.path.display(),
                        version,
                        restart_needed = %restart_needed.join(", "),
                        "configuration reloaded; these settings keep their running values until a restart"
                    );
                }
                Outcome::Applied { at, restart_needed }
            }
        };
        *self.reloads.last.lock() = Some(outcome.clone());
        outcome
    }
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; only --watch-config (or a restart) reloads the file");
                None
            }
        };
        let mut seen = modified(&self.path);
        let poll = self.watch.unwrap_or(Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = async { match hangup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => {
                    self.reload();
                }
                _ = self.reloads.trigger.notified() => {
                    self.reload();
                }
                _ = tokio::time::sleep(poll), if self.watch.is_some() => {
                    let now = modified(&self.path);
                    if now != seen {
                        seen = now;
                        self.reload();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Config {
        crate::config::parse(yaml, "t.yaml").unwrap_or_else(|e| panic!("{e}"))
    }

    const BASE: &str = "upstream: { address: \"127.0.0.1:5007\" }\n";

    #[test]
    fn restart_only_settings_keep_their_running_values() {
        let running = parse(&format!(
            "{BASE}listen: \"0.0.0.0:5006\"\ncache: {{ memory_mib: 64 }}\n"
        ));
        let next = parse(&format!(
            "{BASE}listen: \"0.0.0.0:6006\"\ncache: {{ memory_mib: 128 }}\nroutes: [{{ name: k, exact: /k, ttl_secs: 9 }}]\n"
        ));
        assert_eq!(
            restart_only(&running, &next),
            vec!["listen", "cache.memory_mib"]
        );
        let applied = keep_running(&running, next);
        assert_eq!(applied.listen, running.listen);
        assert_eq!(applied.cache.memory_bytes, running.cache.memory_bytes);
        assert_eq!(applied.routes.len(), 1, "everything else is the new file's");
    }

    #[test]
    fn a_bad_file_is_rejected_and_the_running_config_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.yaml");
        std::fs::write(
            &path,
            format!("{BASE}routes: [{{ name: k, exact: /k, ttl_secs: 9 }}]\n"),
        )
        .expect("write");
        let live = Arc::new(ArcSwap::from_pointee(load(&path).expect("valid")));
        let reloads = Arc::new(Reloads::new(&Registry::new()).expect("reloads"));
        let applied = Arc::new(AtomicU64::new(0));
        let seen = applied.clone();
        let hook: OnApply = Box::new(move |_| {
            seen.fetch_add(1, Ordering::AcqRel);
        });
        let r = Reloader::new(
            path.clone(),
            live.clone(),
            reloads.clone(),
            Box::new(|_| {}),
            vec![hook],
            None,
        );

        std::fs::write(
            &path,
            format!("{BASE}routes: [{{ name: k, exact: /k, ttl_seconds: 9 }}]\n"),
        )
        .expect("write");
        match r.reload() {
            Outcome::Rejected { errors, .. } => assert!(errors.contains("ttl_seconds"), "{errors}"),
            other => panic!("must be rejected: {other:?}"),
        }
        assert_eq!(reloads.version(), 1);
        assert_eq!(applied.load(Ordering::Acquire), 0, "nothing applied");
        assert_eq!(
            live.load().routes[0].cache_policy().map(|p| p.ttl),
            Some(Duration::from_secs(9))
        );

        std::fs::write(
            &path,
            format!("{BASE}routes: [{{ name: k, exact: /k, ttl_secs: 30 }}]\n"),
        )
        .expect("write");
        assert!(
            matches!(r.reload(), Outcome::Applied { ref restart_needed, .. } if restart_needed.is_empty())
        );
        assert_eq!(reloads.version(), 2);
        assert_eq!(applied.load(Ordering::Acquire), 1);
        assert_eq!(
            live.load().routes[0].cache_policy().map(|p| p.ttl),
            Some(Duration::from_secs(30))
        );
    }
}
