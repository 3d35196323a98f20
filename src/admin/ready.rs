//! Readiness: "this process can serve". The answer is 200 when
//!
//! * the listeners are bound and the configuration is loaded: both listeners are bound together
//!   before the server starts, from a configuration that parsed, so an admin listener that
//!   answers at all has both;
//! * a cache is usable: the cache storage is open. A disk tier that could not be opened leaves a
//!   memory-only cache, which serves: that is *degraded* (`degraded: true`, the reason in
//!   `note`), still ready. So is a disk tier taken out of use after a storage fault while
//!   running (`disk: "degraded"`, see `cache::disk_health`). Closed storage (the process is
//!   shutting down) is not ready: 503.
//!
//! The ERP's health never decides readiness. A replica whose ERP is down still answers hits and,
//! within a route's stale-if-error window, stale copies; taking every replica out of the Service
//! when the ERP misses a probe would throw that away. The probe's state is reported
//! (`erp_healthy`, and `erp` with the reason when it is not healthy), as on `/stats` and in
//! `knitcache_upstream_up`.

use serde::Serialize;

use crate::cache::DiskTier;
use crate::cache::disk_health::DiskState;
use crate::health::ErpHealth;

/// The `/readyz` document. `ready` decides the status: 200 when true, 503 when false.
#[derive(Debug, Serialize)]
pub struct Readiness {
    /// True when the process can serve (the cache storage is open).
    pub ready: bool,
    /// Why not, one reason per unmet condition (empty when ready).
    pub reasons: Vec<String>,
    /// True when ready but with less than the configured cache (memory only); `note` says why.
    pub degraded: bool,
    /// `memory+disk` or `memory-only`.
    pub cache: &'static str,
    /// The disk tier's state, as `/stats` says it: `open`, `recreated`, `degraded` (taken out
    /// of use after a storage fault while running) or `memory-only`.
    pub disk: &'static str,
    /// What happened to the disk tier at startup, if anything notable.
    pub note: Option<String>,
    /// Whether the ERP answered its last probe (`null` before the first). Informational.
    pub erp_healthy: Option<bool>,
    /// The ERP's state in words when it is not known to be healthy (`null` when it is).
    /// Informational: it never makes the answer 503.
    pub erp: Option<String>,
    /// The hash of the loaded configuration.
    pub config_version: String,
}

/// Decides readiness from the disk tier's state (what opening it came to, and what it is now)
/// and whether the storage is still open; reports the ERP's health alongside without letting
/// it decide.
pub fn readiness(
    disk: &DiskTier,
    now: &DiskState,
    storage_open: bool,
    erp: &ErpHealth,
    config_version: String,
) -> Readiness {
    let mut reasons = Vec::new();
    let (cache, degraded, note) = match (disk, now) {
        (_, DiskState::Degraded { reason, .. }) => (
            "memory-only",
            true,
            Some(format!(
                "disk tier degraded, memory only until the next start: {reason}"
            )),
        ),
        (DiskTier::Open, _) => ("memory+disk", false, None),
        (DiskTier::Recreated { moved_to, reason }, _) => (
            "memory+disk",
            false,
            Some(format!(
                "disk tier recreated empty at startup; the old directory is at {} ({reason})",
                moved_to.display()
            )),
        ),
        (DiskTier::MemoryOnly { reason }, _) => (
            "memory-only",
            true,
            Some(format!("disk tier unavailable, memory only: {reason}")),
        ),
    };
    if !storage_open {
        reasons.push("cache storage is closed (shutting down)".to_owned());
    }
    let erp_note = match erp.healthy {
        None => Some("waiting for first ERP health probe".to_owned()),
        Some(false) => Some(format!(
            "ERP did not answer its last health probe ({} in a row): {}",
            erp.consecutive_failures,
            erp.last_error.as_deref().unwrap_or("no answer")
        )),
        Some(true) => None,
    };
    Readiness {
        ready: reasons.is_empty(),
        reasons,
        degraded,
        cache,
        disk: disk_state(disk, now),
        note,
        erp_healthy: erp.healthy,
        erp: erp_note,
        config_version,
    }
}

/// The disk tier's state in `/stats` and `/readyz`: `open`, `recreated` (moved aside and opened
/// empty at startup), `degraded` (out of use after a fault while running) or `memory-only`
/// (never opened).
pub fn disk_state(disk: &DiskTier, now: &DiskState) -> &'static str {
    match (disk, now) {
        (_, DiskState::Degraded { .. }) => "degraded",
        (DiskTier::Open, _) => "open",
        (DiskTier::Recreated { .. }, _) => "recreated",
        (DiskTier::MemoryOnly { .. }, _) => "memory-only",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> ErpHealth {
        ErpHealth {
            healthy: Some(true),
            ..ErpHealth::default()
        }
    }

    fn down() -> ErpHealth {
        ErpHealth {
            healthy: Some(false),
            consecutive_failures: 3,
            last_error: Some("cannot connect".into()),
            ..ErpHealth::default()
        }
    }

    fn memory_only() -> DiskTier {
        DiskTier::MemoryOnly {
            reason: "EACCES".into(),
        }
    }

    #[test]
    fn ready_with_everything_healthy() {
        let r = readiness(
            &DiskTier::Open,
            &DiskState::Open,
            true,
            &healthy(),
            "v".into(),
        );
        assert!(r.ready);
        assert!(!r.degraded);
        assert!(r.reasons.is_empty(), "{:?}", r.reasons);
        assert_eq!((r.cache, r.note.as_deref()), ("memory+disk", None));
        assert_eq!((r.erp_healthy, r.erp.as_deref()), (Some(true), None));
        assert_eq!(r.config_version, "v");
    }

    #[test]
    fn erp_down_is_still_ready_and_says_so() {
        let r = readiness(&DiskTier::Open, &DiskState::Open, true, &down(), "v".into());
        assert!(r.ready, "{r:?}");
        assert!(!r.degraded);
        assert!(r.reasons.is_empty(), "{:?}", r.reasons);
        assert_eq!(r.erp_healthy, Some(false));
        let erp = r.erp.as_deref().unwrap_or("");
        assert!(
            erp.starts_with("ERP did not answer its last health probe (3 in a row)")
                && erp.ends_with("cannot connect"),
            "{erp}"
        );
        let without_error = ErpHealth {
            last_error: None,
            ..down()
        };
        let r = readiness(
            &DiskTier::Open,
            &DiskState::Open,
            true,
            &without_error,
            "v".into(),
        );
        assert!(r.ready);
        assert!(
            r.erp.as_deref().unwrap_or("").ends_with("no answer"),
            "{r:?}"
        );
    }

    #[test]
    fn never_probed_is_ready() {
        let r = readiness(
            &DiskTier::Open,
            &DiskState::Open,
            true,
            &ErpHealth::default(),
            "v".into(),
        );
        assert!(r.ready, "{r:?}");
        assert!(r.reasons.is_empty(), "{:?}", r.reasons);
        assert_eq!(r.erp_healthy, None);
        assert_eq!(r.erp.as_deref(), Some("waiting for first ERP health probe"));
    }

    #[test]
    fn memory_only_is_ready_and_degraded() {
        for erp in [healthy(), down(), ErpHealth::default()] {
            let r = readiness(&memory_only(), &DiskState::Open, true, &erp, "v".into());
            assert!(r.ready, "{r:?}");
            assert!(r.degraded, "{r:?}");
            assert!(r.reasons.is_empty(), "{:?}", r.reasons);
            assert_eq!(r.cache, "memory-only");
            assert_eq!(
                r.note.as_deref(),
                Some("disk tier unavailable, memory only: EACCES")
            );
        }
    }

    #[test]
    fn a_recreated_disk_tier_is_ready_and_not_degraded() {
        let disk = DiskTier::Recreated {
            moved_to: "/var/cache/knitcache.corrupt".into(),
            reason: "not a directory".into(),
        };
        let r = readiness(&disk, &DiskState::Open, true, &healthy(), "v".into());
        assert!(r.ready && !r.degraded, "{r:?}");
        assert_eq!(r.cache, "memory+disk");
        let note = r.note.unwrap_or_default();
        assert!(
            note.contains("recreated") && note.contains("/var/cache/knitcache.corrupt"),
            "{note}"
        );
    }

    #[test]
    fn a_disk_tier_degraded_while_running_is_ready_and_says_why() {
        let now = DiskState::Degraded {
            reason: "write failed (no_space): No space left on device".into(),
            since: std::time::SystemTime::now(),
        };
        let r = readiness(&DiskTier::Open, &now, true, &healthy(), "v".into());
        assert!(r.ready && r.degraded, "{r:?}");
        assert_eq!((r.cache, r.disk), ("memory-only", "degraded"));
        let note = r.note.unwrap_or_default();
        assert!(
            note.contains("degraded") && note.contains("No space left on device"),
            "{note}"
        );
        let r = readiness(
            &DiskTier::Open,
            &DiskState::Open,
            true,
            &healthy(),
            "v".into(),
        );
        assert_eq!((r.disk, r.degraded), ("open", false));
    }

    #[test]
    fn closed_storage_is_not_ready() {
        for disk in [DiskTier::Open, memory_only()] {
            for erp in [healthy(), down(), ErpHealth::default()] {
                let r = readiness(&disk, &DiskState::Open, false, &erp, "v".into());
                assert!(!r.ready, "{r:?}");
                assert_eq!(r.reasons, ["cache storage is closed (shutting down)"]);
            }
        }
    }

    #[test]
    fn the_json_keeps_its_fields() {
        let r = readiness(
            &memory_only(),
            &DiskState::Open,
            true,
            &down(),
            "abc".into(),
        );
        let doc = serde_json::to_value(&r).expect("serializes");
        for field in [
            "ready",
            "reasons",
            "degraded",
            "cache",
            "disk",
            "note",
            "erp_healthy",
            "erp",
            "config_version",
        ] {
            assert!(doc.get(field).is_some(), "{field} missing: {doc}");
        }
        assert_eq!(doc["ready"], true);
        assert_eq!(doc["erp_healthy"], false);
        assert_eq!(doc["config_version"], "abc");
    }
}
