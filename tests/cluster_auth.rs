//! Cluster mode's authentication against a real `redis-server`: replicas given the password by
//! the variable `cluster.password_env` names share purges; a replica with a wrong or no
//! password keeps serving alone, counts and logs the failure, and never shows the password in
//! its log, `/stats`, `/readyz` or `/metrics`; and `rediss://` to a redis-server with a TLS
//! port (certificates made at test time) shares purges when the replicas trust its CA, and is
//! refused when they do not. Each replica is the real `knitcache` binary in a process of its
//! own, since the password and the CA come from its environment.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::origin::{Origin, Reply};
use common::redis_server::{RedisOptions, RedisServer, RedisTls, TEST_TIMEOUT_MS};
use common::tls::TestCa;
use common::*;

/// The password redis-server requires.
const PASSWORD: &str = "knit-S3cret-9f2c71";

/// A wrong one, which must not show anywhere either.
const WRONG: &str = "wrong-Pw-4471aa";

/// The variable the replicas' `cluster.password_env` names: not the default, so that the key
/// is what makes them read it.
const PASSWORD_ENV: &str = "KNITCACHE_TEST_REDIS_SECRET";

const ROUTES: &str = r#"  - name: kpis
    exact: /api/kpis
    ttl_secs: 600
"#;

/// An origin whose `/api/kpis` answers with a version that `POST /api/kpis` moves on.
async fn origin() -> Origin {
    let origin = Origin::start().await;
    let version = Arc::new(AtomicUsize::new(1));
    origin.on("/api/kpis", move |req, _| {
        if req.method == "GET" {
            Reply::ok(format!("kpis v{}", version.load(Ordering::SeqCst)))
        } else {
            version.fetch_add(1, Ordering::SeqCst);
            Reply::ok("written")
        }
    });
    origin
}

/// A replica: the `knitcache` binary on fixed loopback ports, its log in a file.
struct Replica {
    _process: Reap,
    port: u16,
    admin: u16,
    log: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Replica {
    /// Starts one on `url` with `env` as its only cluster-related environment, and waits until
    /// it is ready.
    async fn start(origin: &Origin, url: &str, env: &[(&str, &str)]) -> Replica {
        let (tmp, dir) = cache_dir();
        let (port, admin) = (free_port(), free_port());
        let cluster = format!(
            "cluster:\n  url: \"{url}\"\n  password_env: {PASSWORD_ENV}\n  timeout_ms: {TEST_TIMEOUT_MS}\n"
        );
        let yaml = on_ports(
            &config_yaml_sections(origin.addr(), &dir, &cluster, ROUTES),
            (port, admin),
        );
        let file = tmp.path().join("knitcache.yaml");
        std::fs::write(&file, yaml).expect("write config");
        let log = tmp.path().join("knitcache.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_knitcache"));
        // Debug: the most the log ever says.
        cmd.args(["--log", "debug", "run", "-c"])
            .arg(&file)
            .env_remove(PASSWORD_ENV)
            .env_remove("KNITCACHE_REDIS_PASSWORD")
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR");
        for (name, value) in env {
            cmd.env(name, value);
        }
        let process = Reap(
            cmd.stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log file"))
                .spawn()
                .expect("spawn knitcache"),
        );
        let replica = Replica {
            _process: process,
            port,
            admin,
            log,
            _tmp: tmp,
        };
        until_ok(&client(), &replica.admin_url("/readyz")).await;
        replica
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).expect("read log")
    }

    /// One sample of its `/metrics`; 0 when absent.
    async fn metric(&self, sample: &str) -> f64 {
        scrape(&client(), &self.admin_url("/metrics"), sample).await
    }

    /// Waits until it has applied `n` invalidations of other replicas.
    async fn applied(&self, n: f64) {
        eventually_async("invalidations applied", || async {
            self.metric("knitcache_cluster_invalidations_applied_total")
                .await
                >= n
        })
        .await;
    }
}

/// GETs `/api/kpis` on `r` until it is a hit (the second request at the latest).
async fn warm(c: &reqwest::Client, r: &Replica) -> String {
    get(c, &r.url("/api/kpis")).await;
    let again = get(c, &r.url("/api/kpis")).await;
    assert!(again.is_hit(), "cached: {}", again.cache_status());
    again.text()
}

/// A purge through `from` reaches `to`: both hold `/api/kpis`, `from` purges it, `to` applies
/// it and fetches it again. `applied` is how many `to` will have applied then.
async fn purge_reaches(from: &Replica, to: &Replica, applied: f64) {
    let c = client();
    warm(&c, from).await;
    warm(&c, to).await;
    let purge = post_json(
        &c,
        &from.admin_url("/purge"),
        r#"{"url": "/api/kpis"}"#,
        None,
    )
    .await;
    assert_eq!(purge.status, 200, "{}", purge.text());
    to.applied(applied).await;
    let after = get(&c, &to.url("/api/kpis")).await;
    assert_eq!(after.status, 200);
    assert!(
        !after.is_hit(),
        "purged through the other replica: {}",
        after.cache_status()
    );
}

/// What a replica shows of itself: its log, `/stats`, `/readyz` and `/metrics`.
async fn everything_shown(r: &Replica) -> String {
    let c = client();
    let mut all = r.log();
    for path in ["/stats", "/readyz", "/metrics"] {
        let page = get(&c, &r.admin_url(path)).await;
        assert_eq!(page.status, 200, "{path}");
        all.push_str(&page.text());
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_given_the_password_by_password_env_share_purges() {
    let redis = RedisServer::start_with(RedisOptions {
        password: Some(PASSWORD.to_owned()),
        ..RedisOptions::default()
    });
    let origin = origin().await;
    let a = Replica::start(&origin, &redis.url(), &[(PASSWORD_ENV, PASSWORD)]).await;
    let b = Replica::start(&origin, &redis.url(), &[(PASSWORD_ENV, PASSWORD)]).await;

    purge_reaches(&a, &b, 1.0).await;
    purge_reaches(&b, &a, 1.0).await;
    // A write through a (an invalidation by an unsafe method) reaches b too.
    let c = client();
    warm(&c, &a).await;
    assert_eq!(warm(&c, &b).await, "kpis v1");
    let write = send(c.post(a.url("/api/kpis")).body("x")).await;
    assert_eq!(write.status, 200);
    b.applied(2.0).await;
    assert_eq!(get(&c, &b.url("/api/kpis")).await.text(), "kpis v2");

    assert_eq!(
        redis.cli(&["XLEN", "knitcache:invalidations"]).trim(),
        "3",
        "the stream holds the three, written with the password"
    );
    for r in [&a, &b] {
        assert_eq!(r.metric("knitcache_cluster_redis_up").await, 1.0);
        assert_eq!(
            r.metric(r#"knitcache_cluster_redis_errors_total{op="read"}"#)
                .await,
            0.0
        );
        assert!(!everything_shown(r).await.contains(PASSWORD));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_or_missing_password_serves_alone_counts_it_and_never_shows_it() {
    let redis = RedisServer::start_with(RedisOptions {
        password: Some(PASSWORD.to_owned()),
        ..RedisOptions::default()
    });
    let origin = origin().await;
    let good = Replica::start(&origin, &redis.url(), &[(PASSWORD_ENV, PASSWORD)]).await;
    let wrong = Replica::start(&origin, &redis.url(), &[(PASSWORD_ENV, WRONG)]).await;
    let missing = Replica::start(&origin, &redis.url(), &[]).await;
    let c = client();
    // The redis client's words for a refused AUTH, and Redis's for a command sent without one.
    for (r, answer) in [
        (&wrong, "Password authentication failed"),
        (&missing, "NOAUTH"),
    ] {
        // Serving: misses and hits, and ready.
        let first = get(&c, &r.url("/api/kpis")).await;
        assert_eq!((first.status, first.is_hit()), (200, false));
        assert!(get(&c, &r.url("/api/kpis")).await.is_hit());
        assert_eq!(get(&c, &r.admin_url("/readyz")).await.status, 200);
        // Counted, and logged with Redis's answer.
        eventually_async("the failure is counted", || async {
            r.metric("knitcache_cluster_redis_up").await == 0.0
                && r.metric(r#"knitcache_cluster_redis_errors_total{op="read"}"#)
                    .await
                    > 0.0
        })
        .await;
        eventually("the failure is logged", || {
            r.log().lines().any(|l| {
                l.contains("\"level\":\"ERROR\"")
                    && l.contains("Redis unreachable")
                    && l.contains(answer)
            })
        })
        .await;
        // Its own purges wait, counted, instead of reaching anyone.
        let purge = post_json(&c, &r.admin_url("/purge"), r#"{"url": "/api/kpis"}"#, None).await;
        assert_eq!(purge.status, 200, "{}", purge.text());
        assert!(!get(&c, &r.url("/api/kpis")).await.is_hit(), "purged here");
        eventually_async("the purge waits", || async {
            r.metric("knitcache_cluster_invalidations_pending").await == 1.0
        })
        .await;
    }
    // The replica with the password saw none of theirs, and reaches Redis.
    assert_eq!(good.metric("knitcache_cluster_redis_up").await, 1.0);
    assert_eq!(
        good.metric("knitcache_cluster_invalidations_applied_total")
            .await,
        0.0
    );
    assert_eq!(redis.cli(&["XLEN", "knitcache:invalidations"]).trim(), "0");
    for r in [&good, &wrong, &missing] {
        let shown = everything_shown(r).await;
        for secret in [PASSWORD, WRONG] {
            assert!(!shown.contains(secret), "a password is shown:\n{shown}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rediss_shares_purges_with_a_trusted_ca_and_refuses_an_unknown_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = TestCa::new("knitcache test Redis CA");
    let leaf = ca.leaf(tmp.path(), "redis");
    let ca_file = ca.write_pem(&tmp.path().join("ca.pem"));
    let redis = RedisServer::start_with(RedisOptions {
        password: Some(PASSWORD.to_owned()),
        tls: Some(RedisTls {
            port: free_port(),
            cert_file: leaf.cert_file.clone(),
            key_file: leaf.key_file.clone(),
            ca_file: ca_file.clone(),
        }),
        ..RedisOptions::default()
    });
    let origin = origin().await;
    let url = redis.tls_url();
    let ca_path = ca_file.to_str().expect("utf-8 path");
    // The trust store comes from SSL_CERT_FILE, as for any program using the system's.
    let trusting = [(PASSWORD_ENV, PASSWORD), ("SSL_CERT_FILE", ca_path)];
    let a = Replica::start(&origin, &url, &trusting).await;
    let b = Replica::start(&origin, &url, &trusting).await;
    purge_reaches(&a, &b, 1.0).await;
    purge_reaches(&b, &a, 1.0).await;
    for r in [&a, &b] {
        assert_eq!(r.metric("knitcache_cluster_redis_up").await, 1.0);
        assert!(r.log().contains(&url), "cluster mode on {url}");
    }

    // A replica that does not trust the CA (an empty trust file) never talks to that server:
    // it serves alone and says why.
    let empty = tmp.path().join("empty.pem");
    std::fs::write(&empty, "").expect("write");
    let distrusting = Replica::start(
        &origin,
        &url,
        &[
            (PASSWORD_ENV, PASSWORD),
            ("SSL_CERT_FILE", empty.to_str().expect("utf-8 path")),
        ],
    )
    .await;
    let c = client();
    assert_eq!(get(&c, &distrusting.url("/api/kpis")).await.status, 200);
    eventually_async("the refused certificate is counted", || async {
        distrusting.metric("knitcache_cluster_redis_up").await == 0.0
            && distrusting
                .metric(r#"knitcache_cluster_redis_errors_total{op="read"}"#)
                .await
                > 0.0
    })
    .await;
    eventually("the refusal is logged", || {
        distrusting
            .log()
            .lines()
            .any(|l| l.contains("Redis unreachable") && l.contains("invalid peer certificate"))
    })
    .await;
    let purge = post_json(&c, &a.admin_url("/purge"), r#"{"url": "/api/kpis"}"#, None).await;
    assert_eq!(purge.status, 200);
    b.applied(2.0).await;
    assert_eq!(
        distrusting
            .metric("knitcache_cluster_invalidations_applied_total")
            .await,
        0.0,
        "nothing reached the replica that refused the server"
    );
}
