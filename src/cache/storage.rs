//! `pingora_cache::Storage` over foyer's `HybridCache`: memory tier + disk tier.
//!
//! One foyer entry per cached response, keyed by pingora's 128-bit combined key (primary key
//! plus variance). The miss handler buffers the body and inserts the whole object on `finish`,
//! where it also computes a strong `ETag` for routes whose origin sends none (the ERP). Capacity
//! and eviction belong to foyer alone: pingora gets no `EvictionManager`, so there is one
//! eviction authority; `variants` only bounds how many variants one URL keeps.
//!
//! In cluster mode a third tier follows the disk tier (`cluster::shared_tier`, attached at
//! start): a lookup that finds no fresh copy in either local tier reads the shared one, and
//! adopts a fresher copy from it into both local tiers; every fill and revalidation is written
//! there too, and URL purges delete it there.
//!
//! Faults never fail a request: every foyer error becomes a pingora `Err` (pingora treats a
//! failed lookup as a miss) and is recorded in `disk_health`. Once that has taken the disk tier
//! out of use, lookups, stores and purges go to the memory tier alone.

use std::any::Any;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use blake2::digest::consts::U16;
use blake2::{Blake2b, Digest};
use bytes::{Bytes, BytesMut};
use foyer::{HybridCache, HybridCacheEntry};
use pingora_cache::key::CacheHashKey;
use pingora_cache::storage::{
    HandleHit, HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget,
    PurgeType, Storage,
};
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheEntryKey, CacheKey, CacheMeta};
use pingora_error::{Error, ErrorType, Result};
use tokio::sync::Semaphore;

use super::disk_health::{DiskHealth, Kind, Tier};
use super::disk_trust::DiskTrust;
use super::object::CachedObject;
use super::parsed::ParsedMeta;
use super::recent_purges::RecentPurges;
use super::sealed_body;
use super::variants::{StoreHints, Variants};
use crate::cluster::SharedTier;

/// The foyer cache as this crate uses it.
pub type FoyerCache = HybridCache<u128, CachedObject>;

/// The storage pingora sees. pingora wants `&'static dyn Storage`, so one of these is leaked per
/// proxy (see `cache::Cache`); the foyer handle sits behind an `ArcSwapOption` so shutdown can
/// take it out and close it, releasing its files even though the shell stays leaked.
pub struct HybridStorage {
    cache: ArcSwapOption<FoyerCache>,
    health: Arc<DiskHealth>,
    trust: Arc<DiskTrust>,
    disk_reads: Semaphore,
    variants: Variants,
    /// URL purges a fill in flight must not undo.
    recent_purges: RecentPurges,
    /// Cluster mode's shared tier, attached once at start.
    shared: OnceLock<Arc<SharedTier>>,
}

/// Disk-tier reads in flight at once. Until it is promoted into the memory tier, a read holds
/// its entry twice (foyer's read buffer and the decoded copy): unbounded, 1,000 connections
/// asking for keys only on disk held tens of MiB of them at a time (the load suite's memory
/// scenario, promotions phase). Reads come from the page cache or an SSD in well under a
/// millisecond, so a few in flight keep up with the one I/O thread that decodes them.
const DISK_READS_IN_FLIGHT: usize = 8;

impl HybridStorage {
    /// Wraps an open foyer cache; its faults are recorded in `health`, purges that cannot reach
    /// the disk tier in `trust`.
    pub fn new(cache: FoyerCache, health: Arc<DiskHealth>, trust: Arc<DiskTrust>) -> Self {
        HybridStorage {
            cache: ArcSwapOption::from_pointee(cache),
            health,
            trust,
            disk_reads: Semaphore::new(DISK_READS_IN_FLIGHT),
            variants: Variants::default(),
            recent_purges: RecentPurges::default(),
            shared: OnceLock::new(),
        }
    }

    /// Puts the cluster's shared tier after the disk tier (once, at start).
    pub fn attach_shared(&self, tier: Arc<SharedTier>) {
        if self.shared.set(tier).is_err() {
            tracing::warn!("a second shared tier was offered and ignored");
        }
    }

    /// The shared tier, in cluster mode.
    pub fn shared(&self) -> Option<&Arc<SharedTier>> {
        self.shared.get()
    }

    /// Stores `object`, found in the shared tier for the key `primary`, in `slot` of both local
    /// tiers: later hits are local ones. `false` (nothing stored, and it must not be served) if
    /// a URL purge of the key here came after it was made: the shared copy it removed, read back
    /// before the removal reached Redis.
    pub fn adopt(&self, slot: u128, primary: u128, object: &CachedObject) -> bool {
        let Some(created) = object.parsed.as_ref().map(|p| p.created()) else {
            return false;
        };
        let Ok(cache) = self.cache("insert") else {
            return false;
        };
        self.recent_purges
            .store_unless_purged(primary, created, || {
                self.store(&cache, slot, object.clone());
            })
    }

    /// The live cache handle (a cheap clone).
    fn cache(&self, op: &'static str) -> Result<FoyerCache> {
        match self.cache.load().as_deref() {
            Some(c) => Ok(c.clone()),
            None => {
                self.health
                    .record(Tier::Cache, op, Kind::Closed, &"cache storage is closed");
                Error::e_explain(ErrorType::InternalError, "cache storage is closed")
            }
        }
    }

    /// The disk tier's health: its state for the admin endpoints.
    pub fn health(&self) -> &Arc<DiskHealth> {
        &self.health
    }

    /// Where purges that reach the memory tier only are recorded (bans that cannot be saved too).
    pub fn trust(&self) -> &Arc<DiskTrust> {
        &self.trust
    }

    /// Removes the entry under `k` as a purge does: a removal the disk tier cannot take is
    /// recorded in `trust`, so the next start does not serve the copy left on disk.
    fn purge_entry(&self, cache: &FoyerCache, k: u128) -> bool {
        let disk = self.health.in_use();
        if !disk {
            self.trust.missed_disk();
        }
        remove_entry(cache, k, disk)
    }

    /// Takes the foyer cache out for `close()`; later operations fail (and count) cleanly.
    pub fn detach(&self) -> Option<FoyerCache> {
        self.cache.swap(None).map(|c| (*c).clone())
    }

    /// Waits, for at most `limit`, until everything inserted so far (entries, and the tombstones
    /// of removals) has been written to the disk tier's files, where it survives the process
    /// being killed; foyer writes them in the background. `false` if `limit` passed first, or
    /// at once when the disk tier is out of use (nothing more is written to it). A removal not
    /// known to be written (late, or lost with a flush that failed and degraded the disk tier)
    /// is recorded in `trust` as one that missed the disk, as a degraded tier's are.
    ///
    /// In cluster mode it first waits (within the same `limit`) for the removals from the shared
    /// tier, so a purge answered is a purge no replica can read back from there.
    pub async fn written(&self, limit: std::time::Duration) -> bool {
        if let Some(tier) = self.shared() {
            let started = std::time::Instant::now();
            if !tier.deleted(limit).await {
                tracing::warn!("a purge's removal from the shared tier was not confirmed in time");
            }
            let left = limit.saturating_sub(started.elapsed());
            return self.written_locally(left).await;
        }
        self.written_locally(limit).await
    }

    /// `written` for the local tiers.
    async fn written_locally(&self, limit: std::time::Duration) -> bool {
        let Some(cache) = self.cache.load_full() else {
            return true;
        };
        if !self.health.in_use() {
            // `purge_entry` recorded it.
            return false;
        }
        let waited = tokio::time::timeout(limit, cache.storage().wait())
            .await
            .is_ok();
        let written = waited && self.health.in_use();
        if !written {
            self.trust.missed_disk();
        }
        written
    }

    /// Removes the entry stored under `hash` (a key's `combined_bin`), from both tiers; the
    /// removal is written to disk, or, with the disk tier out of use, the disk tier is not
    /// trusted at the next start: it survives a restart. Returns whether an entry was there.
    pub fn remove(&self, hash: [u8; 16]) -> Result<bool> {
        let cache = self.cache("purge")?;
        let k = key_of(hash);
        self.variants.forget(k);
        if let Some(tier) = self.shared() {
            tier.forget(k);
        }
        Ok(self.purge_entry(&cache, k))
    }

    /// Keeps URL purges in `dir` for `retention` from now on, so that neither a restart nor the
    /// disk tier's recovery serves a copy a purge retired (`RecentPurges::persist_in`).
    pub fn remember_purges_in(&self, dir: &std::path::Path, retention: std::time::Duration) {
        self.recent_purges
            .persist_in(dir, retention, self.trust.clone());
    }

    /// Whether a copy of the URL whose primary key is `primary`, made at `made`, was purged
    /// since: a hit must not serve it (the disk tier can bring back what a purge removed).
    pub fn purged_since(&self, primary: u128, made: SystemTime) -> bool {
        self.recent_purges.covers(primary, made)
    }

    /// Purges one URL: every slot in `slots` (its primary slot and its codings' slots, each a
    /// key's `combined_bin`) is removed as `remove` does, and a fill of `primary` (the URL's
    /// `primary_bin`) still in flight, whose response arrived before now, is not kept when it
    /// completes (`recent_purges`). Returns how many slots held an entry.
    pub fn purge_url(&self, primary: [u8; 16], slots: &[[u8; 16]]) -> Result<usize> {
        // Recorded first: a fill completing from here on sees it, and one that completed
        // before is among what the removals below find.
        self.recent_purges
            .record(key_of(primary), std::time::SystemTime::now());
        let mut removed = 0;
        for slot in slots {
            if self.remove(*slot)? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The entry stored under `hash` if the memory tier holds it; never reads the disk tier.
    pub fn memory_entry(&self, hash: u128) -> Option<HybridCacheEntry<u128, CachedObject>> {
        self.cache.load().as_deref()?.memory().get(&hash)
    }

    /// The response stored under `hash` (a key's `combined_bin`), from memory or from disk;
    /// `None` when there is none, or only the record of its removal.
    pub async fn entry(&self, hash: u128) -> Result<Option<HybridCacheEntry<u128, CachedObject>>> {
        let cache = self.cache("lookup")?;
        let entry = match cache.memory().get(&hash) {
            Some(entry) => entry,
            // A degraded disk tier is not read: what it holds may be half-written.
            None if !self.health.in_use() => return Ok(None),
            None => {
                // The semaphore is never closed; were it, the read would go ahead unbounded.
                let _permit = self.disk_reads.acquire().await.ok();
                match cache.get(&hash).await {
                    Ok(Some(entry)) => entry,
                    Ok(None) => return Ok(None),
                    Err(e) => return self.fail("read", "cache lookup", e),
                }
            }
        };
        Ok((!entry.value().is_tombstone()).then_some(entry))
    }

    /// Bytes and entries held by the memory tier.
    pub fn memory_usage(&self) -> Option<(u64, u64)> {
        self.cache.load().as_deref().map(|c| {
            let m = c.memory();
            (m.usage() as u64, m.entries() as u64)
        })
    }

    /// Records a failed disk operation (which may degrade the disk tier) and fails it.
    fn fail<T>(&self, op: &'static str, context: &'static str, e: foyer::Error) -> Result<T> {
        self.health.record(Tier::Disk, op, Kind::of_foyer(&e), &e);
        Err(Error::because(ErrorType::InternalError, context, e))
    }

    /// Stores `object` under `k`: in both tiers, or in memory alone once the disk tier is out
    /// of use (foyer's flusher is then never handed another entry).
    fn store(&self, cache: &FoyerCache, k: u128, object: CachedObject) {
        if self.health.in_use() {
            cache.insert(k, object);
        } else {
            cache.memory().insert(k, object);
        }
    }
}

fn key_of(hash: [u8; 16]) -> u128 {
    u128::from_be_bytes(hash)
}

/// Whether `object` may be served at `now` without asking anyone (pingora's test). An object
/// whose metadata was not parsed counts as not fresh: the shared tier is asked for it.
fn is_fresh(object: &CachedObject, now: SystemTime) -> bool {
    object
        .parsed
        .as_ref()
        .is_some_and(|p| p.fresh_until() >= now)
}

/// Whether `found` stays fresh longer than `held`: only then does it replace it.
fn is_fresher(found: &CachedObject, held: &CachedObject) -> bool {
    match (&found.parsed, &held.parsed) {
        (Some(f), Some(h)) => f.fresh_until() > h.fresh_until(),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

impl HybridStorage {
    /// The hit pingora serves from `object`.
    fn hit_of(&self, object: &CachedObject) -> Result<(CacheMeta, HitHandler)> {
        let meta = match object.parsed.as_ref().and_then(|p| p.rebuild()) {
            Some(meta) => meta,
            None => CacheMeta::deserialize(&object.meta_internal, &object.meta_header)
                .inspect_err(|e| self.health.record(Tier::Disk, "read", Kind::Decode, e))?,
        };
        let end = object.body.len();
        let hit = HybridHit {
            body: object.body.clone(),
            done: false,
            start: 0,
            end,
        };
        Ok((meta, Box::new(hit)))
    }
}

/// Replaces the entry under `k` with a tombstone (see `CachedObject::tombstone`: a plain
/// `remove` lets a copy not yet on disk be read back). Returns whether a response was there.
/// With the disk tier out of use (`disk` false) only the memory tier is asked and changed: the
/// removal cannot be written to disk (a purge then distrusts the disk tier: `purge_entry`).
fn remove_entry(cache: &FoyerCache, k: u128, disk: bool) -> bool {
    if !disk {
        return cache
            .memory()
            .remove(&k)
            .is_some_and(|e| !e.value().is_tombstone());
    }
    let existed = match cache.memory().get(&k) {
        Some(entry) => !entry.value().is_tombstone(),
        None => cache.contains(&k),
    };
    if existed {
        cache.insert(k, CachedObject::tombstone());
    }
    existed
}

/// A strong validator over the exact stored bytes: any change of body (or of its encoding)
/// changes it, so `If-None-Match` can be answered from cache without asking the ERP.
pub fn strong_etag(body: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Blake2b::<U16>::digest(body);
    let mut tag = String::with_capacity(34);
    tag.push('"');
    for b in digest {
        tag.push(char::from(HEX[usize::from(b >> 4)]));
        tag.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    tag.push('"');
    tag
}

/// Serves one stored body. Seekable, so pingora can answer `Range` requests from cache.
pub struct HybridHit {
    body: Bytes,
    done: bool,
    start: usize,
    end: usize,
}

#[async_trait]
impl HandleHit for HybridHit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        Ok(Some(self.body.slice(self.start..self.end)))
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        let len = self.body.len();
        if start >= len {
            return Error::e_explain(
                ErrorType::InternalError,
                format!("seek start {start} beyond body length {len}"),
            );
        }
        self.start = start;
        self.end = end.map_or(len, |e| e.min(len));
        self.done = false;
        Ok(())
    }

    fn seek_multipart(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        self.seek(start, end)
    }

    fn get_eviction_weight(&self) -> usize {
        self.body.len()
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// Buffers a response body from the ERP and stores it whole when it is complete.
pub struct HybridMiss {
    key: u128,
    /// The URL's primary key, and when its response arrived: a purge of the URL since then
    /// means the copy is not kept (`RecentPurges`). Also the fill lease the store may release
    /// (`cluster::lease`).
    primary: u128,
    received: std::time::SystemTime,
    meta_internal: Vec<u8>,
    meta_header: Vec<u8>,
    body: BytesMut,
    storage: &'static HybridStorage,
    computed_etag: bool,
}

/// The header stored with a complete body: a strong `ETag` when `computed_etag` and the origin
/// sent no validator of its own, and the body's exact `Content-Length` in place of chunked
/// framing. A compressed
/// variant was streamed chunked on its miss; once whole, every hit can say its length, which
/// lets clients (and `Range` requests) know the size and spares the chunk framing.
fn stored_meta(
    internal: &[u8],
    header: &[u8],
    body: &[u8],
    computed_etag: bool,
) -> Result<CacheMeta> {
    let mut meta = CacheMeta::deserialize(internal, header)?;
    let header = meta.response_header_mut();
    if computed_etag && header.headers.get(http::header::ETAG).is_none() {
        header.insert_header(http::header::ETAG, strong_etag(body))?;
    }
    header.remove_header(&http::header::TRANSFER_ENCODING);
    header.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    Ok(meta)
}

/// Room for the body the ERP announced (capped: a wrong header must not reserve much).
fn body_capacity(meta: &CacheMeta) -> usize {
    const MAX_PRESIZE: usize = 8 * 1024 * 1024;
    meta.headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .map_or(0, |n| n.min(MAX_PRESIZE))
}

/// The stored body without spare capacity: the memory tier weighs bodies by length, so a
/// buffer that grew by doubling (or was sized for the uncompressed body) would hold up to
/// twice what the tier accounts for. Copied only when more than an eighth is spare.
fn right_sized(body: BytesMut) -> Bytes {
    if body.capacity() - body.len() > body.len() / 8 {
        Bytes::copy_from_slice(&body)
    } else {
        body.freeze()
    }
}

#[async_trait]
impl HandleMiss for HybridMiss {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        self.body.extend_from_slice(&data);
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<MissFinishType> {
        let this = *self;
        let (body, sealed) = sealed_body::store(this.body, right_sized);
        let meta = stored_meta(
            &this.meta_internal,
            &this.meta_header,
            &body,
            this.computed_etag,
        )?;
        let (internal, header) = meta.serialize()?;
        let object = CachedObject {
            meta_internal: internal.into(),
            meta_header: header.into(),
            body,
            sealed,
            parsed: ParsedMeta::capture(&meta),
        };
        let size = object.weight();
        let storage = this.storage;
        let cache = storage.cache("insert")?;
        if !storage
            .recent_purges
            .store_unless_purged(this.primary, this.received, || {
                if let Some(tier) = storage.shared() {
                    tier.store(this.key, this.primary, &object, &meta);
                }
                storage.store(&cache, this.key, object);
            })
        {
            tracing::debug!("a fill whose URL was purged while it was in flight was dropped");
            return Ok(MissFinishType::Created(0));
        }
        Ok(MissFinishType::Created(size))
    }
}

#[async_trait]
impl Storage for HybridStorage {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let slot = key_of(key.combined_bin());
        let local = self.entry(slot).await?;
        let now = SystemTime::now();
        if let Some(tier) = self.shared()
            && !local.as_ref().is_some_and(|e| is_fresh(e.value(), now))
            && let Some(found) = tier.get(slot).await
            && local.as_ref().is_none_or(|e| is_fresher(&found, e.value()))
            && self.adopt(slot, key_of(key.primary_bin()), &found)
        {
            // A fill of another replica (or a refresh newer than this copy): kept locally, and
            // served as any hit (bans and freshness are judged on it by the proxy).
            return self.hit_of(&found).map(Some);
        }
        match local {
            Some(entry) => self.hit_of(entry.value()).map(Some),
            None => Ok(None),
        }
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        let (meta_internal, meta_header) = meta.serialize()?;
        // A meta without hints was not built by `policy` (written straight to the storage):
        // the storage's own behaviour, a computed validator and the default variant bound.
        let hints = meta.extensions().get::<StoreHints>().copied();
        let slot = key_of(key.combined_bin());
        if key.variance_bin().is_some() {
            let max = hints.map_or(
                crate::config::defaults::DEFAULT_MAX_VARIANTS as usize,
                |h| h.max_variants,
            );
            let primary = key_of(key.primary_bin());
            let evicted = self.variants.admit(primary, slot, max);
            if !evicted.is_empty() {
                let cache = self.cache("evict_variant")?;
                for old in evicted {
                    remove_entry(&cache, old, self.health.in_use());
                }
            }
        }
        Ok(Box::new(HybridMiss {
            key: slot,
            primary: key_of(key.primary_bin()),
            received: meta.created(),
            meta_internal,
            meta_header,
            body: BytesMut::with_capacity(body_capacity(meta)),
            storage: self,
            computed_etag: hints.is_none_or(|h| h.computed_etag),
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        // This storage never hands out entry ids, so an id-qualified target cannot be ours.
        if matches!(target, PurgeTarget::Exact(CacheEntryKey::Identified { .. })) {
            return Ok(PurgeOutcome::NotFound);
        }
        let k = key_of(target.key().combined_bin());
        let cache = self.cache("purge")?;
        if let Some(tier) = self.shared() {
            tier.forget(k);
        }
        let existed = self.purge_entry(&cache, k);
        Ok(if existed {
            PurgeOutcome::Purged(None)
        } else {
            PurgeOutcome::NotFound
        })
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        let k = key_of(key.combined_bin());
        let cache = self.cache("update_meta")?;
        // A purge after this instant may have removed the entry while it was being read below.
        let read_at = std::time::SystemTime::now();
        let found = if self.health.in_use() {
            cache.get(&k).await
        } else {
            Ok(cache.memory().get(&k))
        };
        let (body, sealed) = match found {
            // A removed response is not brought back by a revalidation that began before.
            Ok(Some(entry)) if !entry.value().is_tombstone() => {
                (entry.value().body.clone(), entry.value().sealed.clone())
            }
            Ok(_) => return Ok(false),
            Err(e) => return self.fail("read", "cache lookup for meta update", e),
        };
        let (internal, header) = meta.serialize()?;
        let object = CachedObject {
            meta_internal: internal.into(),
            meta_header: header.into(),
            body,
            sealed,
            parsed: ParsedMeta::capture(meta),
        };
        Ok(self
            .recent_purges
            .store_unless_purged(key_of(key.primary_bin()), read_at, || {
                // A revalidation renews the copy for every replica, as a fill does.
                if let Some(tier) = self.shared() {
                    tier.store(k, key_of(key.primary_bin()), &object, meta);
                }
                self.store(&cache, k, object);
            }))
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_bodies_carry_little_spare_capacity() {
        let mut grown = BytesMut::new();
        for _ in 0..100 {
            grown.extend_from_slice(&[1u8; 1000]);
        }
        assert!(grown.capacity() > 100_000 + 100_000 / 8);
        let stored = right_sized(grown);
        assert_eq!(stored.len(), 100_000);
        let mut exact = BytesMut::with_capacity(100_000);
        exact.extend_from_slice(&[2u8; 100_000]);
        assert_eq!(right_sized(exact).len(), 100_000);
    }

    #[test]
    fn etag_is_quoted_hex_and_follows_the_bytes() {
        let a = strong_etag(b"{\"v\":1}");
        assert_eq!(a.len(), 34);
        assert!(a.starts_with('"') && a.ends_with('"'));
        assert!(
            a[1..33]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(a, strong_etag(b"{\"v\":1}"), "same bytes, same tag");
        assert_ne!(
            a,
            strong_etag(b"{\"v\":2}"),
            "any change of body changes the tag"
        );
    }
}
