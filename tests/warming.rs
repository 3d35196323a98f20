//! Warming through the real proxy: a hot key is refreshed before it expires, so a client polling
//! it never sees a miss; the warm list is fetched before the first client asks; a client cannot
//! forge the warmer's marker; a re-warming purge refetches every purged hot key, however many
//! more there are than warm slots.

mod common;

use std::time::Duration;

use common::*;

const ROUTES: &str = r#"  - name: kpis
    exact: /api/comprehensive-kpis
    ttl_secs: 3
    stale_while_revalidate_secs: 0
    stale_if_error_secs: 0
  - name: planning
    exact: /api/planning-phases
    ttl_secs: 60
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_hot_key_is_refreshed_before_expiry_and_no_client_sees_a_miss() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let yaml = config_yaml_sections(sim.addr(), &dir, "warming:\n  lead_secs: 2\n", ROUTES);
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let c = client();
    let url = proxy.url("/api/comprehensive-kpis");

    let first = get(&c, &url).await;
    assert_eq!(first.cache_status(), "knitcache; fwd=miss");
    // Poll like a dashboard (faster) across three TTLs: every answer must be a fresh hit.
    let mut statuses = Vec::new();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = get(&c, &url).await;
        assert_eq!(r.status, 200);
        statuses.push(r.cache_status());
    }
    let not_hits: Vec<&String> = statuses
        .iter()
        .filter(|s| !s.starts_with("knitcache; hit; ttl=") || s.contains("stale"))
        .collect();
    assert!(
        not_hits.is_empty(),
        "a client saw something other than a fresh hit: {not_hits:?}"
    );
    let refreshes = sim.hits("/api/comprehensive-kpis") - 1;
    assert!(
        (2..=4).contains(&refreshes),
        "8 s of a 3 s TTL takes about 3 refreshes, saw {refreshes}"
    );
    let warmed = metric(
        &proxy,
        r#"knitcache_warm_requests_total{kind="hot",result="warmed"}"#,
    )
    .await;
    assert_eq!(warmed as u64, refreshes, "every refresh was the warmer's");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_warm_list_is_warm_before_the_first_client_request() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let warming = "warming:\n  list:\n    - /api/planning-phases\n";
    let yaml = config_yaml_sections(sim.addr(), &dir, warming, ROUTES);
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    eventually("the warm list was fetched", || {
        sim.hits("/api/planning-phases") == 1
    })
    .await;

    let c = client();
    // What a browser sends: the warmed variant.
    let r = send(
        c.get(proxy.url("/api/planning-phases"))
            .header("accept-encoding", "gzip, deflate, br, zstd"),
    )
    .await;
    assert!(
        r.is_hit(),
        "the first client request is already a hit: {}",
        r.cache_status()
    );
    assert_eq!(sim.hits("/api/planning-phases"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_cannot_forge_the_warm_marker() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let yaml = config_yaml(sim.addr(), &dir, ROUTES);
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let c = client();
    get(&c, &proxy.url("/api/planning-phases")).await;
    for guess in [
        "refresh:00000000000000000000000000000000",
        "refresh",
        "fill:x",
    ] {
        let r = send(
            c.get(proxy.url("/api/planning-phases"))
                .header("x-knitcache-warm", guess),
        )
        .await;
        assert!(
            r.is_hit(),
            "{guess}: a forged marker forces nothing: {}",
            r.cache_status()
        );
    }
    assert_eq!(sim.hits("/api/planning-phases"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rewarming_purge_refetches_every_hot_key_once_not_only_what_fits_the_slots() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let sections = "warming:\n  enabled: true\n  concurrency: 2\ninvalidation:\n  - name: reload\n    exact: /api/reload-data\n    methods: [GET]\n    purge: { everything: true }\n    rewarm: true\n";
    let proxy = TestProxy::start_yaml(
        &config_yaml_sections(sim.addr(), &dir, sections, ROUTES),
        &dir,
    );
    let c = client();
    let keys: Vec<String> = (0..10)
        .map(|i| format!("/api/planning-phases?plan={i}"))
        .collect();
    for k in &keys {
        get(&c, &proxy.url(k)).await;
        let again = get(&c, &proxy.url(k)).await;
        assert!(again.is_hit(), "{k} is cached: {}", again.cache_status());
        assert_eq!(sim.hits_with_query(k), 1, "{k}");
    }

    assert_eq!(get(&c, &proxy.url("/api/reload-data")).await.status, 200);
    eventually("the warmer refetched every purged key", || {
        keys.iter().all(|k| sim.hits_with_query(k) >= 2)
    })
    .await;
    // A few more warmer ticks: nothing is fetched twice.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let counts: Vec<u64> = keys.iter().map(|k| sim.hits_with_query(k)).collect();
    assert_eq!(
        counts,
        vec![2; keys.len()],
        "each key refetched exactly once"
    );
    let warmed = metric(
        &proxy,
        r#"knitcache_warm_requests_total{kind="hot",result="warmed"}"#,
    )
    .await;
    assert_eq!(
        warmed as usize,
        keys.len(),
        "every refetch was the warmer's"
    );
    for k in &keys {
        let r = get(&c, &proxy.url(k)).await;
        assert!(r.is_hit(), "{k} is warm again: {}", r.cache_status());
    }
    assert_eq!(sim.hits("/api/planning-phases"), 2 * keys.len() as u64);
}
