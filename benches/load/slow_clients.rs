//! The slow-clients scenario: `--connections` connections (default 1,000) dribble request
//! heads a byte at a time, as a slowloris attack does, while 50 normal clients poll a 2 KB hit.
//! It reports the normal clients' hit latency with and without the dribblers, the proxy's RSS,
//! and how the client limits answered (`knitcache_client_refusals_total`).
//!
//! A dribbler whose connection the proxy closes (`408` after `clients.header_timeout_ms`)
//! reconnects at once and starts again, so the proxy holds about as many slow connections for
//! the whole run. Dribblers are plain non-blocking sockets served by a few threads of this
//! process; every connection is on loopback and closed when the scenario ends.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{
    HIT_PATHS, Opts, World, WrkSpec, http_get, reset_hwm, rss_kib, run_wrk, start_knitcache,
    warm_hit,
};

/// Threads that drive the dribblers.
const DRIBBLE_THREADS: usize = 4;

/// Time between two bytes of one dribbler.
const DRIBBLE_EVERY: Duration = Duration::from_millis(1_000);

/// The start of every dribbled request; its header fields never end.
const HEAD_START: &[u8] = b"GET /api/factory-floor-ai-dashboard HTTP/1.1\r\nHost: erp\r\n";

/// What the dribblers did.
#[derive(Default)]
struct Counts {
    /// Connections opened (the first ones and every reconnect).
    opened: AtomicU64,
    /// Connections the proxy answered (a `408`) or closed.
    closed_by_proxy: AtomicU64,
    /// Bytes dribbled.
    bytes: AtomicU64,
}

/// The running dribblers; stopped (their sockets closed) when dropped.
struct Dribblers {
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    threads: Vec<JoinHandle<()>>,
}

impl Dribblers {
    fn start(port: u16, connections: usize) -> Dribblers {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let threads = (0..DRIBBLE_THREADS)
            .map(|i| {
                let n =
                    connections / DRIBBLE_THREADS + usize::from(i < connections % DRIBBLE_THREADS);
                let (stop, counts) = (stop.clone(), counts.clone());
                std::thread::spawn(move || dribble(addr, n, &stop, &counts))
            })
            .collect();
        Dribblers {
            stop,
            counts,
            threads,
        }
    }
}

impl Drop for Dribblers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A dribbling connection: how far into its endless head it is.
struct Slow {
    stream: Option<TcpStream>,
    sent: usize,
}

fn connect(addr: SocketAddr, counts: &Counts) -> Option<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_nonblocking(true).ok()?;
    counts.opened.fetch_add(1, Ordering::Relaxed);
    Some(s)
}

/// Keeps `n` connections dribbling one byte each every `DRIBBLE_EVERY` until `stop`.
fn dribble(addr: SocketAddr, n: usize, stop: &AtomicBool, counts: &Counts) {
    let mut conns: Vec<Slow> = (0..n)
        .map(|_| Slow {
            stream: connect(addr, counts),
            sent: 0,
        })
        .collect();
    let mut sink = [0u8; 512];
    while !stop.load(Ordering::Relaxed) {
        let round = Instant::now();
        for c in &mut conns {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let alive = match c.stream.as_mut() {
                None => false,
                Some(s) => match s.read(&mut sink) {
                    // The proxy answered (408) or closed: start over on a new connection.
                    Ok(_) => false,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        // One more byte of the head: the request line first, then "X: y" lines.
                        let byte = match HEAD_START.get(c.sent) {
                            Some(b) => *b,
                            None => b"X: y\r\n"[(c.sent - HEAD_START.len()) % 6],
                        };
                        match s.write(&[byte]) {
                            Ok(1) => {
                                c.sent += 1;
                                counts.bytes.fetch_add(1, Ordering::Relaxed);
                                true
                            }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => true,
                            _ => false,
                        }
                    }
                    Err(_) => false,
                },
            };
            if !alive {
                if c.stream.is_some() {
                    counts.closed_by_proxy.fetch_add(1, Ordering::Relaxed);
                }
                c.stream = connect(addr, counts);
                c.sent = 0;
            }
        }
        let left = DRIBBLE_EVERY.saturating_sub(round.elapsed());
        let until = Instant::now() + left;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One sample of the proxy's `/metrics` text (0 when absent).
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| {
            let (n, v) = l.rsplit_once(' ')?;
            (n == name).then(|| v.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

fn metrics(admin: Option<u16>) -> String {
    admin
        .and_then(|a| http_get(a, "/metrics").ok())
        .map(|(_, _, body)| String::from_utf8_lossy(&body).into_owned())
        .unwrap_or_default()
}

pub(super) fn scenario(w: &World, opts: &Opts) -> Result<Value, String> {
    let (name, bin) = &opts.knitcache[0];
    let t = start_knitcache(w, opts, name, bin)?;
    let pid = t.proc.pid();
    let path = HIT_PATHS[0].1;
    warm_hit(&t, path)?;
    let spec = WrkSpec {
        port: t.port,
        path,
        threads: 1,
        connections: 50,
        duration: opts.duration,
        plan: None,
    };
    let calm = run_wrk(w, opts, &spec)?;
    let calm_rss = rss_kib(pid).map_or(0, |r| r.0);

    let dribblers = Dribblers::start(t.port, opts.connections);
    // Every dribbler connected and a few bytes into its head.
    std::thread::sleep(Duration::from_secs(3));
    reset_hwm(pid);
    let before = metrics(t.admin);
    let under = run_wrk(w, opts, &spec)?;
    let (rss, peak) = rss_kib(pid).unwrap_or((0, 0));
    let after = metrics(t.admin);
    let open = sample(&after, "knitcache_client_connections");
    let counts = &dribblers.counts;
    let (opened, closed, bytes) = (
        counts.opened.load(Ordering::Relaxed),
        counts.closed_by_proxy.load(Ordering::Relaxed),
        counts.bytes.load(Ordering::Relaxed),
    );
    drop(dribblers);
    let refused = |m: &str| {
        sample(
            m,
            r#"knitcache_client_refusals_total{reason="header_timeout"}"#,
        )
    };
    let v = json!({
        "slow_connections": opts.connections,
        "normal_connections": spec.connections,
        "path": path,
        "calm": {
            "hit_rps": calm.rps(),
            "hit_p50_us": calm.latency.p50,
            "hit_p99_us": calm.latency.p99,
            "socket_errors": calm.socket_errors,
            "rss_kib": calm_rss,
        },
        "with_slow_clients": {
            "hit_rps": under.rps(),
            "hit_p50_us": under.latency.p50,
            "hit_p99_us": under.latency.p99,
            "socket_errors": under.socket_errors,
            "bad_status": under.bad_status,
            "rss_kib": rss,
            "peak_rss_kib": peak,
            "client_connections_open": open,
            "header_timeouts_during_run": refused(&after) - refused(&before),
            "dribbler_connections_opened": opened,
            "dribbler_connections_closed_by_proxy": closed,
            "dribbled_bytes": bytes,
        },
    });
    println!(
        "\nslow clients: {} dribbling connections, 50 polling a 2 KB hit ({} s)\n\
         {:<22} {:>10} {:>10} {:>10} {:>10}\n\
         {:<22} {:>10.0} {:>10.0} {:>10.0} {:>10}\n\
         {:<22} {:>10.0} {:>10.0} {:>10.0} {:>10}\n\
         peak RSS {} MiB with the dribblers ({} MiB calm); {} client connections open; {} heads \
         timed out (408) during the run",
        opts.connections,
        opts.duration,
        "",
        "req/s",
        "p50 µs",
        "p99 µs",
        "errors",
        "calm",
        calm.rps(),
        calm.latency.p50,
        calm.latency.p99,
        calm.socket_errors,
        "with slow clients",
        under.rps(),
        under.latency.p50,
        under.latency.p99,
        under.socket_errors,
        peak / 1024,
        calm_rss / 1024,
        open,
        refused(&after) - refused(&before),
    );
    Ok(v)
}
