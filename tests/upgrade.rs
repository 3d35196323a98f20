//! Graceful binary upgrade, as an operator does it: a second `knitcache run --upgrade` takes the
//! listening sockets of the running one, which is sent SIGQUIT, closes its cache, hands over and
//! drains. Requests keep succeeding throughout, and the new process serves the old one's disk
//! tier (hits without asking the ERP).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

fn spawn(config: &std::path::Path, upgrade: bool) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_knitcache"));
    cmd.args(["--log", "warn", "run", "-c"]).arg(config);
    if upgrade {
        cmd.arg("--upgrade");
    }
    // Its log beside the config, for a failing run to be read.
    let log =
        std::fs::File::create(config.with_extension(if upgrade { "new.log" } else { "old.log" }))
            .expect("log file");
    cmd.stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn knitcache")
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {sig} failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_graceful_upgrade_drops_no_request_and_keeps_the_cache() {
    let sim = start_sim(0.01).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cache");
    let (port, admin) = (free_port(), free_port());
    let routes = "  - name: kpis\n    exact: /api/comprehensive-kpis\n    ttl_secs: 600\n  - name: planning\n    exact: /api/planning-phases\n    ttl_secs: 600\n";
    let yaml = config_yaml_on_ports(sim.addr(), &dir, routes, (port, admin), 2);
    let file = tmp.path().join("knitcache.yaml");
    std::fs::write(&file, yaml).expect("write config");
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let c = client();

    let old = Reap(spawn(&file, false));
    until_ok(&c, &url("/api/comprehensive-kpis")).await;
    let first = get(&c, &url("/api/comprehensive-kpis")).await;
    let pid_file = dir.with_extension("pid");
    assert_eq!(
        std::fs::read_to_string(&pid_file).expect("pid file"),
        old.0.id().to_string()
    );
    assert_eq!(sim.hits("/api/comprehensive-kpis"), 1);

    // Clients keep polling through the whole handover, each on a fresh connection.
    let poller = {
        let url = url("/api/planning-phases");
        tokio::spawn(async move {
            let c = reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .timeout(TIMEOUT)
                .build()
                .expect("client");
            let mut statuses = Vec::new();
            for _ in 0..60 {
                statuses.push(
                    c.get(&url)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .map_err(|e| e.to_string()),
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new = Reap(spawn(&file, true));
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(&old.0, "-QUIT");

    let statuses = poller.await.expect("poller");
    let failed: Vec<_> = statuses.iter().filter(|s| !matches!(s, Ok(200))).collect();
    assert!(
        failed.is_empty(),
        "requests failed during the upgrade: {failed:?}"
    );

    let mut old = old;
    let exited = tokio::task::spawn_blocking(move || old.0.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(
        exited.success(),
        "the old process drained and exited cleanly: {exited}"
    );

    assert_eq!(
        std::fs::read_to_string(&pid_file).expect("pid file"),
        new.0.id().to_string(),
        "the pid file names the process now serving"
    );
    let after = get(&c, &url("/api/comprehensive-kpis")).await;
    assert!(
        after.is_hit(),
        "the new process serves the handed-over disk tier: {}",
        after.cache_status()
    );
    assert_eq!(after.body, first.body);
    assert_eq!(
        sim.hits("/api/comprehensive-kpis"),
        1,
        "the ERP was not asked again"
    );
    signal(&new.0, "-TERM");
}
