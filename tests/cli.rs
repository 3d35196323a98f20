//! The command line as an operator meets it: `check` on the shipped and on broken files, `run`
//! refusing a broken file or a busy port with a clear message, and the binary carrying no
//! simulator.

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

/// The ERP simulator is a dev-dependency (crates/erp-sim): neither its subcommand nor its code
/// (its control endpoints' paths) is in the product binary.
#[test]
fn the_binary_carries_no_simulator() {
    let out = knitcache()
        .args(["erp-sim", "--listen", "127.0.0.1:0"])
        .output()
        .expect("run knitcache");
    assert!(!out.status.success(), "`knitcache erp-sim` still runs");
    let binary = std::fs::read(env!("CARGO_BIN_EXE_knitcache")).expect("read the binary");
    assert!(
        !binary.windows(7).any(|w| w == b"/__sim/"),
        "the simulator's control paths are in the product binary"
    );
}
