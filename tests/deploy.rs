//! The deployment files, run natively: what the containers of `deploy/compose.yaml` run (the
//! same arguments and Redis script, with the containers' addresses and paths mapped to loopback
//! and a temp directory: two replicas sharing purges through a real redis-server), what the
//! Kubernetes pods run (the Redis StatefulSet's script and the Deployment's shell line with the
//! Secret's values: three replicas sharing purges), and the systemd unit's reload helper
//! (`deploy/knitcache-reload`) doing both of its jobs, a config reload and a graceful upgrade to
//! a newly installed binary.

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

/// Runs a Redis container's `/bin/sh -c` script here as its container would: the image's
/// working directory (/data) is `dir`, the port a free loopback one, the password in
/// `KNITCACHE_REDIS_PASSWORD` and nothing else in the environment but `PATH`. Returns once it
/// answers with the password.
fn run_redis_script(script: &str, port: u16, dir: &Path, password: &str) -> Reap {
    let local = script.replacen(
        "redis-server -",
        &format!("redis-server - --port {port} --bind 127.0.0.1"),
        1,
    );
    assert_ne!(local, script, "the script starts redis-server: {script}");
    std::fs::create_dir(dir).expect("redis dir");
    let redis = Reap(
        Command::new("/bin/sh")
            .arg("-c")
            .arg(&local)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KNITCACHE_REDIS_PASSWORD", password)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh runs redis-server"),
    );
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !common::redis_server::answers(port, Some(password)) {
        assert!(
            std::time::Instant::now() < deadline,
            "Redis never answered with its password: {script}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let anonymous = common::redis_server::ping_without_auth(port);
    assert!(
        anonymous.starts_with("-NOAUTH"),
        "Redis requires the password: {anonymous}"
    );
    redis
}

/// Waits until the replica whose metrics are at `metrics_url` has applied `n` invalidations of
/// other replicas; `log` is shown if it never does.
async fn wait_applied(c: &reqwest::Client, metrics_url: &str, n: f64, log: &Path) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while scrape(
        c,
        metrics_url,
        "knitcache_cluster_invalidations_applied_total",
    )
    .await
        < n
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the purge was never applied; the replica's log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let _redis = run_redis_script(
        &script,
        redis_port,
        &tmp.path().join("redis-data"),
        &password,
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
    wait_applied(&c, &a_metrics, 1.0, &running[0].3).await;
    let after = get(&c, &url(a_proxy)).await;
    assert_eq!(after.status, 200);
    assert!(
        !after.is_hit(),
        "purged through b: {}",
        after.cache_status()
    );
    for (_, admin, _, log) in &running {
        let m = format!("http://127.0.0.1:{admin}/metrics");
        assert_eq!(scrape(&c, &m, "knitcache_cluster_redis_up").await, 1.0);
        let log = std::fs::read_to_string(log).expect("log");
        assert!(
            !log.contains(&password),
            "the password is never logged:\n{log}"
        );
    }
}

/// Every document of the Kubernetes manifest `file`.
fn manifests(file: &str) -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(root().join("deploy/kubernetes").join(file)).expect(file);
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("a manifest parses"))
        .collect()
}

/// The one document of `kind` among `docs`.
fn of_kind<'a>(docs: &'a [serde_yaml::Value], kind: &str) -> &'a serde_yaml::Value {
    let mut found = docs.iter().filter(|d| d["kind"].as_str() == Some(kind));
    let doc = found.next().unwrap_or_else(|| panic!("no {kind}"));
    assert!(found.next().is_none(), "one {kind}");
    doc
}

/// A container's variable taken from a Secret: (secret, key).
fn secret_ref(container: &serde_yaml::Value, name: &str) -> Option<(String, String)> {
    container["env"].as_sequence()?.iter().find_map(|e| {
        let r = &e["valueFrom"]["secretKeyRef"];
        (e["name"].as_str() == Some(name)).then(|| {
            (
                r["name"].as_str().unwrap_or_default().to_owned(),
                r["key"].as_str().unwrap_or_default().to_owned(),
            )
        })
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kubernetes_pods_commands_run_cluster_mode_on_their_redis() {
    let secret_docs = manifests("redis-secret.yaml");
    let secret = of_kind(&secret_docs, "Secret");
    let secret_name = secret["metadata"]["name"].as_str().expect("name");
    let data = &secret["stringData"];
    // The shipped placeholder stands for the password the operator puts there.
    let password = data["password"].as_str().expect("password");

    // The Redis pod's script, with the Secret's password in the variable it names.
    let redis_docs = manifests("redis.yaml");
    let redis = &of_kind(&redis_docs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(strings(&redis["command"]), ["/bin/sh", "-c"]);
    assert_eq!(
        secret_ref(redis, "KNITCACHE_REDIS_PASSWORD"),
        Some((secret_name.to_owned(), "password".to_owned())),
        "Redis takes its password from the Secret"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let redis_port = free_port();
    let _redis = run_redis_script(
        &strings(&redis["args"]).concat(),
        redis_port,
        &tmp.path().join("redis-data"),
        password,
    );

    // The Deployment's pods: their shell line, with the environment the kubelet gives them.
    // Names of the cluster map to loopback: the ERP's Service, the Redis Service in the
    // Secret's URL, the container's paths and listeners.
    let sim = start_sim(0.01).await;
    let dep_docs = manifests("deployment.yaml");
    let dep = of_kind(&dep_docs, "Deployment");
    let pod = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(strings(&pod["command"]), ["/bin/sh", "-c"]);
    let line = strings(&pod["args"]).concat();
    let url = data["url"].as_str().expect("url");
    assert_eq!(
        url, "redis://knitcache-redis:6379/0",
        "the Secret's URL names the Redis Service"
    );
    let mut env: Vec<(String, String)> = Vec::new();
    for e in pod["env"].as_sequence().expect("env") {
        let name = e["name"].as_str().expect("env name").to_owned();
        let value = match (name.as_str(), e["value"].as_str()) {
            ("ERP_HOST", Some("erp")) => "localhost".to_owned(),
            ("ERP_PORT", Some(_)) => sim.addr().port().to_string(),
            (_, Some(v)) => v.to_owned(),
            (_, None) => match secret_ref(pod, &name) {
                Some((s, key)) if s == secret_name => {
                    let v = data[key.as_str()].as_str().expect("secret key").to_owned();
                    v.replace(url, &format!("redis://127.0.0.1:{redis_port}/0"))
                }
                // The admin token's Secret is optional and absent here.
                _ => continue,
            },
        };
        env.push((name, value));
    }
    for needed in ["KNITCACHE_CLUSTER_URL", "KNITCACHE_REDIS_PASSWORD"] {
        assert!(env.iter().any(|(n, _)| n == needed), "{needed} is given");
    }
    let replicas = dep["spec"]["replicas"].as_u64().expect("replicas");
    assert_eq!(replicas, 3);
    let config = root().join("config/knitcache.yaml");
    let mut pods = Vec::new();
    for i in 0..replicas {
        let (port, admin) = (free_port(), free_port());
        let dir = tmp.path().join(format!("pod-{i}"));
        let mut local = line.clone();
        for (from, to) in [
            (
                "/usr/local/bin/knitcache",
                env!("CARGO_BIN_EXE_knitcache").to_owned(),
            ),
            (
                "/etc/knitcache/knitcache.yaml",
                config.display().to_string(),
            ),
            ("0.0.0.0:5009", format!("127.0.0.1:{admin}")),
            ("/var/cache/knitcache", dir.display().to_string()),
        ] {
            assert!(local.contains(from), "{from} in {line}");
            local = local.replace(from, &to);
        }
        local.push_str(&format!(
            " --listen 127.0.0.1:{port} --pid-file {d}.pid --upgrade-sock {d}.sock",
            d = dir.display()
        ));
        let log = tmp.path().join(format!("pod-{i}.log"));
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(&local)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().map(|(n, v)| (n, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("sh runs knitcache");
        pods.push((Reap(child), admin, port, log));
    }

    let c = client();
    let kpis = |port: u16| format!("http://127.0.0.1:{port}/api/comprehensive-kpis");
    for (_, admin, port, _) in &pods {
        until_ok(&c, &format!("http://127.0.0.1:{admin}/readyz")).await;
        get(&c, &kpis(*port)).await;
        assert!(get(&c, &kpis(*port)).await.is_hit());
    }
    // A purge through one pod (as through `kubectl port-forward`) reaches the two others.
    let purge = post_json(
        &c,
        &format!("http://127.0.0.1:{}/purge", pods[0].1),
        r#"{"url": "/api/comprehensive-kpis"}"#,
        None,
    )
    .await;
    assert_eq!(purge.status, 200, "{}", purge.text());
    // The first pod asked refills for all (the shared tier); the other serves that new copy,
    // never its own purged one.
    let from_shared = async |metrics: &str| {
        scrape(
            &c,
            metrics,
            r#"knitcache_cluster_shared_lookups_total{outcome="hit"}"#,
        )
        .await
            + scrape(
                &c,
                metrics,
                r#"knitcache_cluster_leases_total{outcome="waited"}"#,
            )
            .await
    };
    for (i, (_, admin, port, log)) in pods[1..].iter().enumerate() {
        let metrics = format!("http://127.0.0.1:{admin}/metrics");
        wait_applied(&c, &metrics, 1.0, log).await;
        let before = from_shared(&metrics).await;
        let after = get(&c, &kpis(*port)).await;
        let shared_copy = from_shared(&metrics).await > before;
        assert!(
            !after.is_hit() || (i > 0 && shared_copy),
            "purged on another pod: {}",
            after.cache_status()
        );
    }
    for (_, _, _, log) in &pods {
        let log = std::fs::read_to_string(log).expect("log");
        assert!(!log.contains(password), "the password is never logged");
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
