//! The cluster outbox kept in the cache directory: a purge acknowledged by a replica while Redis
//! is down reaches the other replicas even if that replica is stopped (SIGTERM) or killed
//! (SIGKILL) before Redis returns, because its next start publishes what its outbox file held.
//! A damaged outbox file costs only its damaged records. And `knitcache_cluster_redis_up` says 0
//! after a start-up catch-up that failed.
//!
//! Replica A is the real binary (so it can be killed), B a proxy in this process; both share a
//! real `redis-server` and one origin whose request count proves what B served.

mod common;

use std::path::Path;

use common::origin::{Origin, Reply};
use common::redis_server::RedisServer;
use common::replica::Replica;
use common::*;

const ROUTES: &str = "  - name: orders\n    prefix: /api/orders\n    ttl_secs: 600\n";

/// The outbox file's name in a cache directory.
const OUTBOX_FILE: &str = "cluster-outbox.log";

/// How replica A ends while Redis is down.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum End {
    /// SIGTERM: a graceful stop.
    Term,
    /// SIGKILL.
    Kill,
    /// SIGKILL, then its outbox file is damaged: a bad line before the record, a torn one after.
    KillAndDamage,
}

/// Replica A: the binary, on fixed ports, in cluster mode on `redis`, caching in `tmp/cache`.
struct BinaryReplica {
    file: std::path::PathBuf,
    dir: std::path::PathBuf,
    port: u16,
    admin: u16,
    process: Option<Reap>,
}

impl BinaryReplica {
    fn new(origin: &Origin, redis: &RedisServer, tmp: &Path) -> BinaryReplica {
        let dir = tmp.join("cache");
        let (port, admin) = (free_port(), free_port());
        let yaml = on_ports(
            &config_yaml_sections(origin.addr(), &dir, &redis.cluster_yaml(), ROUTES),
            (port, admin),
        )
        .replace("grace_period_secs: 0", "grace_period_secs: 5");
        let file = tmp.join("a.yaml");
        std::fs::write(&file, yaml).expect("write config");
        BinaryReplica {
            file,
            dir,
            port,
            admin,
            process: None,
        }
    }

    async fn start(&mut self, c: &reqwest::Client, run: usize) {
        self.process = Some(spawn_binary(&self.file, &format!("{run}.log")));
        until_ok(c, &format!("http://127.0.0.1:{}/healthz", self.admin)).await;
    }

    async fn end(&mut self, how: End) {
        let mut process = self.process.take().expect("running");
        signal(&process.0, if how == End::Term { "-TERM" } else { "-KILL" });
        exit_within(&mut process, TIMEOUT)
            .await
            .expect("A exits within the bound");
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// One sample of A's `/metrics`, 0 when absent.
    async fn metric(&self, c: &reqwest::Client, sample: &str) -> f64 {
        let text = get(c, &format!("http://127.0.0.1:{}/metrics", self.admin))
            .await
            .text();
        text.lines()
            .find_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                (name == sample).then(|| value.parse().ok()).flatten()
            })
            .unwrap_or(0.0)
    }
}

/// Redis down, A purges a URL B holds, A ends as `how`, Redis comes back empty, A starts again:
/// B must drop its copy.
async fn a_purge_made_while_redis_is_down_outlives_a(how: End) {
    let mut redis = RedisServer::start();
    let origin = Origin::start().await;
    origin.always("/api/orders", Reply::ok("orders"));
    let tmp = tempfile::tempdir().expect("tmp");
    let c = client();
    let mut a = BinaryReplica::new(&origin, &redis, tmp.path());
    a.start(&c, 1).await;
    let b = Replica::start(|dir| {
        config_yaml_sections(origin.addr(), dir, &redis.cluster_yaml(), ROUTES)
    });
    for url in [a.url("/api/orders"), b.proxy().url("/api/orders")] {
        get(&c, &url).await;
        assert!(get(&c, &url).await.is_hit(), "{url} stored");
    }
    let filled = origin.count("/api/orders");

    redis.kill();
    let purge = post_json(
        &c,
        &format!("http://127.0.0.1:{}/purge", a.admin),
        r#"{"url": "/api/orders"}"#,
        None,
    )
    .await;
    assert_eq!(purge.status, 200, "acknowledged: {}", purge.text());
    assert_eq!(
        a.metric(&c, "knitcache_cluster_invalidations_pending")
            .await,
        1.0,
        "the purge waits for Redis"
    );
    a.end(how).await;
    let outbox = a.dir.join(OUTBOX_FILE);
    assert!(
        std::fs::metadata(&outbox).is_ok_and(|m| m.len() > 0),
        "the purge is in A's outbox file"
    );
    if how == End::KillAndDamage {
        let mut bytes = b"not a record\n".to_vec();
        bytes.extend(std::fs::read(&outbox).expect("read"));
        bytes.extend_from_slice(b"0123456789abcdef {\"url\":\"/api/or");
        std::fs::write(&outbox, bytes).expect("damage");
    }

    // Redis returns empty: nothing tells B of the purge but A.
    redis.restart();
    let bp = b.proxy();
    eventually_async("B reads the stream again", || async {
        metric(bp, "knitcache_cluster_redis_up").await == 1.0
    })
    .await;
    assert!(
        get(&c, &bp.url("/api/orders")).await.is_hit(),
        "B has not heard of the purge yet"
    );
    assert_eq!(origin.count("/api/orders"), filled);

    a.start(&c, 2).await;
    eventually_async("B applies A's purge", || async {
        metric(bp, "knitcache_cluster_invalidations_applied_total").await >= 1.0
    })
    .await;
    let after = get(&c, &bp.url("/api/orders")).await;
    assert!(!after.is_hit(), "purged on B: {}", after.cache_status());
    assert_eq!(
        origin.count("/api/orders"),
        filled + 1,
        "B asked the origin again"
    );
    let dropped = a
        .metric(&c, "knitcache_cluster_invalidations_dropped_total")
        .await;
    let expected = if how == End::KillAndDamage { 2.0 } else { 0.0 };
    assert_eq!(dropped, expected, "the damaged lines are counted");
    eventually_async("A's outbox is emptied once published", || async {
        a.metric(&c, "knitcache_cluster_invalidations_pending")
            .await
            == 0.0
            && std::fs::metadata(&outbox).is_ok_and(|m| m.len() == 0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purge_made_while_redis_is_down_outlives_a_graceful_stop() {
    a_purge_made_while_redis_is_down_outlives_a(End::Term).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purge_made_while_redis_is_down_outlives_a_sigkill() {
    a_purge_made_while_redis_is_down_outlives_a(End::Kill).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_outbox_file_costs_only_its_damaged_records() {
    a_purge_made_while_redis_is_down_outlives_a(End::KillAndDamage).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_up_is_0_after_a_start_up_catch_up_that_failed() {
    let redis = RedisServer::start();
    // Stuck: connections are accepted by the kernel and never answered, so every operation
    // takes its whole timeout (1.5 s here; the gauge must read 0 throughout).
    redis.pause();
    let origin = Origin::start().await;
    origin.always("/api/orders", Reply::ok("orders"));
    let cluster = redis.cluster_yaml_with_timeout(1500);
    let a = Replica::start(|dir| config_yaml_sections(origin.addr(), dir, &cluster, ROUTES));
    let p = a.proxy();
    assert!(
        metric(p, r#"knitcache_cluster_redis_errors_total{op="read"}"#).await >= 1.0,
        "the start-up catch-up failed"
    );
    assert_eq!(metric(p, "knitcache_cluster_redis_up").await, 0.0);
    redis.resume();
    eventually_async("Redis answers again", || async {
        metric(p, "knitcache_cluster_redis_up").await == 1.0
    })
    .await;
}
