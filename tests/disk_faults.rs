//! Storage faults under the real binary, as an operator meets them: the cache directory's
//! filesystem full, remounted read-only, or the directory removed while the proxy runs. Each
//! test asserts what the clients got (every answer 200 and byte-identical to what the origin
//! sent), what the origin saw (how many fills), what `/stats`, `/readyz` and `/metrics` say
//! (the disk tier `degraded` with its reason, still ready, the errors counted by kind), that the
//! log holds no panic or backtrace and one line per kind, and that the next start reopens the
//! disk tier and serves only what the origin sent.
//!
//! A full filesystem needs one of its own: a small tmpfs, mounted by the test. As root (CI) it is
//! mounted where the test runs; otherwise in a user and mount namespace of its own (`unshare`),
//! which the proxy then runs in (`nsenter`) and the test reaches through `/proc/<pid>/root`.
//! Where neither is allowed the test prints why and does nothing. The read-only and the removed
//! directory need no privilege: the proxy runs without root's permission override.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::origin::{Origin, Reply};
use common::*;
use knitcache::cache::disk_trust::TRUST_FILE;

const ROUTES: &str = "  - name: items\n    prefix: /item/\n    ttl_secs: 600\n";

/// Body bytes per item: large enough that a few fill a small filesystem.
const ITEM_BYTES: usize = 100 * 1024;

/// A body only this item has, that does not compress away (the disk tier must fill).
fn body(item: usize) -> Vec<u8> {
    let mut x = (item as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..ITEM_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect()
}

fn path(item: usize) -> String {
    format!("/item/{item}")
}

fn serve_items(origin: &Origin, items: std::ops::Range<usize>) {
    for i in items {
        origin.always(
            &path(i),
            Reply::ok(body(i)).header("content-type", "application/octet-stream"),
        );
    }
}

/// One run of the knitcache binary on fixed ports, its JSON log in a file.
struct Proxy {
    child: Reap,
    port: u16,
    admin: u16,
    log: PathBuf,
}

impl Proxy {
    async fn start(config: &Path, run: usize) -> Proxy {
        Proxy::start_in(config, run, None).await
    }

    /// Starts the proxy, inside `fs`'s namespace when it has one.
    async fn start_in(config: &Path, run: usize, fs: Option<&Tmpfs>) -> Proxy {
        let yaml = std::fs::read_to_string(config).expect("config");
        let port_of = |key: &str| -> u16 {
            let line = yaml
                .lines()
                .find(|l| l.starts_with(key))
                .expect("listen line");
            line.rsplit(':')
                .next()
                .and_then(|p| p.trim_matches('"').parse().ok())
                .expect("port")
        };
        let (port, admin) = (port_of("listen:"), port_of("admin_listen:"));
        let log = config.with_extension(format!("{run}.log"));
        let mut cmd = match fs {
            Some(fs) => fs.command(env!("CARGO_BIN_EXE_knitcache")),
            None => Command::new(env!("CARGO_BIN_EXE_knitcache")),
        };
        cmd.args(["--log-format", "json", "run", "-c"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        // SAFETY: between fork and exec the child only calls prctl, which is async-signal-safe.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                without_permission_override();
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn knitcache");
        let proxy = Proxy {
            child: Reap(child),
            port,
            admin,
            log,
        };
        until_ok(&client(), &proxy.admin_url("/readyz")).await;
        proxy
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin)
    }

    async fn json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = get(&client(), &self.admin_url(path)).await;
        let doc = serde_json::from_slice(&r.body).expect("json");
        (r.status, doc)
    }

    async fn disk_state(&self) -> String {
        let (_, stats) = self.json("/stats").await;
        stats["cache"]["disk"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The sum of every sample of `name` whose labels contain all of `labels`.
    async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let text = get(&client(), &self.admin_url("/metrics")).await.text();
        text.lines()
            .filter(|l| l.starts_with(name) && labels.iter().all(|s| l.contains(s)))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    /// Waits until the disk tier reports `state`.
    async fn until_disk(&self, state: &str) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let now = self.disk_state().await;
            if now == state {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the disk tier stayed {now}, never {state}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `POST /purge {"url": ...}` for `item`, from loopback (no token configured).
    async fn purge(&self, item: usize) -> serde_json::Value {
        let body = format!("{{\"url\": \"{}\"}}", path(item));
        let r = post_json(&client(), &self.admin_url("/purge"), &body, None).await;
        assert_eq!(r.status, 200, "purge: {}", r.text());
        serde_json::from_slice(&r.body).expect("json")
    }

    /// SIGKILL: no flush, no close, as a crash.
    fn kill(mut self) -> String {
        self.child.0.kill().expect("kill -9");
        self.child.0.wait().expect("wait");
        self.log_text()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, and waits for the exit (the cache is closed on the way out).
    fn stop(mut self) -> String {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.0.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = std::time::Instant::now() + TIMEOUT;
        while self.child.0.try_wait().expect("wait").is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the proxy did not stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.log_text()
    }
}

/// Run as root, the proxy would write where file permissions forbid it: it is started without
/// the capabilities that override them (dropped from the bounding set, so the exec cannot give
/// them back), as a service user runs. Not root: nothing to drop (and prctl refuses).
fn without_permission_override() {
    const CAP_DAC_OVERRIDE: libc::c_ulong = 1;
    const CAP_DAC_READ_SEARCH: libc::c_ulong = 2;
    const CAP_FOWNER: libc::c_ulong = 3;
    for cap in [CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER] {
        // SAFETY: PR_CAPBSET_DROP takes a capability number and touches no memory.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
    }
}

/// GETs `item` and asserts the client got exactly the origin's body.
async fn fetch(proxy: &Proxy, item: usize) -> Resp {
    let r = get(&client(), &proxy.url(&path(item))).await;
    assert_eq!(r.status, 200, "item {item}: {}", r.cache_status());
    assert!(
        r.body.as_ref() == body(item).as_slice(),
        "item {item}: the body differs from the origin's ({} bytes)",
        r.body.len()
    );
    r
}

/// The log holds nothing but JSON lines (a panic's own message and backtrace are not), no
/// backtrace, and at most one line per (tier, op, kind) of storage error.
fn assert_clean_log(log: &str) {
    assert!(
        !log.to_lowercase().contains("backtrace"),
        "a backtrace reached the log:\n{log}"
    );
    let mut kinds = std::collections::HashMap::new();
    for line in log.lines() {
        let doc: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
        if doc["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("cache storage error"))
        {
            let kind = format!("{}/{}/{}", doc["tier"], doc["op"], doc["kind"]);
            *kinds.entry(kind).or_insert(0) += 1;
        }
    }
    for (kind, lines) in kinds {
        assert_eq!(
            lines, 1,
            "{kind} logged {lines} times within a minute:\n{log}"
        );
    }
}

/// Bytes the files under `dir` occupy on disk (foyer's block files are sparse).
fn allocated(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.blocks() * 512)
                .sum()
        })
        .unwrap_or(0)
}

/// A tmpfs of its own, unmounted when dropped.
struct Tmpfs {
    /// Where the proxy finds it.
    at: PathBuf,
    /// Where the test finds it (the same path, or through the namespace's holder process).
    seen: PathBuf,
    /// The process holding the namespace it is mounted in (not root), else `None`.
    holder: Option<Reap>,
}

impl Tmpfs {
    /// `None` (and a line saying why) when no tmpfs can be mounted here.
    fn mount(at: &Path, bytes: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).expect("mount point");
        // SAFETY: getuid has no preconditions and cannot fail.
        if unsafe { libc::getuid() } == 0 {
            let ok = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
                .arg(at)
                .status()
                .expect("mount");
            assert!(ok.success(), "cannot mount a tmpfs on {}", at.display());
            return Some(Tmpfs {
                at: at.to_owned(),
                seen: at.to_owned(),
                holder: None,
            });
        }
        let holder = Command::new("unshare")
            .args([
                "--user",
                "--map-root-user",
                "--mount",
                "--propagation",
                "private",
            ])
            .args([
                "sh",
                "-c",
                "mount -t tmpfs -o size=$1 tmpfs \"$0\" && echo mounted && exec sleep 3600",
            ])
            .arg(at)
            .arg(bytes.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut holder = match holder {
            Ok(child) => Reap(child),
            Err(e) => {
                eprintln!("skipped: no root, and unshare cannot run ({e}) to mount a tmpfs");
                return None;
            }
        };
        let mut line = String::new();
        let stdout = holder.0.stdout.take().expect("stdout");
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        if line.trim() != "mounted" {
            let mut why = String::new();
            if let Some(mut e) = holder.0.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut why);
            }
            eprintln!("skipped: no root, and no user namespace to mount a tmpfs in: {why}");
            return None;
        }
        let seen = PathBuf::from(format!("/proc/{}/root", holder.0.id()))
            .join(at.strip_prefix("/").unwrap_or(at));
        Some(Tmpfs {
            at: at.to_owned(),
            seen,
            holder: Some(holder),
        })
    }

    /// A command that runs `program` where this tmpfs is mounted.
    fn command(&self, program: &str) -> Command {
        match &self.holder {
            None => Command::new(program),
            Some(holder) => {
                let mut cmd = Command::new("nsenter");
                cmd.args(["--user", "--mount", "--preserve-credentials", "--target"])
                    .arg(holder.0.id().to_string())
                    .arg(program);
                cmd
            }
        }
    }

    /// Fills what is left with a ballast file; again, it takes what has been freed since.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.seen.join("ballast"))
            .expect("ballast");
        let chunk = vec![1u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.seen.join("ballast")).expect("remove ballast");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // A namespace's tmpfs goes with its holder (`Reap`); one mounted here is unmounted.
        if self.holder.is_none() {
            let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        }
    }
}

/// A config on fixed ports with the cache in `dir`; written beside `dir`'s parent.
fn config(origin: &Origin, tmp: &Path, dir: &Path) -> PathBuf {
    let yaml = config_yaml_on_ports(origin.addr(), dir, ROUTES, (free_port(), free_port()), 0);
    let file = tmp.join("knitcache.yaml");
    std::fs::write(&file, yaml).expect("write config");
    file
}

/// Fills `items` and waits until the disk tier holds them (their bytes allocated on disk).
async fn fill_to_disk(proxy: &Proxy, dir: &Path, items: std::ops::Range<usize>) {
    let before = allocated(dir);
    let want = before + (items.len() * ITEM_BYTES) as u64;
    for i in items {
        fetch(proxy, i).await;
    }
    eventually("the first entries written to disk", || {
        allocated(dir) >= want
    })
    .await;
}

/// Entries foyer's disk tier was handed to write.
async fn enqueued(proxy: &Proxy) -> f64 {
    proxy
        .metric("foyer_storage_op_total", &["op=\"enqueue\""])
        .await
}

/// What the fault tests have in common after the fault: every item served, each filled once,
/// served again from memory, the disk tier reported degraded (ready, with the reason) with the
/// errors counted under `kind`, and no longer handed anything: `fresh` items filled now are
/// kept in memory alone.
async fn assert_degraded(
    proxy: &Proxy,
    origin: &Origin,
    items: std::ops::Range<usize>,
    fresh: std::ops::Range<usize>,
    kind: &str,
) {
    proxy.until_disk("degraded").await;
    let handed = enqueued(proxy).await;
    assert!(handed > 0.0, "foyer's enqueue count is read");
    for i in fresh.clone() {
        fetch(proxy, i).await;
    }
    assert_eq!(
        enqueued(proxy).await,
        handed,
        "nothing more handed to the disk tier"
    );
    for i in items.start..fresh.end {
        let again = fetch(proxy, i).await;
        assert!(
            again.is_hit(),
            "item {i} served from memory: {}",
            again.cache_status()
        );
        assert_eq!(origin.count(&path(i)), 1, "item {i} filled once");
    }
    let (status, ready) = proxy.json("/readyz").await;
    assert_eq!(status, 200, "memory still serves: ready {ready}");
    assert_eq!(ready["degraded"], true, "{ready}");
    assert_eq!(ready["disk"], "degraded", "{ready}");
    assert_eq!(ready["cache"], "memory-only", "{ready}");
    let (_, stats) = proxy.json("/stats").await;
    let reason = stats["cache"]["disk"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains(kind),
        "the reason names the fault: {reason}"
    );
    assert!(
        stats["cache"]["disk"]["since_unix_ms"].as_u64().is_some(),
        "{stats}"
    );
    let errors = proxy
        .metric(
            "knitcache_cache_storage_errors_total",
            &["tier=\"disk\"", &format!("kind=\"{kind}\"")],
        )
        .await;
    assert!(errors >= 1.0, "errors of kind {kind} counted: {errors}");
    let gauge = "knitcache_cache_disk_state";
    assert_eq!(proxy.metric(gauge, &["state=\"degraded\""]).await, 1.0);
    assert_eq!(proxy.metric(gauge, &["state=\"open\""]).await, 0.0);
}

/// After the fault is gone, a restart on the same directory: the disk tier is open again, and
/// every item is the origin's bytes, the ones written before the fault without a fill.
async fn assert_restart_recovers(
    config: &Path,
    fs: Option<&Tmpfs>,
    origin: &Origin,
    before_fault: std::ops::Range<usize>,
    all: std::ops::Range<usize>,
) -> Proxy {
    let proxy = Proxy::start_in(config, 3, fs).await;
    proxy.until_disk("open").await;
    let (_, ready) = proxy.json("/readyz").await;
    assert_eq!(
        (ready["disk"].as_str(), &ready["degraded"]),
        (Some("open"), &serde_json::json!(false))
    );
    for i in before_fault.clone() {
        let r = fetch(&proxy, i).await;
        assert!(
            r.is_hit(),
            "item {i} recovered from disk: {}",
            r.cache_status()
        );
        assert_eq!(origin.count(&path(i)), 1, "item {i} not filled again");
    }
    // The rest: served from disk if it was written whole, else filled again; never other bytes.
    for i in all {
        fetch(&proxy, i).await;
        assert!(origin.count(&path(i)) <= 2, "item {i}");
    }
    proxy
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_degrades_the_disk_tier_and_a_restart_with_space_reopens_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(fs) = Tmpfs::mount(&tmp.path().join("fs"), 8 << 20) else {
        return;
    };
    let dir = fs.at.join("cache");
    let origin = Origin::start().await;
    serve_items(&origin, 0..45);
    let config = config(&origin, tmp.path(), &dir);
    let proxy = Proxy::start_in(&config, 1, Some(&fs)).await;
    assert_eq!(proxy.disk_state().await, "open");
    fill_to_disk(&proxy, &fs.seen.join("cache"), 0..5).await;

    fs.fill();
    for i in 5..40 {
        fetch(&proxy, i).await;
    }
    assert_degraded(&proxy, &origin, 5..40, 40..45, "no_space").await;
    let log = proxy.stop();
    assert_clean_log(&log);

    // A start on the still full disk comes up ready, and the probe finds the disk full. What
    // the first run's stop or the second's start frees (a page of a file rewritten, a block
    // foyer reclaims) is taken again, or the probe's one page could fit there.
    let proxy = Proxy::start_in(&config, 2, Some(&fs)).await;
    fs.fill();
    proxy.until_disk("degraded").await;
    let (status, ready) = proxy.json("/readyz").await;
    assert_eq!(
        (status, &ready["disk"]),
        (200, &serde_json::json!("degraded"))
    );
    let log = proxy.stop();
    assert_clean_log(&log);
    assert!(log.contains("\"kind\":\"no_space\""), "{log}");
    assert!(
        !log.contains("moved aside"),
        "the full directory is kept: {log}"
    );

    fs.free();
    let proxy = assert_restart_recovers(&config, Some(&fs), &origin, 0..5, 0..45).await;
    assert_clean_log(&proxy.stop());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cache_directory_made_read_only_degrades_the_disk_tier() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cache");
    let origin = Origin::start().await;
    serve_items(&origin, 0..25);
    let config = config(&origin, tmp.path(), &dir);
    let proxy = Proxy::start(&config, 1).await;
    fill_to_disk(&proxy, &dir, 0..5).await;

    let mode = |m| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(m));
    mode(0o555).expect("chmod a-w");
    for i in 5..20 {
        fetch(&proxy, i).await;
    }
    assert_degraded(&proxy, &origin, 5..20, 20..25, "permission").await;
    // A purge now cannot even remove the trust file: said in the log and counted.
    proxy.purge(7).await;
    let missed = "knitcache_cache_purges_not_on_disk_total";
    assert!(proxy.metric(missed, &["outcome=\"may_return\""]).await >= 1.0);
    assert!(dir.join(TRUST_FILE).is_file());
    let log = proxy.stop();
    assert_clean_log(&log);
    assert!(log.contains("purged entries may be served again"), "{log}");

    mode(0o755).expect("chmod u+w");
    let proxy = assert_restart_recovers(&config, None, &origin, 0..5, 0..25).await;
    assert_clean_log(&proxy.stop());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cache_directory_removed_while_running_degrades_the_disk_tier() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cache");
    let origin = Origin::start().await;
    serve_items(&origin, 0..25);
    let config = config(&origin, tmp.path(), &dir);
    let proxy = Proxy::start(&config, 1).await;
    fill_to_disk(&proxy, &dir, 0..5).await;

    std::fs::remove_dir_all(&dir).expect("rm -r the cache directory");
    for i in 5..20 {
        fetch(&proxy, i).await;
    }
    assert_degraded(&proxy, &origin, 5..20, 20..25, "dir_removed").await;
    let log = proxy.stop();
    assert_clean_log(&log);
    assert!(!dir.exists(), "the removed directory is not written again");

    // The next start makes a new, empty disk tier: everything is filled again, and served as
    // the origin sent it.
    let proxy = Proxy::start(&config, 2).await;
    proxy.until_disk("open").await;
    for i in 0..25 {
        fetch(&proxy, i).await;
        assert_eq!(origin.count(&path(i)), 2, "item {i} filled again");
    }
    assert_clean_log(&proxy.stop());
}

/// A purge while the disk is full cannot write its removal: the entry's old copy stays on disk.
/// That purge removes the trust file (an unlink needs no space), so the start after the fault
/// empties the disk tier rather than serve the purged entry again: the next request for it
/// goes to the origin. (Without a purge the disk tier's entries are kept: the test above.)
#[tokio::test(flavor = "multi_thread")]
async fn a_purge_while_the_disk_is_full_is_not_undone_by_the_next_start() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(fs) = Tmpfs::mount(&tmp.path().join("fs"), 8 << 20) else {
        return;
    };
    let dir = fs.at.join("cache");
    let seen = fs.seen.join("cache");
    let origin = Origin::start().await;
    serve_items(&origin, 0..10);
    let config = config(&origin, tmp.path(), &dir);
    let proxy = Proxy::start_in(&config, 1, Some(&fs)).await;
    fill_to_disk(&proxy, &seen, 0..5).await;
    assert!(seen.join(TRUST_FILE).is_file(), "a healthy start trusts");

    fs.fill();
    for i in 5..10 {
        fetch(&proxy, i).await;
    }
    proxy.until_disk("degraded").await;
    let purged = proxy.purge(1).await;
    assert_eq!(purged["removed"], 1, "{purged}");
    let missed = "knitcache_cache_purges_not_on_disk_total";
    // One per variant slot the URL purge removed (identity and each coding).
    assert!(
        proxy
            .metric(missed, &["outcome=\"discard_at_start\""])
            .await
            >= 1.0,
        "counted"
    );
    assert_eq!(proxy.metric(missed, &["outcome=\"may_return\""]).await, 0.0);
    assert!(
        !seen.join(TRUST_FILE).exists(),
        "the full disk took the unlink"
    );
    let refilled = fetch(&proxy, 1).await;
    assert!(!refilled.is_hit(), "purged: {}", refilled.cache_status());
    assert_eq!(origin.count(&path(1)), 2);
    let log = proxy.stop();
    assert_clean_log(&log);
    assert!(
        log.contains("the next start empties the disk tier"),
        "{log}"
    );

    fs.free();
    let proxy = Proxy::start_in(&config, 2, Some(&fs)).await;
    proxy.until_disk("open").await;
    let r = fetch(&proxy, 1).await;
    assert!(
        !r.is_hit(),
        "the purged entry is not served from its old disk copy: {}",
        r.cache_status()
    );
    assert_eq!(origin.count(&path(1)), 3, "filled from the origin again");
    // The rest of the old disk tier went with it: each is the origin's, filled once more.
    for i in [0, 2, 3, 4] {
        fetch(&proxy, i).await;
        assert_eq!(origin.count(&path(i)), 2, "item {i} filled again");
    }
    assert_eq!(
        proxy
            .metric("knitcache_cache_disk_discarded_total", &[])
            .await,
        1.0
    );
    assert!(seen.join(TRUST_FILE).is_file(), "trusted again");
    let log = proxy.stop();
    assert_clean_log(&log);
    assert!(log.contains("disk tier emptied at start"), "{log}");

    // Trusted again: the next start serves what this one wrote.
    let proxy = Proxy::start_in(&config, 3, Some(&fs)).await;
    let r = fetch(&proxy, 1).await;
    assert!(r.is_hit(), "recovered from disk: {}", r.cache_status());
    assert_eq!(origin.count(&path(1)), 3);
    assert_clean_log(&proxy.stop());
}

/// A crash while the disk tier is healthy keeps the trust file: the restart serves what was
/// written, byte for byte, without asking the origin.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_while_healthy_keeps_the_disk_tier() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cache");
    let origin = Origin::start().await;
    serve_items(&origin, 0..6);
    let config = config(&origin, tmp.path(), &dir);
    let proxy = Proxy::start(&config, 1).await;
    // The bytes allocated for six items cover the first five whole (written in order); the
    // last may be cut by the kill.
    fill_to_disk(&proxy, &dir, 0..6).await;
    proxy.kill();
    assert!(dir.join(TRUST_FILE).is_file());

    let proxy = Proxy::start(&config, 2).await;
    for i in 0..5 {
        let r = fetch(&proxy, i).await;
        assert!(r.is_hit(), "item {i} recovered: {}", r.cache_status());
        assert_eq!(origin.count(&path(i)), 1, "item {i} not filled again");
    }
    // Recovered or filled again, and the origin's bytes either way (`fetch` compares).
    fetch(&proxy, 5).await;
    assert!(origin.count(&path(5)) <= 2);
    assert_eq!(
        proxy
            .metric("knitcache_cache_disk_discarded_total", &[])
            .await,
        0.0
    );
    assert_clean_log(&proxy.stop());
}
