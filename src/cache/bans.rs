//! Purge bans, as Varnish has them: foyer cannot list its keys, so a purge by prefix or by route
//! cannot find the entries it covers. Instead it records a ban (what it matches, and when), and
//! every cache hit is checked against the bans: a stored response created before a matching ban
//! is treated as a miss (the proxy returns `ForcedFreshness::ForceMiss`), and the fill replaces it.
//!
//! Bans are kept in `bans.json` in the cache directory, so they survive a restart with the
//! entries they cover, and dropped once older than the longest time any route keeps a response
//! (TTL plus the longer stale window): by then nothing they match can be served anyway. The hit
//! path reads the list through an `ArcSwap` and skips all work when it is empty. A ban that
//! cannot be saved ends at the restart while the entries it covers may not: it is reported to
//! `disk_trust`, so the next start does not serve them either.
//!
//! In cluster mode every ban made here is announced through the `Outbox` (and so reaches the
//! other replicas with its time), and the other replicas' bans arrive through `apply`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::disk_trust::DiskTrust;
use crate::cluster::Outbox;
use crate::cluster::event::Invalidation;

/// Name of the ban file inside the cache directory.
pub const BAN_FILE: &str = "bans.json";

/// What a ban matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BanMatch {
    /// Request paths starting with this.
    Prefix(String),
    /// Requests matched by the route of this name.
    Route(String),
    /// Responses carrying this tag (the route's `tags`, or the ERP's tag header).
    Tag(String),
}

/// One ban.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    /// What it matches.
    #[serde(flatten)]
    pub matcher: BanMatch,
    /// When it was made, in milliseconds since the unix epoch: responses stored before it are
    /// banned, later ones are not.
    pub at_unix_ms: u64,
}

impl Ban {
    fn at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.at_unix_ms)
    }

    fn matches(&self, path: &str, route: &str, has_tag: &dyn Fn(&str) -> bool) -> bool {
        match &self.matcher {
            BanMatch::Prefix(p) => path.starts_with(p.as_str()),
            BanMatch::Route(r) => r == route,
            BanMatch::Tag(t) => has_tag(t),
        }
    }
}

/// The bans in force for one cache.
pub struct Bans {
    list: ArcSwap<Vec<Ban>>,
    file: Option<PathBuf>,
    retention: Duration,
    /// Told of every ban that could not be saved (none in unit tests).
    trust: Option<Arc<DiskTrust>>,
    /// Serialises writers (admin requests); readers never take it.
    write: Mutex<()>,
    /// Where bans made here are announced to the other replicas (off on a single node).
    outbox: Outbox,
}

impl Bans {
    /// No bans and no file (memory-only cache, unit tests).
    pub fn in_memory(retention: Duration) -> Self {
        Bans {
            list: ArcSwap::from_pointee(Vec::new()),
            file: None,
            retention,
            trust: None,
            write: Mutex::new(()),
            outbox: Outbox::off(),
        }
    }

    /// The same bans, announced through `outbox` as they are made.
    pub fn with_outbox(mut self, outbox: Outbox) -> Self {
        self.outbox = outbox;
        self
    }

    /// Where purges made on this replica are announced (URL purges go through it too).
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The bans saved in `dir`, less those older than `retention`. A missing file means no
    /// bans; an unreadable one is logged and treated as none (the entries it covered may then
    /// be served until they expire).
    pub fn load(dir: &Path, retention: Duration) -> Self {
        let file = dir.join(BAN_FILE);
        let saved: Vec<Ban> = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::error!(file = %file.display(), error = %e, "ban file unreadable; ignoring it");
                Vec::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                tracing::error!(file = %file.display(), error = %e, "cannot read the ban file");
                Vec::new()
            }
        };
        let bans = Bans {
            list: ArcSwap::from_pointee(Vec::new()),
            file: Some(file),
            retention,
            trust: None,
            write: Mutex::new(()),
            outbox: Outbox::off(),
        };
        let kept = bans.live(saved, SystemTime::now());
        if !kept.is_empty() {
            tracing::info!(bans = kept.len(), "purge bans restored");
        }
        bans.list.store(Arc::new(kept));
        bans
    }

    /// Reports every ban that is not saved (the file cannot be written, or there is none: a
    /// memory-only cache) to `trust`, whose disk tier must then not be served at the next start.
    pub fn unsaved_to(mut self, trust: Arc<DiskTrust>) -> Self {
        self.trust = Some(trust);
        self
    }

    /// Bans still in force.
    pub fn len(&self) -> usize {
        self.list.load().len()
    }

    /// True if no ban is in force.
    pub fn is_empty(&self) -> bool {
        self.list.load().is_empty()
    }

    /// A copy of the bans in force.
    pub fn list(&self) -> Vec<Ban> {
        self.list.load().as_ref().clone()
    }

    /// Whether a stored response for `path` on `route`, created at `created`, is banned.
    /// `has_tag` says whether the stored response carries a tag; it is only asked when a tag
    /// ban is in force.
    pub fn is_banned(
        &self,
        path: &str,
        route: &str,
        created: SystemTime,
        has_tag: &dyn Fn(&str) -> bool,
    ) -> bool {
        let list = self.list.load();
        list.iter()
            .any(|b| created <= b.at() && b.matches(path, route, has_tag))
    }

    /// Records a ban made now, drops expired ones and saves the list. The ban is in force even
    /// if saving fails (the error says it will not survive a restart).
    pub fn add(&self, matcher: BanMatch) -> Result<Ban, std::io::Error> {
        // Rounded up: a response stored in the same millisecond, just before the ban, must
        // not escape it (one stored just after costs one extra miss, which is harmless).
        let ban = Ban {
            matcher,
            at_unix_ms: unix_ms(SystemTime::now()).saturating_add(1),
        };
        self.outbox.announce(Invalidation::Ban(ban.clone()));
        self.apply(ban.clone())?;
        Ok(ban)
    }

    /// Puts `ban` (made here or by another replica, at its own time) in force and saves the
    /// list; nothing is announced. Applying a ban twice, or an older one after a newer on the
    /// same matcher, changes nothing.
    pub fn apply(&self, ban: Ban) -> Result<(), std::io::Error> {
        let _guard = self.write.lock();
        let now = SystemTime::now();
        let mut next = self.live(self.list(), now);
        if next
            .iter()
            .any(|b| b.matcher == ban.matcher && b.at_unix_ms >= ban.at_unix_ms)
        {
            return Ok(());
        }
        // A newer ban on the same matcher supersedes the older one.
        next.retain(|b| b.matcher != ban.matcher);
        next.push(ban);
        self.list.store(Arc::new(next.clone()));
        let saved = self.save(&next);
        if !matches!(saved, Ok(true))
            && let Some(trust) = &self.trust
        {
            trust.missed_disk();
        }
        saved.map(|_| ())
    }

    fn live(&self, bans: Vec<Ban>, now: SystemTime) -> Vec<Ban> {
        bans.into_iter()
            .filter(|b| now.duration_since(b.at()).unwrap_or_default() <= self.retention)
            .collect()
    }

    /// Writes the list; `Ok(false)` when there is no file to write.
    fn save(&self, bans: &[Ban]) -> Result<bool, std::io::Error> {
        let Some(file) = &self.file else {
            return Ok(false);
        };
        let json = serde_json::to_vec_pretty(bans).map_err(std::io::Error::other)?;
        // Write beside, then rename: a crash leaves the old list or the new one, never half.
        let tmp = file.with_extension("json.tmp");
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, file)?;
        Ok(true)
    }
}

/// Milliseconds since the unix epoch (0 before it).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_older_than_a_matching_ban_are_banned() {
        let bans = Bans::in_memory(Duration::from_secs(600));
        let before = SystemTime::now() - Duration::from_secs(1);
        assert!(
            !bans.is_banned("/api/yarn-data", "yarn", before, &|_| false),
            "no bans"
        );
        bans.add(BanMatch::Prefix("/api/yarn".into())).expect("add");
        bans.add(BanMatch::Route("kpis".into())).expect("add");
        assert!(bans.is_banned("/api/yarn-data", "yarn", before, &|_| false));
        assert!(bans.is_banned("/api/comprehensive-kpis", "kpis", before, &|_| false));
        assert!(!bans.is_banned("/api/knit-orders", "orders", before, &|_| false));
        let after = SystemTime::now() + Duration::from_secs(1);
        assert!(
            !bans.is_banned("/api/yarn-data", "yarn", after, &|_| false),
            "stored after the ban: served"
        );
    }

    #[test]
    fn bans_survive_a_reload_until_they_expire() {
        let dir = tempfile::tempdir().expect("tmp");
        let bans = Bans::load(dir.path(), Duration::from_secs(600));
        assert!(bans.is_empty(), "no file, no bans");
        bans.add(BanMatch::Route("kpis".into())).expect("add");
        bans.add(BanMatch::Route("kpis".into())).expect("again");
        assert_eq!(bans.len(), 1, "a repeated ban replaces the older one");
        bans.add(BanMatch::Prefix("/api/".into())).expect("another");
        assert_eq!(bans.len(), 2);
        assert!(!bans.is_empty());
        let again = Bans::load(dir.path(), Duration::from_secs(600));
        assert_eq!(again.list(), bans.list());
        // An old ban (from a previous run long ago) is dropped on load.
        let old = vec![Ban {
            matcher: BanMatch::Prefix("/x".into()),
            at_unix_ms: unix_ms(SystemTime::now() - Duration::from_secs(3600)),
        }];
        std::fs::write(
            dir.path().join(BAN_FILE),
            serde_json::to_vec(&old).expect("json"),
        )
        .expect("write");
        assert!(Bans::load(dir.path(), Duration::from_secs(600)).is_empty());
    }

    #[test]
    fn a_ban_that_cannot_be_saved_distrusts_the_disk_tier() {
        use super::super::disk_trust::TRUST_FILE;
        let cache = tempfile::tempdir().expect("tmp");
        let trust =
            Arc::new(DiskTrust::new(cache.path(), &prometheus::Registry::new()).expect("metrics"));
        trust
            .at_start(&super::super::dir_mark::Claim::Created)
            .expect("start");
        let saved = Bans::load(cache.path(), Duration::from_secs(60)).unsaved_to(trust.clone());
        saved.add(BanMatch::Route("kpis".into())).expect("saved");
        assert!(
            cache.path().join(TRUST_FILE).is_file(),
            "a saved ban survives"
        );
        // Its directory gone, the ban cannot be saved: it ends at the restart, and so must the
        // entries it hides.
        let lost = Bans::load(&cache.path().join("gone"), Duration::from_secs(60))
            .unsaved_to(trust.clone());
        assert!(lost.add(BanMatch::Route("kpis".into())).is_err());
        assert!(!cache.path().join(TRUST_FILE).exists());
    }

    #[test]
    fn bans_from_elsewhere_keep_their_time_and_only_the_newest_counts() {
        let bans = Bans::in_memory(Duration::from_secs(600));
        let now = unix_ms(SystemTime::now());
        let ban = |at_unix_ms| Ban {
            matcher: BanMatch::Tag("yarn".into()),
            at_unix_ms,
        };
        bans.apply(ban(now - 5_000)).expect("apply");
        bans.apply(ban(now - 1_000)).expect("newer");
        bans.apply(ban(now - 9_000)).expect("older, late");
        assert_eq!(bans.list(), vec![ban(now - 1_000)]);
        let made = UNIX_EPOCH + Duration::from_millis(now - 3_000);
        assert!(bans.is_banned("/a", "r", made, &|t| t == "yarn"));
        let later = UNIX_EPOCH + Duration::from_millis(now - 500);
        assert!(
            !bans.is_banned("/a", "r", later, &|t| t == "yarn"),
            "stored after the ban was made elsewhere: served"
        );
    }

    #[test]
    fn a_corrupt_ban_file_is_ignored() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join(BAN_FILE), b"{not json").expect("write");
        assert!(Bans::load(dir.path(), Duration::from_secs(60)).is_empty());
    }
}
