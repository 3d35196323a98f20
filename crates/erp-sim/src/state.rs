//! State shared by every connection of one simulator: request counters, the last request
//! body per path, fault switches, the interpreter lock, cold/warm flags and scripted routes.
//!
//! Counters and switches are plain atomics or `parking_lot` mutexes held for a few
//! instructions, never across an `.await`. The one async lock is `gil`, which stands for the
//! Python GIL and is held across the latency sleep of a CPU-bound handler on purpose.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use super::body::{RecordCache, splitmix64};
use super::catalogue::{CATALOGUE, Timing};
use super::{HealthSays, Mode, ScriptedResponse};

/// Request counts, keyed by the raw path and by the raw path plus query.
#[derive(Debug, Default)]
struct Counters {
    by_path: HashMap<String, u64>,
    by_path_query: HashMap<String, u64>,
    last_body: HashMap<String, Bytes>,
}

/// `(key, count)` pairs, sorted by key.
pub(crate) type CountList = Vec<(String, u64)>;

/// Fault switches other than hang (which needs a wake-up channel).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Faults {
    /// Every ERP request answers this status.
    pub fail: Option<u16>,
    /// Added to every ERP request before it is handled.
    pub extra_latency: Duration,
}

/// The worker-crash switch: `after` requests are answered, the next one's connection is closed
/// without a response, and the count starts again.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DropSwitch {
    /// Requests answered between two drops; `None`: off.
    pub after: Option<u64>,
    /// Requests answered since the last drop (or since the switch was set).
    answered: u64,
}

/// What a lying health path answers, whatever the other switches say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HealthLie {
    /// The path that lies (matched exactly, without query).
    pub path: String,
    /// What it says.
    pub says: HealthSays,
}

/// Everything the connections of one simulator share.
#[derive(Debug)]
pub(crate) struct Shared {
    mode: AtomicU8,
    /// Multiplies every catalogue latency (tests use 0.01-0.1).
    pub time_scale: f64,
    counters: Mutex<Counters>,
    total: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    cpu_running: AtomicU64,
    max_cpu_running: AtomicU64,
    /// The interpreter lock: CPU-bound handlers run one at a time.
    pub gil: tokio::sync::Mutex<()>,
    faults: Mutex<Faults>,
    hang: watch::Sender<bool>,
    /// Paths that answer a fixed status persistently (matched exactly, without query).
    path_fail: RwLock<HashMap<String, u16>>,
    drop: Mutex<DropSwitch>,
    health_lie: RwLock<Option<HealthLie>>,
    /// Whether the main listener is down.
    pub down: AtomicBool,
    cors_echo_origin: AtomicBool,
    /// One flag per catalogue entry and mode: has the handler run once (cold start done)?
    warmed: Vec<AtomicBool>,
    rng: Mutex<u64>,
    data_version: AtomicU64,
    /// Filler records for JSON bodies.
    pub records: RecordCache,
    routes: RwLock<HashMap<String, ScriptedResponse>>,
    /// Process start, the `Last-Modified` of the `send_file` page.
    pub started: SystemTime,
}

impl Shared {
    /// Fresh state for a simulator in `mode`.
    pub(crate) fn new(mode: Mode, time_scale: f64) -> Self {
        let started = SystemTime::now();
        let seed = started
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self {
            mode: AtomicU8::new(mode as u8),
            time_scale,
            counters: Mutex::default(),
            total: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            cpu_running: AtomicU64::new(0),
            max_cpu_running: AtomicU64::new(0),
            gil: tokio::sync::Mutex::new(()),
            faults: Mutex::default(),
            hang: watch::Sender::new(false),
            path_fail: RwLock::default(),
            drop: Mutex::default(),
            health_lie: RwLock::default(),
            down: AtomicBool::new(false),
            cors_echo_origin: AtomicBool::new(false),
            warmed: (0..CATALOGUE.len() * 2)
                .map(|_| AtomicBool::new(false))
                .collect(),
            rng: Mutex::new(seed),
            data_version: AtomicU64::new(0),
            records: RecordCache::default(),
            routes: RwLock::default(),
            started,
        }
    }

    /// The current mode.
    pub(crate) fn mode(&self) -> Mode {
        if self.mode.load(Ordering::Relaxed) == Mode::Shipped as u8 {
            Mode::Shipped
        } else {
            Mode::Rollback
        }
    }

    /// Switches the mode for requests that start from now on.
    pub(crate) fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::Relaxed);
    }

    /// Counts one ERP request.
    pub(crate) fn count(&self, path: &str, path_and_query: &str) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut c = self.counters.lock();
        *c.by_path.entry(path.to_owned()).or_default() += 1;
        *c.by_path_query
            .entry(path_and_query.to_owned())
            .or_default() += 1;
    }

    /// Remembers the body of the latest request to `path`.
    pub(crate) fn record_body(&self, path: &str, body: Bytes) {
        self.counters.lock().last_body.insert(path.to_owned(), body);
    }

    /// Requests to `path` (without query).
    pub(crate) fn hits(&self, path: &str) -> u64 {
        self.counters.lock().by_path.get(path).copied().unwrap_or(0)
    }

    /// Requests to exactly `path_and_query`.
    pub(crate) fn hits_with_query(&self, path_and_query: &str) -> u64 {
        self.counters
            .lock()
            .by_path_query
            .get(path_and_query)
            .copied()
            .unwrap_or(0)
    }

    /// All ERP requests.
    pub(crate) fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The body of the latest request to `path`.
    pub(crate) fn last_body(&self, path: &str) -> Option<Bytes> {
        self.counters.lock().last_body.get(path).cloned()
    }

    /// Both counter maps, sorted, for the control endpoint.
    pub(crate) fn snapshot(&self) -> (CountList, CountList) {
        let c = self.counters.lock();
        let mut paths: Vec<_> = c.by_path.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let mut queries: Vec<_> = c
            .by_path_query
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        drop(c);
        paths.sort();
        queries.sort();
        (paths, queries)
    }

    /// Zeroes the counters, forgets recorded bodies and restarts the concurrency high-water
    /// marks from the current values. Cold/warm state stays: the "process" keeps running.
    pub(crate) fn reset(&self) {
        {
            let mut c = self.counters.lock();
            c.by_path.clear();
            c.by_path_query.clear();
            c.last_body.clear();
        }
        self.total.store(0, Ordering::Relaxed);
        self.max_in_flight
            .store(self.in_flight.load(Ordering::Relaxed), Ordering::Relaxed);
        self.max_cpu_running
            .store(self.cpu_running.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Marks one request as being handled until the guard drops.
    pub(crate) fn enter(&self) -> Gauge<'_> {
        Gauge::enter(&self.in_flight, &self.max_in_flight)
    }

    /// Marks one CPU-bound handler as running (holding the interpreter lock).
    pub(crate) fn enter_cpu(&self) -> Gauge<'_> {
        Gauge::enter(&self.cpu_running, &self.max_cpu_running)
    }

    /// Requests being handled now.
    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Most requests handled at once since start or reset.
    pub(crate) fn max_in_flight(&self) -> u64 {
        self.max_in_flight.load(Ordering::Relaxed)
    }

    /// Most CPU-bound handlers running at once since start or reset (1 when serialised).
    pub(crate) fn max_cpu_running(&self) -> u64 {
        self.max_cpu_running.load(Ordering::Relaxed)
    }

    /// The current fail/slow switches.
    pub(crate) fn faults(&self) -> Faults {
        *self.faults.lock()
    }

    /// Sets or clears the forced status.
    pub(crate) fn set_fail(&self, status: Option<u16>) {
        self.faults.lock().fail = status;
    }

    /// Sets the extra latency.
    pub(crate) fn set_extra_latency(&self, d: Duration) {
        self.faults.lock().extra_latency = d;
    }

    /// Makes `path` answer `status` on every request (`None`: back to normal).
    pub(crate) fn set_path_fail(&self, path: &str, status: Option<u16>) {
        let mut map = self.path_fail.write();
        match status {
            Some(s) => {
                map.insert(path.to_owned(), s);
            }
            None => {
                map.remove(path);
            }
        }
    }

    /// Clears every path's forced status.
    pub(crate) fn clear_path_fails(&self) {
        self.path_fail.write().clear();
    }

    /// The forced status of the first of `paths` that has one.
    pub(crate) fn path_fail(&self, paths: &[&str]) -> Option<u16> {
        let map = self.path_fail.read();
        if map.is_empty() {
            return None;
        }
        paths.iter().find_map(|p| map.get(*p).copied())
    }

    /// Every path's forced status, sorted, for the control endpoint.
    pub(crate) fn path_fails(&self) -> Vec<(String, u16)> {
        let mut list: Vec<_> = self
            .path_fail
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        list.sort();
        list
    }

    /// Sets the worker-crash switch (`None`: off); the count starts from zero.
    pub(crate) fn set_drop_after(&self, after: Option<u64>) {
        *self.drop.lock() = DropSwitch { after, answered: 0 };
    }

    /// The worker-crash switch's setting.
    pub(crate) fn drop_after(&self) -> Option<u64> {
        self.drop.lock().after
    }

    /// Whether this request's connection is to be closed without a response: true for the
    /// request after every `after` answered ones.
    pub(crate) fn take_drop(&self) -> bool {
        let mut d = self.drop.lock();
        let Some(after) = d.after else {
            return false;
        };
        if d.answered >= after {
            d.answered = 0;
            true
        } else {
            d.answered += 1;
            false
        }
    }

    /// Makes a health path lie (`None`: it tells the truth again).
    pub(crate) fn set_health_lie(&self, lie: Option<HealthLie>) {
        *self.health_lie.write() = lie;
    }

    /// The lying health path, if any.
    pub(crate) fn health_lie(&self) -> Option<HealthLie> {
        self.health_lie.read().clone()
    }

    /// What the health path among `paths` says, if one of them lies.
    pub(crate) fn health_says(&self, paths: &[&str]) -> Option<HealthSays> {
        let lie = self.health_lie.read();
        let lie = lie.as_ref()?;
        paths.contains(&lie.path.as_str()).then_some(lie.says)
    }

    /// Turns hanging on or off; turning it off closes the hung connections.
    pub(crate) fn set_hang(&self, on: bool) {
        self.hang.send_replace(on);
    }

    /// Whether requests hang.
    pub(crate) fn hanging(&self) -> bool {
        *self.hang.borrow()
    }

    /// Resolves once hanging is switched off.
    pub(crate) async fn hang_released(&self) {
        let mut rx = self.hang.subscribe();
        // Err means the sender is gone, which cannot happen while `self` lives.
        let _ = rx.wait_for(|on| !*on).await;
    }

    /// How long a handler with `timing` takes on this call: the cold time on its first call
    /// (per catalogue entry and mode, when `warm_key` is given), a uniform pick in the warm
    /// range afterwards, times `time_scale`.
    pub(crate) fn latency(&self, timing: Timing, warm_key: Option<usize>) -> Duration {
        let first = warm_key
            .and_then(|k| self.warmed.get(k))
            .is_some_and(|flag| !flag.swap(true, Ordering::Relaxed));
        let ms = if first {
            f64::from(timing.cold_ms)
        } else {
            let span = u64::from(timing.warm_hi_ms.saturating_sub(timing.warm_lo_ms));
            let pick = if span == 0 {
                0
            } else {
                splitmix64(&mut self.rng.lock()) % (span + 1)
            };
            f64::from(timing.warm_lo_ms) + pick as f64
        };
        // `try_`: a huge time_scale saturates instead of panicking.
        Duration::try_from_secs_f64((ms * self.time_scale / 1000.0).max(0.0))
            .unwrap_or(Duration::MAX)
    }

    /// The cold/warm flag index of catalogue entry `index` in `mode`.
    pub(crate) fn warm_key(index: usize, mode: Mode) -> usize {
        index * 2 + mode as usize
    }

    /// Whether CORS answers echo the request's `Origin` (flask-cors' real default) instead of `*`.
    pub(crate) fn cors_echo_origin(&self) -> bool {
        self.cors_echo_origin.load(Ordering::Relaxed)
    }

    /// Sets [`Shared::cors_echo_origin`].
    pub(crate) fn set_cors_echo_origin(&self, on: bool) {
        self.cors_echo_origin.store(on, Ordering::Relaxed);
    }

    /// Data reloads so far.
    pub(crate) fn data_version(&self) -> u64 {
        self.data_version.load(Ordering::Relaxed)
    }

    /// One data reload happened (`/api/reload-data`).
    pub(crate) fn bump_data_version(&self) {
        self.data_version.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds or replaces a scripted route.
    pub(crate) fn add_route(&self, path: String, response: ScriptedResponse) {
        self.routes.write().insert(path, response);
    }

    /// Removes a scripted route; true if there was one.
    pub(crate) fn remove_route(&self, path: &str) -> bool {
        self.routes.write().remove(path).is_some()
    }

    /// The scripted route for `path`, if any.
    pub(crate) fn route(&self, path: &str) -> Option<ScriptedResponse> {
        self.routes.read().get(path).cloned()
    }
}

/// Counts itself into a gauge and its high-water mark; leaves on drop, so a cancelled request
/// (client gone, server down) still leaves.
#[derive(Debug)]
pub(crate) struct Gauge<'a> {
    now: &'a AtomicU64,
}

impl<'a> Gauge<'a> {
    fn enter(now: &'a AtomicU64, max: &AtomicU64) -> Self {
        let n = now.fetch_add(1, Ordering::Relaxed) + 1;
        max.fetch_max(n, Ordering::Relaxed);
        Self { now }
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.now.fetch_sub(1, Ordering::Relaxed);
    }
}
