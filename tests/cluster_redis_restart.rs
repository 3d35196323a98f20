//! Cluster mode across a restart of Redis with persistence (its append-only file, as the
//! shipped compose and Kubernetes Redis run): the stream comes back, so a replica that was down
//! while another purged, and while Redis restarted, still applies that purge before it serves.
//! Against a real `redis-server` killed with SIGKILL and started again on its directory.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::origin::{Origin, Reply};
use common::redis_server::{RedisOptions, RedisServer};
use common::*;

const ROUTES: &str = r#"  - name: kpis
    exact: /api/kpis
    ttl_secs: 600
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_purge_survives_a_redis_restart_with_persistence_for_a_replica_that_was_down() {
    let mut redis = RedisServer::start_with(RedisOptions {
        persistence: true,
        ..RedisOptions::default()
    });
    let origin = Origin::start().await;
    let version = Arc::new(AtomicUsize::new(1));
    let v = version.clone();
    origin.on("/api/kpis", move |_, _| {
        Reply::ok(format!("kpis v{}", v.load(Ordering::SeqCst)))
    });
    let replica = || {
        let (tmp, dir) = cache_dir();
        let yaml = config_yaml_sections(origin.addr(), &dir, &redis.cluster_yaml(), ROUTES);
        (TestProxy::start_yaml(&yaml, &dir), yaml, dir, tmp)
    };
    let (a, _, _, _a_tmp) = replica();
    let (b, b_yaml, b_dir, _b_tmp) = replica();
    let c = client();
    for p in [&a, &b] {
        get(&c, &p.url("/api/kpis")).await;
        assert!(get(&c, &p.url("/api/kpis")).await.is_hit());
    }

    // B goes down; the ERP's data changes and is purged through A, which publishes it.
    b.stop(true);
    version.store(2, Ordering::SeqCst);
    let purge = post_json(&c, &a.admin_url("/purge"), r#"{"url": "/api/kpis"}"#, None).await;
    assert_eq!(purge.status, 200, "{}", purge.text());
    eventually_async("A published the purge", || async {
        metric(&a, "knitcache_cluster_invalidations_published_total").await == 1.0
    })
    .await;

    // Redis dies and comes back on its append-only file.
    redis.kill();
    redis.restart();
    assert_eq!(
        redis.cli(&["XLEN", "knitcache:invalidations"]).trim(),
        "1",
        "the stream came back"
    );

    // B starts on its disk tier, which still holds v1: the purge it missed is applied first.
    let b = TestProxy::start_yaml(&b_yaml, &b_dir);
    let first = get(&c, &b.url("/api/kpis")).await;
    assert!(
        !first.is_hit(),
        "purged while B was down: {}",
        first.cache_status()
    );
    assert_eq!(first.text(), "kpis v2");
    assert_eq!(
        metric(&b, "knitcache_cluster_invalidations_applied_total").await,
        1.0
    );
}
