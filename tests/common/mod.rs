//! Test harness: the real proxy (`app::build`, real pingora, real foyer tiers in a temp
//! directory) in front of the real ERP simulator, both on ephemeral loopback ports.
//!
//! Each test owns its proxy, simulator and cache directory, so tests run in parallel. The
//! proxy runs on its own thread (pingora's `run` blocks) and is stopped through a channel,
//! never a signal: signals are process-wide and would stop every proxy in the binary.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod browser;
pub mod origin;
pub mod raw;
pub mod raw_origin;
pub mod redis_server;
pub mod replica;
pub mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use erp_sim::{ErpSim, Mode, SimOptions};
use knitcache::app::{self, Addrs, Listeners};
use knitcache::config::reload::Reloads;
use knitcache::config::{self, Config};
use knitcache::metrics::Metrics;
use pingora_core::server::{ShutdownSignal, ShutdownSignalWatch};

/// Every await on the network is bounded by this.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// The simulator, scaled so the slow endpoints stay slow relative to hits but tests stay fast.
pub async fn start_sim(time_scale: f64) -> ErpSim {
    start_sim_mode(Mode::Rollback, time_scale).await
}

/// The simulator in a given mode.
pub async fn start_sim_mode(mode: Mode, time_scale: f64) -> ErpSim {
    let opts = SimOptions {
        mode,
        time_scale,
        control_listen: None,
    };
    ErpSim::start("127.0.0.1:0".parse().expect("addr"), opts)
        .await
        .expect("simulator starts")
}

/// A config for tests: loopback ephemeral ports, a small cache in `dir`, these routes.
/// `routes_yaml` is the `routes:` list as YAML, indented by two spaces.
pub fn config_yaml(upstream: SocketAddr, dir: &Path, routes_yaml: &str) -> String {
    config_yaml_with(upstream, dir, "", routes_yaml)
}

/// A port free right now on loopback, for tests whose processes must agree on a fixed address
/// (a graceful upgrade inherits sockets by address). Racy by nature: use only where needed.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// As `config_yaml`, on fixed proxy and admin ports and with a grace period of `grace_secs`.
pub fn config_yaml_on_ports(
    upstream: SocketAddr,
    dir: &Path,
    routes_yaml: &str,
    (port, admin): (u16, u16),
    grace_secs: u64,
) -> String {
    on_ports(&config_yaml(upstream, dir, routes_yaml), (port, admin)).replace(
        "grace_period_secs: 0",
        &format!("grace_period_secs: {grace_secs}"),
    )
}

/// A test config (`config_yaml` and the like, on ephemeral ports) on fixed proxy and admin
/// ports instead.
pub fn on_ports(yaml: &str, (port, admin): (u16, u16)) -> String {
    yaml.replace(
        "admin_listen: \"127.0.0.1:0\"",
        &format!("admin_listen: \"127.0.0.1:{admin}\""),
    )
    .replacen(
        "listen: \"127.0.0.1:0\"",
        &format!("listen: \"127.0.0.1:{port}\""),
        1,
    )
}

/// Polls `url` until it answers 2xx, or fails the test after `TIMEOUT` (a process starting).
pub async fn until_ok(c: &reqwest::Client, url: &str) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Ok(r) = c.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Kills and reaps a child process when dropped (a failing test leaves nothing running).
pub struct Reap(pub std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the `knitcache` binary on the config `file` (`run -c file`), its log written beside
/// the config with the extension `log_ext` (for a failing run to be read).
pub fn spawn_binary(file: &Path, log_ext: &str) -> Reap {
    let log = std::fs::File::create(file.with_extension(log_ext)).expect("log file");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_knitcache"))
        .args(["--log", "info", "run", "-c"])
        .arg(file)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn knitcache");
    Reap(child)
}

/// Sends `sig` (`-TERM`, `-KILL`, ...) to `child`.
pub fn signal(child: &std::process::Child, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {sig} failed");
}

/// Waits for `child` to exit, for at most `within`; `None` if it is still running then.
pub async fn exit_within(child: &mut Reap, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            return Some(status);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// As `config_yaml`, plus a `protection:` section (its keys indented by two spaces).
pub fn config_yaml_with(
    upstream: SocketAddr,
    dir: &Path,
    protection_yaml: &str,
    routes_yaml: &str,
) -> String {
    let protection = if protection_yaml.is_empty() {
        String::new()
    } else {
        format!("protection:\n{protection_yaml}")
    };
    config_yaml_sections(upstream, dir, &protection, routes_yaml)
}

/// As `config_yaml`, plus whole top-level sections (`sections_yaml`, unindented). The warmer is
/// off unless `sections_yaml` has a `warming:` section: its refreshes would change the ERP
/// request counts the other tests assert on.
pub fn config_yaml_sections(
    upstream: SocketAddr,
    dir: &Path,
    sections_yaml: &str,
    routes_yaml: &str,
) -> String {
    let mut protection = sections_yaml.to_owned();
    if !protection.contains("warming:") {
        protection.push_str("warming:\n  enabled: false\n");
    }
    format!(
        r#"listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
upstream:
  address: "{upstream}"
  connect_timeout_ms: 500
  read_timeout_ms: 10000
  write_timeout_ms: 5000
cache:
  dir: "{dir}"
  memory_mib: 16
  disk_mib: 64
  max_object_bytes: 1048576
  lock_timeout_ms: 10000
  compression:
    enabled: true
    level: 6
server:
  threads: 2
  grace_period_secs: 0
  graceful_shutdown_timeout_secs: 1
  pid_file: "{dir}.pid"
  upgrade_sock: "{dir}.sock"
{protection}routes:
{routes_yaml}"#,
        dir = dir.display()
    )
}

/// The shipped config (config/knitcache.yaml), on loopback ephemeral ports, in front of
/// `upstream`, caching in `dir`, with small tiers and the warmer off (the warm list would fill
/// entries before the requests whose counts the tests assert).
pub fn shipped_config(upstream: SocketAddr, dir: &Path) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/knitcache.yaml");
    let mut c = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    c.listen = "127.0.0.1:0".parse().expect("addr");
    c.admin_listen = "127.0.0.1:0".parse().expect("addr");
    c.upstream.address = upstream;
    c.cache.dir = dir.to_path_buf();
    c.cache.memory_bytes = 16 << 20;
    c.cache.disk_bytes = 64 << 20;
    c.server.pid_file = dir.with_extension("pid");
    c.server.upgrade_sock = dir.with_extension("sock");
    c.server.grace_period = Duration::ZERO;
    c.warming.enabled = false;
    c
}

/// A running proxy. Dropping it stops the server and closes its cache.
pub struct TestProxy {
    pub addrs: Addrs,
    pub metrics: Arc<Metrics>,
    pub reloads: Arc<Reloads>,
    pub cache_dir: PathBuf,
    stop: Option<tokio::sync::watch::Sender<u8>>,
    thread: Option<JoinHandle<()>>,
    /// The temporary directory holding `cache_dir`, when the proxy made it. Declared last, so
    /// it is removed after `drop` has stopped the server.
    owned_dir: Option<tempfile::TempDir>,
}

/// Stops the server when the test says so (1 = graceful, 2 = fast), or fast when the sender is
/// dropped (a panicking test).
struct ChannelShutdown(tokio::sync::watch::Receiver<u8>);

#[async_trait]
impl ShutdownSignalWatch for ChannelShutdown {
    async fn recv(&self) -> ShutdownSignal {
        let mut rx = self.0.clone();
        match rx.wait_for(|v| *v != 0).await.map(|v| *v) {
            Ok(1) => ShutdownSignal::GracefulTerminate,
            _ => ShutdownSignal::FastShutdown,
        }
    }
}

impl TestProxy {
    /// The proxy in front of `sim` with `routes` (the `routes:` list of `config_yaml`), in a
    /// cache directory of its own that lives as long as the proxy.
    pub fn in_front_of(sim: &ErpSim, routes: &str) -> TestProxy {
        let (tmp, dir) = cache_dir();
        let mut proxy = Self::start_yaml(&config_yaml(sim.addr(), &dir, routes), &dir);
        proxy.owned_dir = Some(tmp);
        proxy
    }

    /// The proxy in front of any upstream (e.g. an `origin::Origin`) with `routes`, in a cache
    /// directory of its own that lives as long as the proxy.
    pub fn in_front_of_origin(upstream: SocketAddr, routes: &str) -> TestProxy {
        Self::in_front_of_origin_with(upstream, "", routes)
    }

    /// As `in_front_of_origin`, plus whole top-level sections (`sections_yaml`, unindented, as
    /// `config_yaml_sections` takes them).
    pub fn in_front_of_origin_with(
        upstream: SocketAddr,
        sections_yaml: &str,
        routes: &str,
    ) -> TestProxy {
        let (tmp, dir) = cache_dir();
        let yaml = config_yaml_sections(upstream, &dir, sections_yaml, routes);
        let mut proxy = Self::start_yaml(&yaml, &dir);
        proxy.owned_dir = Some(tmp);
        proxy
    }

    /// As `in_front_of_origin_with`, with `upstream_yaml` (`key: value` lines, unindented) added
    /// to the `upstream:` section.
    pub fn in_front_of_origin_upstream(
        upstream: SocketAddr,
        upstream_yaml: &str,
        routes: &str,
    ) -> TestProxy {
        let (tmp, dir) = cache_dir();
        let yaml = config_yaml_sections(upstream, &dir, "", routes);
        let extra: String = upstream_yaml
            .lines()
            .map(|line| format!("  {line}\n"))
            .collect();
        let yaml = yaml.replacen("upstream:\n", &format!("upstream:\n{extra}"), 1);
        let mut proxy = Self::start_yaml(&yaml, &dir);
        proxy.owned_dir = Some(tmp);
        proxy
    }

    /// Builds and starts the proxy for `yaml`. Panics with the config errors if it is invalid.
    pub fn start_yaml(yaml: &str, cache_dir: &Path) -> TestProxy {
        let config = match config::parse(yaml, "test.yaml") {
            Ok(c) => c,
            Err(e) => panic!("test config invalid:\n{e}\n---\n{yaml}"),
        };
        Self::start(config, cache_dir)
    }

    /// Builds and starts the proxy for a validated config. Building happens on the proxy's own
    /// thread: opening the cache drives a runtime of its own, which tokio forbids inside the
    /// test's runtime.
    pub fn start(config: Config, cache_dir: &Path) -> TestProxy {
        Self::start_with_reload(config, None, cache_dir)
    }

    /// Builds and starts the proxy from a config file, reloading it on `reloads.trigger()`.
    pub fn start_file(path: &Path, cache_dir: &Path) -> TestProxy {
        let config = config::load(path).unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        Self::start_with_reload(config, Some(path.to_path_buf()), cache_dir)
    }

    fn start_with_reload(config: Config, reload: Option<PathBuf>, cache_dir: &Path) -> TestProxy {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(0u8);
        let (built_tx, built_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("test-proxy".into())
            .spawn(move || {
                let listeners = Listeners::bind(&config).expect("bind loopback");
                let mut app = app::build(config, listeners).expect("app builds");
                if let Some(path) = reload {
                    app.reload_from(path, Box::new(|_| {}), None);
                }
                let _ = built_tx.send((app.addrs, app.metrics.clone(), app.reloads.clone()));
                app.run(Box::new(ChannelShutdown(stop_rx)));
            })
            .expect("spawn proxy thread");
        let (addrs, metrics, reloads) = built_rx.recv_timeout(TIMEOUT).expect("proxy built");
        TestProxy {
            addrs,
            metrics,
            reloads,
            cache_dir: cache_dir.to_path_buf(),
            stop: Some(stop_tx),
            thread: Some(thread),
            owned_dir: None,
        }
    }

    /// `http://proxy` + path.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addrs.proxy, path_and_query)
    }

    /// `http://admin` + path.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.addrs.admin, path)
    }

    /// Stops the server (graceful or fast) and waits until it has closed its cache.
    pub fn stop(mut self, graceful: bool) {
        self.shutdown(if graceful { 1 } else { 2 });
    }

    fn shutdown(&mut self, kind: u8) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(kind);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.shutdown(2);
    }
}

/// An HTTP client that never uses environment proxies and never decompresses for us.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A response reduced to what tests look at.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
}

impl Resp {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }

    pub fn cache_status(&self) -> String {
        self.header("cache-status")
    }

    pub fn is_hit(&self) -> bool {
        self.cache_status().starts_with("knitcache; hit")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

/// Sends `req` and reads the whole response, bounded by `TIMEOUT`.
pub async fn send(req: reqwest::RequestBuilder) -> Resp {
    let resp = tokio::time::timeout(TIMEOUT, req.send())
        .await
        .expect("request timed out")
        .expect("request failed");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = tokio::time::timeout(TIMEOUT, resp.bytes())
        .await
        .expect("body timed out")
        .expect("body failed");
    Resp {
        status,
        headers,
        body,
    }
}

/// GET through `c`.
pub async fn get(c: &reqwest::Client, url: &str) -> Resp {
    send(c.get(url)).await
}

/// Cache settings for tests that open the storage directly: small tiers in `parent/cache`.
pub fn small_cache(parent: &Path, compression: bool) -> knitcache::config::CacheSettings {
    knitcache::config::CacheSettings {
        dir: parent.join("cache"),
        memory_bytes: 8 << 20,
        disk_bytes: 64 << 20,
        max_object_bytes: 1 << 20,
        lock_timeout: Duration::from_secs(5),
        compression: knitcache::config::CompressionSettings {
            enabled: compression,
            level: 6,
        },
        tag_header: None,
    }
}

/// Stores `body` under `key` with `meta` straight through the storage, as a miss's fill does.
pub async fn fill(
    storage: &'static knitcache::cache::HybridStorage,
    key: &pingora_cache::CacheKey,
    meta: &pingora_cache::CacheMeta,
    body: bytes::Bytes,
) {
    use pingora_cache::storage::Storage;
    let span = pingora_cache::trace::Span::inactive().handle();
    let mut miss = storage
        .get_miss_handler(key, meta, &span)
        .await
        .expect("miss handler");
    miss.write_body(body, true).await.expect("write");
    miss.finish().await.expect("finish");
}

/// A temp directory whose `cache` subdirectory is the proxy's disk tier.
pub fn cache_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cache");
    (tmp, dir)
}

/// The value of one sample of the proxy's `/metrics`, e.g.
/// `knitcache_breaker_state` or `knitcache_upstream_refused_total{reason="breaker_open"}`
/// (labels as the exposition writes them); 0 when absent.
pub async fn metric(proxy: &TestProxy, sample: &str) -> f64 {
    scrape(&client(), &proxy.admin_url("/metrics"), sample).await
}

/// One sample of the metrics exposition at `url` (any knitcache's `/metrics`, in this process
/// or not); 0 when absent.
pub async fn scrape(c: &reqwest::Client, url: &str, sample: &str) -> f64 {
    get(c, url)
        .await
        .text()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == sample).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// Polls `cond` every 10 ms until it holds or `TIMEOUT` passes.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls an async condition every 50 ms until it holds or `TIMEOUT` passes.
pub async fn eventually_async<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `/readyz` answers 200 with `erp_healthy: true` (the proxy can serve and the
/// latest ERP health probe succeeded) and returns that answer. Readiness itself does not wait
/// for the ERP; the tests that call this want both.
pub async fn wait_ready(c: &reqwest::Client, proxy: &TestProxy) -> Resp {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let r = get(c, &proxy.admin_url("/readyz")).await;
        let erp_healthy = serde_json::from_slice::<serde_json::Value>(&r.body)
            .is_ok_and(|doc| doc["erp_healthy"] == true);
        if r.status == 200 && erp_healthy {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "proxy never became ready: {} {}",
            r.status,
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `yaml` with the ERP health probe every `ms` milliseconds (and a timeout of the same).
pub fn with_health_interval(yaml: &str, ms: u64) -> String {
    yaml.replace(
        "  write_timeout_ms: 5000\n",
        &format!(
            "  write_timeout_ms: 5000\n  health_interval_ms: {ms}\n  health_timeout_ms: {ms}\n"
        ),
    )
}

/// POST `body` (JSON) to `url`, with a bearer token if given.
pub async fn post_json(c: &reqwest::Client, url: &str, body: &str, token: Option<&str>) -> Resp {
    let mut req = c
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    send(req).await
}

/// The `/stats` document as JSON.
pub async fn stats(c: &reqwest::Client, proxy: &TestProxy) -> serde_json::Value {
    let r = get(c, &proxy.admin_url("/stats")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("/stats is not JSON ({e}): {}", r.text()))
}

/// The `/stats` entry of one route.
pub fn route_stats<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["routes"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("route {name} missing from /stats: {doc}"))
}

/// Reads a response head, through its blank line, from a raw connection (a byte at a time, so
/// nothing after it is consumed).
pub async fn read_head(conn: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(TIMEOUT, conn.read(&mut byte))
            .await
            .expect("timeout")
            .expect("read");
        assert!(
            n == 1,
            "connection closed after: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).to_string()
}
