//! The access log never holds up a request, through the real binary: with its stderr a pipe
//! nobody reads, the proxy keeps serving, counts the lines it drops, and still stops when told;
//! with a stderr that keeps up, every request's line arrives, without waiting for shutdown.

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::origin::{Origin, Reply};
use common::*;
use parking_lot::Mutex;

const ROUTES: &str = "  - name: cached\n    prefix: /t/cached\n    ttl_secs: 600\n";

/// A running `knitcache run` whose stderr is a pipe the test holds.
struct Proxy {
    child: Reap,
    port: u16,
    admin: u16,
    _dir: tempfile::TempDir,
}

impl Proxy {
    fn start(origin: &Origin) -> Proxy {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (port, admin) = (free_port(), free_port());
        let yaml = config_yaml_on_ports(
            origin.addr(),
            &tmp.path().join("cache"),
            ROUTES,
            (port, admin),
            0,
        );
        let file = tmp.path().join("knitcache.yaml");
        std::fs::write(&file, yaml).expect("write config");
        let child = Command::new(env!("CARGO_BIN_EXE_knitcache"))
            .args(["--log", "info", "run", "-c"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn knitcache");
        Proxy {
            child: Reap(child),
            port,
            admin,
            _dir: tmp,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn dropped(&self) -> f64 {
        let text = get(
            &client(),
            &format!("http://127.0.0.1:{}/metrics", self.admin),
        )
        .await
        .text();
        text.lines()
            .find_map(|l| l.strip_prefix("knitcache_access_log_dropped_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no knitcache_access_log_dropped_total in:\n{text}"))
    }

    /// Sends SIGTERM and waits for the process to end.
    fn stop(&mut self) {
        terminate(&self.child.0);
        let deadline = Instant::now() + TIMEOUT;
        while self.child.0.try_wait().expect("wait").is_none() {
            assert!(
                Instant::now() < deadline,
                "knitcache did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill failed");
}

/// `n` GETs of `path`, 8 at a time; the statuses.
async fn requests(proxy: &Proxy, path: &str, n: usize) -> Vec<u16> {
    let url = proxy.url(path);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (url, c) = (url.clone(), client());
        tasks.spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..n.div_ceil(8) {
                statuses.push(get(&c, &url).await.status);
            }
            statuses
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done.expect("request task"));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_log_nobody_reads_never_stops_the_proxy() {
    let origin = Origin::start().await;
    let path = format!("/t/cached/{}", "x".repeat(4000));
    origin.always(&path, Reply::ok("cached"));
    let mut proxy = Proxy::start(&origin);
    // Held, never read: once the pipe's 64 KiB are full, every write to stderr blocks.
    let _unread = proxy.child.0.stderr.take().expect("stderr pipe");
    until_ok(&client(), &proxy.url(&path)).await;

    // A 4 KB path makes 4 KB access lines: 1,600 of them are several times what the pipe and
    // the proxy's pending-line buffer (1 MiB) hold together.
    let statuses = requests(&proxy, &path, 1_600).await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every request is served while the log is stuck"
    );
    let dropped = proxy.dropped().await;
    assert!(
        dropped > 0.0,
        "lines that did not fit are dropped and counted: {dropped}"
    );
    assert_eq!(
        origin.count(&path),
        1,
        "the rest were hits: the proxy ran as usual"
    );
    proxy.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_line_arrives_when_the_log_keeps_up() {
    let origin = Origin::start().await;
    for path in ["/t/cached/ready", "/t/cached/kept", "/t/cached/last"] {
        origin.always(path, Reply::ok("cached"));
    }
    let mut proxy = Proxy::start(&origin);
    let mut stderr = proxy.child.0.stderr.take().expect("stderr pipe");
    let log = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 64 * 1024];
            while let Ok(n) = stderr.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                log.lock().extend_from_slice(&chunk[..n]);
            }
        })
    };
    let access_lines = |path: &str| {
        let text = String::from_utf8_lossy(&log.lock()).into_owned();
        text.lines()
            .filter(|l| l.contains("\"target\":\"access\""))
            .filter(|l| l.contains(&format!("\"path\":\"{path}\"")))
            .count()
    };
    until_ok(&client(), &proxy.url("/t/cached/ready")).await;

    let statuses = requests(&proxy, "/t/cached/kept", 800).await;
    assert!(statuses.iter().all(|s| *s == 200));
    // Written while the proxy runs, within its flush interval, not only at exit.
    eventually("every access line is on stderr", || {
        access_lines("/t/cached/kept") == 800
    })
    .await;
    assert_eq!(proxy.dropped().await, 0.0, "nothing dropped");

    // The last line before a stop is written too.
    assert_eq!(
        get(&client(), &proxy.url("/t/cached/last")).await.status,
        200
    );
    proxy.stop();
    reader.join().expect("reader");
    assert_eq!(access_lines("/t/cached/last"), 1);
    assert_eq!(access_lines("/t/cached/kept"), 800, "no line twice");
}
