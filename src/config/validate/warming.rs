//! The `warming:` section: hot-key refreshes and the warm list.

use std::time::Duration;

use super::super::file::*;
use super::super::model::*;
use super::Problems;

pub(super) fn warming(f: &FileWarming, p: &mut Problems) -> Option<WarmingSettings> {
    let base = "warming";
    let mut ok = true;
    let mut nonzero = |key: &str, value: u64, example: u64, why: &str| {
        if value == 0 {
            let msg =
                format!("{key} = 0 {why}; write e.g. {key}: {example}, or set enabled: false");
            p.at(&format!("{base}.{key}"), None, msg);
            ok = false;
        }
    };
    nonzero(
        "hot_keys",
        f.hot_keys,
        256,
        "tracks no key, so nothing is ever refreshed",
    );
    nonzero(
        "lead_secs",
        f.lead_secs,
        10,
        "refreshes only after expiry, when clients already wait",
    );
    nonzero("active_secs", f.active_secs, 120, "counts no key as in use");
    nonzero("concurrency", f.concurrency, 2, "lets no warm request run");
    nonzero(
        "interval_secs",
        f.interval_secs,
        60,
        "would fetch the warm list without pause",
    );
    for (i, entry) in f.list.iter().enumerate() {
        if !entry.starts_with('/') {
            let msg = format!(
                "{entry:?} is not a path; write the path and query the dashboard requests, e.g. \
                 \"/api/comprehensive-kpis\""
            );
            p.at(&format!("{base}.list[{i}]"), None, msg);
            ok = false;
        } else if entry
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            let msg =
                format!("{entry:?} contains spaces or control characters; percent-encode them");
            p.at(&format!("{base}.list[{i}]"), None, msg);
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    let count = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    Some(WarmingSettings {
        enabled: f.enabled,
        hot_keys: count(f.hot_keys),
        lead: Duration::from_secs(f.lead_secs),
        active: Duration::from_secs(f.active_secs),
        concurrency: count(f.concurrency),
        interval: Duration::from_secs(f.interval_secs),
        list: f.list.clone(),
    })
}
