//! Cluster mode against a real `redis-server`: replicas sharing it see each other's purges and
//! invalidations, a replica that was down when a purge happened applies it before it serves
//! again, and Redis going away (and coming back empty) never stops a replica from serving.
//! Each test starts its own `redis-server` and its own replicas (real proxies, each with its own
//! memory and disk tiers) in front of one programmable origin whose request count proves what
//! reached it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::origin::{Origin, Reply};
use common::redis_server::RedisServer;
use common::replica::Replica;
use common::*;

const ROUTES: &str = r#"  - name: orders
    prefix: /api/orders
    ttl_secs: 600
  - name: kpis
    exact: /api/kpis
    ttl_secs: 600
"#;

const RULES: &str = r#"invalidation:
  - name: orders-generated
    exact: /api/generate
    purge: { routes: [orders] }
"#;

/// The origin: `/api/orders...` and `/api/kpis` answer with the current version, which
/// `POST /api/generate` (and any write to `/api/orders/...`) moves on.
async fn origin() -> Origin {
    let origin = Origin::start().await;
    let version = Arc::new(AtomicUsize::new(1));
    for path in ["/api/orders", "/api/orders/7", "/api/kpis"] {
        let v = version.clone();
        origin.on(path, move |req, _| {
            if req.method == "GET" {
                Reply::ok(format!("{path} v{}", v.load(Ordering::SeqCst)))
            } else {
                v.fetch_add(1, Ordering::SeqCst);
                Reply::ok("written")
            }
        });
    }
    let v = version.clone();
    origin.on("/api/generate", move |_, _| {
        v.fetch_add(1, Ordering::SeqCst);
        Reply::ok("generated")
    });
    origin
}

/// A replica with the routes and rules above, in cluster mode on `redis`.
fn replica(origin: &Origin, redis: &RedisServer) -> Replica {
    Replica::start(|dir| {
        let sections = format!("{RULES}{}", redis.cluster_yaml());
        config_yaml_sections(origin.addr(), dir, &sections, ROUTES)
    })
}

/// GETs `path` until it is a hit (the second request at the latest), returning the body.
async fn warm(c: &reqwest::Client, r: &Replica, path: &str) -> String {
    get(c, &r.proxy().url(path)).await;
    let again = get(c, &r.proxy().url(path)).await;
    assert!(again.is_hit(), "{path} is cached: {}", again.cache_status());
    again.text()
}

/// Waits until `r` has applied `n` invalidations of other replicas.
async fn applied(r: &Replica, n: f64) {
    let p = r.proxy();
    eventually_async("invalidations applied", || async {
        metric(p, "knitcache_cluster_invalidations_applied_total").await >= n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_or_purge_through_one_replica_is_fresh_on_the_others() {
    let redis = RedisServer::start();
    let origin = origin().await;
    let (a, b, cc) = (
        replica(&origin, &redis),
        replica(&origin, &redis),
        replica(&origin, &redis),
    );
    let c = client();
    for r in [&a, &b, &cc] {
        assert_eq!(warm(&c, r, "/api/orders").await, "/api/orders v1");
        warm(&c, r, "/api/kpis").await;
    }
    assert_eq!(
        origin.count("/api/orders"),
        1,
        "one fill for the cluster (the shared tier)"
    );

    // An invalidation rule fires on A: B and C drop their copies too; the first to be asked
    // refills, for all three.
    let w = send(c.post(a.proxy().url("/api/generate")).body("{}")).await;
    assert_eq!(w.status, 200);
    for r in [&b, &cc] {
        applied(r, 1.0).await;
    }
    for (i, r) in [&a, &b, &cc].into_iter().enumerate() {
        let after = get(&c, &r.proxy().url("/api/orders")).await;
        if i == 0 {
            assert!(!after.is_hit(), "purged: {}", after.cache_status());
        }
        assert_eq!(after.text(), "/api/orders v2");
        assert!(
            get(&c, &r.proxy().url("/api/kpis")).await.is_hit(),
            "untouched"
        );
    }
    assert_eq!(origin.count("/api/orders"), 2);

    // An admin URL purge on B: A and C drop it too.
    let purge = post_json(
        &c,
        &b.proxy().admin_url("/purge"),
        r#"{"url": "/api/kpis"}"#,
        None,
    )
    .await;
    assert_eq!(purge.status, 200, "{}", purge.text());
    applied(&a, 1.0).await;
    applied(&cc, 2.0).await;
    assert!(!get(&c, &a.proxy().url("/api/kpis")).await.is_hit());
    for r in [&a, &b, &cc] {
        get(&c, &r.proxy().url("/api/kpis")).await;
    }
    assert_eq!(origin.count("/api/kpis"), 2);

    // A write to a stored URL through C (RFC 9111 section 4.4): A and B drop it too.
    for r in [&a, &b, &cc] {
        warm(&c, r, "/api/orders/7").await;
    }
    let put = send(c.put(cc.proxy().url("/api/orders/7")).body("x")).await;
    assert_eq!(put.status, 200);
    for r in [&a, &b] {
        applied(r, 2.0).await;
    }
    for (i, r) in [&a, &b, &cc].into_iter().enumerate() {
        let after = get(&c, &r.proxy().url("/api/orders/7")).await;
        if i == 0 {
            assert!(
                !after.is_hit(),
                "invalidated by the PUT: {}",
                after.cache_status()
            );
        }
        assert_eq!(after.text(), "/api/orders/7 v3");
    }
    assert_eq!(
        origin
            .requests("/api/orders/7")
            .iter()
            .filter(|r| r.method == "GET")
            .count(),
        2
    );

    // Nobody applied its own entries, and the stream holds the three.
    assert_eq!(
        metric(cc.proxy(), "knitcache_cluster_invalidations_applied_total").await,
        2.0
    );
    assert_eq!(redis.cli(&["XLEN", "knitcache:invalidations"]).trim(), "3");
}

/// A shutdown signal that has already fired.
struct StopNow;

#[async_trait::async_trait]
impl pingora_core::server::ShutdownSignalWatch for StopNow {
    async fn recv(&self) -> pingora_core::server::ShutdownSignal {
        pingora_core::server::ShutdownSignal::FastShutdown
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_restarted_after_a_purge_it_missed_keeps_it_purged() {
    let redis = RedisServer::start();
    let origin = origin().await;
    let a = replica(&origin, &redis);
    let mut b = replica(&origin, &redis);
    let c = client();
    for r in [&a, &b] {
        warm(&c, r, "/api/orders").await;
        warm(&c, r, "/api/kpis").await;
    }
    b.stop();
    let url = post_json(
        &c,
        &a.proxy().admin_url("/purge"),
        r#"{"url": "/api/orders"}"#,
        None,
    )
    .await;
    assert_eq!(url.status, 200, "{}", url.text());
    let route = post_json(
        &c,
        &a.proxy().admin_url("/purge"),
        r#"{"route": "kpis"}"#,
        None,
    )
    .await;
    assert_eq!(route.status, 200, "{}", route.text());
    let before = (origin.count("/api/orders"), origin.count("/api/kpis"));

    // Building B (without running it, so only the start-up catch-up can have read the
    // stream) applies both purges before B could take a request.
    let yaml = b.yaml.clone();
    let built = std::thread::spawn(move || {
        let config = knitcache::config::parse(&yaml, "b.yaml").expect("config");
        let app = knitcache::app::build(
            config.clone(),
            knitcache::app::Listeners::bind(&config).expect("bind"),
        )
        .expect("builds");
        let text = String::from_utf8(app.metrics.render()).expect("utf8");
        // Stopped at once, closing the cache as any stop does.
        app.run(Box::new(StopNow));
        text
    })
    .join()
    .expect("build thread");
    assert!(
        built
            .lines()
            .any(|l| l == "knitcache_cluster_invalidations_applied_total 2"),
        "caught up before serving:\n{built}"
    );

    // B comes back on its disk tier, which still holds both: it must not serve them.
    b.restart();
    for path in ["/api/orders", "/api/kpis"] {
        let first = get(&c, &b.proxy().url(path)).await;
        assert!(
            !first.is_hit(),
            "{path} was purged while B was down: {}",
            first.cache_status()
        );
    }
    assert_eq!(
        (origin.count("/api/orders"), origin.count("/api/kpis")),
        (before.0 + 1, before.1 + 1)
    );
    assert!(
        b.dir.join("cluster-stream.pos").exists(),
        "B saved where it stands in the stream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_down_never_stops_a_replica_and_redis_back_empty_recovers() {
    let mut redis = RedisServer::start();
    let origin = origin().await;
    let (a, b) = (replica(&origin, &redis), replica(&origin, &redis));
    let c = client();
    for r in [&a, &b] {
        warm(&c, r, "/api/orders").await;
    }

    redis.kill();
    for r in [&a, &b] {
        assert!(
            get(&c, &r.proxy().url("/api/orders")).await.is_hit(),
            "hits go on"
        );
        let miss = get(&c, &r.proxy().url("/api/kpis")).await;
        assert_eq!((miss.status, miss.is_hit()), (200, false), "misses go on");
        assert_eq!(get(&c, &r.proxy().admin_url("/readyz")).await.status, 200);
    }
    // A purge on A while Redis is down purges A at once and waits to reach B.
    let purge = post_json(
        &c,
        &a.proxy().admin_url("/purge"),
        r#"{"url": "/api/orders"}"#,
        None,
    )
    .await;
    assert_eq!(purge.status, 200, "{}", purge.text());
    assert!(!get(&c, &a.proxy().url("/api/orders")).await.is_hit());
    let ap = a.proxy();
    eventually_async("A counts Redis down", || async {
        metric(ap, "knitcache_cluster_redis_up").await == 0.0
            && metric(ap, r#"knitcache_cluster_redis_errors_total{op="publish"}"#).await > 0.0
    })
    .await;
    assert_eq!(
        metric(ap, "knitcache_cluster_invalidations_pending").await,
        1.0
    );

    // Redis returns with nothing in it: A publishes what waited, B applies it.
    redis.restart();
    applied(&b, 1.0).await;
    let after = get(&c, &b.proxy().url("/api/orders")).await;
    assert!(
        !after.is_hit(),
        "the purge made while Redis was down reached B"
    );
    // And the other way round, after the restart.
    warm(&c, &a, "/api/kpis").await;
    let purge = post_json(
        &c,
        &b.proxy().admin_url("/purge"),
        r#"{"url": "/api/kpis"}"#,
        None,
    )
    .await;
    assert_eq!(purge.status, 200);
    applied(&a, 1.0).await;
    assert!(!get(&c, &a.proxy().url("/api/kpis")).await.is_hit());
    assert_eq!(metric(ap, "knitcache_cluster_redis_up").await, 1.0);
    assert_eq!(
        metric(ap, "knitcache_cluster_invalidations_pending").await,
        0.0
    );
}
