//! A real `redis-server` process for the cluster tests, on a loopback port of its own, with no
//! persistence (`--save ''`, `--appendonly no`, a temporary working directory): killing it and
//! starting it again on the same port is a Redis restarted empty. The set-up (`make setup`)
//! installs `redis-server`. `start_with` adds a password (`requirepass`), a TLS port with the
//! given certificate files (the plain port stays for the helper's own checks and `cli`), or
//! persistence: an append-only file written at every command, which a restart reloads.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Reap, TIMEOUT, free_port};

/// `cluster.timeout_ms` in the tests. A Redis operation past it counts as Redis being down and
/// the replica carries on alone, which a test sees as extra origin requests; debug builds on a
/// machine busy with other tests have taken longer than a tight timeout, so this one is loose.
/// (A stopped or killed server is still noticed at once: its connections are refused.)
pub const TEST_TIMEOUT_MS: u64 = 2_000;

/// A running (or stopped) `redis-server`.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    process: Option<Reap>,
    options: RedisOptions,
}

/// What `start_with` adds to a plain server.
#[derive(Default)]
pub struct RedisOptions {
    /// `requirepass`: every client must `AUTH` with it.
    pub password: Option<String>,
    /// A TLS port serving this certificate chain and key (PEM files).
    pub tls: Option<RedisTls>,
    /// `--appendonly yes --appendfsync always`: what was acknowledged survives a SIGKILL.
    pub persistence: bool,
}

/// The TLS side of a server: its own port and certificate files.
pub struct RedisTls {
    pub port: u16,
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
    /// The CA that signed `cert_file` (redis-server wants one even when clients show none).
    pub ca_file: std::path::PathBuf,
}

impl RedisServer {
    /// Starts one on a free loopback port and waits until it answers `PING`.
    pub fn start() -> RedisServer {
        RedisServer::start_with(RedisOptions::default())
    }

    /// As `start`, with a password and/or a TLS port.
    pub fn start_with(options: RedisOptions) -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().expect("redis dir"),
            process: None,
            options,
        };
        server.restart();
        server
    }

    /// `rediss://127.0.0.1:TLS_PORT/0`, when started with TLS.
    pub fn tls_url(&self) -> String {
        let tls = self.options.tls.as_ref().expect("started with TLS");
        format!("rediss://127.0.0.1:{}/0", tls.port)
    }

    /// The plain port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The `cluster:` section for a knitcache config using this server, with a generous
    /// `timeout_ms` (`TEST_TIMEOUT_MS`).
    pub fn cluster_yaml(&self) -> String {
        self.cluster_yaml_with_timeout(TEST_TIMEOUT_MS)
    }

    /// The `cluster:` section, with `timeout_ms` of `ms`.
    pub fn cluster_yaml_with_timeout(&self, ms: u64) -> String {
        format!("cluster:\n  url: \"{}\"\n  timeout_ms: {ms}\n", self.url())
    }

    /// Kills it (SIGKILL: nothing is saved, connections drop at once).
    pub fn kill(&mut self) {
        self.process.take();
    }

    /// Freezes it (SIGSTOP): the kernel still accepts connections, but nothing is answered,
    /// so every operation takes its whole timeout, as with a server that is stuck.
    pub fn pause(&self) {
        super::signal(&self.process.as_ref().expect("running").0, "-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        super::signal(&self.process.as_ref().expect("running").0, "-CONT");
    }

    /// Starts it again on the same port, empty (or with what its append-only file holds, with
    /// `persistence`), and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .arg("--dir")
            .arg(self.dir.path());
        if self.options.persistence {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        if let Some(password) = &self.options.password {
            cmd.args(["--requirepass", password]);
        }
        if let Some(tls) = &self.options.tls {
            cmd.args(["--tls-port", &tls.port.to_string()])
                .arg("--tls-cert-file")
                .arg(&tls.cert_file)
                .arg("--tls-key-file")
                .arg(&tls.key_file)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca_file)
                .args(["--tls-auth-clients", "no"]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "redis-server starts (installed by `make setup`: apt-get install redis-server)",
            );
        self.process = Some(Reap(child));
        let deadline = Instant::now() + TIMEOUT;
        while !answers(self.port, self.options.password.as_deref()) {
            assert!(
                Instant::now() < deadline,
                "redis-server never answered PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs one command with `redis-cli` and returns its output (for inspecting the stream).
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-p", &self.port.to_string()]);
        if let Some(password) = &self.options.password {
            // From the environment, as redis-cli reads it, not from its command line.
            cmd.env("REDISCLI_AUTH", password);
        }
        let out = cmd.args(args).output().expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Whether the server on the loopback `port` answers `PING` with `PONG`, after `AUTH password`
/// when one is given.
pub fn answers(port: u16, password: Option<&str>) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut expected = Vec::new();
    if let Some(password) = password {
        let auth = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n", password.len());
        if s.write_all(auth.as_bytes()).is_err() {
            return false;
        }
        expected.extend_from_slice(b"+OK\r\n");
    }
    expected.extend_from_slice(b"+PONG\r\n");
    let mut buf = vec![0u8; expected.len()];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && buf == expected
}

/// The first reply line of `PING` sent without `AUTH` to the server on `port`: `+PONG`, or the
/// error a server with a password answers (`-NOAUTH ...`).
pub fn ping_without_auth(port: u16) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return "connection refused".to_owned();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    if s.write_all(b"PING\r\n").is_ok() {
        while s.read_exact(&mut byte).is_ok() && byte[0] != b'\n' {
            reply.push(byte[0]);
        }
    }
    String::from_utf8_lossy(&reply).trim_end().to_owned()
}
