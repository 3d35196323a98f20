//! Whose cache directory it is, through the real proxy on real directories: someone else's files
//! are never moved or deleted, whatever error would follow, and starting says which directory
//! and what to do; a directory knitcache marked is still moved aside when corrupt, and the proxy
//! starts; an empty directory, or one the release before the mark wrote, is adopted.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::origin::{Origin, Reply};
use common::*;
use knitcache::app::{self, Listeners};
use knitcache::cache::dir_lock::LOCK_FILE;
use knitcache::cache::dir_mark::MARK_FILE;
use knitcache::cache::disk_trust::TRUST_FILE;
use knitcache::config;

const ROUTES: &str = "  - name: items\n    prefix: /items\n    ttl_secs: 600\n";

/// Nothing listens here: the refusals happen before any request.
const NO_UPSTREAM: &str = "127.0.0.1:9";

/// Every file (with its bytes) and directory under `root`, to compare before and after.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let meta = std::fs::symlink_metadata(&p).expect("stat");
        let rel = p.strip_prefix(root).expect("under root").to_path_buf();
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).expect("read_dir") {
                todo.push(e.expect("entry").path());
            }
            out.insert(rel, None);
        } else {
            out.insert(rel, Some(std::fs::read(&p).expect("read")));
        }
    }
    out
}

/// Builds the proxy on `dir` and returns why it refused to start.
fn refusal(dir: &Path) -> String {
    let upstream: SocketAddr = NO_UPSTREAM.parse().expect("addr");
    let config = config::parse(&config_yaml(upstream, dir, ROUTES), "test.yaml").expect("config");
    let listeners = Listeners::bind(&config).expect("bind");
    match app::build(config, listeners) {
        Ok(_) => panic!("the proxy started on {}", dir.display()),
        Err(e) => e.to_string(),
    }
}

/// Someone else's directory, set up by `make` in `dir`.
struct Case {
    what: &'static str,
    make: fn(&Path),
}

fn theirs(dir: &Path) {
    std::fs::create_dir_all(dir.join("photos")).expect("mkdir");
    std::fs::write(dir.join("thesis.tex"), b"chapter one").expect("write");
    std::fs::write(dir.join("photos/cat.jpg"), b"\xff\xd8 cat").expect("write");
}

const CASES: &[Case] = &[
    Case {
        what: "a populated directory",
        make: theirs,
    },
    Case {
        what: "a file where the directory should be",
        make: |dir| std::fs::write(dir, b"not a directory").expect("write"),
    },
    Case {
        // The release before the mark would have run here and left its lock file.
        what: "a populated directory an earlier release also locked",
        make: |dir| {
            theirs(dir);
            std::fs::write(dir.join(LOCK_FILE), b"pid 1").expect("write");
        },
    },
    Case {
        // The lock cannot be taken: before the mark, that moved the directory aside.
        what: "a populated directory whose lock file is a directory",
        make: |dir| {
            theirs(dir);
            std::fs::create_dir_all(dir.join(LOCK_FILE).join("x")).expect("mkdir");
        },
    },
    Case {
        what: "a populated directory with a file named like the mark",
        make: |dir| {
            theirs(dir);
            std::fs::write(dir.join(MARK_FILE), b"my own notes").expect("write");
        },
    },
    Case {
        what: "foyer-like files without the lock file",
        make: |dir| {
            std::fs::create_dir_all(dir).expect("mkdir");
            std::fs::write(dir.join("foyer-storage-direct-fs-00000000"), b"x").expect("write");
        },
    },
];

#[test]
fn someone_elses_files_are_never_moved_or_deleted_and_the_error_says_what_to_do() {
    for case in CASES {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        (case.make)(&dir);
        // The old quarantine slot holds a marked knitcache directory: even so, nothing moves.
        let slot = tmp.path().join("data.corrupt");
        std::fs::create_dir_all(&slot).expect("mkdir");
        std::fs::write(
            slot.join(MARK_FILE),
            "knitcache cache directory\nlayout 1\n",
        )
        .expect("mark");
        let before = snapshot(tmp.path());

        let msg = refusal(&dir);
        assert_eq!(
            snapshot(tmp.path()),
            before,
            "{}: nothing changed",
            case.what
        );
        assert!(
            msg.contains(&dir.display().to_string()),
            "{}: names the directory: {msg}",
            case.what
        );
        assert!(
            msg.contains("Pick an empty or new directory") && msg.contains("remove it yourself"),
            "{}: says the fix: {msg}",
            case.what
        );
    }
}

/// The real binary, as an operator with a mistyped `--cache-dir` meets it.
#[test]
fn run_refuses_a_directory_it_did_not_create_with_the_fix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("home");
    theirs(&dir);
    let before = snapshot(tmp.path());
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_knitcache"))
        .args(["run", "-c", "config/dev.yaml", "--listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0", "--cache-dir"])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    // A proxy that wrongly starts would run forever: give up on it (and kill it) after TIMEOUT.
    let mut child = Reap(child);
    let deadline = std::time::Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "the proxy started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(70), "a startup error");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert!(
        stderr.contains(&format!("the cache directory {}", dir.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("Pick an empty or new directory"),
        "{stderr}"
    );
    assert_eq!(snapshot(tmp.path()), before, "nothing changed");
}

async fn origin() -> Origin {
    let origin = Origin::start().await;
    origin.on("/items", |_, n| Reply::ok(format!("item {n}")));
    origin
}

async fn readyz(proxy: &TestProxy) -> serde_json::Value {
    let r = get(&client(), &proxy.admin_url("/readyz")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).expect("readyz JSON")
}

/// Two requests for one key: the second must be a hit.
async fn caches(proxy: &TestProxy) {
    let c = client();
    assert_eq!(get(&c, &proxy.url("/items")).await.status, 200);
    let again = get(&c, &proxy.url("/items")).await;
    assert!(again.is_hit(), "{}", again.cache_status());
}

/// Makes the disk tier unopenable: its first block file becomes a directory.
fn corrupt(dir: &Path) {
    let block = dir.join("foyer-storage-direct-fs-00000000");
    assert!(block.is_file(), "the disk tier wrote its block file");
    std::fs::remove_file(&block).expect("rm");
    std::fs::create_dir(&block).expect("mkdir");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_marked_directory_is_moved_aside_and_the_proxy_starts() {
    let origin = origin().await;
    let (tmp, dir) = cache_dir();
    let yaml = config_yaml(origin.addr(), &dir, ROUTES);
    let moved_to = tmp.path().join("cache.corrupt");

    let proxy = TestProxy::start_yaml(&yaml, &dir);
    assert_eq!(readyz(&proxy).await["cache"], "memory+disk");
    caches(&proxy).await;
    proxy.stop(true);
    assert!(
        dir.join(MARK_FILE).is_file(),
        "knitcache marks what it creates"
    );

    // Twice: the second time the first quarantine (marked) is replaced.
    for generation in 0..2 {
        corrupt(&dir);
        std::fs::write(dir.join("generation"), generation.to_string()).expect("write");
        let proxy = TestProxy::start_yaml(&yaml, &dir);
        let ready = readyz(&proxy).await;
        let note = ready["note"].as_str().unwrap_or_default().to_owned();
        assert!(
            note.contains("recreated") && note.contains(&moved_to.display().to_string()),
            "{generation}: {ready}"
        );
        caches(&proxy).await;
        proxy.stop(true);
        assert_eq!(
            std::fs::read_to_string(moved_to.join("generation")).expect("moved aside"),
            generation.to_string(),
            "{generation}: the corrupt directory was kept for inspection"
        );
        assert!(dir.join(MARK_FILE).is_file(), "the new directory is marked");
        assert!(!dir.join("generation").exists(), "and started empty");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quarantine_slot_holding_someone_elses_files_is_left_alone() {
    let origin = origin().await;
    let (tmp, dir) = cache_dir();
    let yaml = config_yaml(origin.addr(), &dir, ROUTES);
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    caches(&proxy).await;
    proxy.stop(true);
    corrupt(&dir);
    let slot = tmp.path().join("cache.corrupt");
    theirs(&slot);
    let theirs_before = snapshot(&slot);

    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let ready = readyz(&proxy).await;
    assert_eq!(ready["cache"], "memory-only", "{ready}");
    assert!(
        ready["note"]
            .as_str()
            .is_some_and(|n| n.contains("is not a knitcache directory")),
        "{ready}"
    );
    caches(&proxy).await;
    proxy.stop(true);
    assert_eq!(snapshot(&slot), theirs_before, "their files are untouched");
    assert!(
        dir.join(MARK_FILE).is_file() && dir.join("foyer-storage-direct-fs-00000000").is_dir(),
        "and ours was not moved"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_directory_is_adopted_and_marked() {
    let origin = origin().await;
    let (_tmp, dir) = cache_dir();
    std::fs::create_dir_all(&dir).expect("mkdir");
    let proxy = TestProxy::start_yaml(&config_yaml(origin.addr(), &dir, ROUTES), &dir);
    assert_eq!(readyz(&proxy).await["cache"], "memory+disk");
    caches(&proxy).await;
    assert!(dir.join(MARK_FILE).is_file());
}

/// An upgrade from the release before the mark: its directory (lock file, foyer's block files,
/// the ban list) is recognisably knitcache's, and its entries are served from disk.
#[tokio::test(flavor = "multi_thread")]
async fn a_directory_the_release_before_the_mark_wrote_is_adopted_with_its_entries() {
    let origin = origin().await;
    let (_tmp, dir) = cache_dir();
    let yaml = config_yaml(origin.addr(), &dir, ROUTES);
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    caches(&proxy).await;
    proxy.stop(true);
    std::fs::remove_file(dir.join(MARK_FILE)).expect("unmark");
    // Nor did it write the trust file.
    std::fs::remove_file(dir.join(TRUST_FILE)).expect("untrust");
    assert!(dir.join(LOCK_FILE).is_file(), "the lock file stays");

    let proxy = TestProxy::start_yaml(&yaml, &dir);
    assert_eq!(readyz(&proxy).await["cache"], "memory+disk");
    let hit = get(&client(), &proxy.url("/items")).await;
    assert!(hit.is_hit(), "{}", hit.cache_status());
    assert_eq!(
        origin.count("/items"),
        1,
        "served from the adopted disk tier"
    );
    assert!(dir.join(MARK_FILE).is_file(), "and marked");
}
