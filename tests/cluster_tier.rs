//! Cluster mode's shared tier and fill leases against a real `redis-server`: three replicas (real
//! proxies, each with its own memory and disk tiers) sharing one Redis in front of one origin
//! whose request count proves how often the ERP was asked. Concurrent misses across the replicas
//! cost the origin one request, a new replica is warm from its first request, a purge removes
//! the shared copy, and Redis going away (and coming back empty) never stops a replica.

mod common;

use common::origin::{Origin, Reply};
use common::redis_server::RedisServer;
use common::replica::Replica;
use common::*;
use std::time::Duration;

const ROUTES: &str = r#"  - name: kpis
    exact: /api/kpis
    ttl_secs: 600
  - name: orders
    prefix: /api/orders
    ttl_secs: 600
"#;

/// The origin: every path answers after `delay` (long enough for concurrent misses to meet).
async fn origin(delay: Duration) -> Origin {
    let origin = Origin::start().await;
    for path in ["/api/kpis", "/api/orders", "/api/orders/7"] {
        origin.always(path, Reply::ok(format!("{path} from the ERP")).delay(delay));
    }
    origin
}

/// A replica in cluster mode on `redis`.
fn replica(origin: &Origin, redis: &RedisServer) -> Replica {
    Replica::start(|dir| config_yaml_sections(origin.addr(), dir, &redis.cluster_yaml(), ROUTES))
}

/// Sums one sample over the replicas.
async fn total(replicas: &[&Replica], sample: &str) -> f64 {
    let mut sum = 0.0;
    for r in replicas {
        sum += metric(r.proxy(), sample).await;
    }
    sum
}

/// Waits until `r` has written `n` fills to the shared tier.
async fn shared(r: &Replica, n: f64) {
    let p = r.proxy();
    eventually_async("fills written to the shared tier", || async {
        metric(
            p,
            r#"knitcache_cluster_shared_stores_total{outcome="stored"}"#,
        )
        .await
            >= n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_misses_on_three_replicas_ask_the_erp_once() {
    let redis = RedisServer::start();
    let origin = origin(Duration::from_millis(500)).await;
    let (a, b, cc) = (
        replica(&origin, &redis),
        replica(&origin, &redis),
        replica(&origin, &redis),
    );
    let c = client();
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..100 {
        for r in [&a, &b, &cc] {
            let (c, url) = (c.clone(), r.proxy().url("/api/kpis"));
            requests.spawn(async move { get(&c, &url).await });
        }
    }
    let mut answered = 0;
    while let Some(resp) = requests.join_next().await {
        let resp = resp.expect("request task");
        assert_eq!(
            (resp.status, resp.text()),
            (200, "/api/kpis from the ERP".to_owned())
        );
        answered += 1;
    }
    assert_eq!(answered, 300);
    assert_eq!(
        origin.count("/api/kpis"),
        1,
        "300 concurrent misses across three replicas, one ERP request"
    );
    let all = [&a, &b, &cc];
    assert_eq!(
        total(&all, r#"knitcache_cluster_leases_total{outcome="won"}"#).await,
        1.0,
        "one replica filled"
    );
    // The other two waited for it, unless one of them looked after the object was stored.
    let waited = total(&all, r#"knitcache_cluster_leases_total{outcome="waited"}"#).await;
    let found = total(
        &all,
        r#"knitcache_cluster_shared_lookups_total{outcome="hit"}"#,
    )
    .await;
    assert!(waited + found >= 2.0, "waited {waited}, found {found}");
    // Every replica now answers from its own tiers.
    for r in all {
        assert!(get(&c, &r.proxy().url("/api/kpis")).await.is_hit());
    }
    assert_eq!(origin.count("/api/kpis"), 1);

    // /stats and the dashboard say so, replica by replica.
    let mut won = 0;
    for r in all {
        let doc = stats(&c, r.proxy()).await;
        let k = &doc["cluster"];
        assert_eq!(k["url"], redis.url().as_str(), "{k}");
        assert_eq!(k["redis_up"], true);
        won += k["leases"]["won"].as_u64().expect("won");
        let lease = &k["redis_ops"]["lease"];
        assert!(lease["count"].as_u64() >= Some(1), "{lease}");
        assert!(
            lease["p99_ms"].as_f64().is_some_and(|ms| ms > 0.0),
            "{lease}"
        );
    }
    assert_eq!(won, 1);
    let url = a.proxy().admin_url("/dashboard");
    let dom = tokio::task::spawn_blocking(move || common::browser::dump_dom(&url, 3_000, &[]))
        .await
        .expect("browser task");
    let leases = common::browser::by_id(&dom, "cluster-leases");
    let shown = metric(
        a.proxy(),
        r#"knitcache_cluster_leases_total{outcome="won"}"#,
    )
    .await;
    assert!(leases.starts_with(&format!("{shown} / ")), "{leases}");
    assert_eq!(common::browser::by_id(&dom, "cluster-redis"), "up");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_replica_is_warm_and_a_purge_removes_the_shared_copy() {
    let redis = RedisServer::start();
    let origin = origin(Duration::ZERO).await;
    let a = replica(&origin, &redis);
    let c = client();
    let first = get(&c, &a.proxy().url("/api/kpis")).await;
    assert_eq!((first.status, first.is_hit()), (200, false));
    shared(&a, 1.0).await;

    // A replica started now answers its very first request from the shared tier.
    let d = replica(&origin, &redis);
    let on_d = get(&c, &d.proxy().url("/api/kpis")).await;
    assert!(
        on_d.is_hit(),
        "warm from the first request: {}",
        on_d.cache_status()
    );
    assert_eq!(on_d.text(), "/api/kpis from the ERP");
    assert_eq!(origin.count("/api/kpis"), 1, "no new ERP request");
    // It is in D's own tiers now.
    assert!(get(&c, &d.proxy().url("/api/kpis")).await.is_hit());
    assert_eq!(
        metric(
            d.proxy(),
            r#"knitcache_cluster_shared_lookups_total{outcome="hit"}"#
        )
        .await,
        1.0
    );

    // A URL purge on A answers once the shared copy is gone: a replica that never held the
    // key misses to the ERP.
    let purge = post_json(
        &c,
        &a.proxy().admin_url("/purge"),
        r#"{"url": "/api/kpis"}"#,
        None,
    )
    .await;
    assert_eq!(purge.status, 200, "{}", purge.text());
    let b = replica(&origin, &redis);
    let on_b = get(&c, &b.proxy().url("/api/kpis")).await;
    assert!(!on_b.is_hit(), "purged everywhere: {}", on_b.cache_status());
    assert_eq!(origin.count("/api/kpis"), 2);

    // A ban (route purge) on B: a copy in the shared tier older than it is refused too.
    shared(&b, 1.0).await;
    let route = post_json(
        &c,
        &b.proxy().admin_url("/purge"),
        r#"{"route": "kpis"}"#,
        None,
    )
    .await;
    assert_eq!(route.status, 200, "{}", route.text());
    let e = replica(&origin, &redis);
    eventually_async("E applied the ban", || async {
        metric(e.proxy(), "knitcache_cluster_invalidations_applied_total").await >= 2.0
    })
    .await;
    let on_e = get(&c, &e.proxy().url("/api/kpis")).await;
    assert!(
        !on_e.is_hit(),
        "older than the ban: {}",
        on_e.cache_status()
    );
    assert_eq!(origin.count("/api/kpis"), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_down_leaves_each_replica_a_single_node_and_redis_back_empty_shares_again() {
    let mut redis = RedisServer::start();
    let origin = origin(Duration::ZERO).await;
    let (a, b, cc) = (
        replica(&origin, &redis),
        replica(&origin, &redis),
        replica(&origin, &redis),
    );
    let all = [&a, &b, &cc];
    let c = client();
    get(&c, &a.proxy().url("/api/kpis")).await;
    shared(&a, 1.0).await;
    for r in all {
        assert!(get(&c, &r.proxy().url("/api/kpis")).await.is_hit());
    }
    assert_eq!(origin.count("/api/kpis"), 1);

    redis.kill();
    for r in all {
        assert!(
            get(&c, &r.proxy().url("/api/kpis")).await.is_hit(),
            "hits go on"
        );
        let miss = get(&c, &r.proxy().url("/api/orders")).await;
        assert_eq!((miss.status, miss.is_hit()), (200, false), "misses go on");
        assert!(
            get(&c, &r.proxy().url("/api/orders")).await.is_hit(),
            "and are stored locally"
        );
        assert_eq!(get(&c, &r.proxy().admin_url("/readyz")).await.status, 200);
    }
    assert_eq!(
        origin.count("/api/orders"),
        3,
        "each replica asks the ERP as a single node would: once"
    );
    let failed = total(
        &all,
        r#"knitcache_cluster_shared_lookups_total{outcome="error"}"#,
    )
    .await
        + total(&all, r#"knitcache_cluster_leases_total{outcome="error"}"#).await;
    assert!(failed >= 3.0, "the failures are counted: {failed}");

    // Redis comes back with nothing in it: the replicas share fills again.
    redis.restart();
    for r in all {
        let p = r.proxy();
        eventually_async("Redis reachable again", || async {
            metric(p, "knitcache_cluster_redis_up").await == 1.0
        })
        .await;
    }
    let first = get(&c, &a.proxy().url("/api/orders/7")).await;
    assert_eq!((first.status, first.is_hit()), (200, false));
    shared(&a, 2.0).await;
    for r in [&b, &cc] {
        let resp = get(&c, &r.proxy().url("/api/orders/7")).await;
        assert!(
            resp.is_hit(),
            "from the shared tier: {}",
            resp.cache_status()
        );
    }
    assert_eq!(origin.count("/api/orders/7"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hot_key_is_refreshed_once_per_cluster_not_once_per_replica() {
    let redis = RedisServer::start();
    let origin = origin(Duration::ZERO).await;
    let routes = "  - name: kpis\n    exact: /api/kpis\n    ttl_secs: 6\n";
    // Refreshed 3 s before it expires, so every replica's warmer finds it due at once.
    let sections = format!("warming:\n  lead_secs: 3\n{}", redis.cluster_yaml());
    let start =
        || Replica::start(|dir| config_yaml_sections(origin.addr(), dir, &sections, routes));
    let (a, b, cc) = (start(), start(), start());
    let all = [&a, &b, &cc];
    let c = client();
    get(&c, &a.proxy().url("/api/kpis")).await;
    shared(&a, 1.0).await;
    // Clients keep the key hot on all three, over two refresh rounds at least.
    let won = r#"knitcache_cluster_warm_refreshes_total{outcome="won"}"#;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while origin.count("/api/kpis") < 3 {
        assert!(tokio::time::Instant::now() < deadline, "no refresh rounds");
        for r in all {
            let resp = get(&c, &r.proxy().url("/api/kpis")).await;
            assert_eq!(resp.status, 200);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Let any refresh already on its way finish, then compare.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let won = total(&all, won).await;
    let left = total(
        &all,
        r#"knitcache_cluster_warm_refreshes_total{outcome="left"}"#,
    )
    .await;
    assert_eq!(
        origin.count("/api/kpis") as f64,
        1.0 + won,
        "the first fill, then one ERP request per refresh round for the whole cluster"
    );
    assert!(
        left >= won,
        "the other replicas left each round to the winner: {left}"
    );
}

/// The fill leases still held in `redis`.
fn leases_held(redis: &RedisServer) -> String {
    redis
        .cli(&["--scan", "--pattern", "knitcache:lease:*"])
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fill_that_stores_nothing_releases_its_lease_at_once() {
    let redis = RedisServer::start();
    let origin = origin(Duration::ZERO).await;
    let slow = Duration::from_millis(400);
    origin.always(
        "/api/orders",
        Reply::ok("personal")
            .header("cache-control", "no-store")
            .delay(slow),
    );
    origin.always("/api/orders/7", Reply::drop().delay(slow));
    origin.always("/api/kpis", Reply::ok("slow").delay(Duration::from_secs(2)));
    let (a, b) = (replica(&origin, &redis), replica(&origin, &redis));
    let c = client();

    // Not cacheable, then an ERP that hangs up: both replicas ask at once, one holds the lease,
    // and the other is sent on to the ERP as soon as the holder's request ends, not after the
    // lease's 30 s.
    for path in ["/api/orders", "/api/orders/7"] {
        let (ua, ub) = (a.proxy().url(path), b.proxy().url(path));
        let (ra, rb) = tokio::join!(get(&c, &ua), get(&c, &ub));
        assert_eq!(ra.status, rb.status, "{path}");
        // (Retries may ask again after a hang-up.)
        assert!(
            origin.count(path) >= 2,
            "{path}: each replica asked the ERP"
        );
        assert_eq!(leases_held(&redis), "", "{path}: no lease left behind");
    }
    let expired = total(
        &[&a, &b],
        r#"knitcache_cluster_leases_total{outcome="expired"}"#,
    )
    .await;
    assert!(
        expired >= 1.0,
        "a waiter went on without the holder's fill: {expired}"
    );

    // A client that leaves while its request holds the lease: released when the request ends.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let gone = impatient.get(a.proxy().url("/api/kpis")).send().await;
    assert!(gone.is_err(), "the client gave up first");
    eventually("the lease is released", || leases_held(&redis).is_empty()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_above_the_size_cap_stays_local() {
    let redis = RedisServer::start();
    let origin = origin(Duration::ZERO).await;
    // Every response here is larger than 64 bytes (metadata included).
    let sections = format!("{}  shared_max_object_bytes: 64\n", redis.cluster_yaml());
    let start =
        || Replica::start(|dir| config_yaml_sections(origin.addr(), dir, &sections, ROUTES));
    let (a, b) = (start(), start());
    let c = client();
    get(&c, &a.proxy().url("/api/kpis")).await;
    assert!(
        get(&c, &a.proxy().url("/api/kpis")).await.is_hit(),
        "kept locally"
    );
    assert_eq!(
        metric(
            a.proxy(),
            r#"knitcache_cluster_shared_stores_total{outcome="too_large"}"#
        )
        .await,
        1.0
    );
    let on_b = get(&c, &b.proxy().url("/api/kpis")).await;
    assert!(!on_b.is_hit(), "not shared: {}", on_b.cache_status());
    assert_eq!(origin.count("/api/kpis"), 2);
}
