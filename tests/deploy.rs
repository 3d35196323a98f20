//! The deployment files, run natively: what the containers of `deploy/compose.yaml` run (the
//! same arguments and Redis script, with the containers' addresses and paths mapped to loopback
//! and a temp directory: two replicas sharing purges through a real redis-server), and the systemd unit's reload helper (`deploy/knitcache-reload`) doing both of
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

/// What compose makes of `${NAME:-default}` with `NAME` unset: the default.
fn compose_default(value: &str) -> String {
    let inner = value
        .strip_prefix("${")
        .and_then(|v| v.strip_suffix('}'))
        .unwrap_or_else(|| panic!("{value:?} is not ${{NAME:-default}}"));
    let (_, default) = inner
        .split_once(":-")
        .unwrap_or_else(|| panic!("{value:?} has no default"));
    default.to_owned()
}

/// One sample of the `/metrics` at `url`; 0 when absent.
async fn scraped(c: &reqwest::Client, url: &str, sample: &str) -> f64 {
    get(c, url)
        .await
        .text()
        .lines()
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == sample).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_compose_containers_commands_serve_on_loopback_and_share_purges() {
    let mut compose: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("deploy/compose.yaml")).expect("compose.yaml"),
    )
    .expect("compose.yaml parses");
    compose.apply_merge().expect("merge keys");
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).expect("Dockerfile");
    let services = &compose["services"];
    let erp_cmd = strings(&services["erp"]["command"]);
    let replicas = ["knitcache-a", "knitcache-b"];
    let proxy_cmd = strings(&services[replicas[0]]["command"]);
    assert_eq!(
        strings(&services[replicas[1]]["command"]),
        proxy_cmd,
        "both replicas run the same arguments"
    );
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

    // The Redis service's command, run here as its container runs it (the image's working
    // directory /data is a directory of the test's; the port is a free loopback one), with the
    // password compose gives it when KNITCACHE_REDIS_PASSWORD is unset.
    let tmp = tempfile::tempdir().expect("tempdir");
    let redis = &services["redis"];
    let password = compose_default(
        redis["environment"]["KNITCACHE_REDIS_PASSWORD"]
            .as_str()
            .expect("redis's password variable"),
    );
    let entrypoint = strings(&redis["entrypoint"]);
    assert_eq!(entrypoint, ["/bin/sh", "-c"]);
    let script = strings(&redis["command"]).concat().replace("$$", "$");
    let redis_port = free_port();
    let local_script = script.replacen(
        "redis-server -",
        &format!("redis-server - --port {redis_port} --bind 127.0.0.1"),
        1,
    );
    assert_ne!(
        local_script, script,
        "the script starts redis-server: {script}"
    );
    let redis_dir = tmp.path().join("redis-data");
    std::fs::create_dir(&redis_dir).expect("redis dir");
    let _redis = Reap(
        Command::new(&entrypoint[0])
            .arg(&entrypoint[1])
            .arg(&local_script)
            .current_dir(&redis_dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KNITCACHE_REDIS_PASSWORD", &password)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh runs redis-server"),
    );
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !common::redis_server::answers(redis_port, Some(&password)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the compose Redis never answered with its password"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let anonymous = common::redis_server::ping_without_auth(redis_port);
    assert!(
        anonymous.starts_with("-NOAUTH"),
        "Redis requires the password: {anonymous}"
    );

    // The container's addresses and paths, and what they are on this machine.
    let erp = free_port();
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
    let cluster = &proxy_cmd[proxy_cmd
        .iter()
        .position(|a| a == "--cluster")
        .expect("cluster mode: --cluster")
        + 1];
    assert_eq!(
        cluster, "redis://redis:6379/0",
        "the replicas' Redis URL names the redis service"
    );
    let shared: HashMap<String, String> = [
        (erp_listen.clone(), format!("127.0.0.1:{erp}")),
        (format!("{erp_ip}:{erp_port}"), format!("127.0.0.1:{erp}")),
        (
            "/etc/knitcache/knitcache.yaml".to_owned(),
            config.display().to_string(),
        ),
        (cluster.clone(), format!("redis://127.0.0.1:{redis_port}/0")),
    ]
    .into();
    let local = |cmd: &[String], own: &HashMap<String, String>| -> Vec<String> {
        cmd.iter()
            .map(|a| {
                own.get(a)
                    .or_else(|| shared.get(a))
                    .cloned()
                    .unwrap_or_else(|| a.clone())
            })
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
    let _erp = spawn(
        &sim,
        &local(&erp_cmd, &HashMap::new()),
        &tmp.path().join("erp.log"),
    );
    let bin = Path::new(env!("CARGO_BIN_EXE_knitcache"));

    // Each replica as its container runs it: the container listens on the config's
    // 0.0.0.0:5006 in its own network namespace; here, on a free loopback port, with the pid
    // file and upgrade socket out of the shared /tmp, and the environment compose gives it.
    let mut running = Vec::new();
    for name in replicas {
        let env = &services[name]["environment"];
        let given = compose_default(
            env["KNITCACHE_REDIS_PASSWORD"]
                .as_str()
                .expect("the replica's password variable"),
        );
        assert_eq!(given, password, "{name} is given Redis's password");
        let (admin, proxy) = (free_port(), free_port());
        let own: HashMap<String, String> = [
            ("0.0.0.0:5009".to_owned(), format!("127.0.0.1:{admin}")),
            (
                "/var/cache/knitcache".to_owned(),
                tmp.path().join(name).display().to_string(),
            ),
        ]
        .into();
        let mut args = local(&proxy_cmd, &own);
        for (flag, value) in [
            ("--listen", format!("127.0.0.1:{proxy}")),
            (
                "--pid-file",
                tmp.path().join(format!("{name}.pid")).display().to_string(),
            ),
            (
                "--upgrade-sock",
                tmp.path()
                    .join(format!("{name}.sock"))
                    .display()
                    .to_string(),
            ),
        ] {
            args.extend([flag.to_owned(), value]);
        }
        assert!(
            args.iter().all(|a| !a.contains("172.28.")
                && !a.starts_with("0.0.0.0")
                && !a.contains("//redis:")),
            "every container address is mapped: {args:?}"
        );
        assert!(
            args.iter().all(|a| !a.contains(&password)),
            "the password is in no argument: {args:?}"
        );
        let log = tmp.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin)
            .args(&args)
            .env("KNITCACHE_REDIS_PASSWORD", &given)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn knitcache");
        running.push((Reap(child), admin, proxy, log));
    }

    let c = client();
    let url = |proxy: u16| format!("http://127.0.0.1:{proxy}/api/comprehensive-kpis");
    for (_, admin, proxy, _) in &running {
        // The image's HEALTHCHECK: GET /healthz on the admin port.
        until_ok(&c, &format!("http://127.0.0.1:{admin}/healthz")).await;
        // Ready: the listeners are bound and the cache is open (the readiness probe's
        // condition).
        until_ok(&c, &format!("http://127.0.0.1:{admin}/readyz")).await;
        let ready = get(&c, &format!("http://127.0.0.1:{admin}/readyz")).await;
        assert_eq!(ready.status, 200, "{}", ready.text());
        let first = get(&c, &url(*proxy)).await;
        assert_eq!(first.status, 200, "{}", first.text());
        let second = get(&c, &url(*proxy)).await;
        assert_eq!(second.status, 200);
        assert!(second.is_hit(), "{}", second.cache_status());
    }

    // A purge through b reaches a through the compose Redis.
    let (a_admin, a_proxy, b_admin) = (running[0].1, running[0].2, running[1].1);
    let purge = post_json(
        &c,
        &format!("http://127.0.0.1:{b_admin}/purge"),
        r#"{"url": "/api/comprehensive-kpis"}"#,
        None,
    )
    .await;
    assert_eq!(purge.status, 200, "{}", purge.text());
    let a_metrics = format!("http://127.0.0.1:{a_admin}/metrics");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while scraped(
        &c,
        &a_metrics,
        "knitcache_cluster_invalidations_applied_total",
    )
    .await
        < 1.0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a applied b's purge; a's log:\n{}",
            std::fs::read_to_string(&running[0].3).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = get(&c, &url(a_proxy)).await;
    assert_eq!(after.status, 200);
    assert!(
        !after.is_hit(),
        "purged through b: {}",
        after.cache_status()
    );
    for (_, admin, _, log) in &running {
        let m = format!("http://127.0.0.1:{admin}/metrics");
        assert_eq!(scraped(&c, &m, "knitcache_cluster_redis_up").await, 1.0);
        let log = std::fs::read_to_string(log).expect("log");
        assert!(
            !log.contains(&password),
            "the password is never logged:\n{log}"
        );
    }
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
