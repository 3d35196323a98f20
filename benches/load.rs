//! The load suite: how fast is knitcache on the dashboard's real traffic, how does it compare
//! with nginx and Varnish on the same machine, and does it stay within its memory budget?
//!
//! ```text
//! cargo bench --bench load                          # dashboard, zipf, hits, memory (~2 min)
//! cargo bench --bench load -- --scenario compare    # + nginx and Varnish, alternating rounds
//! cargo bench --bench load -- --scenario soak --soak-mins 60
//! cargo bench --bench load -- --scenario broken     # dashboard mix, one endpoint broken
//! cargo bench --bench load -- --scenario cluster    # one node, then three replicas on Redis
//! cargo bench --bench load -- --help
//! ```
//!
//! It starts the ERP simulator (the `erp-sim` binary, built for the same profile) and the
//! release `knitcache` binary as processes of their own (so their RSS and CPU are theirs
//! alone), drives them with `wrk` (Debian's package; the Lua scripts are in `benches/load/`),
//! reads the simulator's counters, and writes a JSON result file plus a table. Everything is on
//! loopback; every run is bounded by `--duration` and every process it started is stopped by
//! its pid when it ends (or panics).
//!
//! Under `cargo test` (no `--bench` flag) it only checks its own parsing and reporting.
//!
//! Baseline (commit 24e4a61, 2-vCPU shared VM, `--scenario compare --duration 5 --rounds 3`,
//! medians; full tables, spreads and the machine in docs/PERFORMANCE.md): 2 KB hits 18.2k req/s
//! = 0.94x nginx, 2.34x Varnish; 100 KB hits 6.9k req/s = 0.70x nginx, 3.56x Varnish.
//! `--scenario callgrind`: 51,180 instructions per 2 KB hit (94,666 at 6d18bcb).

#[path = "load/cluster.rs"]
mod cluster;
#[path = "load/compare.rs"]
mod compare;
#[path = "load/per_route.rs"]
mod per_route;
#[path = "load/report.rs"]
mod report;
#[path = "load/slow_clients.rs"]
mod slow_clients;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use report::{WrkRun, parse_wrk, ratio};
use serde_json::{Value, json};

const USAGE: &str = "\
cargo bench --bench load -- [options]
  --scenario LIST     comma list of dashboard,zipf,hits,memory,soak,compare,callgrind,broken,
                      slow_clients,cluster,
                      all (default: dashboard,zipf,hits,memory)
                      broken: the dashboard mix with one endpoint answering 500 persistently
                      (the simulator's per-path fail switch); per route: refusals, ERP
                      requests per 1,000 client requests
                      slow_clients: 50 clients polling a hit beside --connections
                      connections dribbling request heads
                      cluster: the dashboard mix against one node, then against three
                      replicas sharing a redis-server (--cluster): ERP requests of each,
                      hit latency, invalidation lag
  --broken PATH       the endpoint the broken scenario breaks (default /api/production-planning)
  --duration SECS     length of each measured run (default 10)
  --tabs N            simulated browser tabs for the dashboard mix (default 200)
  --compress K        the dashboard's 30 s refresh divided by K (default 100: every 300 ms)
  --concurrency C     connections of the zipf mix (default 32)
  --keys N            keys of the zipf mix (default 400; the catalogue, then ?kc=i variants)
  --zipf S            zipf exponent (default 1.0)
  --time-scale X      simulator latency multiplier (default 0.1)
  --connections N     connections of the memory check (default 1000)
  --rounds R          rounds of the comparison (default 3)
  --soak-mins M       length of the soak (default 5)
  --knitcache NAME=PATH  a knitcache binary to measure (repeatable; default: this build's)
  --knitcache-threads LIST  comparison: run each knitcache build once per worker-thread count
                      (server.threads), named NAME/tN (default: the shipped config's)
  --targets LIST      comparison targets besides knitcache: nginx,varnish (default both)
  --workloads LIST    workloads of the comparison: 2k,100k,mix (default all three)
  --no-pin            do not pin proxy and wrk to separate cores (compare: --pinning unpinned)
  --origins LIST      origins of the comparison: sim (the ERP simulator), static (nginx serving
                      the simulator's bodies as files, with its default headers) (default sim)
  --pinning LIST      pinnings of the comparison: pinned (proxy on CPU 1, wrk and origin on
                      CPU 0), unpinned (all share every core) (default pinned)
  --out FILE          JSON result file (default target/load/result.json)";

/// The comparison's workloads: all-hit runs of two sizes, and the zipf mix.
const COMPARE_WORKLOADS: [&str; 3] = ["2k", "100k", "mix"];

/// Command line (hand parsed: cargo passes `--bench`, which the suite must accept).
#[derive(Debug, Clone)]
struct Opts {
    scenarios: Vec<String>,
    duration: u64,
    tabs: usize,
    compress: f64,
    concurrency: usize,
    keys: usize,
    zipf: f64,
    time_scale: f64,
    connections: usize,
    rounds: usize,
    soak_mins: f64,
    knitcache: Vec<(String, PathBuf)>,
    /// The comparison runs each knitcache build with each of these `server.threads`.
    knitcache_threads: Option<Vec<usize>>,
    broken: String,
    targets: Vec<String>,
    workloads: Vec<String>,
    pin: bool,
    /// The comparison's origins (`compare::ORIGINS`).
    origins: Vec<String>,
    /// The comparison's pinnings: `true` pinned.
    pinnings: Vec<bool>,
    out: PathBuf,
}

/// The items of a comma list, empty ones dropped.
fn list(v: &str) -> Vec<String> {
    v.split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        scenarios: ["dashboard", "zipf", "hits", "memory"]
            .map(String::from)
            .to_vec(),
        duration: 10,
        tabs: 200,
        compress: 100.0,
        concurrency: 32,
        keys: 400,
        zipf: 1.0,
        time_scale: 0.1,
        connections: 1000,
        rounds: 3,
        soak_mins: 5.0,
        knitcache: Vec::new(),
        knitcache_threads: None,
        broken: "/api/production-planning".into(),
        targets: vec!["nginx".into(), "varnish".into()],
        workloads: COMPARE_WORKLOADS.map(String::from).to_vec(),
        pin: true,
        origins: vec!["sim".into()],
        pinnings: vec![true],
        out: PathBuf::from("target/load/result.json"),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        fn num<T: std::str::FromStr>(a: &str, v: String) -> Result<T, String> {
            v.parse().map_err(|_| format!("{a}: not a number: {v}"))
        }
        match a.as_str() {
            "--bench" => {}
            "--help" | "-h" => return Err(USAGE.into()),
            "--scenario" => {
                o.scenarios = val()?.split(',').map(String::from).collect();
                if o.scenarios.iter().any(|s| s == "all") {
                    o.scenarios = ["dashboard", "zipf", "hits", "memory", "compare"]
                        .map(String::from)
                        .to_vec();
                }
            }
            "--duration" => o.duration = num(a, val()?)?,
            "--tabs" => o.tabs = num(a, val()?)?,
            "--compress" => o.compress = num(a, val()?)?,
            "--concurrency" => o.concurrency = num(a, val()?)?,
            "--keys" => o.keys = num(a, val()?)?,
            "--zipf" => o.zipf = num(a, val()?)?,
            "--time-scale" => o.time_scale = num(a, val()?)?,
            "--connections" => o.connections = num(a, val()?)?,
            "--rounds" => o.rounds = num(a, val()?)?,
            "--soak-mins" => o.soak_mins = num(a, val()?)?,
            "--knitcache" => {
                let v = val()?;
                let (name, path) = v
                    .split_once('=')
                    .ok_or("--knitcache wants NAME=PATH".to_string())?;
                o.knitcache.push((name.into(), PathBuf::from(path)));
            }
            "--broken" => {
                o.broken = val()?;
                if !o.broken.starts_with('/') || o.broken.contains('?') {
                    return Err("--broken wants a path without query, e.g. /api/knit-orders".into());
                }
            }
            "--knitcache-threads" => {
                let counts = list(&val()?)
                    .iter()
                    .map(|n| num::<usize>(a, n.clone()))
                    .collect::<Result<Vec<_>, _>>()?;
                if counts.is_empty() || counts.contains(&0) {
                    return Err("--knitcache-threads wants counts of at least 1, e.g. 1,2".into());
                }
                o.knitcache_threads = Some(counts);
            }
            "--targets" => o.targets = list(&val()?),
            "--workloads" => {
                o.workloads = list(&val()?);
                if let Some(bad) = o
                    .workloads
                    .iter()
                    .find(|w| !COMPARE_WORKLOADS.contains(&w.as_str()))
                {
                    return Err(format!(
                        "--workloads: unknown workload {bad}; choose from {}",
                        COMPARE_WORKLOADS.join(",")
                    ));
                }
            }
            "--no-pin" => {
                o.pin = false;
                o.pinnings = vec![false];
            }
            "--origins" => {
                o.origins = list(&val()?);
                if let Some(bad) = o
                    .origins
                    .iter()
                    .find(|x| !compare::ORIGINS.contains(&x.as_str()))
                {
                    return Err(format!(
                        "--origins: unknown origin {bad}; choose from {}",
                        compare::ORIGINS.join(",")
                    ));
                }
            }
            "--pinning" => {
                o.pinnings = Vec::new();
                for p in list(&val()?) {
                    o.pinnings.push(match p.as_str() {
                        "pinned" => true,
                        "unpinned" => false,
                        other => {
                            return Err(format!(
                                "--pinning: unknown pinning {other}; choose from pinned,unpinned"
                            ));
                        }
                    });
                }
            }
            "--out" => o.out = PathBuf::from(val()?),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    if o.knitcache.is_empty() {
        o.knitcache
            .push(("knitcache".into(), env!("CARGO_BIN_EXE_knitcache").into()));
    }
    if o.origins.is_empty() || o.pinnings.is_empty() {
        return Err("--origins and --pinning need at least one item".into());
    }
    if o.duration == 0 || o.duration > 3600 || o.tabs == 0 || o.concurrency == 0 {
        return Err("duration must be 1..3600 s; tabs and concurrency at least 1".into());
    }
    Ok(o)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench binaries without `--bench`: check, do not load.
        match report::self_check().and_then(|()| per_route::self_check()) {
            Ok(()) => {
                println!("load suite: self-check passed (run it with cargo bench --bench load)")
            }
            Err(e) => {
                eprintln!("load suite self-check failed: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let opts = match parse_opts(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&opts) {
        eprintln!("load suite failed: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A process this suite started; stopped (by pid) when dropped.
struct Proc {
    name: String,
    child: Child,
    signal: Signal,
}

/// The signal a process is stopped with.
#[derive(Debug, Clone, Copy)]
enum Signal {
    Int,
    Term,
}

impl Signal {
    fn number(self) -> libc::c_int {
        match self {
            Signal::Int => libc::SIGINT,
            Signal::Term => libc::SIGTERM,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Signal::Int => "INT",
            Signal::Term => "TERM",
        }
    }
}

impl Proc {
    /// Starts `cmd`; `signal` is how it is asked to stop, also sent by the kernel if this
    /// process dies first (knitcache stops at once on INT; TERM would be graceful, with the
    /// shipped config's 10 s grace period; nginx and varnishd stop on TERM).
    fn spawn(name: &str, mut cmd: Command, log: &Path, signal: Signal) -> Result<Proc, String> {
        use std::os::unix::process::CommandExt;
        let death = signal.number();
        // SAFETY: prctl is async-signal-safe and touches only the calling (child) process.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, death) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let log = fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Proc {
            name: name.into(),
            child,
            signal,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // The polite signal first (nginx and varnishd clean up their children), then KILL.
            let _ = Command::new("kill")
                .arg(format!("-{}", self.signal.name()))
                .arg(self.pid().to_string())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!(
                "{} did not stop on SIG{}; killing it",
                self.name,
                self.signal.name()
            );
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn wait_listening(port: u16, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{what} is not listening on {addr} after 30 s"))
}

/// One HTTP/1.1 GET on loopback (setup and counters only; the load itself is wrk's).
fn http_get(port: u16, path: &str) -> Result<(u16, String, Vec<u8>), String> {
    http_request(port, "GET", path)
}

/// One bodiless HTTP/1.1 request on loopback (setup, counters, the simulator's switches).
fn http_request(port: u16, method: &str, path: &str) -> Result<(u16, String, Vec<u8>), String> {
    http_request_with_body(port, method, path, "")
}

/// One HTTP/1.1 request on loopback with a JSON `body` (none for a GET).
fn http_request_with_body(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String, Vec<u8>), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let length = if method == "GET" {
        String::new()
    } else if body.is_empty() {
        "Content-Length: 0\r\n".to_owned()
    } else {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        )
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{length}Connection: close\r\n\r\n{body}"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(format!("{method} {path}: no header end"))?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(format!("{method} {path}: no status"))?;
    Ok((status, head, buf[split + 4..].to_vec()))
}

fn sim_total(port: u16) -> Result<u64, String> {
    let (_, _, body) = http_get(port, "/__sim/counters")?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| format!("sim counters: {e}"))?;
    v["total"].as_u64().ok_or("sim counters: no total".into())
}

fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    report::parse_status_rss(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

fn reset_hwm(pid: u32) {
    // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    let _ = fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// User and system CPU seconds of `pid` and all its descendants.
fn tree_cpu(pid: u32) -> (f64, f64) {
    let mut stats: Vec<(u32, u32, (f64, f64))> = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // fields after the ")" that ends the command name: state ppid ... utime(12) stime(13)
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ppid = f.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            let secs =
                |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
            stats.push((p, ppid, (secs(11), secs(12))));
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(stats.iter().filter(|s| s.1 == parent).map(|s| s.0));
        i += 1;
    }
    stats
        .iter()
        .filter(|s| tree.contains(&s.0))
        .fold((0.0, 0.0), |(u, k), s| (u + s.2.0, k + s.2.1))
}

/// Busy CPU seconds of the whole machine so far (from /proc/stat).
fn machine_busy_s() -> f64 {
    let Ok(stat) = fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(cpu) = stat.lines().next() else {
        return 0.0;
    };
    let v: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait
    let busy: f64 =
        v.iter().take(8).sum::<f64>() - v.get(3).unwrap_or(&0.0) - v.get(4).unwrap_or(&0.0);
    busy / 100.0
}

/// Waits (up to 20 s) until other work on the machine uses less than half a core.
fn wait_quiet() -> f64 {
    let mut load = 0.0;
    for _ in 0..40 {
        let a = machine_busy_s();
        std::thread::sleep(Duration::from_millis(500));
        load = (machine_busy_s() - a) / 0.5;
        if load < 0.5 {
            break;
        }
    }
    load
}

// ---------------------------------------------------------------------------------------------
// The world: simulator + proxies

struct World {
    dir: PathBuf,
    bench_dir: PathBuf,
    sim: Proc,
    sim_port: u16,
    /// The origin proxies are started in front of: the simulator, or the comparison's static
    /// origin while one of its cells runs.
    upstream: AtomicU16,
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn pinned(pin: bool, cpu: &str, program: &Path) -> Command {
    if pin {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(cpu).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl World {
    fn start(opts: &Opts) -> Result<World, String> {
        let base = workspace().join("target/load");
        let dir = base.join(format!("run-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let sim_port = free_port()?;
        let sim_bin =
            erp_sim::binary::built().map_err(|e| format!("the ERP simulator's binary: {e}"))?;
        let mut cmd = pinned(opts.pin, "0", &sim_bin);
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{sim_port}"))
            .arg("--time-scale")
            .arg(opts.time_scale.to_string());
        let sim = Proc::spawn("erp-sim", cmd, &dir.join("erp-sim.log"), Signal::Int)?;
        wait_listening(sim_port, "the ERP simulator")?;
        Ok(World {
            dir,
            bench_dir: workspace().join("benches/load"),
            sim,
            sim_port,
            upstream: AtomicU16::new(sim_port),
        })
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.sim.stop();
        // Cache directories can be large; logs stay for reading.
        if let Ok(d) = fs::read_dir(&self.dir) {
            for e in d.flatten() {
                if e.path().is_dir() {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

/// A proxy under test: knitcache, nginx or Varnish, on its own port.
struct Target {
    name: String,
    kind: &'static str,
    port: u16,
    /// knitcache's admin listener (`/metrics`).
    admin: Option<u16>,
    proc: Proc,
}

/// The shipped config, with run files of this run's own (two proxies must not share them).
fn knitcache_conf(w: &World, name: &str) -> Result<PathBuf, String> {
    let shipped = fs::read_to_string(workspace().join("config/knitcache.yaml"))
        .map_err(|e| format!("config/knitcache.yaml: {e}"))?;
    let conf = shipped
        .replace(
            "/tmp/knitcache.pid",
            &w.dir.join(format!("{name}.pid")).display().to_string(),
        )
        .replace(
            "/tmp/knitcache_upgrade.sock",
            &w.dir.join(format!("{name}.sock")).display().to_string(),
        );
    let conf_path = w.dir.join(format!("{name}.yaml"));
    fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
    Ok(conf_path)
}

/// `knitcache run`'s arguments for a proxy of the suite: the config, loopback ports, the
/// simulator as its ERP, and its own cache directory; quiet but for warnings.
fn run_args(cmd: &mut Command, w: &World, conf: &Path, port: u16, admin: u16, cache_dir: &Path) {
    cmd.args(["--log", "warn", "run", "-c"])
        .arg(conf)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--upstream")
        .arg(format!("127.0.0.1:{}", w.upstream.load(Ordering::Relaxed)))
        .arg("--admin-listen")
        .arg(format!("127.0.0.1:{admin}"))
        .arg("--cache-dir")
        .arg(cache_dir);
}

fn start_knitcache(w: &World, opts: &Opts, name: &str, bin: &Path) -> Result<Target, String> {
    start_knitcache_with(w, opts, name, bin, &[])
}

/// `start_knitcache`, with `extra` arguments after `run`'s usual ones (`--cluster URL`).
fn start_knitcache_with(
    w: &World,
    opts: &Opts,
    name: &str,
    bin: &Path,
    extra: &[String],
) -> Result<Target, String> {
    let conf_path = knitcache_conf(w, name)?;
    start_knitcache_at(w, opts, name, bin, &conf_path, extra)
}

/// `start_knitcache_with`, with the config at `conf_path`.
fn start_knitcache_at(
    w: &World,
    opts: &Opts,
    name: &str,
    bin: &Path,
    conf_path: &Path,
    extra: &[String],
) -> Result<Target, String> {
    let port = free_port()?;
    let admin = free_port()?;
    let cache_dir = w.dir.join(format!("cache-{name}"));
    let _ = fs::remove_dir_all(&cache_dir);
    let mut cmd = pinned(opts.pin, "1", bin);
    run_args(&mut cmd, w, conf_path, port, admin, &cache_dir);
    cmd.args(extra);
    let proc = Proc::spawn(name, cmd, &w.dir.join(format!("{name}.log")), Signal::Int)?;
    wait_listening(port, name)?;
    Ok(Target {
        name: name.into(),
        kind: "knitcache",
        port,
        admin: Some(admin),
        proc,
    })
}

fn start_nginx(w: &World, opts: &Opts) -> Result<Target, String> {
    let port = free_port()?;
    let prefix = w.dir.join("nginx");
    fs::create_dir_all(prefix.join("cache")).map_err(|e| e.to_string())?;
    let template = fs::read_to_string(w.bench_dir.join("nginx.conf"))
        .map_err(|e| format!("benches/load/nginx.conf: {e}"))?;
    let conf = template
        .replace("@PREFIX@", &prefix.display().to_string())
        .replace("@PORT@", &port.to_string())
        .replace(
            "@UPSTREAM@",
            &format!("127.0.0.1:{}", w.upstream.load(Ordering::Relaxed)),
        );
    let proc = spawn_nginx(w, opts, "1", &prefix, &conf, "nginx", port)?;
    Ok(Target {
        name: "nginx".into(),
        kind: "nginx",
        port,
        admin: None,
        proc,
    })
}

/// Runs nginx in the foreground with `conf` (written into `prefix`), pinned to `cpu` when the
/// run pins, and waits for it on `port`; `name` names it and its log.
fn spawn_nginx(
    w: &World,
    opts: &Opts,
    cpu: &str,
    prefix: &Path,
    conf: &str,
    name: &str,
    port: u16,
) -> Result<Proc, String> {
    let conf_path = prefix.join("nginx.conf");
    fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
    let mut cmd = pinned(opts.pin, cpu, Path::new("nginx"));
    cmd.arg("-p")
        .arg(prefix)
        .arg("-c")
        .arg(&conf_path)
        .args(["-g", "daemon off;"]);
    let log = w.dir.join(format!("{}.log", name.replace(' ', "-")));
    let proc = Proc::spawn(name, cmd, &log, Signal::Term)?;
    wait_listening(port, name)?;
    Ok(proc)
}

fn start_varnish(w: &World, opts: &Opts) -> Result<Target, String> {
    let port = free_port()?;
    let work = w.dir.join("varnish");
    fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let template = fs::read_to_string(w.bench_dir.join("varnish.vcl"))
        .map_err(|e| format!("benches/load/varnish.vcl: {e}"))?;
    let vcl = template.replace(
        "@UPSTREAM_PORT@",
        &w.upstream.load(Ordering::Relaxed).to_string(),
    );
    let vcl_path = work.join("default.vcl");
    fs::write(&vcl_path, vcl).map_err(|e| e.to_string())?;
    let mut cmd = pinned(opts.pin, "1", Path::new("varnishd"));
    // -F: foreground (our child); -j none: no privilege separation in a scratch directory.
    cmd.args(["-F", "-j", "none", "-a"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-f")
        .arg(&vcl_path)
        .args(["-s", "malloc,256m", "-n"])
        .arg(&work);
    let proc = Proc::spawn("varnish", cmd, &w.dir.join("varnish.log"), Signal::Term)?;
    wait_listening(port, "varnish")?;
    Ok(Target {
        name: "varnish".into(),
        kind: "varnish",
        port,
        admin: None,
        proc,
    })
}

// ---------------------------------------------------------------------------------------------
// Workloads

/// The dashboard's refresh sets (docs/ERP.md §9, rollback mode: the handlers answer), one per
/// tab kind, in the order the dashboard sends them.
const TABS: &[(&str, &[&str])] = &[
    (
        "overview",
        &[
            "/api/comprehensive-kpis",
            "/api/v2/yarn?analysis=intelligence",
            "/api/inventory-intelligence-enhanced?realtime=true",
        ],
    ),
    (
        "production",
        &[
            "/api/production-planning",
            "/api/production-pipeline",
            "/api/knit-orders",
            "/api/knit-orders-styles",
            "/api/po-risk-analysis",
            "/api/ml-forecast-detailed",
            "/api/production-suggestions",
        ],
    ),
    (
        "inventory",
        &[
            "/api/v2/yarn?analysis=intelligence",
            "/api/v2/yarn?analysis=intelligence",
            "/api/v2/yarn?analysis=intelligence",
            "/api/yarn-intelligence?forecast=true&analysis=shortage",
            "/api/v2/yarn?view=substitutions",
            "/api/v2/inventory?analysis=intelligence&realtime=true",
        ],
    ),
    (
        "ml",
        &[
            "/api/ml-forecast-detailed?detail=summary",
            "/api/fabric-forecast-integrated",
        ],
    ),
];

/// The read catalogue for the zipf mix, most requested first: the dashboard's polls, then the
/// other reads of docs/ERP.md §3 and §9.
const CATALOGUE: &[&str] = &[
    "/api/comprehensive-kpis",
    "/api/v2/yarn?analysis=intelligence",
    "/api/inventory-intelligence-enhanced?realtime=true",
    "/api/production-planning",
    "/api/factory-floor-ai-dashboard",
    "/api/ml-forecast-detailed?detail=summary",
    "/api/knit-orders",
    "/api/production-pipeline",
    "/api/yarn-intelligence",
    "/api/po-risk-analysis",
    "/api/production-suggestions",
    "/api/knit-orders-styles",
    "/api/ml-forecast-detailed",
    "/api/fabric-forecast-integrated",
    "/api/yarn-intelligence?forecast=true&analysis=shortage",
    "/api/v2/inventory?analysis=intelligence&realtime=true",
    "/api/planning-phases",
    "/api/executive-insights",
    "/api/supplier-intelligence",
    "/api/supplier-risk-scoring",
    "/api/machine-assignment-suggestions",
    "/api/bom-explosion-net-requirements",
    "/api/yarn-requirements-calculation",
    "/api/ml-forecast-detailed?format=report",
    "/api/production-planning?view=orders&forecast=true",
    "/api/knit-orders-analysis",
    "/api/ai/inventory-intelligence",
    "/ai-factory-floor",
    "/favicon.ico",
    "/api/v2/production?view=planning",
    "/api/v2/yarn?action=intelligence",
    "/api/pipeline/yarn-shortages",
];

/// The zipf plan: `keys` keys (the catalogue, then `?kc=i` variants of it), weighted 1/rank^s.
fn zipf_plan(keys: usize, s: f64) -> String {
    zipf_plan_over(CATALOGUE, keys, s)
}

/// The zipf plan over `paths`: `keys` keys (`paths`, then `?kc=i` variants of them).
fn zipf_plan_over(paths: &[&str], keys: usize, s: f64) -> String {
    let weights = report::zipf_weights(keys, s);
    let mut plan = String::new();
    for (i, w) in weights.iter().enumerate() {
        let base = paths[i % paths.len()];
        let path = if i < paths.len() {
            base.to_string()
        } else {
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}kc={i}")
        };
        plan.push_str(&format!("zipf {w:.9} {path}\n"));
    }
    plan
}

fn dashboard_plan(compress: f64) -> String {
    let period_ms = (30_000.0 / compress).round().max(1.0) as u64;
    TABS.iter()
        .map(|(_, paths)| format!("tab {period_ms} {}\n", paths.join(" ")))
        .collect()
}

struct WrkSpec<'a> {
    port: u16,
    path: &'a str,
    threads: usize,
    connections: usize,
    duration: u64,
    /// `mix.lua` with this plan, or `plain.lua` when `None`.
    plan: Option<&'a Path>,
}

fn run_wrk(w: &World, opts: &Opts, spec: &WrkSpec) -> Result<WrkRun, String> {
    let mut cmd = pinned(opts.pin, "0", Path::new("wrk"));
    let script = if spec.plan.is_some() {
        "mix.lua"
    } else {
        "plain.lua"
    };
    cmd.arg("-t")
        .arg(spec.threads.to_string())
        .arg("-c")
        .arg(spec.connections.to_string())
        .arg("-d")
        .arg(format!("{}s", spec.duration))
        .args(["--timeout", "10s", "-s"])
        .arg(w.bench_dir.join(script))
        .arg(format!("http://127.0.0.1:{}{}", spec.port, spec.path));
    if let Some(plan) = spec.plan {
        cmd.env("KC_PLAN", plan);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run wrk (apt-get install wrk): {e}"))?;
    if !out.status.success() {
        let stdout = String::from_utf8_lossy(&out.stdout);
        return Err(format!(
            "wrk failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            &stdout[stdout.len().saturating_sub(2000)..]
        ));
    }
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

fn write_plan(w: &World, name: &str, plan: &str) -> Result<PathBuf, String> {
    let p = w.dir.join(format!("{name}.plan"));
    fs::write(&p, plan).map_err(|e| e.to_string())?;
    Ok(p)
}

fn pct_json(p: &report::Percentiles) -> Value {
    json!({"p50_us": p.p50, "p95_us": p.p95, "p99_us": p.p99, "p999_us": p.p999})
}

/// A mixed run against knitcache: requests, latency by cache result, hit ratio, ERP saved.
fn mixed_report(run: &WrkRun, erp_requests: u64, rss: Option<(u64, u64)>) -> Value {
    let client = run.requests;
    json!({
        "requests": client,
        "rps": run.rps(),
        "hit_ratio": run.hit_ratio(),
        "hits": run.hits, "misses": run.misses, "other": run.other,
        "status": {"2xx": run.status[0], "3xx": run.status[1], "4xx": run.status[2], "5xx": run.status[3]},
        "socket_errors": run.socket_errors,
        "latency_all": pct_json(&run.latency),
        "latency_hit": pct_json(&run.hist_hit.percentiles()),
        "latency_miss": pct_json(&run.hist_miss.percentiles()),
        "erp_requests": erp_requests,
        "erp_saved": client.saturating_sub(erp_requests),
        "erp_saved_ratio": 1.0 - ratio(erp_requests as f64, client as f64),
        "rss_kib": rss.map(|r| r.0), "peak_rss_kib": rss.map(|r| r.1),
    })
}

fn print_mixed(name: &str, v: &Value) {
    let us = |k: &str, p: &str| v[k][p].as_f64().unwrap_or(0.0);
    println!(
        "\n{name}: {:.0} req/s, hit ratio {:.2} %, ERP asked {} of {} ({:.2} % saved), peak RSS {:.1} MiB",
        v["rps"].as_f64().unwrap_or(0.0),
        v["hit_ratio"].as_f64().unwrap_or(0.0) * 100.0,
        v["erp_requests"],
        v["requests"],
        v["erp_saved_ratio"].as_f64().unwrap_or(0.0) * 100.0,
        v["peak_rss_kib"].as_f64().unwrap_or(0.0) / 1024.0
    );
    let own = |k: &str| v["own_hit_time"][k].as_f64().unwrap_or(0.0) * 100.0;
    println!(
        "knitcache's own time per hit (request read to response written): {:.2} % within 0.5 ms, {:.2} % within 1 ms",
        own("within_0_5_ms"),
        own("within_1_ms")
    );
    println!("| latency (ms) | p50 | p95 | p99 | p99.9 |\n| --- | --- | --- | --- | --- |");
    for (label, k) in [
        ("hits", "latency_hit"),
        ("misses", "latency_miss"),
        ("all (wrk)", "latency_all"),
    ] {
        println!(
            "| {label} | {:.3} | {:.3} | {:.3} | {:.3} |",
            us(k, "p50_us") / 1e3,
            us(k, "p95_us") / 1e3,
            us(k, "p99_us") / 1e3,
            us(k, "p999_us") / 1e3
        );
    }
}

/// The `paths` the server on `port` answers 200, in order.
fn cacheable<'a>(port: u16, paths: &[&'a str]) -> Result<Vec<&'a str>, String> {
    let mut ok = Vec::new();
    for p in paths {
        if http_get(port, p)?.0 == 200 {
            ok.push(*p);
        }
    }
    if ok.is_empty() {
        return Err("the ERP simulator answered no catalogue key with 200".into());
    }
    Ok(ok)
}

fn warm(port: u16, paths: &[&str]) -> Result<(), String> {
    for p in paths {
        http_get(port, p)?;
    }
    Ok(())
}

fn scenario_mixed(w: &World, opts: &Opts, which: &str) -> Result<Value, String> {
    let (name, bin) = &opts.knitcache[0];
    let t = start_knitcache(w, opts, name, bin)?;
    let (plan, threads) = match which {
        "dashboard" | "broken" => (dashboard_plan(opts.compress), opts.tabs),
        _ => (zipf_plan(opts.keys, opts.zipf), opts.concurrency),
    };
    let plan_path = write_plan(w, which, &plan)?;
    let spec = |duration| WrkSpec {
        port: t.port,
        path: "/",
        threads,
        connections: threads,
        duration,
        plan: Some(&plan_path),
    };
    let broken = if which == "broken" {
        Some(Broken::start(w, opts, name)?)
    } else {
        None
    };
    // Cold start first (every key misses once, slow ones queue in the ERP), measured apart:
    // the figures below are the steady state a dashboard sees all day.
    let before = sim_total(w.sim_port)?;
    let cold = run_wrk(w, opts, &spec(opts.duration.div_ceil(2).max(3)))?;
    let cold_erp = sim_total(w.sim_port)? - before;
    wait_quiet();
    reset_hwm(t.proc.pid());
    let before = sim_total(w.sim_port)?;
    let admin = t.admin.ok_or("knitcache has an admin listener")?;
    let own_before = own_hit_times(admin)?;
    let routes_before = broken
        .as_ref()
        .map(|_| route_snapshot(w, admin))
        .transpose()?;
    let run = run_wrk(w, opts, &spec(opts.duration))?;
    let routes_after = broken
        .as_ref()
        .map(|_| route_snapshot(w, admin))
        .transpose()?;
    let own = own_hit_times(admin)?.since(&own_before);
    let erp = sim_total(w.sim_port)? - before;
    let mut v = mixed_report(&run, erp, rss_kib(t.proc.pid()));
    v["own_hit_time"] = own.json();
    v["cold_start"] = json!({
        "duration_s": cold.duration_s, "requests": cold.requests, "erp_requests": cold_erp,
        "hit_ratio": cold.hit_ratio(), "latency_all": pct_json(&cold.latency),
    });
    v["knitcache"] = json!(name);
    v["duration_s"] = json!(opts.duration);
    if let (Some(b), Some(before), Some(after)) = (&broken, routes_before, routes_after) {
        v["broken"] = b.finish(w, &before, &after)?;
    }
    if which == "dashboard" || which == "broken" {
        v["tabs"] = json!(opts.tabs);
        v["refresh_ms"] = json!((30_000.0 / opts.compress).round());
    } else {
        v["connections"] = json!(opts.concurrency);
        v["keys"] = json!(opts.keys);
        v["zipf_s"] = json!(opts.zipf);
    }
    print_mixed(which, &v);
    Ok(v)
}

/// The proxy's per-route counts (`/stats`) and the ERP's per-path counts at one moment.
type RouteSnapshot = (BTreeMap<String, (u64, u64)>, BTreeMap<String, u64>);

fn route_snapshot(w: &World, admin: u16) -> Result<RouteSnapshot, String> {
    let json = |port: u16, path: &str| -> Result<Value, String> {
        let (status, _, body) = http_get(port, path)?;
        if status != 200 {
            return Err(format!("GET {path}: {status}"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("{path}: {e}"))
    };
    Ok((
        per_route::stats_counts(&json(admin, "/stats")?)?,
        per_route::sim_paths(&json(w.sim_port, "/__sim/counters")?)?,
    ))
}

/// The broken scenario's endpoint: broken through the simulator's control API for the run,
/// mended after it, and the per-route accounting of the measured run.
struct Broken {
    path: String,
    /// The proxy's route table, to name the route of each ERP path.
    config: knitcache::config::Config,
}

impl Broken {
    fn start(w: &World, opts: &Opts, proxy: &str) -> Result<Broken, String> {
        let conf = w.dir.join(format!("{proxy}.yaml"));
        let config =
            knitcache::config::load(&conf).map_err(|e| format!("{}: {e}", conf.display()))?;
        let path = opts.broken.clone();
        let (status, _, body) = http_request(
            w.sim_port,
            "POST",
            &format!("/__sim/fail?path={path}&status=500"),
        )?;
        if status != 200 {
            return Err(format!(
                "the simulator refused to break {path}: {status} {}",
                String::from_utf8_lossy(&body)
            ));
        }
        Ok(Broken { path, config })
    }

    fn route_of(&self, path: &str) -> String {
        self.config
            .route_for(&http::Method::GET, path)
            .map_or(knitcache::proxy::CATCH_ALL_ROUTE, |(_, r)| r.name.as_str())
            .to_owned()
    }

    /// Mends the endpoint, prints the per-route table and returns it as JSON.
    fn finish(
        &self,
        w: &World,
        before: &RouteSnapshot,
        after: &RouteSnapshot,
    ) -> Result<Value, String> {
        http_request(
            w.sim_port,
            "POST",
            &format!("/__sim/normal?path={}", self.path),
        )?;
        let rows = per_route::rows(&before.0, &after.0, &before.1, &after.1, |p| {
            self.route_of(p)
        });
        let route = self.route_of(&self.path);
        let healthy_refused: u64 = rows
            .iter()
            .filter(|r| r.route != route)
            .map(|r| r.refused)
            .sum();
        println!(
            "
broken endpoint {} (route {route}, 500 on every ERP request): refusals on the other routes: {healthy_refused}",
            self.path
        );
        print!("{}", per_route::table(&rows, &route));
        Ok(json!({
            "path": self.path, "route": route, "healthy_refused": healthy_refused,
            "per_route": per_route::rows_json(&rows),
        }))
    }
}

/// knitcache's own time for hits, from its `knitcache_request_duration_seconds` histogram
/// (request read to response written, summed over routes): how many, and how many within
/// 0.5 ms and 1 ms. A client's latency adds its own scheduling and the network to this.
#[derive(Default)]
struct OwnHitTimes {
    count: f64,
    within_half_ms: f64,
    within_1_ms: f64,
}

fn own_hit_times(admin: u16) -> Result<OwnHitTimes, String> {
    let (status, _, body) = http_get(admin, "/metrics")?;
    if status != 200 {
        return Err(format!("/metrics answered {status}"));
    }
    let mut t = OwnHitTimes::default();
    for line in String::from_utf8_lossy(&body).lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        if !series.starts_with("knitcache_request_duration_seconds")
            || !series.contains("cache=\"hit\"")
        {
            continue;
        }
        let value: f64 = value.parse().unwrap_or(0.0);
        if series.starts_with("knitcache_request_duration_seconds_count") {
            t.count += value;
        } else if series.contains("le=\"0.0005\"") {
            t.within_half_ms += value;
        } else if series.contains("le=\"0.001\"") {
            t.within_1_ms += value;
        }
    }
    Ok(t)
}

impl OwnHitTimes {
    fn since(&self, before: &OwnHitTimes) -> OwnHitTimes {
        OwnHitTimes {
            count: self.count - before.count,
            within_half_ms: self.within_half_ms - before.within_half_ms,
            within_1_ms: self.within_1_ms - before.within_1_ms,
        }
    }

    fn json(&self) -> Value {
        json!({
            "hits": self.count,
            "within_0_5_ms": ratio(self.within_half_ms, self.count),
            "within_1_ms": ratio(self.within_1_ms, self.count),
        })
    }
}

/// The two body sizes of the hit runs: paths of the simulator that answer ~2 KB and ~100 KB.
const HIT_PATHS: &[(&str, &str)] = &[
    ("2k", "/api/factory-floor-ai-dashboard"),
    ("100k", "/api/knit-orders"),
];
/// wrk shape of the hit runs: one thread, 50 connections (docs/PERFORMANCE.md, `hits`).
const HIT_CONNECTIONS: usize = 50;

struct HitRun {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_s: f64,
    /// The proxy's user and system CPU per hit, microseconds.
    user_us: f64,
    system_us: f64,
    hits_per_cpu_s: f64,
    foreign_cpu_s: f64,
    errors: u64,
}

fn hit_run(
    w: &World,
    opts: &Opts,
    t: &Target,
    path: &str,
    duration: u64,
) -> Result<HitRun, String> {
    let quiet = wait_quiet();
    if quiet >= 0.5 {
        eprintln!("  (machine busy: {quiet:.2} CPUs in use by others)");
    }
    let spec = WrkSpec {
        port: t.port,
        path,
        threads: 1,
        connections: HIT_CONNECTIONS,
        duration,
        plan: None,
    };
    measured_run(w, opts, t, &spec)
}

/// One wrk run against `t`, with the CPU time the proxy and the rest of the machine took.
fn measured_run(w: &World, opts: &Opts, t: &Target, spec: &WrkSpec) -> Result<HitRun, String> {
    let (user0, system0) = tree_cpu(t.proc.pid());
    let busy0 = machine_busy_s();
    let run = run_wrk(w, opts, spec)?;
    let (user1, system1) = tree_cpu(t.proc.pid());
    let (user, system) = (user1 - user0, system1 - system0);
    let cpu = user + system;
    let busy = machine_busy_s() - busy0;
    let per_hit_us = |secs: f64| ratio(secs * 1e6, run.requests as f64);
    Ok(HitRun {
        rps: run.rps(),
        p50_us: run.latency.p50,
        p99_us: run.latency.p99,
        cpu_s: cpu,
        user_us: per_hit_us(user),
        system_us: per_hit_us(system),
        hits_per_cpu_s: ratio(run.requests as f64, cpu),
        // what neither the proxy nor wrk (about one core at most) used
        foreign_cpu_s: (busy - cpu - spec.duration as f64).max(0.0),
        errors: run.socket_errors + run.bad_status,
    })
}

fn is_hit(kind: &str, head: &str) -> bool {
    let h = head.to_ascii_lowercase();
    match kind {
        "knitcache" => h.contains("cache-status: knitcache; hit"),
        "nginx" => h.contains("x-cache-status: hit"),
        // a hit carries two transaction ids in X-Varnish
        _ => h
            .lines()
            .any(|l| l.starts_with("x-varnish:") && l.split_whitespace().count() == 3),
    }
}

fn warm_hit(t: &Target, path: &str) -> Result<(), String> {
    for _ in 0..20 {
        let (status, head, _) = http_get(t.port, path)?;
        if status < 400 && is_hit(t.kind, &head) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("{}: {path} never became a hit", t.name))
}

fn scenario_hits(w: &World, opts: &Opts) -> Result<Value, String> {
    let (name, bin) = &opts.knitcache[0];
    let t = start_knitcache(w, opts, name, bin)?;
    let mut out = serde_json::Map::new();
    println!(
        "\nhits (wrk -t1 -c{HIT_CONNECTIONS}, {} s each):",
        opts.duration
    );
    println!(
        "| size | req/s | p50 ms | p99 ms | hits per proxy CPU-s | user us/hit | system us/hit |\n| --- | --- | --- | --- | --- | --- | --- |"
    );
    for (size, path) in HIT_PATHS {
        warm_hit(&t, path)?;
        let r = hit_run(w, opts, &t, path, opts.duration)?;
        println!(
            "| {size} | {:.0} | {:.3} | {:.3} | {:.0} | {:.1} | {:.1} |",
            r.rps,
            r.p50_us / 1e3,
            r.p99_us / 1e3,
            r.hits_per_cpu_s,
            r.user_us,
            r.system_us
        );
        out.insert(
            (*size).into(),
            json!({"rps": r.rps, "p50_us": r.p50_us, "p99_us": r.p99_us, "proxy_cpu_s": r.cpu_s,
                   "user_us_per_hit": r.user_us, "system_us_per_hit": r.system_us,
                   "hits_per_cpu_s": r.hits_per_cpu_s, "errors": r.errors}),
        );
    }
    Ok(Value::Object(out))
}

/// How long the memory scenario waits after its load before reading RSS again.
const SETTLE_SECS: u64 = 5;

/// Memory budget: idle RSS after start, then a full memory tier and `--connections`
/// connections; peak RSS must stay within the memory tier + 64 MiB.
fn scenario_memory(w: &World, opts: &Opts) -> Result<Value, String> {
    let (name, bin) = &opts.knitcache[0];
    let t = start_knitcache(w, opts, name, bin)?;
    let pid = t.proc.pid();
    std::thread::sleep(Duration::from_secs(2));
    let idle = rss_kib(pid).map_or(0, |r| r.0);
    let memory_mib = 128u64; // config/knitcache.yaml, cache.memory_mib
    // Fill: 100 KB bodies under distinct keys, 1.5x the memory tier.
    let fill = (memory_mib * 1024 * 3 / 2 / 100) as usize;
    let fill_plan: String = (0..fill)
        .map(|i| format!("zipf 1 /api/knit-orders?fill={i}\n"))
        .collect();
    let started = Instant::now();
    // Random draws over the fill keys until (nearly) all are stored: a bounded wrk run.
    let fill_path = write_plan(w, "fill", &fill_plan)?;
    let fill_run = run_wrk(
        w,
        opts,
        &WrkSpec {
            port: t.port,
            path: "/",
            threads: 8,
            connections: 8,
            duration: (opts.duration * 2).max(20),
            plan: Some(&fill_path),
        },
    )?;
    let filled = rss_kib(pid).map_or(0, |r| r.0);
    let budget_kib = (memory_mib + 64) * 1024;
    // Two loads with `--connections` connections on the full tier. The budget's: the zipf mix,
    // the working set of a busy dashboard, served from the tier. The stress beyond it: the same
    // plus uniform draws over all the fill keys, a third of which are only on disk, so every
    // few requests one is read back into the memory tier and evicts another (thousands a
    // second) while responses of evicted entries are still being written.
    let working_set = zipf_plan(opts.keys, opts.zipf);
    let mut promotions = working_set.clone();
    promotions.push_str(&fill_plan.replace("zipf 1 ", "zipf 0.01 "));
    let mut phases = serde_json::Map::new();
    let mut summary = Vec::new();
    for (phase, plan) in [("working_set", working_set), ("promotions", promotions)] {
        let plan_path = write_plan(w, &format!("memory-{phase}"), &plan)?;
        reset_hwm(pid);
        // mix.lua pairs request and response per thread; with many connections per thread
        // the latency split is meaningless, but counts, RSS and wrk's own percentiles hold.
        let run = run_wrk(
            w,
            opts,
            &WrkSpec {
                port: t.port,
                path: "/",
                threads: 2,
                connections: opts.connections,
                duration: opts.duration,
                plan: Some(&plan_path),
            },
        )?;
        let (rss, peak) = rss_kib(pid).unwrap_or((0, 0));
        // What an operator sees once a burst is over: freed memory should go back to the
        // kernel without further traffic.
        std::thread::sleep(Duration::from_secs(SETTLE_SECS));
        let settled = rss_kib(pid).map_or(0, |r| r.0);
        phases.insert(
            phase.into(),
            json!({
                "load_rps": run.rps(),
                "load_socket_errors": run.socket_errors,
                "load_hit_ratio": run.hit_ratio(),
                "rss_after_load_kib": rss,
                "rss_settled_kib": settled,
                "peak_rss_kib": peak,
                "peak_ok": peak <= budget_kib,
            }),
        );
        summary.push(format!(
            "{phase}: peak {:.1} MiB ({}), {:.0} req/s, {:.1} MiB {SETTLE_SECS} s after",
            peak as f64 / 1024.0,
            if peak <= budget_kib { "ok" } else { "OVER" },
            run.rps(),
            settled as f64 / 1024.0,
        ));
    }
    let budget_ok = phases["working_set"]["peak_ok"].as_bool() == Some(true);
    let v = json!({
        "memory_tier_mib": memory_mib,
        "idle_rss_kib": idle,
        "idle_ok": idle < 64 * 1024,
        "fill_requests": fill_run.requests,
        "fill_secs": started.elapsed().as_secs_f64(),
        "rss_after_fill_kib": filled,
        "connections": opts.connections,
        "budget_kib": budget_kib,
        "settle_secs": SETTLE_SECS,
        "phases": phases,
        "peak_ok": budget_ok,
    });
    println!(
        "\nmemory: idle {:.1} MiB (limit 64: {}), after fill {:.1} MiB; {} connections, budget {} MiB: {}",
        idle as f64 / 1024.0,
        if idle < 64 * 1024 { "ok" } else { "OVER" },
        filled as f64 / 1024.0,
        opts.connections,
        memory_mib + 64,
        summary.join("; ")
    );
    Ok(v)
}

/// Soak: the zipf mix in back-to-back runs for `--soak-mins`, RSS sampled after each run; the
/// first fifth is warm-up.
fn scenario_soak(w: &World, opts: &Opts) -> Result<Value, String> {
    let (name, bin) = &opts.knitcache[0];
    let t = start_knitcache(w, opts, name, bin)?;
    let pid = t.proc.pid();
    let plan_path = write_plan(w, "soak", &zipf_plan(opts.keys, opts.zipf))?;
    let total = Duration::from_secs_f64(opts.soak_mins * 60.0);
    let slice = opts.duration.min(60);
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut requests = 0u64;
    let mut errors = 0u64;
    while started.elapsed() + Duration::from_secs(slice) <= total || samples.is_empty() {
        let run = run_wrk(
            w,
            opts,
            &WrkSpec {
                port: t.port,
                path: "/",
                threads: opts.concurrency.min(64),
                connections: opts.concurrency.min(64),
                duration: slice,
                plan: Some(&plan_path),
            },
        )?;
        requests += run.requests;
        errors += run.socket_errors;
        let rss = rss_kib(pid).map_or(0, |r| r.0);
        samples.push(rss);
        println!(
            "  soak {:>6.0} s: {:.0} req/s, RSS {:.1} MiB",
            started.elapsed().as_secs_f64(),
            run.rps(),
            rss as f64 / 1024.0
        );
    }
    let warmup = samples.len() / 5;
    let (drift, max_drift) = report::drift(&samples, warmup).unwrap_or((0.0, 0.0));
    println!(
        "\nsoak: {} runs of {slice} s, {requests} requests, RSS drift after warm-up {drift:+.2} % (max {max_drift:+.2} %)",
        samples.len()
    );
    Ok(json!({
        "minutes": opts.soak_mins, "slice_s": slice, "requests": requests, "socket_errors": errors,
        "rss_samples_kib": samples, "warmup_samples": warmup,
        "drift_pct": drift, "max_drift_pct": max_drift, "flat": drift.abs() < 2.0,
    }))
}

/// Side by side: every target started once, then per round and per workload each target in
/// rotating order. Ratios are knitcache's median over the other's median.
/// Instructions per hit (callgrind): a figure that other work on the machine does not move,
/// for comparing builds. Counts every thread of the proxy, user space only; the kernel's TCP
/// work is not in it.
fn scenario_callgrind(w: &World, opts: &Opts) -> Result<Value, String> {
    let mut out = serde_json::Map::new();
    println!(
        "\ninstructions per hit (callgrind, wrk -t1 -c4; the idle rate subtracted):\n| build | size | hits | Ir per hit | idle Ir/s |\n| --- | --- | --- | --- | --- |"
    );
    for (name, bin) in &opts.knitcache {
        let cg_name = format!("cg-{name}");
        let port = free_port()?;
        let admin = free_port()?;
        let conf_path = knitcache_conf(w, &cg_name)?;
        let cg_out = w.dir.join(format!("{cg_name}.callgrind"));
        let mut cmd = Command::new("valgrind");
        cmd.arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", cg_out.display()))
            // Each dump names its functions in full, so `callgrind_annotate` reads any one of
            // them (compressed names refer back to the first dump).
            .arg("--compress-strings=no")
            .arg("--compress-pos=no")
            .arg(bin);
        let cache_dir = w.dir.join(format!("cache-{cg_name}"));
        run_args(&mut cmd, w, &conf_path, port, admin, &cache_dir);
        let log = w.dir.join(format!("{cg_name}.log"));
        let proc = Proc::spawn(&cg_name, cmd, &log, Signal::Int)?;
        wait_listening(port, &cg_name)?;
        let t = Target {
            name: cg_name.clone(),
            kind: "knitcache",
            port,
            admin: Some(admin),
            proc,
        };
        let ctl = |arg: &str| {
            Command::new("callgrind_control")
                .arg(arg)
                .arg(t.proc.pid().to_string())
                .stdout(Stdio::null())
                .status()
                .map_err(|e| format!("callgrind_control: {e}"))
        };
        // Start-up work (the warm list: the 808 KB page compressed with brotli is ~120 M
        // instructions under valgrind) must not land in the first load's count: wait until a
        // one-second window is quiet.
        let settle_by = Instant::now() + Duration::from_secs(120);
        loop {
            ctl("-z")?;
            std::thread::sleep(Duration::from_secs(1));
            ctl("-d")?;
            if newest_dump_ir(&w.dir, &cg_name)? < QUIET_IR_PER_S {
                break;
            }
            if Instant::now() > settle_by {
                return Err(format!("{name} did not go quiet within 120 s of starting"));
            }
        }
        let secs = opts.duration.min(10);
        let mut loads = Vec::new();
        for (size, path) in HIT_PATHS {
            warm_hit(&t, path)?;
            ctl("-z")?;
            let started = Instant::now();
            let run = run_wrk(
                w,
                &Opts {
                    pin: false,
                    ..opts.clone()
                },
                &WrkSpec {
                    port: t.port,
                    path,
                    threads: 1,
                    connections: 4,
                    duration: secs,
                    plan: None,
                },
            )?;
            ctl("-d")?;
            let ir = newest_dump_ir(&w.dir, &cg_name)?;
            loads.push((*size, run.requests, ir, started.elapsed().as_secs_f64()));
        }
        // The proxy's timers and background tasks run by the clock, not per request, and under
        // valgrind they cost the same instructions per second whatever the hit rate: measure
        // them over an idle interval as long as a load (after the loads, when start-up work
        // such as warming is long done) and take them off each load's count, or a run that
        // served fewer hits (a busy machine) reports more instructions per hit.
        ctl("-z")?;
        let idle_started = Instant::now();
        std::thread::sleep(Duration::from_secs(secs));
        ctl("-d")?;
        let idle_ir_per_s =
            newest_dump_ir(&w.dir, &cg_name)? as f64 / idle_started.elapsed().as_secs_f64();
        let mut per = serde_json::Map::new();
        for (size, hits, ir, load_secs) in loads {
            let background = idle_ir_per_s * load_secs;
            let per_hit = ratio((ir as f64 - background).max(0.0), hits as f64);
            println!("| {name} | {size} | {hits} | {per_hit:.0} | {idle_ir_per_s:.0} |");
            per.insert(
                size.into(),
                json!({"hits": hits, "ir": ir, "idle_ir_per_s": idle_ir_per_s,
                       "ir_per_hit": per_hit}),
            );
        }
        out.insert(name.clone(), Value::Object(per));
    }
    Ok(Value::Object(out))
}

/// Instructions per second below which a proxy under callgrind counts as idle: its timers
/// cost ~0.1 M/s, a single miss millions.
const QUIET_IR_PER_S: u64 = 2_000_000;

/// Total instructions of the newest callgrind dump of `name` in `dir` (kept for
/// `callgrind_annotate`).
fn newest_dump_ir(dir: &Path, name: &str) -> Result<u64, String> {
    let prefix = format!("{name}.callgrind");
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for e in fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        if !e.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let Ok(m) = e.metadata().and_then(|m| m.modified()) else {
            continue;
        };
        if newest.as_ref().is_none_or(|(t, _)| m > *t) {
            newest = Some((m, e.path()));
        }
    }
    let (_, path) = newest.ok_or(format!("no callgrind dump for {name}"))?;
    let text = fs::read_to_string(&path).map_err(|e| e.to_string())?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or(format!("no totals in {}", path.display()))
}

fn run(opts: &Opts) -> Result<(), String> {
    let w = World::start(opts)?;
    let mut results = serde_json::Map::new();
    results.insert(
        "settings".into(),
        json!({
            "duration_s": opts.duration, "time_scale": opts.time_scale, "pinned": opts.pin,
            "origins": opts.origins, "pinnings": opts.pinnings,
            "knitcache": opts.knitcache.iter().map(|(n, p)| format!("{n}={}", p.display())).collect::<Vec<_>>(),
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        }),
    );
    for s in &opts.scenarios {
        let v = match s.as_str() {
            "dashboard" | "zipf" | "broken" => scenario_mixed(&w, opts, s)?,
            "hits" => scenario_hits(&w, opts)?,
            "memory" => scenario_memory(&w, opts)?,
            "soak" => scenario_soak(&w, opts)?,
            "compare" => compare::scenario(&w, opts)?,
            "callgrind" => scenario_callgrind(&w, opts)?,
            "slow_clients" => slow_clients::scenario(&w, opts)?,
            "cluster" => cluster::scenario(&w, opts)?,
            other => return Err(format!("unknown scenario {other}\n{USAGE}")),
        };
        results.insert(s.clone(), v);
    }
    if let Some(dir) = opts.out.parent() {
        fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let text = serde_json::to_string_pretty(&Value::Object(results)).map_err(|e| e.to_string())?;
    fs::write(&opts.out, text).map_err(|e| format!("{}: {e}", opts.out.display()))?;
    println!("\nresults: {}", opts.out.display());
    Ok(())
}
