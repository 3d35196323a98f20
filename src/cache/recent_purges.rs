//! URL purges, remembered for as long as a copy they retired could still be served: neither a
//! fill still in flight nor the disk tier after a crash brings a purged copy back.
//!
//! * **A fill in flight.** A miss's response is stored when its body is complete, which can be
//!   after a purge of its URL was acknowledged: a purge (or a write's invalidation) sent while
//!   the ERP's body is still streaming, or the instant the client has read the last bytes, finds
//!   nothing to remove, and the fill would then store the copy the purge was meant to retire. So
//!   each URL purge is recorded here, by primary key, with its time, before it removes anything,
//!   and a fill is stored only through `store_unless_purged`: not at all if its response arrived
//!   at or before a purge of its key. The check and the store hold the lock a record takes, so a
//!   purge is either recorded before the check (the fill is dropped) or after the store (the
//!   purge's own removal finds the entry).
//! * **The disk tier after a crash.** A purge writes its removal to the disk tier, and the disk
//!   tier's recovery after a SIGKILL has been seen to bring back an entry whose removal was
//!   written (a likely cause, from foyer 0.22's recovery code: it numbers a new run's entries
//!   after the newest entry it recovered, not the newest on disk, so an entry one recovery
//!   skipped can outrank a later removal if another reads it). So a hit is refused too (`covers`) when its copy was made at or before a
//!   purge of its key, as purge bans are, and the records are kept in `purges.log` in the cache
//!   directory (`persist_in`): appended before the purge is acknowledged, read back at start.
//!
//! A record is kept for the longest time any route keeps a response (`Config::longest_retention`,
//! as bans are); before `persist_in`, and without a cache directory, for `HORIZON`. At most
//! `MAX_RECORDS` are kept: past that the oldest go, and the disk tier is not trusted at the next
//! start (`DiskTrust`), as when a purge cannot be written.
//!
//! Every hit reads the records, purges are rare: hits read a snapshot (`ArcSwap`, no lock, no
//! write to memory other threads read), and a purge copies it.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};

use super::bans::unix_ms;
use super::disk_trust::DiskTrust;

/// How long a purge is remembered before `persist_in` says for how long.
pub const HORIZON: Duration = Duration::from_secs(600);

/// Most purges remembered at once (about 40 bytes each in memory, 28 in the file; a purge
/// copies them all).
pub const MAX_RECORDS: usize = 10_000;

/// The file of records in the cache directory.
pub const FILE: &str = "purges.log";

/// One record in the file: the primary key hash (16 bytes), the purge time in ms since the
/// epoch (8), and a check over both (4), little-endian.
const RECORD: usize = 28;

/// Records appended since the file was last rewritten, past which it is rewritten with the live
/// ones only.
const REWRITE_AFTER: usize = 10 * MAX_RECORDS;

/// The URL purges of the last retention, by primary key hash.
#[derive(Default)]
pub struct RecentPurges {
    by_key: ArcSwap<HashMap<u128, SystemTime>>,
    /// Whether any purge is recorded: hits skip the rest while none is.
    any: AtomicBool,
    /// Held (shared) by a fill from its check to its store, and (alone) by a record.
    gate: RwLock<()>,
    /// Where records are kept, once `persist_in` said.
    persist: Mutex<Option<Persist>>,
}

/// The file side.
struct Persist {
    /// Opened at the first record: a directory without purges gets no file.
    file: Option<File>,
    path: std::path::PathBuf,
    retention: Duration,
    trust: Arc<DiskTrust>,
    /// Records appended since the file was written whole.
    appended: usize,
}

impl RecentPurges {
    /// Keeps the records in `dir` from now on, for `retention`: reads those a previous run left
    /// (a damaged record is skipped and logged), rewrites the file with the live ones, and appends
    /// every later one. A file that cannot be written makes the disk tier untrusted at the next
    /// start (`trust`), as a purge that cannot reach the disk does.
    pub fn persist_in(&self, dir: &Path, retention: Duration, trust: Arc<DiskTrust>) {
        let path = dir.join(FILE);
        let now = SystemTime::now();
        let mut existed = true;
        let (loaded, damaged) = match std::fs::read(&path) {
            Ok(bytes) => decode(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                existed = false;
                (Vec::new(), 0)
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e,
                    "cannot read the URL purges of the last run; the disk tier is not trusted at the next start");
                trust.missed_disk();
                (Vec::new(), 0)
            }
        };
        if damaged > 0 {
            tracing::warn!(file = %path.display(), damaged, "damaged URL purge records skipped");
        }
        {
            let _gate = self.gate.write();
            let mut by_key = HashMap::clone(&self.by_key.load());
            for (primary, at) in loaded {
                if within(at, retention, now) {
                    let slot = by_key.entry(primary).or_insert(at);
                    *slot = (*slot).max(at);
                }
            }
            self.any.store(!by_key.is_empty(), Ordering::Release);
            self.by_key.store(Arc::new(by_key));
        }
        let file = if existed {
            rewrite(&path, &self.by_key.load()).map(Some)
        } else {
            Ok(None)
        };
        match file {
            Ok(file) => {
                *self.persist.lock() = Some(Persist {
                    file,
                    path,
                    retention,
                    trust,
                    appended: 0,
                });
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e,
                    "cannot write the URL purge records; the disk tier is not trusted at the next start");
                trust.missed_disk();
            }
        }
    }

    /// Records a purge of `primary` at `at` (and in the file, once `persist_in` said where).
    pub fn record(&self, primary: u128, at: SystemTime) {
        let mut persist = self.persist.lock();
        let retention = persist.as_ref().map_or(HORIZON, |p| p.retention);
        {
            let _gate = self.gate.write();
            let mut by_key = HashMap::clone(&self.by_key.load());
            if by_key.len() >= MAX_RECORDS && !by_key.contains_key(&primary) {
                by_key.retain(|_, t| within(*t, retention, at));
                if by_key.len() >= MAX_RECORDS
                    && let Some(oldest) = by_key.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k)
                {
                    by_key.remove(&oldest);
                    if let Some(p) = persist.as_ref() {
                        // The purge forgotten may be undone by the disk tier after a crash.
                        p.trust.missed_disk();
                    }
                }
            }
            let slot = by_key.entry(primary).or_insert(at);
            *slot = (*slot).max(at);
            self.any.store(true, Ordering::Release);
            self.by_key.store(Arc::new(by_key));
        }
        if let Some(p) = persist.as_mut() {
            p.append(primary, at, &self.by_key);
        }
    }

    /// Whether a copy for `primary` made (or received) at `made` was purged since: a hit must
    /// not serve it.
    pub fn covers(&self, primary: u128, made: SystemTime) -> bool {
        self.any.load(Ordering::Acquire)
            && self
                .by_key
                .load()
                .get(&primary)
                .is_some_and(|purged| made <= *purged)
    }

    /// Runs `store` unless a response for `primary` that arrived at `received` was purged
    /// since; `true` if it ran. No purge is recorded while it runs (keep `store` short: a memory
    /// insert and a hand-over to the disk tier's writer).
    pub fn store_unless_purged(
        &self,
        primary: u128,
        received: SystemTime,
        store: impl FnOnce(),
    ) -> bool {
        let _gate = self.gate.read();
        if self
            .by_key
            .load()
            .get(&primary)
            .is_some_and(|purged| received <= *purged)
        {
            return false;
        }
        store();
        true
    }

    /// How many purges are remembered.
    pub fn len(&self) -> usize {
        self.by_key.load().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Persist {
    /// Appends one record; now and then rewrites the file with the live records only.
    fn append(
        &mut self,
        primary: u128,
        at: SystemTime,
        by_key: &ArcSwap<HashMap<u128, SystemTime>>,
    ) {
        self.appended += 1;
        let written = if self.appended > REWRITE_AFTER {
            // Those past their retention are left out of the file (in memory, a full list
            // drops them: `record`).
            let now = SystemTime::now();
            let mut live = HashMap::clone(&by_key.load());
            live.retain(|_, t| within(*t, self.retention, now));
            rewrite(&self.path, &live).map(|file| {
                self.file = Some(file);
                self.appended = 0;
            })
        } else {
            let file = match self.file.take() {
                Some(file) => Ok(file),
                None => std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path),
            };
            file.and_then(|mut file| {
                let written = file.write_all(&encode(primary, at));
                self.file = Some(file);
                written
            })
        };
        if let Err(e) = written {
            tracing::error!(file = %self.path.display(), error = %e,
                "a URL purge could not be recorded; the disk tier is not trusted at the next start");
            self.trust.missed_disk();
        }
    }
}

/// Whether a purge at `purged` still counts at `now`: a copy it retired could still be served.
fn within(purged: SystemTime, retention: Duration, now: SystemTime) -> bool {
    purged.checked_add(retention).is_none_or(|end| end > now)
}

/// Writes `records` to a new file beside `path`, then puts it in its place; the file, open for
/// appending.
fn rewrite(path: &Path, records: &HashMap<u128, SystemTime>) -> std::io::Result<File> {
    let tmp = path.with_extension("log.new");
    let mut bytes = Vec::with_capacity(records.len() * RECORD);
    for (primary, at) in records {
        bytes.extend_from_slice(&encode(*primary, *at));
    }
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, path)?;
    std::fs::OpenOptions::new().append(true).open(path)
}

fn encode(primary: u128, at: SystemTime) -> [u8; RECORD] {
    let mut out = [0u8; RECORD];
    out[..16].copy_from_slice(&primary.to_le_bytes());
    out[16..24].copy_from_slice(&unix_ms(at).to_le_bytes());
    let check = check(&out[..24]);
    out[24..].copy_from_slice(&check.to_le_bytes());
    out
}

/// The records in `bytes`, and how many were damaged (a torn last record included).
fn decode(bytes: &[u8]) -> (Vec<(u128, SystemTime)>, usize) {
    let mut out = Vec::with_capacity(bytes.len() / RECORD);
    let mut damaged = usize::from(!bytes.len().is_multiple_of(RECORD));
    for rec in bytes.chunks_exact(RECORD) {
        let (body, sum) = rec.split_at(24);
        if u32::from_le_bytes([sum[0], sum[1], sum[2], sum[3]]) != check(body) {
            damaged += 1;
            continue;
        }
        let mut hash = [0u8; 16];
        hash.copy_from_slice(&body[..16]);
        let mut ms = [0u8; 8];
        ms.copy_from_slice(&body[16..24]);
        out.push((
            u128::from_le_bytes(hash),
            UNIX_EPOCH + Duration::from_millis(u64::from_le_bytes(ms)),
        ));
    }
    (out, damaged)
}

/// FNV-1a over `bytes`: enough to tell a record from a torn or overwritten one.
fn check(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covers_fill(purges: &RecentPurges, primary: u128, received: SystemTime) -> bool {
        !purges.store_unless_purged(primary, received, || ())
    }

    #[test]
    fn a_response_that_arrived_before_the_purge_is_covered_and_a_later_one_is_not() {
        let purges = RecentPurges::default();
        let t = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(!purges.covers(7, t), "nothing recorded yet");
        purges.record(7, t);
        for covers in [RecentPurges::covers, covers_fill] {
            assert!(covers(&purges, 7, t - Duration::from_millis(1)));
            assert!(
                covers(&purges, 7, t),
                "arrived at the purge's instant: covered"
            );
            assert!(!covers(&purges, 7, t + Duration::from_millis(1)));
            assert!(
                !covers(&purges, 8, t - Duration::from_millis(1)),
                "another key"
            );
        }
    }

    #[test]
    fn the_latest_purge_of_a_key_counts() {
        let purges = RecentPurges::default();
        let t = UNIX_EPOCH + Duration::from_secs(1_000_000);
        purges.record(7, t + Duration::from_secs(5));
        purges.record(7, t);
        assert!(purges.covers(7, t + Duration::from_secs(4)));
        assert_eq!(purges.len(), 1);
    }

    #[test]
    fn a_full_list_forgets_what_is_past_the_horizon_then_the_oldest() {
        let purges = RecentPurges::default();
        let t = UNIX_EPOCH + Duration::from_secs(10_000_000);
        for k in 0..MAX_RECORDS as u128 {
            // Half past the horizon of the last record (one of them exactly at it), half within.
            let at = if k == 0 {
                t - HORIZON
            } else if k % 2 == 0 {
                t - HORIZON - Duration::from_secs(1)
            } else {
                t - Duration::from_secs(1) + Duration::from_nanos(k as u64)
            };
            purges.record(k, at);
        }
        assert_eq!(purges.len(), MAX_RECORDS);
        purges.record(u128::MAX, t);
        assert_eq!(purges.len(), MAX_RECORDS / 2 + 1);
        assert!(purges.covers(1, t - Duration::from_secs(2)));
        assert!(!purges.covers(0, t - HORIZON - Duration::from_secs(2)));
        assert!(!purges.covers(2, t - HORIZON - Duration::from_secs(2)));

        // Full of records within the horizon: the oldest one makes room.
        let full = RecentPurges::default();
        for k in 0..MAX_RECORDS as u128 {
            full.record(k, t + Duration::from_nanos(k as u64));
        }
        full.record(u128::MAX, t + Duration::from_secs(1));
        assert_eq!(full.len(), MAX_RECORDS);
        assert!(!full.covers(0, t), "the oldest was forgotten");
        assert!(full.covers(1, t));
        assert!(full.covers(u128::MAX, t));
    }

    fn trust(dir: &Path) -> Arc<DiskTrust> {
        Arc::new(DiskTrust::new(dir, &prometheus::Registry::new()).expect("trust"))
    }

    #[test]
    fn records_outlive_the_process_until_their_retention_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let first = RecentPurges::default();
        first.persist_in(dir.path(), day, trust(dir.path()));
        first.record(1, now - Duration::from_secs(60));
        first.record(2, now - 2 * day);
        first.record(1, now - Duration::from_secs(30));
        drop(first);

        let second = RecentPurges::default();
        second.persist_in(dir.path(), day, trust(dir.path()));
        assert!(
            second.covers(1, now - Duration::from_secs(31)),
            "the later purge of 1"
        );
        assert!(!second.covers(1, now - Duration::from_secs(29)));
        assert!(!second.covers(2, now - 3 * day), "past its retention: gone");
        assert_eq!(second.len(), 1);
        assert_eq!(
            std::fs::metadata(dir.path().join(FILE))
                .expect("file")
                .len(),
            RECORD as u64,
            "rewritten with the live record only"
        );
    }

    #[test]
    fn a_directory_without_purges_gets_no_file() {
        // The cache directory of a release before the directory mark is adopted only if it
        // holds nothing but what that release wrote (`dir_mark`).
        let dir = tempfile::tempdir().expect("tempdir");
        let purges = RecentPurges::default();
        purges.persist_in(dir.path(), Duration::from_secs(600), trust(dir.path()));
        assert!(!dir.path().join(FILE).exists());
        purges.record(9, SystemTime::now());
        assert_eq!(
            std::fs::metadata(dir.path().join(FILE))
                .expect("file")
                .len(),
            RECORD as u64
        );
    }

    #[test]
    fn the_check_is_fnv_1a() {
        // The published 32-bit FNV-1a values: the file's format is this function.
        assert_eq!(check(b""), 0x811c_9dc5);
        assert_eq!(check(b"a"), 0xe40c_292c);
        assert_eq!(check(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn damaged_records_are_skipped_and_the_rest_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = SystemTime::now();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&encode(1, now));
        let mut bad = encode(2, now);
        bad[3] ^= 0xff;
        bytes.extend_from_slice(&bad);
        bytes.extend_from_slice(&encode(3, now));
        bytes.extend_from_slice(&encode(4, now)[..10]); // torn by a crash
        std::fs::write(dir.path().join(FILE), &bytes).expect("write");
        let (records, damaged) = decode(&bytes);
        assert_eq!(damaged, 2);
        assert_eq!(records.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 3]);

        let purges = RecentPurges::default();
        purges.persist_in(dir.path(), Duration::from_secs(600), trust(dir.path()));
        // Kept to the millisecond: a copy made a second before each purge.
        let before = now - Duration::from_secs(1);
        assert!(purges.covers(1, before) && purges.covers(3, before));
        assert!(!purges.covers(2, before) && !purges.covers(4, before));
    }

    #[test]
    fn the_file_is_rewritten_with_the_live_records_after_so_many_appends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let retention = Duration::from_secs(600);
        let purges = RecentPurges::default();
        assert!(purges.is_empty());
        purges.persist_in(dir.path(), retention, trust(dir.path()));
        let now = SystemTime::now();
        // Ten lists' worth of appends, written out here: the constant is what is tested.
        let rewrite_after = 10 * MAX_RECORDS;
        // Past its retention by the time the file is rewritten: left out of it.
        purges.record(1, now - 2 * retention);
        for _ in 1..rewrite_after {
            purges.record(2, now);
        }
        assert_eq!(purges.len(), 2);
        assert!(!purges.is_empty());
        let size = || {
            std::fs::metadata(dir.path().join(FILE))
                .expect("file")
                .len()
        };
        assert_eq!(
            size(),
            (rewrite_after * RECORD) as u64,
            "appended, one record each"
        );
        purges.record(2, now);
        assert_eq!(size(), RECORD as u64, "rewritten: the one live record");
        let (kept, _) = decode(&std::fs::read(dir.path().join(FILE)).expect("read"));
        assert_eq!(kept.iter().map(|r| r.0).collect::<Vec<_>>(), [2]);
        purges.record(3, now);
        assert_eq!(size(), 2 * RECORD as u64, "appended again");
    }

    #[test]
    fn an_unwritable_file_distrusts_the_disk_tier() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = trust(dir.path());
        let trust_file = dir.path().join(super::super::disk_trust::TRUST_FILE);
        std::fs::write(&trust_file, "trusted").expect("trust file");
        // A directory where the file should be: neither readable as a file nor replaceable.
        std::fs::create_dir(dir.path().join(FILE)).expect("dir");
        let purges = RecentPurges::default();
        purges.persist_in(dir.path(), Duration::from_secs(600), t);
        assert!(
            !trust_file.exists(),
            "the next start does not trust the disk tier"
        );
        purges.record(5, SystemTime::now());
        assert!(
            purges.covers(5, SystemTime::now() - Duration::from_secs(1)),
            "kept in memory"
        );
    }
}
