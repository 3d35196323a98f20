//! The hybrid cache: opening foyer's memory + disk tiers, and the per-proxy objects pingora
//! needs as `&'static` (storage and cache lock).
//!
//! Opening stops the proxy for one reason only: the directory is not knitcache's (`dir_mark`), so
//! a mistyped `--cache-dir` never has someone else's files moved or deleted. Otherwise a disk
//! tier that cannot be opened (lock file unusable, corrupt block files foyer refuses, another
//! layout) is logged, moved aside for inspection, and replaced by an empty one; if even that
//! fails, or the directory cannot be inspected, the cache runs memory-only. The ERP is still
//! served.
//!
//! * `object`  the stored unit and its on-disk encoding
//! * `parsed`  the parsed metadata kept beside it in memory (hits skip deserialising)
//! * `hit_head` the header a hit sends, for pingora's writer and for the socket
//! * `storage` `pingora_cache::Storage` over the foyer cache
//! * `key`     cache keys from a route's policy
//! * `policy`  which responses are stored, and for how long
//! * `encoding` the compressed variants stored per key
//! * `transcode` one coding's variant made from another's stored bytes
//! * `no_transform` the responses whose content is never changed (neither compressed nor recoded)
//! * `dir_mark` which directories are knitcache's to move aside or delete
//! * `dir_lock` one process per cache directory (graceful upgrades hand it over)
//! * `disk_health` storage errors counted and logged, and the disk tier's state (`degraded`)
//! * `disk_trust` whether the disk tier's entries may be served at start (no purge was lost)
//! * `bans`    purges by prefix or route, checked on every hit
//! * `recent_purges` URL purges a fill still in flight must not undo

pub mod bans;
pub mod dir_lock;
pub mod dir_mark;
pub mod disk_health;
pub mod disk_trust;
pub mod encoding;
pub mod freshness;
pub mod hit_head;
pub mod key;
pub mod no_transform;
pub mod object;
pub mod parsed;
pub mod policy;
pub mod recent_purges;
pub mod sealed_body;
pub mod storage;
pub mod transcode;
pub mod validators;
pub mod variants;
pub mod vary;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dir_lock::{DirLock, LockError};
use dir_mark::{ClaimError, LAYOUT};
use foyer::{
    BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCacheBuilder, HybridCachePolicy,
    LfuConfig, RecoverMode,
};
use parking_lot::Mutex;
use pingora_cache::lock::{CacheKeyLockImpl, CacheLock};
use prometheus::Registry;

use crate::config::CacheSettings;
use disk_health::DiskHealth;
use disk_trust::DiskTrust;
use object::CachedObject;
pub use storage::{FoyerCache, HybridStorage};

/// The directory lock, shared with `Closer` so either close releases it.
type SharedLock = Arc<Mutex<Option<DirLock>>>;

/// How long a starting process waits for another to release the cache directory: a graceful
/// upgrade's old process closes its cache as soon as it is told to hand over.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// Smallest foyer block; blocks are the disk tier's unit of eviction and cap the entry size.
const MIN_BLOCK_BYTES: u64 = 1024 * 1024;
/// Room for the serialised header and metadata beside the largest body in one block.
const BLOCK_HEADROOM_BYTES: u64 = 64 * 1024;

/// Smallest disk-tier flush buffer.
const MIN_FLUSH_BUFFER_BYTES: u64 = 1024 * 1024;
/// foyer's I/O unit: flush buffers are whole pages.
const PAGE_BYTES: u64 = 4096;

/// Why the cache could not be opened at all (not even memory-only).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// foyer refused to build even a memory-only cache.
    #[error("cannot build the memory tier: {0}")]
    Memory(foyer::Error),
    /// The runtime that runs foyer's I/O could not be started.
    #[error("cannot start the cache runtime: {0}")]
    Runtime(std::io::Error),
    /// The metrics of the cache could not be registered.
    #[error("cannot register cache metrics: {0}")]
    Metrics(prometheus::Error),
    /// The configured directory is not knitcache's: starting would risk someone else's files.
    #[error(transparent)]
    NotOurs(ClaimError),
}

/// What became of the disk tier at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskTier {
    /// Opened on the configured directory (entries from a previous run are recovered).
    Open,
    /// The directory could not be used as it was; it was moved to `moved_to` and a fresh,
    /// empty disk tier was opened in its place.
    Recreated {
        /// Where the old directory now lies.
        moved_to: PathBuf,
        /// Why it could not be opened.
        reason: String,
    },
    /// No disk tier: the cache lives in memory only until the next restart.
    MemoryOnly {
        /// Why the disk tier could not be opened.
        reason: String,
    },
}

/// The open cache of one proxy instance.
pub struct Cache {
    /// The storage handed to pingora (leaked: pingora requires `&'static`).
    pub storage: &'static HybridStorage,
    /// The cache lock handed to pingora: it coalesces concurrent misses of one key into one
    /// ERP request and lets stale-while-revalidate refresh in the background.
    pub lock: &'static CacheKeyLockImpl,
    /// What happened to the disk tier at startup.
    pub disk: DiskTier,
    /// Largest body stored.
    pub max_object_bytes: usize,
    /// Purge bans checked on every hit; `app::build` loads them from the cache directory.
    pub bans: Arc<bans::Bans>,
    /// Runs foyer's I/O; outlives pingora's per-service runtimes so `close` can flush.
    runtime: tokio::runtime::Runtime,
    /// Held while the disk tier is open; released when it is closed.
    dir_lock: SharedLock,
}

/// Closes the cache from async code (a graceful upgrade hands the directory to the next
/// process before this one's grace period ends). Requests still in flight then proceed without
/// the cache: storage errors are served as misses.
#[derive(Clone)]
pub struct Closer {
    storage: &'static HybridStorage,
    runtime: tokio::runtime::Handle,
    dir_lock: SharedLock,
}

impl Closer {
    /// Flushes and closes both tiers and releases the directory.
    pub async fn close(&self) {
        if let Some(cache) = take_for_close(self.storage) {
            let (done, wait) = tokio::sync::oneshot::channel();
            // foyer's I/O runs on the cache runtime; close it there and wait for the answer.
            self.runtime.spawn(async move {
                let _ = done.send(cache.close().await);
            });
            match wait.await {
                Ok(Ok(())) => tracing::info!("cache closed for handover"),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cache close failed; some recent entries may be lost")
                }
                Err(_) => tracing::error!("cache runtime stopped before the cache closed"),
            }
        }
        self.dir_lock.lock().take();
    }
}

impl Cache {
    /// Opens both tiers under `settings`, registering foyer's and the storage's metrics in
    /// `registry`. Only fails if not even a memory-only cache can be built.
    pub fn open(settings: &CacheSettings, registry: &Registry) -> Result<Cache, CacheError> {
        let health = DiskHealth::new(registry).map_err(CacheError::Metrics)?;
        disk_health::install_panic_hook();
        // Every thread of this runtime runs this disk tier's I/O: foyer's errors and panics on
        // them are attributed to it (several proxies may share a process: the tests).
        let bound = health.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("knitcache-cache-io")
            .on_thread_start(move || disk_health::bind_thread(&bound))
            .enable_all()
            .build()
            .map_err(CacheError::Runtime)?;

        let trust = Arc::new(DiskTrust::new(&settings.dir, registry).map_err(CacheError::Metrics)?);
        let started = Instant::now();
        let (cache, disk, dir_lock) = open_tiers(settings, registry, &runtime, &trust)?;
        match &disk {
            DiskTier::Open => tracing::info!(
                dir = %settings.dir.display(),
                took_ms = started.elapsed().as_millis() as u64,
                "cache opened"
            ),
            DiskTier::Recreated { moved_to, reason } => tracing::error!(
                dir = %settings.dir.display(),
                moved_to = %moved_to.display(),
                reason = %reason,
                "cache directory unusable; moved aside and started empty"
            ),
            DiskTier::MemoryOnly { reason } => tracing::error!(
                dir = %settings.dir.display(),
                reason = %reason,
                "cache directory unusable; running with the memory tier only"
            ),
        }
        health.started(&disk);
        if health.in_use() {
            health.watch(&settings.dir, runtime.handle());
        }
        let storage: &'static HybridStorage =
            Box::leak(Box::new(HybridStorage::new(cache, health, trust)));
        let lock: &'static CacheKeyLockImpl =
            Box::leak(CacheLock::new_boxed(settings.lock_timeout));
        Ok(Cache {
            storage,
            lock,
            disk,
            max_object_bytes: usize::try_from(settings.max_object_bytes).unwrap_or(usize::MAX),
            bans: Arc::new(bans::Bans::in_memory(Duration::ZERO)),
            runtime,
            dir_lock,
        })
    }

    /// Flushes what the disk tier still buffers and releases its files and threads.
    pub fn close(self) {
        if let Some(cache) = take_for_close(self.storage)
            && let Err(e) = self.runtime.block_on(cache.close())
        {
            tracing::error!(error = %e, "cache close failed; some recent entries may be lost");
        }
        self.dir_lock.lock().take();
        self.runtime.shutdown_timeout(Duration::from_secs(5));
    }

    /// A handle that closes the cache from async code.
    pub fn closer(&self) -> Closer {
        Closer {
            storage: self.storage,
            runtime: self.runtime.handle().clone(),
            dir_lock: self.dir_lock.clone(),
        }
    }
}

/// Takes the foyer cache out of `storage` for closing, and stops the disk tier's probe. `None`
/// when there is nothing to close, or nothing to flush: a degraded disk tier is left unflushed
/// (its writes fail, and foyer's flusher may panic on its next flush), so closing it would only
/// add errors to the way out; its files are released as the process ends.
fn take_for_close(storage: &HybridStorage) -> Option<FoyerCache> {
    let health = storage.health();
    health.stop_watching();
    let cache = storage.detach()?;
    if let disk_health::DiskState::Degraded { .. } = health.state() {
        tracing::info!("cache closed without flushing the degraded disk tier");
        return None;
    }
    Some(cache)
}

/// The disk tier's flush buffer for a given object cap: room for the largest entry, no more.
///
/// foyer's flusher keeps two buffers of this size, one filling while the other is written, for
/// the life of the process: foyer's default (16 MiB each) was 32 MiB of resident memory, a
/// sixth of the memory budget, for a disk tier that the ERP's misses feed a few entries a
/// second. An entry that does not fit in what is left of the filling buffer skips the disk
/// tier (it stays in memory); a buffer is written as soon as the previous write is done, so
/// that only happens under a burst of large misses.
pub fn flush_buffer_bytes_for(max_object_bytes: u64) -> u64 {
    (max_object_bytes + BLOCK_HEADROOM_BYTES)
        .next_multiple_of(PAGE_BYTES)
        .max(MIN_FLUSH_BUFFER_BYTES)
}

/// The disk tier's block size for a given object cap: a power of two that holds the largest
/// body plus its header.
pub fn block_bytes_for(max_object_bytes: u64) -> u64 {
    (max_object_bytes + BLOCK_HEADROOM_BYTES)
        .next_power_of_two()
        .max(MIN_BLOCK_BYTES)
}

fn open_tiers(
    settings: &CacheSettings,
    registry: &Registry,
    runtime: &tokio::runtime::Runtime,
    trust: &DiskTrust,
) -> Result<(FoyerCache, DiskTier, SharedLock), CacheError> {
    // One mixtrics wrapper per cache: it registers foyer's metrics into this proxy's registry.
    let metrics = mixtrics::registry::prometheus::PrometheusMetricsRegistry::new(registry.clone());
    let mut metrics = Some(metrics);
    let held = |lock: DirLock| Arc::new(Mutex::new(Some(lock)));
    let none = || Arc::new(Mutex::new(None));
    // Whose directory it is comes first: nothing below may move or delete someone else's files.
    let claim = match dir_mark::claim(&settings.dir) {
        Ok(claim) => claim,
        Err(e @ ClaimError::NotOurs { .. }) => return Err(CacheError::NotOurs(e)),
        // Whose it is cannot be told: touch nothing, serve from memory.
        Err(e @ ClaimError::Io { .. }) => {
            let (cache, disk) = memory_only(settings, runtime, metrics, e.to_string())?;
            return Ok((cache, disk, none()));
        }
    };
    if matches!(
        claim,
        dir_mark::Claim::AdoptedEmpty | dir_mark::Claim::AdoptedUnmarked
    ) {
        tracing::info!(dir = %settings.dir.display(), claim = ?claim, "cache directory adopted and marked");
    }
    let first = match DirLock::acquire(&settings.dir, LOCK_WAIT) {
        // Another process owns the directory past the wait: never share it.
        Err(busy @ LockError::Busy { .. }) => {
            let (cache, disk) = memory_only(settings, runtime, metrics, busy.to_string())?;
            return Ok((cache, disk, none()));
        }
        Err(e @ LockError::Io(_)) => e.to_string(),
        Ok(_lock) if claim.layout() != LAYOUT => format!(
            "its files are of layout {} and this release reads layout {LAYOUT}",
            claim.layout()
        ),
        // Entries a lost purge may have hidden are deleted before foyer recovers them.
        Ok(lock) => match trust
            .at_start(&claim)
            .and_then(|()| try_open(settings, runtime, &mut metrics, &settings.dir))
        {
            Ok(cache) => return Ok((cache, DiskTier::Open, held(lock))),
            Err(reason) => reason,
        },
    };
    // The directory is ours (marked) and unusable as it is. Keep it for inspection (one
    // generation) rather than deleting it, and start again on an empty directory.
    let moved_to = match quarantine(&settings.dir) {
        Ok(moved_to) => moved_to,
        Err(why) => {
            let reason = format!("{first}; {why}");
            let (cache, disk) = memory_only(settings, runtime, metrics, reason)?;
            return Ok((cache, disk, none()));
        }
    };
    let second = match dir_mark::claim(&settings.dir) {
        Err(e) => e.to_string(),
        Ok(claim) => match DirLock::acquire(&settings.dir, LOCK_WAIT) {
            Err(e) => e.to_string(),
            Ok(lock) => match trust
                .at_start(&claim)
                .and_then(|()| try_open(settings, runtime, &mut metrics, &settings.dir))
            {
                Ok(cache) => {
                    let disk = DiskTier::Recreated {
                        moved_to,
                        reason: first,
                    };
                    return Ok((cache, disk, held(lock)));
                }
                Err(second) => second,
            },
        },
    };
    let (cache, disk) = memory_only(
        settings,
        runtime,
        metrics,
        format!("{first}; then {second}"),
    )?;
    Ok((cache, disk, none()))
}

/// Moves the cache directory `dir` (ours: `open_tiers` claimed it) to `<dir>.corrupt`. An older
/// quarantine there is deleted only if it carries knitcache's mark; anything else in the way is
/// left alone and the directory is not moved.
fn quarantine(dir: &Path) -> Result<PathBuf, String> {
    let moved_to = quarantine_path(dir);
    match std::fs::symlink_metadata(&moved_to) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot inspect {}: {e}", moved_to.display())),
        Ok(m) if m.is_dir() && dir_mark::is_marked(&moved_to) => {
            std::fs::remove_dir_all(&moved_to)
                .map_err(|e| format!("cannot delete the older {}: {e}", moved_to.display()))?;
        }
        Ok(_) => {
            return Err(format!(
                "{} is in the way and is not a knitcache directory, so the cache directory was \
                 not moved aside (remove or rename it yourself)",
                moved_to.display()
            ));
        }
    }
    std::fs::rename(dir, &moved_to)
        .map_err(|e| format!("cannot move it to {}: {e}", moved_to.display()))?;
    Ok(moved_to)
}

fn quarantine_path(dir: &Path) -> PathBuf {
    let mut name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".corrupt");
    dir.with_file_name(name)
}

fn memory_builder(
    settings: &CacheSettings,
    metrics: Option<mixtrics::registry::prometheus::PrometheusMetricsRegistry>,
) -> foyer::HybridCacheBuilderPhaseMemory<u128, CachedObject, foyer::DefaultHasher> {
    let mut builder = HybridCacheBuilder::new()
        .with_name("knitcache")
        .with_policy(HybridCachePolicy::WriteOnInsertion)
        .with_flush_on_close(true);
    if let Some(m) = metrics {
        builder = builder.with_metrics_registry(Box::new(m));
    }
    builder
        .memory(usize::try_from(settings.memory_bytes).unwrap_or(usize::MAX))
        .with_shards(8)
        .with_eviction_config(LfuConfig::default())
        .with_weighter(|_k: &u128, v: &CachedObject| v.memory_weight() + 64)
}

fn try_open(
    settings: &CacheSettings,
    runtime: &tokio::runtime::Runtime,
    metrics: &mut Option<mixtrics::registry::prometheus::PrometheusMetricsRegistry>,
    dir: &Path,
) -> Result<FoyerCache, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let device = FsDeviceBuilder::new(dir)
        .with_capacity(usize::try_from(settings.disk_bytes).unwrap_or(usize::MAX))
        .build()
        .map_err(|e| format!("cannot open the disk device in {}: {e}", dir.display()))?;
    let block = usize::try_from(block_bytes_for(settings.max_object_bytes)).unwrap_or(usize::MAX);
    let engine = BlockEngineConfig::new(device)
        .with_block_size(block)
        .with_buffer_pool_size(
            usize::try_from(flush_buffer_bytes_for(settings.max_object_bytes))
                .unwrap_or(usize::MAX),
        )
        // Without it a purged entry reappears after a restart.
        .with_tombstone_log(true);
    // The metrics registry can only be handed over once (foyer registers its metric families
    // on build); a second attempt after a failure goes without foyer's own metrics.
    let result = runtime.block_on(
        memory_builder(settings, metrics.take())
            .storage()
            .with_engine_config(engine)
            .with_recover_mode(RecoverMode::Quiet)
            .with_spawner(runtime.handle().clone().into())
            .build(),
    );
    result.map_err(|e| format!("cannot recover the disk tier in {}: {e}", dir.display()))
}

fn memory_only(
    settings: &CacheSettings,
    runtime: &tokio::runtime::Runtime,
    metrics: Option<mixtrics::registry::prometheus::PrometheusMetricsRegistry>,
    reason: String,
) -> Result<(FoyerCache, DiskTier), CacheError> {
    let cache = runtime
        .block_on(
            memory_builder(settings, metrics)
                .storage()
                .with_spawner(runtime.handle().clone().into())
                .build(),
        )
        .map_err(CacheError::Memory)?;
    Ok((cache, DiskTier::MemoryOnly { reason }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_size_holds_the_largest_object() {
        assert_eq!(block_bytes_for(0), MIN_BLOCK_BYTES);
        assert_eq!(block_bytes_for(4 * 1024 * 1024), 8 * 1024 * 1024);
        for cap in [1u64, 900_000, 1 << 20, 3_000_000, 64 << 20] {
            assert!(
                block_bytes_for(cap) >= cap + BLOCK_HEADROOM_BYTES,
                "cap {cap}"
            );
        }
    }

    #[test]
    fn flush_buffer_holds_the_largest_object_in_whole_pages() {
        assert_eq!(flush_buffer_bytes_for(0), MIN_FLUSH_BUFFER_BYTES);
        for cap in [1u64, 900_000, 1 << 20, 4 << 20, 64 << 20] {
            let b = flush_buffer_bytes_for(cap);
            assert!(b >= cap + BLOCK_HEADROOM_BYTES, "cap {cap}");
            assert_eq!(b % PAGE_BYTES, 0, "cap {cap}");
            assert!(b <= block_bytes_for(cap), "cap {cap}: larger than a block");
        }
    }

    #[test]
    fn quarantine_sits_beside_the_directory() {
        assert_eq!(
            quarantine_path(Path::new("/var/cache/knitcache")),
            PathBuf::from("/var/cache/knitcache.corrupt")
        );
    }
}
