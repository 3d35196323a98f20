//! A crash under load: the binary is killed with SIGKILL while fills, hits and purges run, then
//! restarted on the same cache directory. Everything it serves must be byte for byte what the
//! origin sent for that key, and no entry purged before the crash may come back.
//!
//! The origin's body is a function of the key and a version the test bumps, so stale or mixed
//! bytes are caught: a body that is not exactly `body(key, v)` for the version it names is
//! corrupt, and one whose version was purged (and the purge acknowledged) before the crash is
//! a purged entry returning. Each key belongs to one load task, which runs its requests one
//! after the other, so what "purged" means is exact. A purge is either an admin URL purge or a
//! write to the key's URL through the proxy (RFC 9111 §4.4 invalidation); it may follow a miss
//! at once, when the miss's fill may still be committing.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::origin::{Origin, Reply};
use common::*;
use parking_lot::Mutex;

/// Load tasks, each with its own keys.
const TASKS: usize = 6;
/// Keys per task.
const KEYS_PER_TASK: usize = 10;
/// Crash and restart cycles.
const CYCLES: usize = 3;
/// Requests and purges answered in a cycle before the kill comes (whatever time they take).
const REQUESTS_BEFORE_KILL: usize = 150;
const PURGES_BEFORE_KILL: usize = 15;
/// Requests each task makes at most per cycle: the loop is bounded, and long enough that the
/// kill always comes first (the test checks that it did).
const MAX_STEPS: usize = 100_000;

fn path(key: usize) -> String {
    format!("/k/{key}")
}

/// The origin's body for `key` at `version`: a first line naming both, then 2-40 KB of bytes
/// that depend on both.
fn body(key: usize, version: u64) -> Vec<u8> {
    let mut out = format!("key={key} version={version}\n").into_bytes();
    let len = 2_000 + (key * 7_919 + version as usize * 104_729) % 38_000;
    let mut x = ((key as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ version.wrapping_mul(0xBF58_476D))
        | 1;
    out.extend((0..len).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b'!' + (x % 90) as u8
    }));
    out
}

/// Whether `got` is exactly the origin's body for `key` at `version`; if not, a short account
/// (the bodies are tens of KB: never print them whole).
fn check_body(got: &[u8], key: usize, version: u64) -> Result<(), String> {
    let want = body(key, version);
    if got == want.as_slice() {
        return Ok(());
    }
    let first_difference = got.iter().zip(&want).position(|(a, b)| a != b);
    Err(format!(
        "key {key}: got {} bytes starting {:?}, the origin sent {} bytes of version {version}; \
         first difference at byte {first_difference:?}",
        got.len(),
        String::from_utf8_lossy(&got[..got.len().min(32)]),
        want.len(),
    ))
}

/// The version a body names, if it is well formed.
fn version_of(bytes: &[u8], key: usize) -> Option<u64> {
    let line = bytes.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    line.strip_prefix(&format!("key={key} version="))?
        .parse()
        .ok()
}

/// What the test knows of each key: the version the origin serves now, and the newest version
/// a purge acknowledged before the crash removed (anything at or below it must stay gone).
#[derive(Default)]
struct Keys {
    current: HashMap<usize, u64>,
    purged_up_to: HashMap<usize, u64>,
    /// What happened to each key, for the account of a failure.
    history: HashMap<usize, Vec<String>>,
}

impl Keys {
    fn note(&mut self, key: usize, what: String) {
        self.history.entry(key).or_default().push(what);
    }

    /// What happened to `key`, one event per line.
    fn account(&self, key: usize) -> String {
        self.history
            .get(&key)
            .map_or_else(String::new, |h| h.join("\n"))
    }
}

fn origin_serving(keys: &Arc<Mutex<Keys>>) -> impl Fn(&str, &str) -> Reply + Send + Sync + 'static {
    let keys = keys.clone();
    move |method: &str, p: &str| {
        let key: usize = p.trim_start_matches("/k/").parse().unwrap_or(usize::MAX);
        if method == "POST" {
            // A write the origin accepted; the version it makes is the test's to bump.
            return Reply::status(204);
        }
        let version = keys.lock().current.get(&key).copied().unwrap_or(0);
        Reply::ok(body(key, version))
    }
}

/// What the tasks of one cycle have done so far.
#[derive(Default)]
struct Progress {
    requests: AtomicUsize,
    purges: AtomicUsize,
    killed: AtomicBool,
}

/// What one task did in one cycle.
#[derive(Debug, Default, Clone, Copy)]
struct Done {
    /// The kill, not `MAX_STEPS`, ended it.
    cut: bool,
}

/// One task's load for one cycle: GETs of its keys (fills, then hits), and now and then a
/// purge followed by a new version. Stops at `MAX_STEPS` or when the proxy is gone.
async fn load(
    cycle: usize,
    task: usize,
    port: u16,
    admin: u16,
    keys: Arc<Mutex<Keys>>,
    progress: Arc<Progress>,
) -> Done {
    let mut done = Done::default();
    let c = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let mine: Vec<usize> = (0..KEYS_PER_TASK)
        .map(|i| task * KEYS_PER_TASK + i)
        .collect();
    for step in 0..MAX_STEPS {
        if progress.killed.load(Ordering::SeqCst) {
            done.cut = true;
            return done;
        }
        let key = mine[(step * 7 + task) % mine.len()];
        if step % 9 == 4 {
            // Purge the key, then serve a new version: what was stored must never come back,
            // not even from a fill the purge overtook (the key's last request may have been a
            // miss whose fill commits as its last bytes go out).
            let stored = keys.lock().current.get(&key).copied().unwrap_or(0);
            let by_admin = (step / 9 + task).is_multiple_of(2);
            let how = if by_admin { "admin purge" } else { "write" };
            let purge = if by_admin {
                c.post(format!("http://127.0.0.1:{admin}/purge"))
                    .header("content-type", "application/json")
                    .body(format!("{{\"url\": \"{}\"}}", path(key)))
                    .send()
                    .await
            } else {
                c.post(format!("http://127.0.0.1:{port}{}", path(key)))
                    .send()
                    .await
            };
            match purge {
                Ok(r) if r.status().is_success() => {
                    let mut k = keys.lock();
                    k.purged_up_to.insert(key, stored);
                    k.current.insert(key, stored + 1);
                    k.note(
                        key,
                        format!("cycle {cycle}: {how} of v{stored} acknowledged"),
                    );
                    progress.purges.fetch_add(1, Ordering::SeqCst);
                }
                Ok(r) => panic!("purge refused: {}", r.status()),
                Err(_) => {
                    // the proxy is gone
                    keys.lock().note(
                        key,
                        format!("cycle {cycle}: {how} of v{stored} sent, never answered"),
                    );
                    done.cut = true;
                    return done;
                }
            }
        } else {
            let got = c
                .get(format!("http://127.0.0.1:{port}{}", path(key)))
                .send()
                .await;
            let Some((status, bytes)) = (match got {
                Ok(r) => {
                    let status = r
                        .headers()
                        .get("cache-status")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    r.bytes().await.ok().map(|b| (status, b))
                }
                Err(_) => None,
            }) else {
                done.cut = true;
                return done;
            };
            progress.requests.fetch_add(1, Ordering::SeqCst);
            let version = version_of(&bytes, key).map_or("?".to_owned(), |v| format!("v{v}"));
            keys.lock()
                .note(key, format!("cycle {cycle}: GET {version} ({status})"));
            if !progress.killed.load(Ordering::SeqCst) {
                // While the proxy lives, it serves the current version (a key changes only
                // after its purge, by this task).
                let current = keys.lock().current.get(&key).copied().unwrap_or(0);
                if let Err(e) = check_body(&bytes, key, current) {
                    panic!("before the crash: {e}");
                }
            }
        }
    }
    done
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_under_load_loses_nothing_it_must_keep_and_serves_nothing_it_must_not() {
    let keys: Arc<Mutex<Keys>> = Arc::default();
    let origin = Origin::start().await;
    for key in 0..TASKS * KEYS_PER_TASK {
        let serve = origin_serving(&keys);
        origin.on(&path(key), move |req, _| serve(&req.method, req.path()));
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cache");
    let (port, admin) = (free_port(), free_port());
    let routes = "  - name: k\n    prefix: /k/\n    ttl_secs: 3600\n";
    let yaml = config_yaml_on_ports(origin.addr(), &dir, routes, (port, admin), 0);
    let file = tmp.path().join("knitcache.yaml");
    std::fs::write(&file, yaml).expect("write config");
    let c = client();
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");

    let mut served_from_disk = 0;
    for cycle in 0..CYCLES {
        let mut proxy = spawn_binary(&file, &format!("{cycle}.log"));
        until_ok(&c, &format!("http://127.0.0.1:{admin}/healthz")).await;
        if cycle > 0 {
            served_from_disk += check_after_restart(cycle, &c, &url, &keys).await;
        }

        let progress = Arc::new(Progress::default());
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..TASKS {
            tasks.spawn(load(
                cycle,
                task,
                port,
                admin,
                keys.clone(),
                progress.clone(),
            ));
        }
        // Let fills, hits and purges run, then kill in the middle of them.
        eventually("the load ran for a while", || {
            progress.requests.load(Ordering::SeqCst) >= REQUESTS_BEFORE_KILL
                && progress.purges.load(Ordering::SeqCst) >= PURGES_BEFORE_KILL
        })
        .await;
        progress.killed.store(true, Ordering::SeqCst);
        signal(&proxy.0, "-KILL");
        exit_within(&mut proxy, TIMEOUT).await.expect("killed");
        while let Some(done) = tasks.join_next().await {
            let done = done.expect("load task");
            assert!(done.cut, "the kill came while the load ran: {done:?}");
        }
        eprintln!(
            "cycle {cycle}: {} requests and {} purges, then SIGKILL",
            progress.requests.load(Ordering::SeqCst),
            progress.purges.load(Ordering::SeqCst)
        );
    }
    eprintln!("after the restarts: {served_from_disk} keys served from disk");
    assert!(
        served_from_disk > 0,
        "the restarts served entries from the disk tier (else nothing was checked)"
    );
}

/// Requests every key from a freshly restarted proxy: each body must be exactly what the origin
/// sent for the version it names, never a purged one. Returns how many were hits.
async fn check_after_restart(
    cycle: usize,
    c: &reqwest::Client,
    url: &impl Fn(&str) -> String,
    keys: &Arc<Mutex<Keys>>,
) -> usize {
    let mut hits = 0;
    for key in 0..TASKS * KEYS_PER_TASK {
        let r = get(c, &url(&path(key))).await;
        assert_eq!(r.status, 200, "key {key}: {}", r.text());
        let version = version_of(&r.body, key).unwrap_or_else(|| {
            panic!(
                "key {key}: a body the origin never sent ({} bytes)",
                r.body.len()
            )
        });
        if let Err(e) = check_body(&r.body, key, version) {
            panic!("after a restart ({}): {e}", r.cache_status());
        }
        let (current, purged) = {
            let k = keys.lock();
            (
                k.current.get(&key).copied().unwrap_or(0),
                k.purged_up_to.get(&key).copied(),
            )
        };
        assert!(
            version <= current,
            "key {key}: version {version} was never served"
        );
        if let Some(purged) = purged {
            assert!(
                version > purged,
                "key {key}: version {version} came back after a purge of versions up to {purged} \
                 ({}); its history:\n{}",
                r.cache_status(),
                keys.lock().account(key)
            );
        }
        keys.lock().note(
            key,
            format!(
                "restart before cycle {cycle}: GET v{version} ({})",
                r.cache_status()
            ),
        );
        if r.is_hit() {
            hits += 1;
        }
    }
    hits
}
