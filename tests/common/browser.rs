//! Headless Chromium for tests: load a page, let its scripts run for a budget of virtual time,
//! and read the DOM it leaves. Without Chromium a test fails and says how to get it (`make
//! setup` installs Debian's `chromium`); CI installs it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a browser run may take.
pub const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

/// The DOM Chromium leaves after `budget_ms` of virtual time on `url`, with `extra` flags.
pub fn dump_dom(url: &str, budget_ms: u64, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--virtual-time-budget={budget_ms}"),
        ])
        .args(extra)
        .args(["--dump-dom", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run chromium ({e}); the dashboard test needs headless Chromium: \
                 apt-get install chromium (make setup does it)"
            )
        });
    let started = Instant::now();
    loop {
        match child.try_wait().expect("wait for chromium") {
            Some(_) => break,
            None if started.elapsed() > BROWSER_TIMEOUT => {
                let _ = child.kill();
                panic!("chromium did not finish within {BROWSER_TIMEOUT:?}");
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let out = child.wait_with_output().expect("chromium output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the element with `id` in `dom`.
pub fn by_id<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page:\n{dom}"));
    let rest = &dom[start..];
    let open = rest.find('>').map_or(0, |i| i + 1);
    let close = rest[open..].find('<').map_or(rest.len(), |i| open + i);
    &rest[open..close]
}
