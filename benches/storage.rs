//! How fast is the hybrid storage itself? A hit from the memory tier, a hit that has to be
//! read back from the disk tier, and storing a response (the miss path), for a 2 KB and a
//! 100 KB body: the ERP's typical JSON and its large `knit-orders`.
//!
//! Run: `cargo bench --bench storage`. Figures are in README.md ("Performance").

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use knitcache::cache::Cache;
use knitcache::config::{CacheSettings, CompressionSettings};
use pingora_cache::storage::Storage;
use pingora_cache::trace::Span;
use pingora_cache::{CacheKey, CacheMeta};
use pingora_http::ResponseHeader;

fn settings(dir: &std::path::Path, memory_bytes: u64) -> CacheSettings {
    CacheSettings {
        dir: dir.to_path_buf(),
        memory_bytes,
        disk_bytes: 256 << 20,
        max_object_bytes: 1 << 20,
        lock_timeout: Duration::from_secs(5),
        compression: CompressionSettings {
            enabled: false,
            level: 6,
        },
        tag_header: None,
    }
}

fn meta() -> CacheMeta {
    let mut h = ResponseHeader::build(200, None).expect("header");
    h.append_header("content-type", "application/json")
        .expect("header");
    let now = SystemTime::now();
    CacheMeta::new(now + Duration::from_secs(3600), now, 30, 600, h)
}

async fn put(cache: &Cache, key: &CacheKey, body: &Bytes) {
    let span = Span::inactive().handle();
    let mut miss = cache
        .storage
        .get_miss_handler(key, &meta(), &span)
        .await
        .expect("miss handler");
    miss.write_body(body.clone(), true).await.expect("write");
    miss.finish().await.expect("finish");
}

/// Whether `key` can be read back at all.
async fn present(cache: &Cache, key: &CacheKey) -> bool {
    let span = Span::inactive().handle();
    matches!(cache.storage.lookup(key, &span).await, Ok(Some(_)))
}

async fn get(cache: &Cache, key: &CacheKey) -> usize {
    let span = Span::inactive().handle();
    let (_, mut hit) = cache
        .storage
        .lookup(key, &span)
        .await
        .expect("lookup")
        .expect("present");
    hit.read_body().await.expect("read").map_or(0, |b| b.len())
}

fn storage(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut g = c.benchmark_group("storage");
    for size in [2 * 1024, 100 * 1024] {
        let body = Bytes::from(vec![b'x'; size]);
        g.throughput(Throughput::Bytes(size as u64));

        // Memory tier: everything fits.
        let tmp = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(
            &settings(tmp.path(), 64 << 20),
            &prometheus::Registry::new(),
        )
        .expect("open");
        let key = CacheKey::new(format!("GET /mem/{size}"), "");
        rt.block_on(put(&cache, &key, &body));
        g.bench_with_input(BenchmarkId::new("get_memory", size), &key, |b, key| {
            b.iter(|| rt.block_on(get(&cache, key)))
        });
        let mut n = 0u64;
        g.bench_function(BenchmarkId::new("put", size), |b| {
            b.iter(|| {
                n += 1;
                rt.block_on(put(
                    &cache,
                    &CacheKey::new(format!("GET /put/{n}"), ""),
                    &body,
                ))
            })
        });
        cache.close();

        // Disk tier: room for about three entries in memory, and enough entries to fill several
        // disk blocks (the block being filled is still in memory; sealed blocks are read back).
        let tmp = tempfile::tempdir().expect("tempdir");
        let registry = prometheus::Registry::new();
        let cache = Cache::open(&settings(tmp.path(), 4 * size as u64), &registry).expect("open");
        let block = knitcache::cache::block_bytes_for(1 << 20) as usize;
        let count = (4 * block / size).max(64);
        let keys: Vec<CacheKey> = (0..count)
            .map(|i| CacheKey::new(format!("GET /disk/{i}"), ""))
            .collect();
        let keys = rt.block_on(async {
            for (n, k) in keys.iter().enumerate() {
                put(&cache, k, &body).await;
                // foyer drops an entry from the disk tier when its flush buffer is full, and the
                // memory tier then evicts it with no copy anywhere: give the flusher time.
                if n % 8 == 7 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            // let the flusher write the sealed blocks
            tokio::time::sleep(Duration::from_millis(500)).await;
            // and walk only the entries that made it to disk
            let mut stored = Vec::with_capacity(keys.len());
            for k in keys {
                if present(&cache, &k).await {
                    stored.push(k);
                }
            }
            stored
        });
        assert!(
            keys.len() >= 16,
            "too few entries reached the disk tier: {}",
            keys.len()
        );
        let mut i = 0usize;
        g.bench_function(BenchmarkId::new("get_disk", size), |b| {
            b.iter(|| {
                // walk the oldest three blocks' worth of keys: all sealed, all on disk
                i = (i + 7) % (3 * keys.len() / 4);
                rt.block_on(get(&cache, &keys[i]))
            })
        });
        assert!(
            disk_hits(&registry) > 0.0,
            "get_disk must read from the disk tier"
        );
        cache.close();
    }
    g.finish();
}

/// Lookups foyer answered from its disk tier (its `foyer_storage_op_total{op="hit"}`).
fn disk_hits(registry: &prometheus::Registry) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "foyer_storage_op_total")
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "op" && l.value() == "hit")
        })
        .map(|m| m.get_counter().value())
        .sum()
}

criterion_group!(benches, storage);
criterion_main!(benches);
