//! The shared tier: the stored responses of every replica, in Redis, after each replica's own
//! memory and disk tiers. A replica that misses both of its own tiers reads the slot here before
//! it asks the ERP (`cache::storage` does, on every lookup that finds no fresh local copy), and
//! every fill it completes is written here, so one fill serves the cluster and a new replica is
//! warm from its first request.
//!
//! A slot holds exactly what the local tiers store for the same pingora key hash (the record of
//! `cache::object`, metadata and body), under `<prefix>:obj:<hash>`, and expires when the
//! response's fresh and stale windows have both run out. Objects above
//! `cluster.shared_max_object_bytes` stay local. Writes never hold up a client: they run in the
//! background, a bounded number at a time; one that finds no room is dropped and counted.
//! A URL purge deletes the slot (`forget`), and the purge waits for that (`deleted`) before it
//! answers; bans need nothing here: a copy older than a ban is refused on every hit by its
//! `created` time, wherever it came from.
//!
//! Redis slow or down costs a lookup at most `cluster.timeout_ms`, and while it is down only one
//! operation a second is tried at all (`available`); every failure is counted and the outage
//! logged once (`Shared::timed`). The replica then serves from its own tiers alone.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime};

use foyer::Code;
use parking_lot::Mutex;
use pingora_cache::CacheMeta;
use redis::RedisError;
use redis::aio::ConnectionManager;
use tokio::sync::{Notify, Semaphore};

use super::Shared;
use crate::cache::bans::unix_ms;
use crate::cache::object::CachedObject;

/// Writes to the shared tier in flight at once; a fill that finds none free is not shared.
const STORES_IN_FLIGHT: usize = 64;

/// While Redis is down, one operation per this long is tried; the others give up at once.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Stores `ARGV[1]` in the object slot `KEYS[1]` for `ARGV[2]` ms, then releases the fill lease
/// `KEYS[2]` if it still carries this replica's token `ARGV[3]`: in one step, so a replica that
/// sees the lease gone always finds the object there.
const STORE: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('DEL', KEYS[2])
end
return 1
";

/// `STORE`, hashed once.
static STORE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(STORE));

/// The shared tier of one replica. Its Redis work runs on a runtime of its own, so it neither
/// depends on which of pingora's runtimes asked first nor slows the one serving clients.
pub struct SharedTier {
    pub(super) shared: Arc<Shared>,
    conn: ConnectionManager,
    runtime: tokio::runtime::Handle,
    stores: Arc<Semaphore>,
    /// URL purges' deletions still running, and the signal that one finished.
    deleting: Arc<(AtomicUsize, Notify)>,
    /// When an operation was last tried while Redis was down (ms since the unix epoch).
    last_probe: AtomicU64,
    /// Fill leases this replica holds, by primary key hash: the fill's store releases its lease
    /// with the object, in one step; the request releases whatever is left when it ends.
    pub(super) held: Mutex<HashMap<u128, String>>,
}

/// How a store went, for `knitcache_cluster_shared_stores_total`.
pub const STORE_OUTCOMES: [&str; 4] = ["stored", "too_large", "dropped", "error"];
/// How a lookup went, for `knitcache_cluster_shared_lookups_total`.
pub const LOOKUP_OUTCOMES: [&str; 3] = ["hit", "miss", "error"];

impl SharedTier {
    pub(super) fn new(
        shared: Arc<Shared>,
        conn: ConnectionManager,
        runtime: tokio::runtime::Handle,
    ) -> SharedTier {
        SharedTier {
            shared,
            conn,
            runtime,
            stores: Arc::new(Semaphore::new(STORES_IN_FLIGHT)),
            deleting: Arc::new((AtomicUsize::new(0), Notify::new())),
            last_probe: AtomicU64::new(0),
            held: Mutex::new(HashMap::new()),
        }
    }

    /// `<prefix>:obj:<slot>`.
    pub(super) fn object_key(&self, slot: u128) -> String {
        self.shared.key(&format!("obj:{slot:032x}"))
    }

    /// `<prefix>:lease:<primary>`.
    pub(super) fn lease_key(&self, primary: u128) -> String {
        self.shared.key(&format!("lease:{primary:032x}"))
    }

    /// The longest a fill lease lasts.
    pub fn lease_time(&self) -> Duration {
        self.shared.settings.lease
    }

    /// Whether an operation should be tried now: always while Redis answers; once a
    /// `PROBE_EVERY` while it does not, so an outage costs requests nothing.
    pub(super) fn available(&self) -> bool {
        if self.shared.up.load(Ordering::Relaxed) {
            return true;
        }
        let now = unix_ms(SystemTime::now());
        let last = self.last_probe.load(Ordering::Relaxed);
        now.saturating_sub(last) >= PROBE_EVERY.as_millis() as u64
            && self
                .last_probe
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Runs `op` on the tier's runtime with its connection, timed, counted and bounded by
    /// `cluster.timeout_ms` (`attempt`). `None` if it failed or took too long.
    pub(super) async fn run<T, F>(
        &self,
        name: &'static str,
        op: impl Fn(ConnectionManager) -> F + Send + Sync + 'static,
    ) -> Option<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, RedisError>> + Send + 'static,
    {
        let task = self
            .runtime
            .spawn(attempt(self.shared.clone(), name, self.conn.clone(), op));
        task.await.ok()?.ok()
    }

    /// Runs `op` like `run`, in the background: nobody waits for it.
    pub(super) fn spawn<T, F>(
        &self,
        name: &'static str,
        op: impl Fn(ConnectionManager) -> F + Send + Sync + 'static,
    ) where
        T: Send + 'static,
        F: Future<Output = Result<T, RedisError>> + Send + 'static,
    {
        let task = attempt(self.shared.clone(), name, self.conn.clone(), op);
        self.runtime.spawn(async move {
            let _ = task.await;
        });
    }

    /// Counts a lookup outcome (`LOOKUP_OUTCOMES`) made elsewhere (with a lease).
    pub fn count_lookup(&self, outcome: &'static str) {
        self.shared
            .metrics
            .shared_lookups
            .with_label_values(&[outcome])
            .inc();
    }

    /// The object in `slot`, if Redis has one and answers in time.
    pub async fn get(&self, slot: u128) -> Option<CachedObject> {
        let m = &self.shared.metrics;
        if !self.available() {
            m.shared_lookups.with_label_values(&["error"]).inc();
            return None;
        }
        let key = self.object_key(slot);
        let got = self
            .run("shared_get", move |mut conn| {
                let key = key.clone();
                async move {
                    redis::cmd("GET")
                        .arg(key)
                        .query_async::<Option<Vec<u8>>>(&mut conn)
                        .await
                }
            })
            .await;
        let object = match got {
            None => {
                m.shared_lookups.with_label_values(&["error"]).inc();
                return None;
            }
            Some(bytes) => bytes.and_then(|b| decode(&b)),
        };
        let outcome = if object.is_some() { "hit" } else { "miss" };
        m.shared_lookups.with_label_values(&[outcome]).inc();
        object
    }

    /// Writes `object`, stored locally in `slot` from a fill of the key `primary` with the
    /// metadata `meta`, to the shared tier in the background; the fill's lease, if this replica
    /// holds it, is released with it.
    pub fn store(&self, slot: u128, primary: u128, object: &CachedObject, meta: &CacheMeta) {
        let m = &self.shared.metrics;
        let Some(ttl) = keep_for(meta, SystemTime::now()) else {
            // Nothing left to share: it is past its stale windows already.
            return;
        };
        if object.weight() > self.shared.settings.shared_max_object_bytes {
            m.shared_stores.with_label_values(&["too_large"]).inc();
            return;
        }
        let Ok(permit) = self.stores.clone().try_acquire_owned() else {
            m.shared_stores.with_label_values(&["dropped"]).inc();
            return;
        };
        if !self.available() {
            m.shared_stores.with_label_values(&["error"]).inc();
            return;
        }
        let token = self.held.lock().remove(&primary).unwrap_or_default();
        let (key, lease) = (self.object_key(slot), self.lease_key(primary));
        let object = object.clone();
        let shared = self.shared.clone();
        let conn = self.conn.clone();
        self.runtime.spawn(async move {
            let _permit = permit;
            let mut value = Vec::with_capacity(object.estimated_size());
            if object.encode(&mut value).is_err() {
                shared
                    .metrics
                    .shared_stores
                    .with_label_values(&["error"])
                    .inc();
                return;
            }
            let value = Arc::new(value);
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            let stored = attempt(shared.clone(), "shared_store", conn, move |mut conn| {
                let mut call = STORE_SCRIPT.prepare_invoke();
                call.key(&key)
                    .key(&lease)
                    .arg(value.as_slice())
                    .arg(ms)
                    .arg(&token);
                async move { call.invoke_async::<i64>(&mut conn).await }
            })
            .await;
            let outcome = if stored.is_ok() { "stored" } else { "error" };
            shared
                .metrics
                .shared_stores
                .with_label_values(&[outcome])
                .inc();
        });
    }

    /// Deletes the object in `slot` (a URL purge), in the background; `deleted` waits for it.
    pub fn forget(&self, slot: u128) {
        if !self.available() {
            // Redis is down: nothing reads the slot until it is back, and every replica that
            // applies this purge from the stream deletes it again then.
            return;
        }
        let key = self.object_key(slot);
        let deleting = self.deleting.clone();
        deleting.0.fetch_add(1, Ordering::SeqCst);
        let delete = attempt(
            self.shared.clone(),
            "shared_delete",
            self.conn.clone(),
            move |mut conn| {
                let key = key.clone();
                async move {
                    redis::cmd("DEL")
                        .arg(key)
                        .query_async::<i64>(&mut conn)
                        .await
                }
            },
        );
        self.runtime.spawn(async move {
            let _ = delete.await;
            deleting.0.fetch_sub(1, Ordering::SeqCst);
            deleting.1.notify_waiters();
        });
    }

    /// Waits, for at most `limit`, until every deletion `forget` started has been answered.
    /// `false` if one was still running at `limit`.
    pub async fn deleted(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.deleting.1.notified();
            if self.deleting.0.load(Ordering::SeqCst) == 0 {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                return self.deleting.0.load(Ordering::SeqCst) == 0;
            }
        }
    }
}

/// Runs `op` on `conn` through `Shared::timed`, bounded by the operation timeout. A connection
/// found dropped (Redis restarted, or back after an outage) is reconnected and `op` tried once
/// more within the same bound, so a server that is back answers the first request after it.
async fn attempt<T, F>(
    shared: Arc<Shared>,
    name: &'static str,
    conn: ConnectionManager,
    op: impl Fn(ConnectionManager) -> F,
) -> Result<T, RedisError>
where
    F: Future<Output = Result<T, RedisError>>,
{
    let limit = shared.settings.timeout;
    let started = Instant::now();
    let late = || RedisError::from((redis::ErrorKind::Io, "no answer within cluster.timeout_ms"));
    shared
        .timed(name, async {
            match tokio::time::timeout(limit, op(conn.clone())).await {
                Ok(Err(e)) if e.is_connection_dropped() || e.is_io_error() => {
                    let left = limit.saturating_sub(started.elapsed());
                    tokio::time::timeout(left, op(conn))
                        .await
                        .unwrap_or_else(|_| Err(late()))
                }
                Ok(done) => done,
                Err(_) => Err(late()),
            }
        })
        .await
}

/// A record read back from Redis; `None` if it does not decode (another version's format, a
/// damaged value): a miss, never an error.
pub(super) fn decode(bytes: &[u8]) -> Option<CachedObject> {
    CachedObject::decode(&mut &bytes[..])
        .ok()
        .filter(|o| !o.is_tombstone())
}

/// How long a response stored with `meta` is of use to anyone from `now`: until its fresh
/// window and the longer of its stale windows have run out. `None` if they already have.
pub fn keep_for(meta: &CacheMeta, now: SystemTime) -> Option<Duration> {
    let stale = meta
        .stale_while_revalidate_sec()
        .max(meta.stale_if_error_sec());
    let end = meta.fresh_until() + Duration::from_secs(u64::from(stale));
    end.duration_since(now).ok().filter(|d| !d.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(now: SystemTime, fresh_secs: i64, swr: u32, sie: u32) -> CacheMeta {
        let until = if fresh_secs >= 0 {
            now + Duration::from_secs(fresh_secs as u64)
        } else {
            now - Duration::from_secs((-fresh_secs) as u64)
        };
        let header = pingora_http::ResponseHeader::build(200, None).expect("header");
        CacheMeta::new(until, now, swr, sie, header)
    }

    #[test]
    fn a_shared_copy_lives_for_its_fresh_and_longer_stale_window() {
        let now = SystemTime::now();
        let kept = keep_for(&meta(now, 60, 30, 300), now);
        assert_eq!(kept, Some(Duration::from_secs(360)));
        let stale_only = keep_for(&meta(now, -10, 30, 0), now);
        assert_eq!(
            stale_only,
            Some(Duration::from_secs(20)),
            "in its stale window"
        );
        assert_eq!(
            keep_for(&meta(now, -100, 30, 60), now),
            None,
            "past every window"
        );
    }

    #[test]
    fn records_that_do_not_decode_are_misses() {
        assert!(decode(b"").is_none());
        assert!(decode(b"\x09garbage").is_none());
        let mut tomb = Vec::new();
        CachedObject::tombstone().encode(&mut tomb).expect("encode");
        assert!(decode(&tomb).is_none(), "a removal record is no response");
    }
}
