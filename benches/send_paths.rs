//! What it costs the kernel to send a cached body, by the way it is handed over: `writev` from
//! heap memory (what knitcache does), or `sendfile` from a file's page cache (what nginx does
//! with its cache files) or from a `memfd`. It decides whether serving large bodies from a
//! file would pay: the proxy's remaining difference with nginx on 100 KB hits is this copy.
//!
//! A minimal HTTP/1.1 server, one thread per connection, answers every request with the same
//! header and body through one of the three paths; `wrk -t1 -c50` drives it on loopback, and the
//! server's CPU time (user + system) gives requests per CPU-second. The modes alternate over
//! rounds, on CPU 1 for the server and CPU 0 for wrk.
//!
//! Run: `cargo bench --bench send_paths [-- --bench --size BYTES --rounds R --duration SECS]`.
//! Under `cargo test` it only checks that each path sends the same bytes.

use std::fs::File;
use std::io::{IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Path {
    /// `writev` of the header and the body from heap memory.
    Writev,
    /// The header with `send`, then `sendfile` from a regular file (page cache).
    FileSendfile,
    /// The same from a `memfd` (shared memory).
    MemfdSendfile,
}

const PATHS: [Path; 3] = [Path::Writev, Path::FileSendfile, Path::MemfdSendfile];

struct Response {
    header: Vec<u8>,
    body: Vec<u8>,
    file: File,
}

impl Response {
    fn new(path: Path, size: usize, dir: &std::path::Path) -> std::io::Result<Response> {
        let body: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        let header = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
        )
        .into_bytes();
        let mut file = match path {
            Path::MemfdSendfile => File::from(rustix::fs::memfd_create(
                "send-paths",
                rustix::fs::MemfdFlags::CLOEXEC,
            )?),
            _ => File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(dir.join("send-paths.body"))?,
        };
        file.write_all(&body)?;
        Ok(Response { header, body, file })
    }

    fn send(&self, path: Path, conn: &mut TcpStream) -> std::io::Result<()> {
        match path {
            Path::Writev => {
                let mut parts = [IoSlice::new(&self.header), IoSlice::new(&self.body)];
                let mut left = &mut parts[..];
                while !left.is_empty() {
                    let n = conn.write_vectored(left)?;
                    IoSlice::advance_slices(&mut left, n);
                }
            }
            Path::FileSendfile | Path::MemfdSendfile => {
                rustix::net::send(conn.as_fd(), &self.header, rustix::net::SendFlags::MORE)?;
                let mut offset = 0u64;
                while (offset as usize) < self.body.len() {
                    let left = self.body.len() - offset as usize;
                    let n = rustix::fs::sendfile(
                        conn.as_fd(),
                        self.file.as_fd(),
                        Some(&mut offset),
                        left,
                    )?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::WriteZero.into());
                    }
                }
            }
        }
        Ok(())
    }
}

/// Serves `response` on a loopback port until the process ends; returns the port.
fn serve(path: Path, response: Arc<Response>) -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let response = Arc::clone(&response);
            std::thread::spawn(move || connection(path, conn, &response));
        }
    });
    Ok(port)
}

fn connection(path: Path, mut conn: TcpStream, response: &Response) {
    let _ = conn.set_nodelay(true);
    let mut buf = [0u8; 4096];
    let mut have = 0;
    loop {
        match conn.read(&mut buf[have..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => have += n,
        }
        // One response per complete request head (wrk does not pipeline).
        while let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            if response.send(path, &mut conn).is_err() {
                return;
            }
            buf.copy_within(end + 4..have, 0);
            have -= end + 4;
        }
        if have == buf.len() {
            return;
        }
    }
}

/// User + system CPU seconds of this process so far.
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // after the ")" that ends the command name: state ppid ... utime (11) stime (12), in ticks
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn wrk(port: u16, secs: u64) -> Result<f64, String> {
    let out = Command::new("taskset")
        .args(["-c", "0", "wrk", "-t1", "-c50", &format!("-d{secs}s")])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .map_err(|e| format!("wrk: {e} (make load-setup installs it)"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk's output:\n{text}"))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Each path answers one request with the same bytes.
fn self_check(dir: &std::path::Path) -> Result<(), String> {
    let size = 100 * 1024;
    let mut expected = None;
    for path in PATHS {
        let response = Arc::new(Response::new(path, size, dir).map_err(|e| e.to_string())?);
        let total = response.header.len() + size;
        let port = serve(path, response).map_err(|e| e.to_string())?;
        let mut conn = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        while got.len() < total {
            let n = conn.read(&mut buf).map_err(|e| format!("{path:?}: {e}"))?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        match &expected {
            None => expected = Some(got),
            Some(e) if *e == got => {}
            Some(_) => return Err(format!("{path:?} sent different bytes")),
        }
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    if !args.iter().any(|a| a == "--bench") {
        match self_check(&dir) {
            Ok(()) => println!("send paths: each sends the same bytes"),
            Err(e) => {
                eprintln!("send paths: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let opt = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (size, rounds, secs) = (
        opt("--size", 100 * 1024) as usize,
        opt("--rounds", 4),
        opt("--duration", 5),
    );
    // This process serves; pin it to CPU 1, wrk goes to CPU 0.
    let _ = Command::new("taskset")
        .args(["-a", "-p", "-c", "1", &std::process::id().to_string()])
        .output();
    let mut results: Vec<(Path, Vec<f64>, Vec<f64>)> =
        PATHS.iter().map(|p| (*p, Vec::new(), Vec::new())).collect();
    for round in 0..rounds {
        for k in 0..PATHS.len() {
            let (path, rps, per_cpu) = &mut results[(k + round as usize) % PATHS.len()];
            let response = match Response::new(*path, size, &dir) {
                Ok(r) => Arc::new(r),
                Err(e) => {
                    eprintln!("{path:?}: {e}");
                    std::process::exit(1);
                }
            };
            let port = serve(*path, response).unwrap_or_else(|e| {
                eprintln!("listen: {e}");
                std::process::exit(1)
            });
            let cpu0 = cpu_s();
            let r = wrk(port, secs).unwrap_or_else(|e| {
                eprintln!("{e}");
                std::process::exit(1)
            });
            let cpu = cpu_s() - cpu0;
            println!(
                "round {} {path:?}: {r:.0} req/s, {:.0} per CPU-s",
                round + 1,
                r * secs as f64 / cpu
            );
            rps.push(r);
            per_cpu.push(r * secs as f64 / cpu);
        }
    }
    println!(
        "\n{size}-byte responses, medians of {rounds} rounds:\n| path | req/s | req per server CPU-s |\n| --- | --- | --- |"
    );
    for (path, rps, per_cpu) in &mut results {
        println!("| {path:?} | {:.0} | {:.0} |", median(rps), median(per_cpu));
    }
}
