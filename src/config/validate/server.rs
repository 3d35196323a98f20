//! The `server:` section: worker threads, shutdown timing, the pid file and the upgrade socket.

use std::time::Duration;

use super::super::defaults::*;
use super::super::file::*;
use super::super::model::*;
use super::Problems;

/// Longest unix socket path, in bytes (`sun_path` is 108 bytes including the final NUL).
const MAX_UNIX_SOCKET_PATH_BYTES: usize = 107;

pub(super) fn server(s: &FileServer, p: &mut Problems) -> Option<ServerSettings> {
    let mut ok = true;
    if s.threads == Some(0) {
        let msg = "threads = 0 runs no workers; set at least 1, e.g. threads: 2 (one per core), \
                   or remove the key for one per CPU this process may use";
        p.at("server.threads", None, msg.to_owned());
        ok = false;
    }
    for (key, path) in [("pid_file", &s.pid_file), ("upgrade_sock", &s.upgrade_sock)] {
        if path.as_os_str().is_empty() {
            p.at(
                &format!("server.{key}"),
                None,
                format!("{key} is empty; set a file path or remove the key to use the default"),
            );
            ok = false;
        }
    }
    let sock_len = s.upgrade_sock.as_os_str().len();
    if sock_len > MAX_UNIX_SOCKET_PATH_BYTES {
        p.at(
            "server.upgrade_sock",
            None,
            format!(
                "upgrade_sock = {} is {sock_len} bytes long, over the {MAX_UNIX_SOCKET_PATH_BYTES} \
                 bytes a unix socket path may have; use a shorter path, e.g. \
                 {DEFAULT_UPGRADE_SOCK}",
                s.upgrade_sock.display()
            ),
        );
        ok = false;
    }
    ok.then(|| ServerSettings {
        threads: s.threads.unwrap_or_else(default_threads),
        grace_period: Duration::from_secs(s.grace_period_secs),
        graceful_shutdown_timeout: Duration::from_secs(s.graceful_shutdown_timeout_secs),
        pid_file: s.pid_file.clone(),
        upgrade_sock: s.upgrade_sock.clone(),
    })
}
