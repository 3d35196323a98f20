//! Readiness: ready when the configuration is loaded (it is, or the listener would not exist),
//! both cache tiers are open, and the ERP answered its last health probe. Each unmet condition
//! becomes one plain reason in the JSON answer.

use serde::Serialize;

use crate::cache::DiskTier;
use crate::health::ErpHealth;

/// The `/readyz` document.
#[derive(Debug, Serialize)]
pub struct Readiness {
    /// True when every condition holds.
    pub ready: bool,
    /// Why not, one reason per unmet condition (empty when ready).
    pub reasons: Vec<String>,
    /// `memory+disk` or `memory-only`.
    pub cache: &'static str,
    /// What happened to the disk tier at startup, if anything notable.
    pub note: Option<String>,
    /// Whether the ERP answered its last probe (`null` before the first).
    pub erp_healthy: Option<bool>,
    /// The hash of the loaded configuration.
    pub config_version: String,
}

/// Decides readiness from the disk tier's state, whether the storage is still open, and the
/// ERP's health.
pub fn readiness(
    disk: &DiskTier,
    storage_open: bool,
    erp: &ErpHealth,
    config_version: String,
) -> Readiness {
    let mut reasons = Vec::new();
    let (cache, note) = match disk {
        DiskTier::Open => ("memory+disk", None),
        DiskTier::Recreated { moved_to, reason } => (
            "memory+disk",
            Some(format!(
                "disk tier recreated empty at startup; the old directory is at {} ({reason})",
                moved_to.display()
            )),
        ),
        DiskTier::MemoryOnly { reason } => {
            reasons.push(format!("disk tier unavailable, memory only: {reason}"));
            ("memory-only", None)
        }
    };
    if !storage_open {
        reasons.push("cache storage is closed (shutting down)".to_owned());
    }
    match erp.healthy {
        None => reasons.push("waiting for first ERP health probe".to_owned()),
        Some(false) => reasons.push(format!(
            "ERP did not answer its last health probe ({} in a row): {}",
            erp.consecutive_failures,
            erp.last_error.as_deref().unwrap_or("no answer")
        )),
        Some(true) => {}
    }
    Readiness {
        ready: reasons.is_empty(),
        reasons,
        cache,
        note,
        erp_healthy: erp.healthy,
        config_version,
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

    #[test]
    fn ready_only_when_everything_holds() {
        assert!(readiness(&DiskTier::Open, true, &healthy(), "v".into()).ready);
        let r = readiness(&DiskTier::Open, true, &ErpHealth::default(), "v".into());
        assert_eq!(r.reasons, ["waiting for first ERP health probe"]);
        let down = ErpHealth {
            healthy: Some(false),
            consecutive_failures: 3,
            last_error: Some("cannot connect".into()),
            ..ErpHealth::default()
        };
        let r = readiness(
            &DiskTier::MemoryOnly {
                reason: "EACCES".into(),
            },
            true,
            &down,
            "v".into(),
        );
        assert!(!r.ready);
        assert_eq!(r.reasons.len(), 2, "{:?}", r.reasons);
        assert!(r.reasons[1].contains("3 in a row"), "{:?}", r.reasons);
    }
}
