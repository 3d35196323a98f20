//! The disk tier across restarts: hits survive a restart without asking the ERP, purges stay
//! purged, and a corrupt or unusable cache directory is survived (logged, started empty,
//! still serving). Whose directory may be moved aside: tests/cache_dir.rs.

mod common;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::*;
use knitcache::cache::dir_mark::MARK_FILE;
use knitcache::cache::{Cache, DiskTier};
use pingora_cache::storage::Storage;
use pingora_cache::trace::Span;
use pingora_cache::{CacheKey, CacheMeta};
use pingora_http::ResponseHeader;

const ROUTES: &str = r#"  - name: kpis
    exact: /api/comprehensive-kpis
    ttl_secs: 600
  - name: knit-orders
    exact: /api/knit-orders
    ttl_secs: 600
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_serves_hits_from_disk_without_the_erp() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let yaml = config_yaml(sim.addr(), &dir, ROUTES);
    let c = client();

    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let first = get(&c, &proxy.url("/api/knit-orders")).await;
    let from_memory = get(&c, &proxy.url("/api/knit-orders")).await;
    assert!(from_memory.is_hit());
    proxy.stop(true);

    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let after = get(&c, &proxy.url("/api/knit-orders")).await;
    assert!(
        after.is_hit(),
        "restart keeps the entry: {}",
        after.cache_status()
    );
    assert_eq!(after.body, first.body, "the same bytes come back from disk");
    // A memory-tier hit is answered before pingora's cache runs, a disk-tier hit by it: a
    // client must not be able to tell them apart.
    assert_eq!(
        fields(&after),
        fields(&from_memory),
        "a hit from disk and a hit from memory send the same fields"
    );
    assert_eq!(
        sim.hits("/api/knit-orders"),
        1,
        "the restarted proxy did not ask the ERP"
    );
}

/// The fields of a response with their values, without the ones that change from one
/// response to the next (`Date`, `Age`, the ttl in `Cache-Status`).
fn fields(r: &Resp) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(k, _)| *k != "date" && *k != "age")
        .map(|(k, v)| {
            let v = String::from_utf8_lossy(v.as_bytes());
            let v = match k.as_str() {
                "cache-status" => v.split("; ttl=").next().unwrap_or_default().to_owned(),
                _ => v.into_owned(),
            };
            (k.as_str().to_owned(), v)
        })
        .collect();
    fields.sort();
    fields
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_requests_for_entries_only_on_disk_is_served_from_disk() {
    // More keys than disk reads may be in flight at once: the rest queue for their turn and
    // are still answered from disk, never sent on to the ERP.
    const KEYS: usize = 40;
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let yaml = config_yaml(sim.addr(), &dir, ROUTES);
    let c = client();
    let url = |proxy: &TestProxy, i: usize| proxy.url(&format!("/api/knit-orders?v={i}"));

    let proxy = TestProxy::start_yaml(&yaml, &dir);
    for i in 0..KEYS {
        assert_eq!(get(&c, &url(&proxy, i)).await.status, 200);
    }
    proxy.stop(true);
    assert_eq!(sim.hits("/api/knit-orders"), KEYS as u64);

    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..KEYS {
        let (c, u) = (c.clone(), url(&proxy, i));
        burst.spawn(async move { get(&c, &u).await });
    }
    let mut hits = 0;
    while let Some(r) = burst.join_next().await {
        let r = r.expect("request task");
        assert_eq!(r.status, 200);
        assert!(r.is_hit(), "{}", r.cache_status());
        hits += 1;
    }
    assert_eq!(hits, KEYS);
    assert_eq!(
        sim.hits("/api/knit-orders"),
        KEYS as u64,
        "every key came back from disk"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_in_the_cache_files_is_survived() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let yaml = config_yaml(sim.addr(), &dir, ROUTES);
    let c = client();

    let proxy = TestProxy::start_yaml(&yaml, &dir);
    get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    proxy.stop(true);

    // Overwrite every byte of every file the disk tier wrote (not the mark saying the directory
    // is knitcache's: without it, the directory is refused, see tests/cache_dir.rs).
    let mut files = 0;
    for entry in walk(&dir).into_iter().filter(|p| !p.ends_with(MARK_FILE)) {
        let len = std::fs::metadata(&entry).expect("meta").len() as usize;
        let junk: Vec<u8> = (0..len).map(|i| (i * 7919 % 251) as u8).collect();
        std::fs::write(&entry, junk).expect("overwrite");
        files += 1;
    }
    assert!(files > 0, "the disk tier wrote files to corrupt");

    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let r = get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    assert_eq!(
        r.status, 200,
        "the proxy serves despite the corrupt directory"
    );
    assert!(
        get(&c, &proxy.url("/api/comprehensive-kpis"))
            .await
            .is_hit(),
        "and caches again"
    );
    assert_eq!(
        sim.hits("/api/comprehensive-kpis"),
        2,
        "the corrupt entry was not served"
    );
}

#[test]
fn purged_entries_stay_purged_after_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let settings = small_cache(tmp.path(), false);
    let key = CacheKey::new("GET /purged", "");
    let kept = CacheKey::new("GET /kept", "");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let span = Span::inactive().handle();

    let cache = Cache::open(&settings, &prometheus::Registry::new()).expect("open");
    assert_eq!(cache.disk, DiskTier::Open);
    rt.block_on(async {
        for k in [&key, &kept] {
            fill(cache.storage, k, &meta(), Bytes::from_static(b"body")).await;
        }
        let outcome = cache
            .storage
            .purge(
                pingora_cache::storage::PurgeTarget::Active(&key.to_compact()),
                pingora_cache::storage::PurgeType::Invalidation,
                &span,
            )
            .await
            .expect("purge");
        assert!(
            matches!(outcome, pingora_cache::storage::PurgeOutcome::Purged(_)),
            "{outcome:?}"
        );
    });
    cache.close();

    let cache = Cache::open(&settings, &prometheus::Registry::new()).expect("reopen");
    rt.block_on(async {
        assert!(
            cache
                .storage
                .lookup(&key, &span)
                .await
                .expect("lookup")
                .is_none(),
            "purged stays purged"
        );
        let (m, mut hit) = cache
            .storage
            .lookup(&kept, &span)
            .await
            .expect("lookup")
            .expect("kept entry recovered");
        assert_eq!(
            hit.read_body().await.expect("read"),
            Some(Bytes::from_static(b"body"))
        );
        assert!(
            m.headers().get("etag").is_some(),
            "stored responses carry a computed ETag"
        );
    });
    cache.close();
}

fn meta() -> CacheMeta {
    let header = ResponseHeader::build(200, None).expect("header");
    let now = SystemTime::now();
    CacheMeta::new(now + Duration::from_secs(600), now, 0, 0, header)
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A removal made while the response is still on its way to the disk tier holds: foyer's own
/// `remove` leaves that copy readable from its write queue (and a read promotes it back into
/// memory), so a purge right after a fill used to be undone by the next lookup.
#[test]
fn a_removal_right_after_a_fill_is_not_undone_by_the_write_queue() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let settings = small_cache(tmp.path(), false);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let span = Span::inactive().handle();
    let cache = Cache::open(&settings, &prometheus::Registry::new()).expect("open");
    rt.block_on(async {
        for i in 0..50 {
            let key = CacheKey::new(format!("GET /fresh/{i}"), "");
            fill(
                cache.storage,
                &key,
                &meta(),
                Bytes::from(vec![b'x'; 64 * 1024]),
            )
            .await;
            let removed = cache
                .storage
                .remove(pingora_cache::key::CacheHashKey::combined_bin(&key))
                .expect("remove");
            assert!(removed, "{i}: the fill was there to remove");
            assert!(
                cache
                    .storage
                    .lookup(&key, &span)
                    .await
                    .expect("lookup")
                    .is_none(),
                "{i}: removed stays removed"
            );
            assert!(
                !cache
                    .storage
                    .remove(pingora_cache::key::CacheHashKey::combined_bin(&key))
                    .expect("remove"),
                "{i}: nothing left to remove"
            );
        }
    });
    cache.close();
}

/// The disk tier's files as they are now (foyer's files only), to put back later.
fn disk_tier_files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    std::fs::read_dir(dir)
        .expect("cache dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("foyer-"))
        .map(|e| (e.path(), std::fs::read(e.path()).expect("read")))
        .collect()
}

/// A purge removes the entry from the disk tier too; should the disk tier ever bring a removed
/// entry back (foyer's recovery after a crash has been seen to), the purge still holds: its
/// record is kept in the cache directory and a copy older than it is never served. Simulated
/// here by putting back the disk tier's files from before the purge.
#[tokio::test(flavor = "multi_thread")]
async fn a_purged_entry_the_disk_tier_brings_back_is_not_served() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let yaml = config_yaml(sim.addr(), &dir, ROUTES);
    let c = client();
    let url = "/api/knit-orders";

    let proxy = TestProxy::start_yaml(&yaml, &dir);
    get(&c, &proxy.url(url)).await;
    assert!(get(&c, &proxy.url(url)).await.is_hit());
    proxy.stop(true);
    let before_purge = disk_tier_files(&dir);
    assert!(!before_purge.is_empty(), "the disk tier wrote its files");

    let proxy = TestProxy::start_yaml(&yaml, &dir);
    assert!(get(&c, &proxy.url(url)).await.is_hit(), "from disk");
    let purged = post_json(
        &c,
        &proxy.admin_url("/purge"),
        &format!(r#"{{"url": "{url}"}}"#),
        None,
    )
    .await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    proxy.stop(true);
    assert_eq!(sim.hits(url), 1);

    for (path, bytes) in before_purge {
        std::fs::write(path, bytes).expect("put back");
    }
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let after = get(&c, &proxy.url(url)).await;
    assert!(
        !after.is_hit(),
        "the purged copy was served again: {}",
        after.cache_status()
    );
    assert_eq!(sim.hits(url), 2, "refetched from the ERP");
    assert!(
        get(&c, &proxy.url(url)).await.is_hit(),
        "the refetched copy is stored as usual"
    );
}
