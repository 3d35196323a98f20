//! Whether the disk tier's entries may be served at start: only if every purge of the run that
//! wrote them reached the cache directory.
//!
//! A purge or ban made while the disk tier is degraded (or memory-only) changes the memory tier
//! alone: the entry's copy on disk, or the ban that hides it, is not written. Reopened at the
//! next start, that copy would be served again until its TTL ends. So the directory carries a
//! trust file, `TRUST_FILE`, and the first purge that cannot be written removes it: unlinking
//! needs no free space, so it works on a full disk. At start, a directory holding foyer's files
//! without the trust file lost a purge in the run before: its entries are deleted (the disk tier
//! starts empty, said in one log line and counted) and the file written again. A crash while the
//! disk tier is healthy leaves the file in place, so crash recovery still serves what was
//! written. A directory that refuses the unlink too (read-only, permissions) cannot record the
//! loss: that is logged and counted as `may_return`, the one case in which a purged entry can
//! come back after a restart.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use super::dir_mark::{self, Claim};

/// The trust file's name inside a cache directory.
pub const TRUST_FILE: &str = "knitcache-purges-on-disk";

/// The trust file's text (read by people only: its presence is what counts).
const TRUST_TEXT: &str = "Every purge of the last run reached this directory's disk tier.\n\
    knitcache removes this file when a purge cannot be written (a degraded disk tier), and then\n\
    starts the next time with an empty disk tier rather than serve purged entries again.\n";

/// The trust file of one cache directory, and the counts of purges that missed it.
pub struct DiskTrust {
    file: PathBuf,
    /// Set once the trust file is gone: the next start discards the disk tier.
    removed: AtomicBool,
    /// Set once a failed removal was logged (every one is counted).
    refusal_logged: AtomicBool,
    missed: IntCounterVec,
    discarded: IntCounter,
}

impl DiskTrust {
    /// The trust of the cache directory `dir`; registers its counters in `registry`.
    pub fn new(dir: &Path, registry: &Registry) -> Result<DiskTrust, prometheus::Error> {
        let missed = IntCounterVec::new(
            Opts::new(
                "knitcache_cache_purges_not_on_disk_total",
                "Purge removals (one per stored slot: a URL purge removes each coding's) and bans \
                 that reached the memory tier only (the disk tier degraded or memory-only, or \
                 the ban list unwritable), by outcome: discard_at_start (the \
                 trust file was removed: the next start empties the disk tier) or may_return \
                 (it could not be removed: the purged entries may be served again after a \
                 restart)",
            ),
            &["outcome"],
        )?;
        let discarded = IntCounter::new(
            "knitcache_cache_disk_discarded_total",
            "Starts that emptied the disk tier because the run before lost a purge (its trust \
             file was removed)",
        )?;
        registry.register(Box::new(missed.clone()))?;
        registry.register(Box::new(discarded.clone()))?;
        // Both outcomes exported from the start, at 0: an alert on their increase needs a
        // series to compare against before the first lost purge.
        for outcome in ["discard_at_start", "may_return"] {
            missed.with_label_values(&[outcome]);
        }
        Ok(DiskTrust {
            file: dir.join(TRUST_FILE),
            removed: AtomicBool::new(false),
            refusal_logged: AtomicBool::new(false),
            missed,
            discarded,
        })
    }

    /// Decides, before the disk tier is opened on a directory `claim`ed and locked, whether its
    /// entries may be served: without the trust file they are deleted first. Then writes the
    /// file. `Err` (the entries could not be deleted) means the directory must not be opened
    /// as it is.
    pub fn at_start(&self, claim: &Claim) -> Result<(), String> {
        let dir = self.file.parent().unwrap_or(Path::new("."));
        let trusted = match std::fs::metadata(&self.file) {
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(format!("cannot read {}: {e}", self.file.display())),
        };
        // The release before the mark wrote no trust file and could lose no purge this way:
        // its entries are adopted as they are.
        if !trusted && !matches!(claim, Claim::AdoptedUnmarked) {
            let deleted = dir_mark::delete_disk_tier_files(dir)
                .map_err(|e| format!("cannot empty the disk tier of {}: {e}", dir.display()))?;
            if deleted > 0 {
                self.discarded.inc();
                tracing::error!(
                    dir = %dir.display(),
                    files = deleted,
                    "disk tier emptied at start: it has no trust file, so a purge of the \
                     previous run may not have reached it (the disk tier was degraded, or the \
                     previous release kept no trust file); its entries are filled from the ERP \
                     again"
                );
            }
        }
        if !trusted && let Err(e) = std::fs::write(&self.file, TRUST_TEXT) {
            // Safe: the next start empties the disk tier again, costing only its entries.
            tracing::warn!(
                file = %self.file.display(),
                error = %e,
                "cannot write the disk tier's trust file; the next start will empty the disk tier"
            );
        }
        Ok(())
    }

    /// Records a purge or ban that reached the memory tier only: the trust file is removed,
    /// so the next start does not serve what it may have hidden.
    pub fn missed_disk(&self) {
        if self.removed.load(Ordering::Acquire) {
            self.missed.with_label_values(&["discard_at_start"]).inc();
            return;
        }
        match std::fs::remove_file(&self.file) {
            Ok(()) => self.lost_once(),
            Err(e) if e.kind() == ErrorKind::NotFound => self.lost_once(),
            Err(e) => {
                self.missed.with_label_values(&["may_return"]).inc();
                if !self.refusal_logged.swap(true, Ordering::AcqRel) {
                    tracing::error!(
                        file = %self.file.display(),
                        error = %e,
                        "a purge reached the memory tier only, and the disk tier's trust file \
                         cannot be removed: after a restart the purged entries may be served \
                         again until their TTL ends; purge again after the restart (counted in \
                         knitcache_cache_purges_not_on_disk_total{{outcome=\"may_return\"}})"
                    );
                }
            }
        }
    }

    fn lost_once(&self) {
        self.missed.with_label_values(&["discard_at_start"]).inc();
        if !self.removed.swap(true, Ordering::AcqRel) {
            tracing::error!(
                file = %self.file.display(),
                "a purge reached the memory tier only; the disk tier's trust file is removed, \
                 so the next start empties the disk tier rather than serve purged entries"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trust(dir: &Path) -> (Registry, DiskTrust) {
        let registry = Registry::new();
        let t = DiskTrust::new(dir, &registry).expect("metrics");
        (registry, t)
    }

    fn block(dir: &Path) -> PathBuf {
        dir.join("foyer-storage-direct-fs-00000000")
    }

    #[test]
    fn a_start_keeps_the_entries_while_the_trust_file_is_there() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (_r, t) = trust(tmp.path());
        t.at_start(&Claim::Created).expect("start");
        assert!(tmp.path().join(TRUST_FILE).is_file(), "written at start");
        std::fs::write(block(tmp.path()), b"entries").expect("write");
        t.at_start(&Claim::Marked { layout: 1 }).expect("start");
        assert!(block(tmp.path()).is_file(), "kept");
        assert_eq!(t.discarded.get(), 0);
    }

    #[test]
    fn a_missed_purge_empties_the_disk_tier_at_the_next_start() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (_r, t) = trust(tmp.path());
        t.at_start(&Claim::Created).expect("start");
        std::fs::write(block(tmp.path()), b"entries").expect("write");
        std::fs::write(tmp.path().join(dir_mark::MARK_FILE), b"mark").expect("write");
        t.missed_disk();
        t.missed_disk();
        assert!(!tmp.path().join(TRUST_FILE).exists(), "removed");
        let count = |o: &str| t.missed.with_label_values(&[o]).get();
        assert_eq!((count("discard_at_start"), count("may_return")), (2, 0));

        let (_r, next) = trust(tmp.path());
        next.at_start(&Claim::Marked { layout: 1 }).expect("start");
        assert!(!block(tmp.path()).exists(), "the entries are deleted");
        assert!(
            tmp.path().join(dir_mark::MARK_FILE).exists(),
            "the mark is not"
        );
        assert!(tmp.path().join(TRUST_FILE).is_file(), "trusted again");
        assert_eq!(next.discarded.get(), 1);
    }

    #[test]
    fn the_release_before_the_mark_keeps_its_entries() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (_r, t) = trust(tmp.path());
        std::fs::write(block(tmp.path()), b"entries").expect("write");
        t.at_start(&Claim::AdoptedUnmarked).expect("start");
        assert!(block(tmp.path()).is_file());
        assert!(tmp.path().join(TRUST_FILE).is_file());
    }
}
