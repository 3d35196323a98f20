//! The deployment files, run natively: what the containers of `deploy/compose.yaml` run (the
//! same arguments, with the container's addresses and paths mapped to loopback and a temp
//! directory), and the systemd unit's reload helper (`deploy/knitcache-reload`) doing both of
//! its jobs, a config reload and a graceful upgrade to a newly installed binary.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn spawn(bin: &Path, args: &[String], log: &Path) -> Reap {
    let log = std::fs::File::create(log).expect("log file");
    Reap(
        Command::new(bin)
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn"),
    )
}

/// A string list of the compose file, e.g. a service's `command`.
fn strings(v: &serde_yaml::Value) -> Vec<String> {
    v.as_sequence()
        .expect("a list")
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

/// The JSON array of a Dockerfile instruction (`CMD [...]`).
fn dockerfile_array(text: &str, instruction: &str) -> Vec<String> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{instruction} [")))
        .unwrap_or_else(|| panic!("no {instruction} in the Dockerfile"));
    line.trim_end_matches(']')
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_compose_containers_commands_serve_on_loopback() {
    let compose: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("deploy/compose.yaml")).expect("compose.yaml"),
    )
    .expect("compose.yaml parses");
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).expect("Dockerfile");
    let services = &compose["services"];
    let erp_cmd = strings(&services["erp"]["command"]);
    let proxy_cmd = strings(&services["knitcache"]["command"]);
    let image_cmd = dockerfile_array(&dockerfile, "CMD");
    assert_eq!(
        &proxy_cmd[..image_cmd.len()],
        &image_cmd[..],
        "compose runs the image's CMD"
    );
    assert!(
        dockerfile.contains("COPY config/knitcache.yaml /etc/knitcache/knitcache.yaml"),
        "the image's config is the shipped one"
    );

    // The container's addresses and paths, and what they are on this machine.
    let tmp = tempfile::tempdir().expect("tempdir");
    let (erp, admin, proxy) = (free_port(), free_port(), free_port());
    let erp_ip = services["erp"]["networks"]["erp"]["ipv4_address"]
        .as_str()
        .expect("erp address");
    let erp_listen = &erp_cmd[erp_cmd
        .iter()
        .position(|a| a == "--listen")
        .expect("--listen")
        + 1];
    let erp_port = erp_listen.rsplit(':').next().expect("port");
    let config = root().join("config/knitcache.yaml");
    let map: HashMap<String, String> = [
        (erp_listen.clone(), format!("127.0.0.1:{erp}")),
        (format!("{erp_ip}:{erp_port}"), format!("127.0.0.1:{erp}")),
        ("0.0.0.0:5009".to_owned(), format!("127.0.0.1:{admin}")),
        (
            "/etc/knitcache/knitcache.yaml".to_owned(),
            config.display().to_string(),
        ),
        (
            "/var/cache/knitcache".to_owned(),
            tmp.path().join("cache").display().to_string(),
        ),
    ]
    .into();
    let local = |cmd: &[String]| -> Vec<String> {
        cmd.iter()
            .map(|a| map.get(a).cloned().unwrap_or_else(|| a.clone()))
            .collect()
    };
    // The erp container runs the image's simulator binary, which the image installs.
    let erp_entrypoint = strings(&services["erp"]["entrypoint"]);
    assert_eq!(erp_entrypoint, ["/usr/local/bin/erp-sim"]);
    assert!(
        dockerfile.contains("COPY --from=build /usr/local/bin/erp-sim /usr/local/bin/erp-sim"),
        "the image carries the simulator"
    );
    let sim = erp_sim::binary::built().expect("the erp-sim binary");
    let _erp = spawn(&sim, &local(&erp_cmd), &tmp.path().join("erp.log"));
    let bin = Path::new(env!("CARGO_BIN_EXE_knitcache"));
    // The container listens on the config's 0.0.0.0:5006 in its own network namespace; here,
    // on a free loopback port, with the pid file and upgrade socket out of the shared /tmp.
    let mut args = local(&proxy_cmd);
    for (flag, value) in [
        ("--listen", format!("127.0.0.1:{proxy}")),
        ("--pid-file", tmp.path().join("k.pid").display().to_string()),
        (
            "--upgrade-sock",
            tmp.path().join("u.sock").display().to_string(),
        ),
    ] {
        args.extend([flag.to_owned(), value]);
    }
    assert!(
        args.iter()
            .all(|a| !a.contains("172.28.") && !a.starts_with("0.0.0.0")),
        "every container address is mapped: {args:?}"
    );
    let _proxy = spawn(bin, &args, &tmp.path().join("knitcache.log"));

    let c = client();
    // The image's HEALTHCHECK: GET /healthz on the admin port.
    until_ok(&c, &format!("http://127.0.0.1:{admin}/healthz")).await;
    // Ready: the listeners are bound and the cache is open (the readiness probe's condition).
    until_ok(&c, &format!("http://127.0.0.1:{admin}/readyz")).await;
    let ready = get(&c, &format!("http://127.0.0.1:{admin}/readyz")).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    let url = format!("http://127.0.0.1:{proxy}/api/comprehensive-kpis");
    let first = get(&c, &url).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let second = get(&c, &url).await;
    assert_eq!(second.status, 200);
    assert!(second.is_hit(), "{}", second.cache_status());
}

/// Runs the helper as systemd's ExecReload would; returns whether it succeeded and what it
/// printed. Its output goes to a file, not a pipe: the new process it starts inherits it (under
/// systemd, the journal) and keeps it open, so a pipe would never reach end of file.
fn reload_helper(old: u32, bin: &Path, flags: &[String], log: &Path) -> (bool, String) {
    let out = std::fs::File::create(log).expect("helper log");
    let status = Command::new("sh")
        .arg(root().join("deploy/knitcache-reload"))
        .arg(old.to_string())
        .args(flags)
        .env("KNITCACHE_BIN", bin)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone"))
        .stderr(out)
        .status()
        .expect("run knitcache-reload");
    (
        status.success(),
        std::fs::read_to_string(log).expect("read helper log"),
    )
}

/// Replaces `bin` the way install(1) does: a new file renamed over the old name.
fn install(from: &Path, bin: &Path) {
    let staged = bin.with_extension("new");
    std::fs::copy(from, &staged).expect("copy binary");
    std::fs::rename(&staged, bin).expect("rename binary");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reload_helper_reloads_the_config_then_upgrades_a_new_binary() {
    let sim = start_sim(0.01).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cache");
    let (port, admin) = (free_port(), free_port());
    let routes = "  - name: kpis\n    exact: /api/comprehensive-kpis\n    ttl_secs: 600\n";
    let yaml = config_yaml_on_ports(sim.addr(), &dir, routes, (port, admin), 1);
    let file = tmp.path().join("knitcache.yaml");
    std::fs::write(&file, yaml).expect("write config");
    // The unit's flags: the pid file and upgrade socket in a runtime directory of their own.
    let run_dir = tmp.path().join("run");
    std::fs::create_dir(&run_dir).expect("run dir");
    let pid_file = run_dir.join("knitcache.pid");
    let flags: Vec<String> = vec![
        "-c".into(),
        file.display().to_string(),
        "--pid-file".into(),
        pid_file.display().to_string(),
        "--upgrade-sock".into(),
        run_dir.join("upgrade.sock").display().to_string(),
    ];
    let bin = tmp.path().join("knitcache");
    install(Path::new(env!("CARGO_BIN_EXE_knitcache")), &bin);

    let mut run_args = vec!["--log".to_owned(), "warn".to_owned(), "run".to_owned()];
    run_args.extend(flags.iter().cloned());
    let mut old = spawn(&bin, &run_args, &tmp.path().join("old.log"));
    let c = client();
    let url = format!("http://127.0.0.1:{port}/api/comprehensive-kpis");
    until_ok(&c, &url).await;
    let old_pid = old.0.id();

    // Same binary: SIGHUP, a config reload.
    let (ok, out) = reload_helper(old_pid, &bin, &flags, &tmp.path().join("hup.log"));
    assert!(ok && out.contains("SIGHUP"), "{out}");
    let metrics = format!("http://127.0.0.1:{admin}/metrics");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !get(&c, &metrics)
        .await
        .text()
        .contains("knitcache_config_reloads_total{result=\"applied\"} 1")
    {
        assert!(tokio::time::Instant::now() < deadline, "SIGHUP reloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        old.0.try_wait().expect("try_wait").is_none(),
        "still running"
    );

    // A new binary installed: a graceful upgrade, requests answered throughout.
    install(Path::new(env!("CARGO_BIN_EXE_knitcache")), &bin);
    let poller = {
        let url = url.clone();
        tokio::spawn(async move {
            let c = reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .timeout(TIMEOUT)
                .build()
                .expect("client");
            let mut failed = Vec::new();
            for _ in 0..40 {
                match c.get(&url).send().await {
                    Ok(r) if r.status().is_success() => {}
                    other => failed.push(format!("{other:?}")),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            failed
        })
    };
    let helper_flags = flags.clone();
    let helper_bin = bin.clone();
    let helper_log = tmp.path().join("upgrade.log");
    let (ok, out) = tokio::task::spawn_blocking(move || {
        reload_helper(old_pid, &helper_bin, &helper_flags, &helper_log)
    })
    .await
    .expect("join");
    assert!(ok && out.contains("serves"), "upgrade:\n{out}");
    let new_pid: u32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert_ne!(new_pid, old_pid, "the pid file names the new process");
    let failed = poller.await.expect("poller");
    assert!(
        failed.is_empty(),
        "requests failed during the upgrade: {failed:?}"
    );
    let exited = tokio::task::spawn_blocking(move || old.0.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(
        exited.success(),
        "the old process drained and exited: {exited}"
    );
    let after = get(&c, &url).await;
    assert!(after.is_hit(), "{}", after.cache_status());

    // The new process is not this test's child: stop it by its pid, and wait until it is gone.
    let status = Command::new("kill")
        .args(["-TERM", &new_pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let alive = || {
        // Gone, or a zombie that whoever adopted it has yet to reap.
        std::fs::read_to_string(format!("/proc/{new_pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
    };
    while alive() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new process stops"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
