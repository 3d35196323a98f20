//! The command line as an operator meets it: `check` on the shipped and on broken files, `run`
//! refusing a broken file or a busy port with a clear message, and `erp-sim` stopping on an
//! interrupt.

use std::process::Command;

fn knitcache() -> Command {
    Command::new(env!("CARGO_BIN_EXE_knitcache"))
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write config");
    p
}

#[test]
fn check_accepts_every_shipped_config_and_prints_the_route_table() {
    for file in ["config/knitcache.yaml", "config/dev.yaml"] {
        let out = knitcache()
            .args(["check", "-c", file])
            .output()
            .expect("run check");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{file}: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("/api/comprehensive-kpis") || file.contains("dev"),
            "{file}: route table:\n{stdout}"
        );
        assert!(
            stdout.to_lowercase().contains("ttl"),
            "{file}: table has a ttl column:\n{stdout}"
        );
    }
}

#[test]
fn check_names_the_key_the_line_and_the_fix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = write(
        tmp.path(),
        "bad.yaml",
        "listen: \"127.0.0.1:5006\"\nupstream:\n  address: \"127.0.0.1:5007\"\nroutes:\n  - name: kpis\n    exact: /api/comprehensive-kpis\n    ttl_seconds: 180\n",
    );
    let out = knitcache()
        .args(["check", "-c"])
        .arg(&file)
        .output()
        .expect("run check");
    assert_eq!(
        out.status.code(),
        Some(64),
        "a bad file exits 64 (EX_USAGE)"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ttl_seconds"),
        "names the unknown key:\n{stderr}"
    );
    assert!(stderr.contains("bad.yaml:7:"), "names its line:\n{stderr}");
    assert!(
        stderr.contains("ttl_secs"),
        "suggests the valid key:\n{stderr}"
    );
}

#[test]
fn run_refuses_a_bad_file_without_starting() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = write(
        tmp.path(),
        "bad.yaml",
        "listen: \"127.0.0.1:5006\"\nroutes: []\n",
    );
    let out = knitcache()
        .args(["run", "-c"])
        .arg(&file)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("upstream"),
        "a missing upstream is named:\n{stderr}"
    );
    assert!(stderr.contains("not starting"), "{stderr}");
}

#[test]
fn run_reports_a_busy_port_at_once() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = knitcache()
        .args(["run", "-c", "config/dev.yaml", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--cache-dir")
        .arg(tmp.path().join("cache"))
        .arg("--admin-listen")
        .arg("127.0.0.1:0")
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(70),
        "a busy port is a startup error"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
}

/// The load suite and operators stop the simulator with SIGINT (also its parent-death signal):
/// it must exit even with a request hanging in it, not linger holding its port.
#[test]
fn erp_sim_exits_on_interrupt_with_a_request_hanging() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::time::{Duration, Instant};

    let mut sim = knitcache()
        .args(["erp-sim", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start erp-sim");
    // Kept open to the end: a closed pipe would make the simulator's next line of output fail,
    // and it would exit for that rather than for the interrupt.
    let mut out = BufReader::new(sim.stdout.take().expect("stdout"));
    let mut first = String::new();
    out.read_line(&mut first).expect("read the listening line");
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|a| a.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string();
    let request = |text: &str| {
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        s.write_all(text.as_bytes()).expect("write");
        s
    };
    let mut hang = request(
        "POST /__sim/hang HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    let mut answer = String::new();
    hang.read_to_string(&mut answer)
        .expect("hang switch answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let _hanging = request("GET /api/comprehensive-kpis HTTP/1.1\r\nHost: x\r\n\r\n");
    std::thread::sleep(Duration::from_millis(200));

    let pid = i32::try_from(sim.id()).expect("pid");
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = sim.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if status.is_none() {
        let _ = sim.kill();
        let _ = sim.wait();
    }
    drop(out);
    let status = status.unwrap_or_else(|| panic!("erp-sim still running 15 s after SIGINT"));
    assert!(status.success(), "erp-sim did not stop cleanly: {status}");
}
