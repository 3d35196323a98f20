//! The shared invalidation stream: the publisher appends this replica's purges and
//! invalidations (`XADD`, trimming what no replica can need any more), the follower reads the
//! others' (`XREAD BLOCK`, from the last entry applied) and applies them here.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::Method;
use redis::aio::ConnectionManager;
use redis::streams::{StreamId, StreamReadReply};
use redis::{RedisError, Value};

use super::event::{self, Entry, Invalidation};
use super::position::Position;
use super::{Backoff, OutboxReceiver, Shared};
use crate::cache::bans::unix_ms;
use crate::canonical;
use crate::cluster::Outbox;

/// The stream's key, after the prefix.
pub const STREAM: &str = "invalidations";

/// How long one read waits for new entries before asking again. An entry published meanwhile
/// is returned at once, so this bounds nothing but idle round trips.
pub const READ_BLOCK: Duration = Duration::from_secs(1);

/// Entries read at once.
const READ_COUNT: usize = 256;

/// Kept past the longest retention: clocks of the replicas and of Redis may disagree, and a
/// replica restarting after a while still finds what it missed.
const TRIM_MARGIN: Duration = Duration::from_secs(300);

/// Publishes what the outbox receives, in order; an entry Redis refused is retried (with
/// backoff) before the next, so none is lost or reordered while Redis is down. Each one
/// published leaves the outbox (and its file) only once Redis has taken it.
pub(super) async fn publish(
    s: Arc<Shared>,
    mut conn: ConnectionManager,
    mut outbox: OutboxReceiver,
) {
    let key = s.key(STREAM);
    let mut backoff = Backoff::new();
    while let Some(queued) = outbox.recv().await {
        let json = event::encode(&queued.inv);
        loop {
            let now = SystemTime::now();
            let retention = s.config.load().longest_retention() + TRIM_MARGIN;
            // Entries older than any stored response are of no use to anyone: `MINID ~` drops
            // them as whole radix-tree nodes, cheaply.
            let min_id = unix_ms(now.checked_sub(retention).unwrap_or(SystemTime::UNIX_EPOCH));
            let mut cmd = redis::cmd("XADD");
            cmd.arg(&key)
                .arg("MINID")
                .arg("~")
                .arg(min_id)
                .arg("*")
                .arg(event::FIELD_FROM)
                .arg(&s.replica)
                .arg(event::FIELD_AT)
                .arg(unix_ms(now))
                .arg(event::FIELD_INV)
                .arg(&json);
            match s
                .timed("publish", cmd.query_async::<String>(&mut conn))
                .await
            {
                Ok(_) => {
                    s.metrics.published.inc();
                    outbox.published(&queued);
                    backoff.reset();
                    break;
                }
                Err(_) => backoff.wait().await,
            }
        }
    }
}

/// Follows the stream from the saved position, applying other replicas' entries.
pub(super) async fn follow(s: Arc<Shared>, mut conn: ConnectionManager) {
    let (mut position, mut last) = Position::load(s.dir.as_deref());
    tracing::info!(from = %last, "following the cluster invalidation stream");
    let mut backoff = Backoff::new();
    loop {
        match read(&s, &mut conn, &last, Some(READ_BLOCK)).await {
            Ok(ids) => {
                backoff.reset();
                let removed = apply_all(&s, ids, &mut last);
                save_when_written(&s, &mut position, &last, removed).await;
            }
            Err(_) => backoff.wait().await,
        }
    }
}

/// Applies every entry after the saved position, without waiting for new ones: what a
/// restarting replica missed, applied before it serves. Returns how many entries were read.
pub(super) async fn catch_up(s: &Shared, mut conn: ConnectionManager) -> Result<usize, RedisError> {
    let (mut position, mut last) = Position::load(s.dir.as_deref());
    let mut read_total = 0;
    loop {
        let ids = read(s, &mut conn, &last, None).await?;
        if ids.is_empty() {
            return Ok(read_total);
        }
        read_total += ids.len();
        let removed = apply_all(s, ids, &mut last);
        save_when_written(s, &mut position, &last, removed).await;
    }
}

/// Saves the position past the entries just applied once their removals are on disk: saved
/// earlier, a crash in between would bring the purged entries back from the disk tier while the
/// restart skips the entries that purged them. A removal that does not reach the disk in time
/// has already made the storage distrust its disk tier at the next start (`cache::disk_trust`),
/// so the position is saved either way.
async fn save_when_written(s: &Shared, position: &mut Position, last: &str, removed: bool) {
    if removed {
        s.storage.written(crate::admin::purge::WRITTEN_WITHIN).await;
    }
    position.save(last);
}

/// The entries after `last`, waiting up to `block` for one if there are none yet.
async fn read(
    s: &Shared,
    conn: &mut ConnectionManager,
    last: &str,
    block: Option<Duration>,
) -> Result<Vec<StreamId>, RedisError> {
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT").arg(READ_COUNT);
    if let Some(block) = block {
        cmd.arg("BLOCK")
            .arg(u64::try_from(block.as_millis()).unwrap_or(1000));
    }
    cmd.arg("STREAMS").arg(s.key(STREAM)).arg(last);
    let reply = s
        .timed("read", cmd.query_async::<Option<StreamReadReply>>(conn))
        .await?;
    Ok(reply
        .into_iter()
        .flat_map(|r| r.keys)
        .flat_map(|k| k.ids)
        .collect())
}

/// Applies `ids` in order, moving `last` past each. True if one removed a URL's stored copies
/// (a removal foyer writes to disk in the background).
fn apply_all(s: &Shared, ids: Vec<StreamId>, last: &mut String) -> bool {
    let mut removed = false;
    for id in ids {
        let entry = Entry::from_fields(id.map.iter().filter_map(|(k, v)| match v {
            Value::BulkString(b) => Some((k.as_str(), b.as_slice())),
            _ => None,
        }));
        removed |= apply(s, &id.id, entry);
        *last = id.id;
    }
    removed
}

/// Applies one entry of another replica here; this replica's own are skipped. True if it was
/// a URL purge.
fn apply(s: &Shared, id: &str, entry: Entry) -> bool {
    if entry.from == s.replica {
        return false;
    }
    let Some(inv) = entry.inv else {
        tracing::warn!(id, "cluster stream entry of an unknown kind skipped");
        return false;
    };
    match &inv {
        Invalidation::Ban(ban) => {
            if let Err(e) = s.bans.apply(ban.clone()) {
                tracing::error!(error = %e, "ban from another replica in force but not saved");
            }
        }
        Invalidation::Url(url) => {
            let config = s.config.load();
            let Ok(target) = canonical::target(url.as_bytes(), config.upstream.url_form) else {
                tracing::warn!(id, "cluster stream entry with an unusable URL skipped");
                return false;
            };
            let policy = config
                .route_for(&Method::GET, target.path())
                .and_then(|(_, r)| r.cache_policy());
            if let Some(policy) = policy
                && let Err(e) = crate::invalidation::remove_url(
                    &target,
                    policy,
                    &config,
                    s.storage,
                    &Outbox::off(),
                )
            {
                tracing::warn!(error = %e, "purge from another replica failed here");
            }
        }
    }
    s.metrics.applied.inc();
    if entry.at_unix_ms > 0 {
        let lag_ms = unix_ms(SystemTime::now()).saturating_sub(entry.at_unix_ms);
        s.metrics.lag_seconds.observe(lag_ms as f64 / 1000.0);
    }
    tracing::debug!(id, invalidation = ?inv, "applied from another replica");
    matches!(inv, Invalidation::Url(_))
}
