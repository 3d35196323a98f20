//! A real `redis-server` process for the cluster tests, on a loopback port of its own, with no
//! persistence (`--save ''`, `--appendonly no`, a temporary working directory): killing it and
//! starting it again on the same port is a Redis restarted empty. The set-up (`make setup`)
//! installs `redis-server`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Reap, TIMEOUT, free_port};

/// A running (or stopped) `redis-server`.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    process: Option<Reap>,
}

impl RedisServer {
    /// Starts one on a free loopback port and waits until it answers `PING`.
    pub fn start() -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().expect("redis dir"),
            process: None,
        };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The `cluster:` section for a knitcache config using this server.
    pub fn cluster_yaml(&self) -> String {
        format!("cluster:\n  url: \"{}\"\n  timeout_ms: 300\n", self.url())
    }

    /// Kills it (SIGKILL: nothing is saved, connections drop at once).
    pub fn kill(&mut self) {
        self.process.take();
    }

    /// Starts it again on the same port, empty, and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "redis-server starts (installed by `make setup`: apt-get install redis-server)",
            );
        self.process = Some(Reap(child));
        let deadline = Instant::now() + TIMEOUT;
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "redis-server never answered PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it answers `PING` with `PONG`.
    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// Runs one command with `redis-cli` and returns its output (for inspecting the stream).
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
