//! The disk tier's health while the process runs: every storage error counted by tier,
//! operation and kind, logged at most once per kind a minute, and the switch that takes the
//! disk tier out of use once it can no longer be trusted to write or read.
//!
//! foyer reports a failed disk write only in its log (the flusher's `tracing` errors), and the
//! first failed write can leave its tombstone log without a page buffer, so that every later
//! flush panics on its I/O thread (foyer-storage 0.22, `engine/block/tombstone.rs`: the flush
//! future is dropped mid-write when a block write of the same batch fails). Both reach this
//! module through the cache runtime's threads, which `bind_thread` marks as this disk tier's:
//! `FoyerErrors` (a tracing layer) turns foyer's error events into counted errors, and the panic
//! hook turns a panic on those threads into one log line. Either degrades the tier: from then on
//! `HybridStorage` reads and writes the memory tier only, so nothing more is handed to foyer's
//! broken flusher, and nothing half-written on disk is read back. A probe (`watch`) catches what
//! foyer cannot see: the directory removed or replaced under the running process, or no longer
//! writable. The disk tier comes back on the next start, which recovers what was fully written.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Display;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once, Weak};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use super::DiskTier;

/// One log line per (tier, operation, kind) per this long; the rest are counted only.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// How often `watch` looks at the directory.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// The file the probe writes and removes (beside the mark, which keeps the directory ours).
const PROBE_FILE: &str = "knitcache-probe";

/// Bytes the probe writes: one page, as foyer writes whole pages.
const PROBE_BYTES: usize = 4096;

/// Where a storage error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// The disk tier (foyer's block files, the directory).
    Disk,
    /// The cache as a whole (closed for shutdown): neither tier answered.
    Cache,
}

impl Tier {
    fn as_str(self) -> &'static str {
        match self {
            Tier::Disk => "disk",
            Tier::Cache => "cache",
        }
    }
}

/// What kind of error, as `knitcache_cache_storage_errors_total`'s `kind` label spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// ENOSPC, EDQUOT, EFBIG: no room left for the write.
    NoSpace,
    /// EROFS: the filesystem was remounted read-only (often after errors of its own).
    ReadOnly,
    /// EACCES, EPERM: the directory or a file is no longer writable by this process.
    Permission,
    /// The directory was removed or replaced while the process ran (or ENOENT, ESTALE).
    DirRemoved,
    /// Any other I/O error (EIO: the disk is failing).
    Io,
    /// A cache I/O thread panicked (inside foyer).
    Panic,
    /// A stored entry could not be decoded (one entry, not the disk).
    Decode,
    /// Any other error foyer reports without an I/O cause (not taken for a disk fault).
    Other,
    /// The cache is closed (the process is shutting down).
    Closed,
}

impl Kind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::NoSpace => "no_space",
            Kind::ReadOnly => "read_only",
            Kind::Permission => "permission",
            Kind::DirRemoved => "dir_removed",
            Kind::Io => "io",
            Kind::Panic => "panic",
            Kind::Decode => "decode",
            Kind::Other => "other",
            Kind::Closed => "closed",
        }
    }

    /// Whether an error of this kind on the disk tier means the tier cannot be trusted: every
    /// kind but a single undecodable entry, the shutdown's closed cache and errors with no I/O
    /// or panic behind them.
    fn is_fault(self) -> bool {
        !matches!(self, Kind::Decode | Kind::Closed | Kind::Other)
    }

    /// The kind of an I/O error.
    pub fn of_io(e: &std::io::Error) -> Kind {
        match e.kind() {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge => {
                Kind::NoSpace
            }
            ErrorKind::ReadOnlyFilesystem => Kind::ReadOnly,
            ErrorKind::PermissionDenied => Kind::Permission,
            ErrorKind::NotFound | ErrorKind::StaleNetworkFileHandle => Kind::DirRemoved,
            _ => Kind::Io,
        }
    }

    /// The kind of a foyer error: its I/O source's for an I/O error; a record that does not
    /// decode is one entry's problem, not the disk's.
    pub fn of_foyer(e: &foyer::Error) -> Kind {
        use foyer::ErrorKind as F;
        match e.kind() {
            F::Io => e
                .downcast_ref::<std::io::Error>()
                .map_or(Kind::Io, Kind::of_io),
            F::Join | F::TaskCancelled => Kind::Panic,
            F::Parse | F::MagicMismatch | F::ChecksumMismatch | F::OutOfRange | F::External => {
                Kind::Decode
            }
            F::Closed | F::ChannelClosed => Kind::Closed,
            _ => Kind::Other,
        }
    }

    /// The OS error named in a logged error's text (`... (os error 28)`), as foyer's log
    /// events carry their errors only as text.
    fn os_error_in(text: &str) -> Option<std::io::Error> {
        let rest = text.split("os error ").nth(1)?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits
            .parse::<i32>()
            .ok()
            .map(std::io::Error::from_raw_os_error)
    }
}

/// The disk tier's state as `/stats`, `/readyz`, the dashboard and the state gauge report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskState {
    /// Written and read.
    Open,
    /// Taken out of use while running: the memory tier serves alone until the next start.
    Degraded {
        /// What failed, in words.
        reason: String,
        /// When.
        since: SystemTime,
    },
    /// No disk tier since the start (see `DiskTier::MemoryOnly`).
    MemoryOnly {
        /// Why it could not be opened.
        reason: String,
    },
}

impl DiskState {
    /// `open`, `degraded` or `memory_only`: the state gauge's label value.
    pub fn label(&self) -> &'static str {
        match self {
            DiskState::Open => "open",
            DiskState::Degraded { .. } => "degraded",
            DiskState::MemoryOnly { .. } => "memory_only",
        }
    }
}

/// When a (tier, operation, kind) was last logged, and how many went unlogged since.
struct LogWindow {
    at: Instant,
    suppressed: u64,
}

/// The disk tier's health, shared by the storage, the admin endpoints and the cache runtime's
/// threads.
pub struct DiskHealth {
    /// True while the disk tier is open and trusted: the storage's fast check.
    in_use: AtomicBool,
    /// False once the cache is closed: the probe stops touching a directory handed over.
    watching: AtomicBool,
    state: Mutex<DiskState>,
    errors: IntCounterVec,
    state_gauge: IntGaugeVec,
    logged: Mutex<HashMap<(Tier, &'static str, Kind), LogWindow>>,
}

impl DiskHealth {
    /// A healthy, open disk tier; registers the error counter and the state gauge.
    pub fn new(registry: &Registry) -> Result<Arc<DiskHealth>, prometheus::Error> {
        let errors = IntCounterVec::new(
            Opts::new(
                "knitcache_cache_storage_errors_total",
                "Cache storage operations that failed, by tier (disk, or cache when closed), \
                 operation (read, write, probe, io, purge, ...) and kind (no_space, read_only, \
                 permission, dir_removed, io, panic, decode, other, closed); each one served as a miss \
                 or not stored",
            ),
            &["tier", "op", "kind"],
        )?;
        let state_gauge = IntGaugeVec::new(
            Opts::new(
                "knitcache_cache_disk_state",
                "1 for the disk tier's current state: open, degraded (taken out of use after a \
                 storage fault, memory serves until the next start) or memory_only (could not \
                 be opened at start)",
            ),
            &["state"],
        )?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(state_gauge.clone()))?;
        let health = DiskHealth {
            in_use: AtomicBool::new(true),
            watching: AtomicBool::new(true),
            state: Mutex::new(DiskState::Open),
            errors,
            state_gauge,
            logged: Mutex::new(HashMap::new()),
        };
        health.publish(&DiskState::Open);
        Ok(Arc::new(health))
    }

    /// Records what opening the disk tier came to: a memory-only start is not `Open`.
    pub fn started(&self, disk: &DiskTier) {
        if let DiskTier::MemoryOnly { reason } = disk {
            let state = DiskState::MemoryOnly {
                reason: reason.clone(),
            };
            self.in_use.store(false, Ordering::Release);
            self.publish(&state);
            *self.state.lock() = state;
        }
    }

    /// Whether the disk tier may be read and written.
    pub fn in_use(&self) -> bool {
        self.in_use.load(Ordering::Acquire)
    }

    /// The current state.
    pub fn state(&self) -> DiskState {
        self.state.lock().clone()
    }

    /// Counts one failed operation, logs it unless its kind was logged in the last minute, and
    /// takes the disk tier out of use if the error says the disk cannot be trusted.
    pub fn record(&self, tier: Tier, op: &'static str, kind: Kind, detail: &dyn Display) {
        self.errors
            .with_label_values(&[tier.as_str(), op, kind.as_str()])
            .inc();
        if let Some(suppressed) = self.may_log(tier, op, kind) {
            tracing::error!(
                tier = tier.as_str(),
                op,
                kind = kind.as_str(),
                error = %detail,
                suppressed,
                "cache storage error (logged once a minute per kind; all are counted in \
                 knitcache_cache_storage_errors_total)"
            );
        }
        if tier == Tier::Disk && kind.is_fault() {
            self.degrade(format!("{op} failed ({}): {detail}", kind.as_str()));
        }
    }

    /// `Some(errors not logged since the last line)` if this kind may be logged now.
    fn may_log(&self, tier: Tier, op: &'static str, kind: Kind) -> Option<u64> {
        let now = Instant::now();
        let mut logged = self.logged.lock();
        match logged.get_mut(&(tier, op, kind)) {
            Some(w) if now.duration_since(w.at) < LOG_EVERY => {
                w.suppressed += 1;
                None
            }
            Some(w) => {
                let suppressed = w.suppressed;
                *w = LogWindow {
                    at: now,
                    suppressed: 0,
                };
                Some(suppressed)
            }
            None => {
                logged.insert(
                    (tier, op, kind),
                    LogWindow {
                        at: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }

    /// Takes the disk tier out of use (once: the first reason is kept).
    fn degrade(&self, reason: String) {
        let mut state = self.state.lock();
        if *state != DiskState::Open {
            return;
        }
        self.in_use.store(false, Ordering::Release);
        tracing::error!(
            reason = %reason,
            "disk tier degraded: no longer read or written; the memory tier serves alone \
             until the next start reopens the disk tier"
        );
        let next = DiskState::Degraded {
            reason,
            since: SystemTime::now(),
        };
        self.publish(&next);
        *state = next;
    }

    fn publish(&self, current: &DiskState) {
        for state in ["open", "degraded", "memory_only"] {
            self.state_gauge
                .with_label_values(&[state])
                .set(i64::from(state == current.label()));
        }
    }

    /// Stops the probe: the cache is closed and its directory may belong to another process.
    pub fn stop_watching(&self) {
        self.watching.store(false, Ordering::Release);
    }

    /// Probes `dir` every `PROBE_INTERVAL` on `runtime` while the disk tier is in use: it must
    /// still be the directory opened (not removed, not replaced) and take a page written and
    /// synced. foyer keeps its files open, so without this a removed directory would go on
    /// taking writes into files no later start can find.
    pub fn watch(self: &Arc<Self>, dir: &Path, runtime: &tokio::runtime::Handle) {
        let identity = match std::fs::metadata(dir) {
            Ok(m) => (m.dev(), m.ino()),
            Err(e) => {
                self.record(Tier::Disk, "probe", Kind::of_io(&e), &e);
                return;
            }
        };
        let health = Arc::downgrade(self);
        let dir = dir.to_path_buf();
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(PROBE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(h) = health.upgrade() else { return };
                if !h.watching.load(Ordering::Acquire) || !h.in_use() {
                    return;
                }
                let d = dir.clone();
                let probed = tokio::task::spawn_blocking(move || probe(&d, identity)).await;
                if let Ok(Err((kind, detail))) = probed
                    && h.watching.load(Ordering::Acquire)
                {
                    h.record(Tier::Disk, "probe", kind, &detail);
                }
            }
        });
    }
}

/// One look at the directory: the same one, and writable.
fn probe(dir: &PathBuf, identity: (u64, u64)) -> Result<(), (Kind, String)> {
    let gone = |what: String| {
        (
            Kind::DirRemoved,
            format!("the cache directory {} {what}", dir.display()),
        )
    };
    match std::fs::metadata(dir) {
        Err(e) if Kind::of_io(&e) == Kind::DirRemoved => {
            return Err(gone("was removed".to_owned()));
        }
        Err(e) => return Err((Kind::of_io(&e), e.to_string())),
        Ok(m) if (m.dev(), m.ino()) != identity => {
            return Err(gone(
                "was replaced by another directory; the disk tier's files are no longer in it"
                    .to_owned(),
            ));
        }
        Ok(_) => {}
    }
    let path = dir.join(PROBE_FILE);
    let written = (|| {
        use std::io::Write;
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&[0u8; PROBE_BYTES])?;
        f.sync_data()
    })();
    let _ = std::fs::remove_file(&path);
    written.map_err(|e| {
        (
            Kind::of_io(&e),
            format!("cannot write in {}: {e}", dir.display()),
        )
    })
}

thread_local! {
    /// The disk tier whose I/O this thread runs (the cache runtime's threads only).
    static BOUND: RefCell<Option<Weak<DiskHealth>>> = const { RefCell::new(None) };
}

/// Marks the calling thread as running `health`'s disk I/O (the cache runtime calls it on every
/// thread it starts): foyer's errors and panics on it are this disk tier's.
pub fn bind_thread(health: &Arc<DiskHealth>) {
    let weak = Arc::downgrade(health);
    BOUND.with(|b| *b.borrow_mut() = Some(weak));
}

fn bound() -> Option<Arc<DiskHealth>> {
    BOUND
        .try_with(|b| b.try_borrow().ok()?.as_ref()?.upgrade())
        .ok()
        .flatten()
}

/// Whether an event is one of foyer's errors that `FoyerErrors` counts and logs in its own
/// words (the log layer leaves it out: once a minute per kind, not once per flush).
pub fn handled_here(meta: &tracing::Metadata<'_>) -> bool {
    *meta.level() == Level::ERROR && meta.target().starts_with("foyer") && bound().is_some()
}

/// The tracing layer that turns foyer's error events on the cache runtime's threads into
/// counted storage errors of that disk tier.
pub struct FoyerErrors;

impl<S: Subscriber> Layer<S> for FoyerErrors {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() != Level::ERROR || !meta.target().starts_with("foyer") {
            return;
        }
        let Some(health) = bound() else { return };
        let mut text = Text::default();
        event.record(&mut text);
        // The flusher writes; anything else foyer reports is an I/O error of unknown direction.
        let op = if meta.target().contains("flusher") {
            "write"
        } else {
            "io"
        };
        // The log line and the reason say what failed and the OS's words for it, not foyer's
        // whole error (its context, indices and backtrace placeholders).
        match Kind::os_error_in(&text.fields) {
            Some(e) => {
                let detail = format!("{}: {e}", text.message);
                health.record(Tier::Disk, op, Kind::of_io(&e), &detail);
            }
            None => {
                // A flush whose I/O task panicked (see the panic hook) is reported as one;
                // anything else without an OS error (an entry that did not decode) is counted
                // and leaves the disk tier in use.
                let kind = if text.fields.contains("panicked") {
                    Kind::Panic
                } else {
                    Kind::Other
                };
                let detail = format!("{}: {}", text.message, text.fields);
                health.record(Tier::Disk, op, kind, &detail);
            }
        }
    }
}

/// An event's message, and its other fields as one line of text.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            self.message = format!("{value:?}");
            return;
        }
        if !self.fields.is_empty() {
            self.fields.push_str("; ");
        }
        let mut text = format!("{value:?}");
        // foyer's errors end in their backtrace (or the words that it is disabled): the log
        // gets none.
        if let Some(at) = text.find("Backtrace:") {
            text.truncate(at);
        }
        // Debug forms may span lines: the log keeps one line per event.
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let _ = write!(self.fields, "{}: {text}", field.name());
    }
}

/// Installs (once per process) the panic hook that reports a panic on a cache runtime thread as
/// one log line and a degraded disk tier, with no backtrace; other panics go to the hook that
/// was there before.
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| match bound() {
            Some(health) => {
                let payload = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let detail = format!("cache I/O thread panicked at {at}: {payload}");
                health.record(Tier::Disk, "io", Kind::Panic, &detail);
            }
            None => previous(info),
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_sorted_by_what_an_operator_does_about_them() {
        let os = std::io::Error::from_raw_os_error;
        assert_eq!(Kind::of_io(&os(28)), Kind::NoSpace, "ENOSPC");
        assert_eq!(Kind::of_io(&os(27)), Kind::NoSpace, "EFBIG");
        assert_eq!(Kind::of_io(&os(30)), Kind::ReadOnly, "EROFS");
        assert_eq!(Kind::of_io(&os(13)), Kind::Permission, "EACCES");
        assert_eq!(Kind::of_io(&os(2)), Kind::DirRemoved, "ENOENT");
        assert_eq!(Kind::of_io(&os(5)), Kind::Io, "EIO");
    }

    #[test]
    fn the_os_error_is_read_from_a_logged_error() {
        let logged = "e: I/O error => coding error Source: No space left on device (os error 28) \
                      Backtrace: disabled backtrace";
        let e = Kind::os_error_in(logged).expect("found");
        assert_eq!(Kind::of_io(&e), Kind::NoSpace);
        assert_eq!(e.to_string(), "No space left on device (os error 28)");
        assert!(Kind::os_error_in("Read-only file system (os error 30)").is_some());
        assert!(Kind::os_error_in("something else").is_none());
    }

    fn health() -> (Registry, Arc<DiskHealth>) {
        let registry = Registry::new();
        let health = DiskHealth::new(&registry).expect("metrics");
        (registry, health)
    }

    fn gauge(h: &DiskHealth, state: &str) -> i64 {
        h.state_gauge.with_label_values(&[state]).get()
    }

    #[test]
    fn a_disk_fault_degrades_the_tier_once_and_keeps_the_first_reason() {
        let (_registry, h) = health();
        assert!(h.in_use());
        assert_eq!((gauge(&h, "open"), gauge(&h, "degraded")), (1, 0));
        h.record(
            Tier::Disk,
            "write",
            Kind::NoSpace,
            &"No space left on device",
        );
        h.record(Tier::Disk, "probe", Kind::DirRemoved, &"gone");
        assert!(!h.in_use());
        match h.state() {
            DiskState::Degraded { reason, .. } => {
                assert!(reason.contains("write failed (no_space)"), "{reason}")
            }
            other => panic!("must be degraded: {other:?}"),
        }
        assert_eq!((gauge(&h, "open"), gauge(&h, "degraded")), (0, 1));
        let count = |op: &str, kind: &str| h.errors.with_label_values(&["disk", op, kind]).get();
        assert_eq!(
            (count("write", "no_space"), count("probe", "dir_removed")),
            (1, 1)
        );
    }

    #[test]
    fn foyers_errors_are_sorted_too() {
        let io = foyer::Error::io_error(std::io::Error::from_raw_os_error(30));
        assert_eq!(Kind::of_foyer(&io), Kind::ReadOnly);
        let checksum = foyer::Error::new(foyer::ErrorKind::ChecksumMismatch, "x");
        assert_eq!(Kind::of_foyer(&checksum), Kind::Decode);
        let closed = foyer::Error::new(foyer::ErrorKind::Closed, "x");
        assert_eq!(Kind::of_foyer(&closed), Kind::Closed);
    }

    #[test]
    fn an_undecodable_entry_or_a_closed_cache_is_counted_and_degrades_nothing() {
        let (_registry, h) = health();
        h.record(Tier::Disk, "read", Kind::Decode, &"bad meta");
        h.record(Tier::Disk, "io", Kind::Other, &"load error");
        h.record(Tier::Cache, "lookup", Kind::Closed, &"closed");
        assert!(h.in_use());
        assert_eq!(h.state(), DiskState::Open);
    }

    #[test]
    fn each_kind_is_logged_at_most_once_a_minute() {
        let (_registry, h) = health();
        assert_eq!(h.may_log(Tier::Disk, "write", Kind::NoSpace), Some(0));
        assert_eq!(h.may_log(Tier::Disk, "write", Kind::NoSpace), None);
        assert_eq!(h.may_log(Tier::Disk, "write", Kind::NoSpace), None);
        assert_eq!(
            h.may_log(Tier::Disk, "write", Kind::Io),
            Some(0),
            "another kind"
        );
        // A minute later the line says how many went unlogged.
        h.logged
            .lock()
            .get_mut(&(Tier::Disk, "write", Kind::NoSpace))
            .expect("window")
            .at -= LOG_EVERY;
        assert_eq!(h.may_log(Tier::Disk, "write", Kind::NoSpace), Some(2));
    }

    #[test]
    fn a_memory_only_start_is_reported_as_such() {
        let (_registry, h) = health();
        h.started(&DiskTier::MemoryOnly {
            reason: "busy".into(),
        });
        assert!(!h.in_use());
        assert_eq!(gauge(&h, "memory_only"), 1);
        // A fault now changes nothing: there is no disk tier to degrade.
        h.record(Tier::Disk, "read", Kind::Io, &"x");
        assert!(matches!(h.state(), DiskState::MemoryOnly { .. }));
    }

    #[test]
    fn a_panic_on_a_cache_thread_is_counted_and_degrades_the_tier() {
        let (_registry, h) = health();
        install_panic_hook();
        let bound = h.clone();
        let joined = std::thread::spawn(move || {
            bind_thread(&bound);
            panic!("inside foyer");
        })
        .join();
        assert!(joined.is_err());
        assert!(!h.in_use());
        assert_eq!(
            h.errors.with_label_values(&["disk", "io", "panic"]).get(),
            1
        );
        match h.state() {
            DiskState::Degraded { reason, .. } => {
                assert!(reason.contains("inside foyer"), "{reason}")
            }
            other => panic!("must be degraded: {other:?}"),
        }
    }

    #[test]
    fn foyers_error_events_on_a_cache_thread_are_this_tiers_errors() {
        use tracing_subscriber::layer::SubscriberExt;
        let (_registry, h) = health();
        let subscriber = tracing_subscriber::registry().with(FoyerErrors);
        let bound = h.clone();
        std::thread::spawn(move || {
            tracing::subscriber::with_default(subscriber, || {
                // Not foyer's, or not an error: ignored.
                tracing::error!(target: "knitcache::app", "(os error 28)");
                tracing::warn!(target: "foyer_storage::engine::block::flusher", "(os error 28)");
                // Not a cache thread: ignored.
                tracing::error!(target: "foyer_storage::engine::block::flusher", "(os error 28)");
                bind_thread(&bound);
                tracing::error!(
                    target: "foyer_storage::engine::block::flusher",
                    e = "I/O error Source: No space left on device (os error 28) Backtrace: x",
                    "[flusher]: flush data error"
                );
            })
        })
        .join()
        .expect("thread");
        assert_eq!(
            h.errors
                .with_label_values(&["disk", "write", "no_space"])
                .get(),
            1
        );
        match h.state() {
            DiskState::Degraded { reason, .. } => assert_eq!(
                reason,
                "write failed (no_space): [flusher]: flush data error: No space left on device \
                 (os error 28)"
            ),
            other => panic!("must be degraded: {other:?}"),
        }
    }

    #[test]
    fn the_probe_sees_a_removed_or_replaced_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("cache");
        std::fs::create_dir(&dir).expect("mkdir");
        let m = std::fs::metadata(&dir).expect("stat");
        let id = (m.dev(), m.ino());
        assert_eq!(probe(&dir, id), Ok(()));
        assert!(!dir.join(PROBE_FILE).exists(), "the probe leaves nothing");
        std::fs::rename(&dir, tmp.path().join("moved")).expect("mv");
        std::fs::create_dir(&dir).expect("mkdir again");
        assert_eq!(probe(&dir, id).map_err(|e| e.0), Err(Kind::DirRemoved));
        std::fs::remove_dir(&dir).expect("rm");
        assert_eq!(probe(&dir, id).map_err(|e| e.0), Err(Kind::DirRemoved));
    }
}
