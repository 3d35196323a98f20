//! Fill leases: one ERP request per key across the cluster. pingora's cache lock already makes
//! one request per replica the writer of a missing key; that writer then asks Redis for the key's
//! lease (`SET <prefix>:lease:<primary> token NX PX lease_ms`) before it goes to the ERP. The
//! replica that gets it fills; the others wait for the object to appear in the shared tier and
//! serve it. The holder's token releases the lease with the stored object in one step
//! (`shared_tier`'s store), or at the end of the request when nothing was shared (an answer that
//! is not cacheable or too large, an ERP error, a client that left), by compare-and-delete so
//! only the holder can; a holder that dies loses it when it expires.
//!
//! Warm refreshes are claimed the same way, per key and per stored copy (`warm_claim`): the
//! replica that claims a refresh asks the ERP, the others leave theirs to it and take the new
//! copy from the shared tier.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use redis::Value;

use super::shared_tier::{SharedTier, decode};
use crate::cache::object::CachedObject;

/// Returns the object in `KEYS[1]` if there is one; else takes the lease `KEYS[2]` with token
/// `ARGV[1]` for `ARGV[2]` ms if it is free. One step, so a lease released with its object is
/// never mistaken for one released without.
const ACQUIRE: &str = r"
local o = redis.call('GET', KEYS[1])
if o then return {1, o} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
return {3}
";

/// While the lease `KEYS[2]` is held: `{3}`; once it is not, the object in `KEYS[1]` (`{1, o}`)
/// or `{2}` if there is none.
const POLL: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return {3} end
local o = redis.call('GET', KEYS[1])
if o then return {1, o} end
return {2}
";

/// Deletes the lease `KEYS[1]` if it still carries the token `ARGV[1]`.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// The scripts, hashed once (`EVALSHA`; the client loads one again into a restarted Redis).
static ACQUIRE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(ACQUIRE));
/// See `ACQUIRE_SCRIPT`.
static POLL_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(POLL));
/// See `ACQUIRE_SCRIPT`.
static RELEASE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(RELEASE));

/// First pause between two looks at a held lease; doubled up to `POLL_MAX`.
const POLL_MIN: Duration = Duration::from_millis(5);
/// Longest pause between two looks at a held lease.
const POLL_MAX: Duration = Duration::from_millis(50);

/// Outcomes of `knitcache_cluster_leases_total`.
pub const LEASE_OUTCOMES: [&str; 4] = ["won", "waited", "expired", "error"];
/// Outcomes of `knitcache_cluster_warm_refreshes_total`.
pub const WARM_OUTCOMES: [&str; 3] = ["won", "left", "error"];

/// What asking for a key's lease found.
pub enum Acquired {
    /// The shared tier already holds the slot: this object (the caller judges whether it will
    /// do; if not, `claim` asks for the lease alone).
    Found(CachedObject),
    /// This replica holds the lease: it fills, and releases it when the request ends.
    Won(Lease),
    /// Another replica holds it: `wait` for its object.
    Lost,
    /// Redis did not answer: this replica fills on its own.
    Unavailable,
}

/// A fill lease this replica holds.
#[derive(Debug)]
pub struct Lease {
    primary: u128,
    token: String,
}

impl SharedTier {
    /// The object in `slot`, or the lease of the key `primary`.
    pub async fn acquire(&self, slot: u128, primary: u128) -> Acquired {
        if !self.available() {
            self.count_lease("error");
            return Acquired::Unavailable;
        }
        let token = self.token();
        let ms = self.lease_ms();
        let (obj, lease) = (self.object_key(slot), self.lease_key(primary));
        let sent = token.clone();
        let reply = self
            .run("lease", move |mut conn| {
                let mut call = ACQUIRE_SCRIPT.prepare_invoke();
                call.key(&obj).key(&lease).arg(&sent).arg(ms);
                async move { call.invoke_async::<Value>(&mut conn).await }
            })
            .await;
        match reply.map(reply_of) {
            Some(Reply::Object(o)) => Acquired::Found(o),
            Some(Reply::Free) => self.won(primary, token),
            Some(Reply::Held) => Acquired::Lost,
            None | Some(Reply::Unreadable) => {
                self.count_lease("error");
                Acquired::Unavailable
            }
        }
    }

    /// The lease of `primary` alone, when the object found in the shared tier will not do
    /// (older than a ban, or no fresher than the copy being replaced).
    pub async fn claim(&self, primary: u128) -> Acquired {
        let token = self.token();
        let (key, sent, ms) = (self.lease_key(primary), token.clone(), self.lease_ms());
        let set = self
            .run("lease", move |mut conn| {
                let mut cmd = redis::cmd("SET");
                cmd.arg(&key).arg(&sent).arg("NX").arg("PX").arg(ms);
                async move { cmd.query_async::<Option<String>>(&mut conn).await }
            })
            .await;
        match set {
            Some(Some(_)) => self.won(primary, token),
            Some(None) => Acquired::Lost,
            None => {
                self.count_lease("error");
                Acquired::Unavailable
            }
        }
    }

    /// Waits while another replica holds the lease of `primary` (at most the lease time), then
    /// returns what it left in `slot`; `None` if it left nothing, the wait ran out, or Redis
    /// failed: the caller fills on its own. Counted as `waited` or `expired` by the caller.
    pub async fn wait(&self, slot: u128, primary: u128) -> Option<CachedObject> {
        let deadline = Instant::now() + self.lease_time();
        let mut pause = POLL_MIN;
        loop {
            let (obj, lease) = (self.object_key(slot), self.lease_key(primary));
            let reply = self
                .run("lease_wait", move |mut conn| {
                    let mut call = POLL_SCRIPT.prepare_invoke();
                    call.key(&obj).key(&lease);
                    async move { call.invoke_async::<Value>(&mut conn).await }
                })
                .await
                .map(reply_of);
            match reply {
                Some(Reply::Held) if Instant::now() < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(POLL_MAX);
                }
                Some(Reply::Object(o)) => return Some(o),
                // Released with nothing in the slot, expired, or Redis failed.
                _ => return None,
            }
        }
    }

    /// Releases `lease` unless the fill's store already did (with the object). Never waits:
    /// the release runs in the background.
    pub fn release(&self, lease: Lease) {
        {
            let mut held = self.held.lock();
            if held.get(&lease.primary) != Some(&lease.token) {
                return;
            }
            held.remove(&lease.primary);
        }
        let key = self.lease_key(lease.primary);
        self.spawn("lease_release", move |mut conn| {
            let mut call = RELEASE_SCRIPT.prepare_invoke();
            call.key(&key).arg(&lease.token);
            async move { call.invoke_async::<i64>(&mut conn).await }
        });
    }

    /// Claims the warm refresh of the stored copy in `slot` that is fresh until `round` (unix
    /// seconds), for `ttl`: `Some(true)` if this replica refreshes it, `Some(false)` if another
    /// does, `None` if Redis did not answer (this replica refreshes on its own).
    pub async fn warm_claim(&self, slot: u128, round: u64, ttl: Duration) -> Option<bool> {
        if !self.available() {
            self.count_warm("error");
            return None;
        }
        let key = self.shared.key(&format!("warm:{slot:032x}:{round}"));
        let (token, ms) = (
            self.token(),
            u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1),
        );
        let set = self
            .run("warm_lease", move |mut conn| {
                let mut cmd = redis::cmd("SET");
                cmd.arg(&key).arg(&token).arg("NX").arg("PX").arg(ms);
                async move { cmd.query_async::<Option<String>>(&mut conn).await }
            })
            .await;
        let won = set.map(|s| s.is_some());
        self.count_warm(match won {
            Some(true) => "won",
            Some(false) => "left",
            None => "error",
        });
        won
    }

    /// Counts a lease outcome (`LEASE_OUTCOMES`).
    pub fn count_lease(&self, outcome: &'static str) {
        self.shared
            .metrics
            .leases
            .with_label_values(&[outcome])
            .inc();
    }

    fn count_warm(&self, outcome: &'static str) {
        self.shared
            .metrics
            .warm_refreshes
            .with_label_values(&[outcome])
            .inc();
    }

    fn won(&self, primary: u128, token: String) -> Acquired {
        self.count_lease("won");
        self.held.lock().insert(primary, token.clone());
        Acquired::Won(Lease { primary, token })
    }

    fn lease_ms(&self) -> u64 {
        u64::try_from(self.lease_time().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// A token no other holder has: this replica's id and a random number.
    fn token(&self) -> String {
        let mut raw = [0u8; 8];
        // Without randomness the clock tells this replica's leases apart well enough.
        let n = match getrandom::fill(&mut raw) {
            Ok(()) => u64::from_le_bytes(raw),
            Err(_) => crate::cache::bans::unix_ms(std::time::SystemTime::now()),
        };
        format!("{}-{n:016x}", self.shared.replica)
    }
}

/// A script's answer.
enum Reply {
    Object(CachedObject),
    Free,
    Held,
    Unreadable,
}

/// Reads `{1, o}` (the object), `{2}` (the lease is free: `ACQUIRE` took it, `POLL` found it
/// released) or `{3}` (another replica holds it). An object that does not decode is unreadable:
/// the caller fills on its own.
fn reply_of(v: Value) -> Reply {
    let Value::Array(items) = v else {
        return Reply::Unreadable;
    };
    match items.as_slice() {
        [Value::Int(1), Value::BulkString(o)] => decode(o).map_or(Reply::Unreadable, Reply::Object),
        [Value::Int(2)] => Reply::Free,
        [Value::Int(3)] => Reply::Held,
        _ => Reply::Unreadable,
    }
}
