//! Keeping the cache warm: hot keys are refreshed shortly before they expire, and the warm
//! list is fetched at startup and on a schedule, so the dashboard never waits on a forecast.
//!
//! * `hot_keys` the bounded top-K of requested keys, with their freshness
//! * `client`   one GET through the proxy's own listener
//!
//! Warm requests go through the proxy like client requests, so keys, TTLs, coalescing, the ERP
//! cap and the breaker all apply unchanged. They carry a marker header with a random per-process
//! token, accepted only from loopback: `refresh:<token>` makes the proxy fetch a fresh entry
//! again (the old copy keeps serving clients until the new one is stored); `fill:<token>` is an
//! ordinary lookup that fills a missing entry. Warm requests are never rate limited and never
//! count as client interest. The warmer is gentle: a few requests at a time, one per key,
//! nothing while the breaker is open. Hot keys due for a refresh (or purged by a re-warming
//! rule) that do not fit the warm slots wait in a queue, bounded by the top-K's size, and are
//! fetched as slots free up, so none is dropped.

pub mod client;
pub mod hot_keys;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use parking_lot::Mutex;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use prometheus::{IntCounterVec, Opts, Registry};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::admin::purge::constant_time_eq;
use crate::config::{Config, PurgeSet};
use crate::limits::Limits;
use hot_keys::HotKeys;

/// What a warm request asks of the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmMode {
    /// Fetch again even if the stored copy is fresh.
    Refresh,
    /// An ordinary lookup: fill the entry if it is missing or expired.
    Fill,
}

/// The `Accept-Encoding` the warm list is fetched with: what the dashboard's browsers send, so
/// the variant they will ask for is the one warmed.
const BROWSER_ACCEPT_ENCODING: &str = "gzip, deflate, br, zstd";
/// Hot keys are checked this often.
const TICK: Duration = Duration::from_secs(1);
/// Counts are halved this often, so hotness follows recent traffic.
const DECAY_EVERY: Duration = Duration::from_secs(60);

/// The last warm-list cycle, for logs and `/stats`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Entries fetched successfully.
    pub warmed: u64,
    /// Entries whose fetch failed (ERP error, timeout).
    pub failed: u64,
    /// Entries not fetched (breaker open, or a refresh of the key already running).
    pub skipped: u64,
    /// How long the cycle took.
    pub took: Duration,
    /// When it finished.
    pub at: Option<SystemTime>,
}

/// Shared warming state: the hot keys (fed by the proxy), the marker token, the last cycle.
pub struct Warming {
    /// Keys clients ask for.
    pub hot: HotKeys,
    token: String,
    queue: Arc<RefreshQueue>,
    /// Purges whose keys in use are refreshed at the next tick.
    rewarm: Mutex<Vec<PurgeSet>>,
    last_cycle: Mutex<Summary>,
    requests: IntCounterVec,
}

impl Warming {
    /// Warming state tracking `hot_keys` keys, with its metrics in `registry`.
    pub fn new(hot_keys: usize, registry: &Registry) -> Result<Warming, WarmingError> {
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).map_err(|e| WarmingError::Token(e.to_string()))?;
        let token = raw.iter().map(|b| format!("{b:02x}")).collect();
        let requests = IntCounterVec::new(
            Opts::new(
                "knitcache_warm_requests_total",
                "Warm requests, by kind (hot, list) and result",
            ),
            &["kind", "result"],
        )
        .map_err(WarmingError::Metrics)?;
        registry
            .register(Box::new(requests.clone()))
            .map_err(WarmingError::Metrics)?;
        for kind in ["hot", "list"] {
            for result in ["warmed", "failed", "skipped"] {
                requests.with_label_values(&[kind, result]);
            }
        }
        Ok(Warming {
            hot: HotKeys::new(hot_keys),
            token,
            queue: Arc::new(RefreshQueue::new(hot_keys)),
            rewarm: Mutex::new(Vec::new()),
            last_cycle: Mutex::new(Summary::default()),
            requests,
        })
    }

    /// What a marker header value asks for, if it carries this process's token.
    pub fn mode(&self, header: &[u8]) -> Option<WarmMode> {
        let text = std::str::from_utf8(header).ok()?;
        let (mode, token) = text.split_once(':')?;
        if !constant_time_eq(token.trim().as_bytes(), self.token.as_bytes()) {
            return None;
        }
        match mode.trim() {
            "refresh" => Some(WarmMode::Refresh),
            "fill" => Some(WarmMode::Fill),
            _ => None,
        }
    }

    /// Asks the warmer to refresh, at its next tick, the keys in use that `set` purged.
    pub fn rewarm(&self, set: PurgeSet) {
        self.rewarm.lock().push(set);
    }

    /// The last warm-list cycle.
    pub fn last_cycle(&self) -> Summary {
        self.last_cycle.lock().clone()
    }

    fn header(&self, mode: WarmMode) -> String {
        match mode {
            WarmMode::Refresh => format!("refresh:{}", self.token),
            WarmMode::Fill => format!("fill:{}", self.token),
        }
    }
}

/// Why warming could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WarmingError {
    /// No randomness for the marker token.
    #[error("cannot draw the warm-request token: {0}")]
    Token(String),
    /// The metrics could not be registered.
    #[error("cannot register warming metrics: {0}")]
    Metrics(prometheus::Error),
}

/// The background service that refreshes hot keys and fetches the warm list.
pub struct Warmer {
    warming: Arc<Warming>,
    config: Arc<ArcSwap<Config>>,
    limits: Arc<Limits>,
    proxy: SocketAddr,
}

impl Warmer {
    /// A warmer sending its requests to the proxy listening on `proxy`.
    pub fn new(
        warming: Arc<Warming>,
        config: Arc<ArcSwap<Config>>,
        limits: Arc<Limits>,
        proxy: SocketAddr,
    ) -> Self {
        // The proxy may listen on every address; its loopback address is one of them.
        let proxy = if proxy.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), proxy.port())
        } else {
            proxy
        };
        Warmer {
            warming,
            config,
            limits,
            proxy,
        }
    }

    /// Queues the hot keys that are in use and about to expire, and those a re-warming purge
    /// covered, then starts refreshes on the free warm slots. Keys that do not fit wait for a
    /// slot; each key is queued or refreshed at most once at a time.
    fn refresh_hot(&self, slots: &Arc<Semaphore>) {
        let config = self.config.load();
        let w = &config.warming;
        let now = SystemTime::now();
        let purged = std::mem::take(&mut *self.warming.rewarm.lock());
        let open = breaker_open(&self.limits);
        for key in self.warming.hot.snapshot() {
            let in_use = key.last_seen.elapsed() <= w.active;
            let rewarm = in_use
                && purged
                    .iter()
                    .any(|set| covers(set, &config, &key.path_and_query));
            if !rewarm && !HotKeys::due(&key, now, w.lead, w.active) {
                continue;
            }
            if open {
                self.warming
                    .requests
                    .with_label_values(&["hot", "skipped"])
                    .inc();
                continue;
            }
            let id = (key.path_and_query, key.coding);
            if self.warming.queue.push(id, rewarm) == Push::Full {
                self.warming
                    .requests
                    .with_label_values(&["hot", "skipped"])
                    .inc();
            }
        }
        let (warming, limits, config) = (
            self.warming.clone(),
            self.limits.clone(),
            self.config.clone(),
        );
        let proxy = self.proxy;
        start_workers(&self.warming.queue, slots, move |id: KeyId| {
            let (warming, limits, config) = (warming.clone(), limits.clone(), config.clone());
            async move {
                if breaker_open(&limits) {
                    warming
                        .requests
                        .with_label_values(&["hot", "skipped"])
                        .inc();
                    return;
                }
                let header = warming.header(WarmMode::Refresh);
                let timeout = warm_timeout(&config.load());
                let result = client::get(proxy, &id.0, id.1, &header, timeout).await;
                let label = if matches!(result, Ok(s) if s < 500) {
                    "warmed"
                } else {
                    "failed"
                };
                warming.requests.with_label_values(&["hot", label]).inc();
            }
        });
    }

    /// Fetches every warm-list entry (filling what is missing or expired), a few at a time.
    async fn warm_list(&self, slots: &Arc<Semaphore>) {
        let config = self.config.load_full();
        if config.warming.list.is_empty() {
            return;
        }
        let started = Instant::now();
        let mut summary = Summary::default();
        let mut tasks = Vec::new();
        for path in &config.warming.list {
            if breaker_open(&self.limits) {
                summary.skipped += 1;
                continue;
            }
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break;
            };
            let warming = self.warming.clone();
            let (proxy, timeout, path) = (self.proxy, warm_timeout(&config), path.clone());
            tasks.push(tokio::spawn(async move {
                let header = warming.header(WarmMode::Fill);
                let result = client::get(
                    proxy,
                    &path,
                    Some(BROWSER_ACCEPT_ENCODING),
                    &header,
                    timeout,
                )
                .await;
                drop(slot);
                matches!(result, Ok(s) if s < 500)
            }));
        }
        for t in tasks {
            match t.await {
                Ok(true) => summary.warmed += 1,
                _ => summary.failed += 1,
            }
        }
        for (result, n) in [
            ("warmed", summary.warmed),
            ("failed", summary.failed),
            ("skipped", summary.skipped),
        ] {
            self.warming
                .requests
                .with_label_values(&["list", result])
                .inc_by(n);
        }
        summary.took = started.elapsed();
        summary.at = Some(SystemTime::now());
        tracing::info!(
            warmed = summary.warmed,
            failed = summary.failed,
            skipped = summary.skipped,
            took_ms = summary.took.as_millis() as u64,
            "warm list fetched"
        );
        *self.warming.last_cycle.lock() = summary;
    }
}

/// True while the ERP breaker is not closed: the warmer sends nothing then.
fn breaker_open(limits: &Limits) -> bool {
    !matches!(
        limits.breaker_state(),
        crate::limits::breaker::State::Closed
    )
}

/// A hot key as the warmer requests it: path and query, and the stored coding.
type KeyId = (String, Option<&'static str>);

/// Hot keys waiting for a warm slot, and those being refreshed. A key is in it at most once,
/// so it is never refreshed twice at the same time; the waiting line is bounded by the top-K's
/// size (keys come from the top-K, so it only fills if the top-K churns faster than refreshes).
struct RefreshQueue {
    bound: usize,
    inner: Mutex<QueueInner>,
}

#[derive(Default)]
struct QueueInner {
    waiting: VecDeque<KeyId>,
    state: HashMap<KeyId, KeyState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyState {
    Waiting,
    /// Being refreshed; `again` when a purge covered it meanwhile, so the copy being fetched
    /// may predate the purge and the key is fetched once more when this refresh ends.
    Running {
        again: bool,
    },
}

/// What queueing a key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Push {
    Queued,
    /// Already waiting or being refreshed.
    Already,
    /// The waiting line is full.
    Full,
}

impl RefreshQueue {
    fn new(bound: usize) -> Self {
        RefreshQueue {
            bound: bound.max(1),
            inner: Mutex::new(QueueInner::default()),
        }
    }

    /// Queues `id` unless it is already queued or running. `purged`: a purge covered it, so a
    /// refresh already running (which may have fetched the old data) is followed by another.
    fn push(&self, id: KeyId, purged: bool) -> Push {
        let mut q = self.inner.lock();
        match q.state.get_mut(&id) {
            Some(KeyState::Running { again }) => {
                *again |= purged;
                return Push::Already;
            }
            Some(KeyState::Waiting) => return Push::Already,
            None => {}
        }
        if q.waiting.len() >= self.bound {
            return Push::Full;
        }
        q.waiting.push_back(id.clone());
        q.state.insert(id, KeyState::Waiting);
        Push::Queued
    }

    /// Keys waiting for a slot.
    fn waiting(&self) -> usize {
        self.inner.lock().waiting.len()
    }

    /// The next key for a worker holding `permit`. With nothing waiting the permit is released
    /// under the lock, so a key queued right after finds the slot free for a new worker.
    ///
    /// Two codings of one path are never refreshed at once: the one waiting is taken once the
    /// other is stored, and is then made from it (`proxy::derive`) instead of costing the ERP
    /// the same computation again. A worker that finds only such keys leaves them for the next
    /// tick.
    fn next(&self, permit: &mut Option<OwnedSemaphorePermit>) -> Option<KeyId> {
        let mut q = self.inner.lock();
        let sibling_running = |q: &QueueInner, id: &KeyId| {
            q.state.iter().any(|(other, state)| {
                matches!(state, KeyState::Running { .. }) && other.0 == id.0 && other != id
            })
        };
        let ready = q.waiting.iter().position(|id| !sibling_running(&q, id));
        match ready.and_then(|i| q.waiting.remove(i)) {
            Some(id) => {
                q.state
                    .insert(id.clone(), KeyState::Running { again: false });
                Some(id)
            }
            None => {
                drop(permit.take());
                None
            }
        }
    }

    /// A refresh of `id` ended: it leaves the queue, or waits again if a purge covered it
    /// while it ran.
    fn done(&self, id: &KeyId) {
        let mut q = self.inner.lock();
        if q.state.get(id) == Some(&KeyState::Running { again: true }) {
            q.state.insert(id.clone(), KeyState::Waiting);
            q.waiting.push_back(id.clone());
        } else {
            q.state.remove(id);
        }
    }
}

/// Starts a worker per free slot (up to one per waiting key); each worker refreshes waiting
/// keys one after the other with `fetch` and gives its slot back when none is left.
fn start_workers<F, Fut>(queue: &Arc<RefreshQueue>, slots: &Arc<Semaphore>, fetch: F)
where
    F: Fn(KeyId) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    for _ in 0..queue.waiting() {
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            return; // every slot busy: their workers take the waiting keys in turn
        };
        let (queue, fetch) = (queue.clone(), fetch.clone());
        tokio::spawn(async move {
            let mut permit = Some(permit);
            while let Some(id) = queue.next(&mut permit) {
                fetch(id.clone()).await;
                queue.done(&id);
            }
        });
    }
}

/// Whether an invalidation's purge set covers a key (by route or prefix; tags cannot be told
/// from the key alone, so tag purges are refilled on the next request instead).
fn covers(set: &PurgeSet, config: &Config, path_and_query: &str) -> bool {
    let path = path_and_query.split('?').next().unwrap_or(path_and_query);
    set.everything
        || set.prefixes.iter().any(|p| path.starts_with(p.as_str()))
        || config
            .route_for(&http::Method::GET, path)
            .is_some_and(|(_, r)| set.routes.contains(&r.name))
}

/// Long enough for the slowest ERP handler behind a queue.
fn warm_timeout(config: &Config) -> Duration {
    config.upstream.read_timeout + config.protection.upstream_cap.queue_timeout
}

#[async_trait]
impl BackgroundService for Warmer {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let concurrency = self.config.load().warming.concurrency;
        let slots = Arc::new(Semaphore::new(concurrency));
        let mut next_list = tokio::time::Instant::now();
        let mut next_decay = tokio::time::Instant::now() + DECAY_EVERY;
        loop {
            if self.config.load().warming.enabled {
                if tokio::time::Instant::now() >= next_list {
                    tokio::select! {
                        _ = self.warm_list(&slots) => {}
                        _ = shutdown.changed() => return,
                    }
                    next_list = tokio::time::Instant::now() + self.config.load().warming.interval;
                }
                self.refresh_hot(&slots);
            }
            if tokio::time::Instant::now() >= next_decay {
                self.warming.hot.decay();
                next_decay = tokio::time::Instant::now() + DECAY_EVERY;
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn key(i: usize) -> KeyId {
        (format!("/api/k?n={i}"), None)
    }

    type BoxedFetch = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

    /// A fetch that takes `ms`, counting calls per key and the most running at once.
    #[derive(Clone, Default)]
    struct Probe {
        running: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
        calls: Arc<Mutex<HashMap<KeyId, usize>>>,
    }

    impl Probe {
        fn fetch(&self, ms: u64) -> impl Fn(KeyId) -> BoxedFetch + Clone + Send + 'static {
            let probe = self.clone();
            move |id: KeyId| {
                let probe = probe.clone();
                Box::pin(async move {
                    let now = probe.running.fetch_add(1, Ordering::SeqCst) + 1;
                    probe.most.fetch_max(now, Ordering::SeqCst);
                    *probe.calls.lock().entry(id).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    probe.running.fetch_sub(1, Ordering::SeqCst);
                }) as BoxedFetch
            }
        }
    }

    async fn until_idle(queue: &RefreshQueue, slots: &Semaphore, concurrency: usize) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while !queue.inner.lock().state.is_empty() || slots.available_permits() < concurrency {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the queue drains");
    }

    #[tokio::test]
    async fn every_due_key_is_refreshed_once_never_more_than_the_slots() {
        let queue = Arc::new(RefreshQueue::new(256));
        let slots = Arc::new(Semaphore::new(2));
        let probe = Probe::default();
        for i in 0..18 {
            assert_eq!(queue.push(key(i), false), Push::Queued);
        }
        start_workers(&queue, &slots, probe.fetch(30));
        // the next tick finds the same keys still waiting or running: nothing is added
        tokio::time::sleep(Duration::from_millis(5)).await;
        for i in 0..18 {
            assert_eq!(queue.push(key(i), false), Push::Already, "key {i}");
        }
        start_workers(&queue, &slots, probe.fetch(30));
        until_idle(&queue, &slots, 2).await;
        let calls = probe.calls.lock().clone();
        assert_eq!(calls.len(), 18, "every key was refreshed: {calls:?}");
        assert!(calls.values().all(|&n| n == 1), "each once: {calls:?}");
        assert_eq!(
            probe.most.load(Ordering::SeqCst),
            2,
            "never more than 2 at a time"
        );
    }

    #[tokio::test]
    async fn a_key_purged_while_its_refresh_runs_is_fetched_again_after_it() {
        let queue = Arc::new(RefreshQueue::new(256));
        let slots = Arc::new(Semaphore::new(2));
        let probe = Probe::default();
        queue.push(key(1), false);
        start_workers(&queue, &slots, probe.fetch(40));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(queue.push(key(1), true), Push::Already);
        assert_eq!(
            queue.push(key(1), true),
            Push::Already,
            "once more, not twice"
        );
        start_workers(&queue, &slots, probe.fetch(40));
        until_idle(&queue, &slots, 2).await;
        assert_eq!(probe.calls.lock().get(&key(1)), Some(&2));
        assert_eq!(
            probe.most.load(Ordering::SeqCst),
            1,
            "one refresh per key at a time"
        );
    }

    #[tokio::test]
    async fn two_codings_of_one_path_are_refreshed_one_after_the_other() {
        let queue = Arc::new(RefreshQueue::new(256));
        let slots = Arc::new(Semaphore::new(2));
        let probe = Probe::default();
        let path = "/api/k".to_owned();
        queue.push((path.clone(), Some("zstd")), false);
        queue.push((path.clone(), Some("gzip")), false);
        start_workers(&queue, &slots, probe.fetch(30));
        tokio::time::sleep(Duration::from_millis(60)).await;
        // The next tick starts what was left waiting.
        start_workers(&queue, &slots, probe.fetch(30));
        until_idle(&queue, &slots, 2).await;
        let calls = probe.calls.lock().clone();
        assert_eq!(calls.len(), 2, "both codings were refreshed: {calls:?}");
        assert!(calls.values().all(|&n| n == 1), "each once: {calls:?}");
        assert_eq!(
            probe.most.load(Ordering::SeqCst),
            1,
            "never both at once, with a slot free"
        );
    }

    #[tokio::test]
    async fn the_waiting_line_is_bounded_and_slots_come_back() {
        let queue = Arc::new(RefreshQueue::new(2));
        assert_eq!(queue.push(key(1), false), Push::Queued);
        assert_eq!(queue.push(key(2), true), Push::Queued);
        assert_eq!(queue.push(key(3), true), Push::Full);
        let slots = Arc::new(Semaphore::new(1));
        let probe = Probe::default();
        start_workers(&queue, &slots, probe.fetch(1));
        until_idle(&queue, &slots, 1).await;
        assert_eq!(probe.calls.lock().len(), 2);
        assert_eq!(queue.push(key(3), false), Push::Queued, "room again");
    }

    #[test]
    fn the_marker_needs_the_token() {
        let w = Warming::new(8, &Registry::new()).expect("warming");
        assert_eq!(
            w.mode(w.header(WarmMode::Refresh).as_bytes()),
            Some(WarmMode::Refresh)
        );
        assert_eq!(
            w.mode(w.header(WarmMode::Fill).as_bytes()),
            Some(WarmMode::Fill)
        );
        assert_eq!(w.mode(b"refresh:0000"), None, "a guessed token is refused");
        assert_eq!(w.mode(b"refresh"), None);
        let other = Warming::new(8, &Registry::new()).expect("warming");
        assert_eq!(
            w.mode(other.header(WarmMode::Refresh).as_bytes()),
            None,
            "tokens are per process"
        );
    }
}
