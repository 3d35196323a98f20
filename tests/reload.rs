//! Hot reload through the real proxy: reloading under continuous load fails no request, a bad
//! file keeps the running configuration and says why, and a new TTL applies to new entries.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use knitcache::config::reload::Outcome;

fn routes(ttl: u64) -> String {
    format!(
        "  - name: kpis\n    exact: /api/comprehensive-kpis\n    ttl_secs: {ttl}\n  - name: planning\n    prefix: /api/planning-phases\n    ttl_secs: {ttl}\n"
    )
}

fn ttl_of(r: &Resp) -> i64 {
    r.cache_status()
        .split("ttl=")
        .nth(1)
        .and_then(|t| t.split(';').next())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ttl in {:?}", r.cache_status()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reloading_under_load_fails_no_request() {
    let sim = start_sim(0.01).await;
    let (tmp, dir) = cache_dir();
    let file = tmp.path().join("knitcache.yaml");
    std::fs::write(&file, config_yaml(sim.addr(), &dir, &routes(60))).expect("write");
    let proxy = TestProxy::start_file(&file, &dir);

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (c, stop, done) = (client(), stop.clone(), done.clone());
            let base = proxy.url("/api/planning-phases");
            tokio::spawn(async move {
                let mut failures = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Acquire) && i < 5000 {
                    i += 1;
                    match c.get(format!("{base}?w={w}&i={}", i % 50)).send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            done.fetch_add(1, Ordering::AcqRel);
                        }
                        Ok(r) => failures.push(format!("status {}", r.status())),
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                failures
            })
        })
        .collect();

    for n in 0..10u64 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        std::fs::write(&file, config_yaml(sim.addr(), &dir, &routes(30 + n))).expect("write");
        proxy.reloads.trigger();
    }
    eventually("all ten reloads applied", || proxy.reloads.version() == 11).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Release);
    for w in workers {
        let failures = w.await.expect("worker");
        assert!(
            failures.is_empty(),
            "requests failed during reloads: {failures:?}"
        );
    }
    assert!(
        done.load(Ordering::Acquire) > 100,
        "load ran throughout: {}",
        done.load(Ordering::Acquire)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_reload_keeps_the_running_config_and_says_why() {
    let sim = start_sim(0.01).await;
    let (tmp, dir) = cache_dir();
    let file = tmp.path().join("knitcache.yaml");
    std::fs::write(&file, config_yaml(sim.addr(), &dir, &routes(60))).expect("write");
    let proxy = TestProxy::start_file(&file, &dir);
    let c = client();

    std::fs::write(
        &file,
        config_yaml(sim.addr(), &dir, &routes(60)).replace("ttl_secs: 60", "ttl_secs: soon"),
    )
    .expect("write");
    proxy.reloads.trigger();
    eventually("the reload was judged", || proxy.reloads.last().is_some()).await;
    match proxy.reloads.last() {
        Some(Outcome::Rejected { errors, .. }) => {
            assert!(
                errors.contains("ttl_secs"),
                "the reason names the key: {errors}"
            );
        }
        other => panic!("a bad file must be rejected: {other:?}"),
    }
    assert_eq!(
        proxy.reloads.version(),
        1,
        "the running configuration stays"
    );
    assert_eq!(
        metric(
            &proxy,
            r#"knitcache_config_reloads_total{result="rejected"}"#
        )
        .await,
        1.0
    );
    get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    let hit = get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    assert!(
        hit.is_hit() && ttl_of(&hit) > 50,
        "the old route table still serves: {}",
        hit.cache_status()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reloaded_ttl_applies_to_new_entries() {
    let sim = start_sim(0.01).await;
    let (tmp, dir) = cache_dir();
    let file = tmp.path().join("knitcache.yaml");
    std::fs::write(&file, config_yaml(sim.addr(), &dir, &routes(600))).expect("write");
    let proxy = TestProxy::start_file(&file, &dir);
    let c = client();

    get(&c, &proxy.url("/api/planning-phases?before")).await;
    let before = get(&c, &proxy.url("/api/planning-phases?before")).await;
    assert!(ttl_of(&before) > 590, "{}", before.cache_status());

    std::fs::write(&file, config_yaml(sim.addr(), &dir, &routes(20))).expect("write");
    proxy.reloads.trigger();
    eventually("the reload applied", || proxy.reloads.version() == 2).await;

    get(&c, &proxy.url("/api/planning-phases?after")).await;
    let after = get(&c, &proxy.url("/api/planning-phases?after")).await;
    assert!(
        (15..=20).contains(&ttl_of(&after)),
        "a new entry gets the new TTL: {}",
        after.cache_status()
    );
    let old = get(&c, &proxy.url("/api/planning-phases?before")).await;
    assert!(
        ttl_of(&old) > 500,
        "an entry stored before keeps its own: {}",
        old.cache_status()
    );
}
