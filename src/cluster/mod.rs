//! Cluster mode: replicas that share one Redis-protocol server (Valkey, Redis 7) so that a
//! purge or invalidation on any of them reaches all of them.
//!
//! Every purge and invalidation a replica makes is announced through its `Outbox` (by
//! `cache::bans` and `invalidation::remove_url`, the two places all of them pass) and appended
//! to one Redis Stream by the publisher; every replica follows the stream and applies the other
//! replicas' entries (`stream`). The stream is trimmed past the longest time any route keeps a
//! response, and each replica saves the id of the last entry it applied in its cache directory
//! (`position`), so a restart or a lost connection replays exactly what it missed.
//!
//! Redis being down is a degraded mode, never an outage: no request waits for Redis, failures
//! are counted (`metrics::ClusterMetrics`) and logged once per outage, both loops retry with
//! backoff, announcements wait in the outbox (and in its file in the cache directory, so a
//! replica stopped meanwhile publishes them at its next start), and the follower catches up
//! when Redis returns.
//!
//! The replicas also share their stored responses (`shared_tier`, read after a replica's own
//! memory and disk tiers, written by every fill) and fill each key once for the whole cluster
//! (`lease`): the other replicas wait for that fill and serve it from the shared tier. Warm
//! refreshes are claimed per key the same way.
//!
//! * `event`       what travels on the stream
//! * `outbox`      where announcements wait to be published
//! * `outbox_file` the outbox kept in the cache directory across a stop or a crash
//! * `position`    the last applied entry, saved in the cache directory
//! * `stream`      the publisher and the follower
//! * `shared_tier` stored responses in Redis, after the local tiers
//! * `lease`       one fill (and one warm refresh) per key across the cluster

pub mod event;
pub mod lease;
pub mod outbox;
pub mod outbox_file;
pub mod position;
pub mod shared_tier;
mod stream;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use parking_lot::Mutex;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, RedisError};

use crate::cache::HybridStorage;
use crate::cache::bans::Bans;
use crate::config::{ClusterSettings, Config};
use crate::metrics::ClusterMetrics;
pub use outbox::{Outbox, OutboxReceiver};
pub use shared_tier::SharedTier;

/// First pause after a failed operation; doubled on each further failure.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest pause between retries while Redis is down.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Longest a starting replica spends applying what it missed before it serves.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(5);

/// The cluster side of one replica: its connections to Redis and the two loops that use them.
/// Runs as a background service of the server.
pub struct Cluster {
    shared: Arc<Shared>,
    outbox: Mutex<Option<OutboxReceiver>>,
}

/// What the loops share.
struct Shared {
    settings: ClusterSettings,
    /// This replica's id in stream entries, random per process.
    replica: String,
    metrics: Arc<ClusterMetrics>,
    bans: Arc<Bans>,
    storage: &'static HybridStorage,
    config: Arc<ArcSwap<Config>>,
    /// The cache directory, where the stream position is saved; `None` when memory-only.
    dir: Option<PathBuf>,
    /// Whether the last operation succeeded: failures are logged when it turns false.
    up: AtomicBool,
}

impl Cluster {
    /// The cluster side of a replica whose bans announce through the outbox `outbox` drains.
    /// `dir` is the cache directory when the disk tier is open.
    pub fn new(
        settings: ClusterSettings,
        metrics: Arc<ClusterMetrics>,
        outbox: OutboxReceiver,
        bans: Arc<Bans>,
        storage: &'static HybridStorage,
        config: Arc<ArcSwap<Config>>,
        dir: Option<PathBuf>,
    ) -> Cluster {
        let mut raw = [0u8; 8];
        // An id only tells this replica's entries from others'; a clock-based one will do if
        // the system has no randomness to give.
        let replica = match getrandom::fill(&mut raw) {
            Ok(()) => format!("{:016x}", u64::from_le_bytes(raw)),
            Err(_) => format!(
                "{}-{}",
                std::process::id(),
                crate::cache::bans::unix_ms(std::time::SystemTime::now(),)
            ),
        };
        Cluster {
            shared: Arc::new(Shared {
                settings,
                replica,
                metrics,
                bans,
                storage,
                config,
                dir,
                up: AtomicBool::new(true),
            }),
            outbox: Mutex::new(Some(outbox)),
        }
    }
}

#[async_trait]
impl BackgroundService for Cluster {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(outbox) = self.outbox.lock().take() else {
            return;
        };
        let s = &self.shared;
        // Two connections: the follower's blocking read holds its connection while it waits.
        let (publisher, follower) = match (
            s.connection(s.settings.timeout),
            s.connection(s.settings.timeout + stream::READ_BLOCK),
        ) {
            (Ok(p), Ok(f)) => (p, f),
            (Err(e), _) | (_, Err(e)) => {
                s.metrics.up.set(0);
                tracing::error!(error = %e, url = %s.settings.url,
                    "cluster mode off: cannot set up the Redis client; this replica runs alone");
                return;
            }
        };
        tracing::info!(url = %s.settings.url, replica = %s.replica, "cluster mode on");
        // `knitcache_cluster_redis_up` is left as the last operation set it: after a start-up
        // catch-up that failed it stays 0 until an operation succeeds.
        tokio::select! {
            () = stream::publish(s.clone(), publisher, outbox) => {}
            () = stream::follow(s.clone(), follower) => {}
            _ = shutdown.changed() => {}
        }
    }
}

impl Cluster {
    /// The shared tier and fill leases of this replica, on a connection and a runtime of their
    /// own; `None` when `cluster.shared_max_object_bytes` is 0, or the client cannot be set up
    /// (logged: the replica then shares invalidations only).
    pub fn shared_tier(&self) -> Option<Arc<SharedTier>> {
        let s = &self.shared;
        if s.settings.shared_max_object_bytes == 0 {
            return None;
        }
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("knitcache-shared-tier")
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "no runtime for the shared tier; fills stay local");
                return None;
            }
        };
        // The client's connection task runs on the tier's own runtime.
        let conn = {
            let _on = runtime.enter();
            s.connection(s.settings.timeout)
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot set up the shared tier's Redis client; fills stay local");
                return None;
            }
        };
        // Lives as long as the process: the storage that uses it is never dropped either.
        let runtime: &'static tokio::runtime::Runtime = Box::leak(Box::new(runtime));
        Some(Arc::new(SharedTier::new(
            s.clone(),
            conn,
            runtime.handle().clone(),
        )))
    }

    /// Applies what this replica missed while it was down, before it serves: a key purged
    /// meanwhile on another replica must not be served from the disk tier it recovered. Runs
    /// on a runtime of its own (call it outside any); bounded by `CATCH_UP_LIMIT`, after which
    /// (or if Redis is down) the follower catches up in the background.
    pub fn catch_up(&self) {
        let s = &self.shared;
        if s.dir.is_none() {
            // Memory-only: the cache starts empty, nothing in it predates any purge.
            return;
        }
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "no runtime to catch up on the cluster stream");
                return;
            }
        };
        let started = Instant::now();
        let outcome = runtime.block_on(async {
            let conn = s.connection(s.settings.timeout)?;
            tokio::time::timeout(CATCH_UP_LIMIT, stream::catch_up(s, conn))
                .await
                .unwrap_or_else(|_| {
                    Err(RedisError::from((
                        redis::ErrorKind::Io,
                        "catch-up took too long",
                    )))
                })
        });
        match outcome {
            Ok(read) => tracing::info!(
                entries = read,
                took_ms = started.elapsed().as_millis() as u64,
                "caught up on the cluster invalidation stream"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                "cannot catch up on the cluster invalidation stream before serving; \
                 continuing in the background"
            ),
        }
    }
}

impl Shared {
    /// A connection that reconnects by itself. Made lazily: a replica starts, and serves,
    /// while Redis is down.
    fn connection(&self, response_timeout: Duration) -> Result<ConnectionManager, RedisError> {
        let mut info = self.settings.url.as_str().into_connection_info()?;
        if let Some(password) = self.settings.password() {
            let redis = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(redis);
        }
        let client = redis::Client::open(info)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.settings.timeout))
            .set_response_timeout(Some(response_timeout))
            // One reconnect attempt per operation: the loops have their own backoff.
            .set_number_of_retries(1)
            .set_max_delay(BACKOFF_MAX);
        ConnectionManager::new_lazy_with_config(client, config)
    }

    /// `prefix:name`.
    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.settings.key_prefix)
    }

    /// Times `op`, counts it if it failed, and logs the first failure of an outage and the
    /// recovery.
    async fn timed<T>(
        &self,
        op: &'static str,
        run: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, RedisError> {
        let started = Instant::now();
        let result = run.await;
        self.metrics
            .op_seconds
            .with_label_values(&[op])
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(_) => {
                if !self.up.swap(true, Ordering::Relaxed) {
                    tracing::info!(url = %self.settings.url, "Redis reachable again; cluster mode resumed");
                }
                self.metrics.up.set(1);
            }
            Err(e) => {
                self.metrics.op_errors.with_label_values(&[op]).inc();
                self.metrics.up.set(0);
                if self.up.swap(false, Ordering::Relaxed) {
                    tracing::error!(
                        url = %self.settings.url,
                        op,
                        error = %e,
                        "Redis unreachable; serving from this replica's own tiers and retrying"
                    );
                }
            }
        }
        result
    }
}

/// Exponential backoff between retries while Redis fails.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Backoff {
        Backoff(BACKOFF_MIN)
    }

    fn reset(&mut self) {
        self.0 = BACKOFF_MIN;
    }

    /// Waits the current pause, then doubles it up to `BACKOFF_MAX`.
    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
    }
}
