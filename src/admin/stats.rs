//! The `/stats` document: the statistics (`stats`), the ERP's health, the cache tiers, the
//! process and cluster mode (`cluster_stats`), sampled when asked. The same sample refreshes the
//! Prometheus gauges before a scrape.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::cache::DiskTier;
use crate::cache::disk_health::DiskState;
use crate::config::Config;
use crate::health::ErpHealth;
use crate::metrics::{Metrics, RSS_HEADROOM_BYTES, Sample};
use crate::stats::doc::{CacheDoc, ErpDoc, ProcessDoc, StatsDoc, TierDoc};
use crate::stats::{self, RECENT_WINDOW, Stats};

use super::Admin;

/// Resident set size of this process in bytes, from `/proc/self/status` (0 where unavailable).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Bytes of the disk tier in use: foyer's blocks that hold data, times the block size.
fn disk_bytes(metrics: &Metrics) -> u64 {
    const BLOCKS: &str = "foyer_storage_block_engine_block";
    let used: f64 = ["evictable", "writing", "reclaiming"]
        .iter()
        .map(|t| metrics.read(BLOCKS, ("type", t)))
        .sum();
    let size = metrics.read(
        "foyer_storage_block_engine_block_size_bytes",
        ("name", "knitcache"),
    );
    (used * size) as u64
}

/// A short hash of the loaded configuration: changes whenever any setting does, secrets
/// excepted. It is published without authentication (`/readyz`, `/stats`), so it hashes the
/// `Debug` form, in which `AdminSettings` shows only whether a token is set: a digest of a
/// secret would let anyone test guesses of it offline.
pub fn config_version(config: &Config) -> String {
    use blake2::{Blake2b, Digest, digest::consts::U8};
    let digest = Blake2b::<U8>::digest(format!("{config:?}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl Admin {
    /// Samples the state gauges now.
    pub(super) fn sample(&self) -> Sample {
        let (memory_bytes, memory_entries) = self.storage.memory_usage().unwrap_or((0, 0));
        Sample {
            rss_bytes: rss_bytes(),
            memory_bytes,
            memory_entries,
            disk_bytes: self.has_disk().then(|| disk_bytes(&self.metrics)),
            bans: self.bans.len() as u64,
            sealed_bodies: crate::cache::sealed_body::open_files() as u64,
        }
    }

    fn has_disk(&self) -> bool {
        !matches!(self.disk, DiskTier::MemoryOnly { .. })
    }

    /// The whole `/stats` document.
    pub(super) fn stats_doc(&self) -> StatsDoc {
        let config = self.config.load_full();
        let sample = self.sample();
        self.metrics.refresh(&sample);
        let stats: &Stats = &self.stats;
        let (mut routes, mut totals) = stats.routes();
        let by_route = counts(&self.metrics, "knitcache_requests_total", "route", |m| {
            label(m, "status") == Some("5xx")
        });
        for r in &mut routes {
            r.responses_5xx = Some(by_route.get(&r.name).copied().unwrap_or(0));
        }
        totals.responses_5xx = Some(by_route.values().sum());
        let kept_from_erp = counts(
            &self.metrics,
            "knitcache_upstream_refused_total",
            "reason",
            |_| true,
        );
        let slowest = stats::slowest(&routes);
        let erp = self.health.snapshot();
        let now = self.storage.health().state();
        let disk_state = super::ready::disk_state(&self.disk, &now);
        let (reason, since_unix_ms) = match (&now, &self.disk) {
            (DiskState::Degraded { reason, since }, _) => (
                Some(reason.clone()),
                Some(crate::cache::bans::unix_ms(*since)),
            ),
            (_, DiskTier::MemoryOnly { reason } | DiskTier::Recreated { reason, .. }) => {
                (Some(reason.clone()), None)
            }
            _ => (None, None),
        };
        StatsDoc {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_secs: stats.uptime().as_secs_f64(),
            config_version: config_version(&config),
            stats_enabled: config.observability.stats,
            recent_window_secs: RECENT_WINDOW.as_secs(),
            process: ProcessDoc {
                rss_bytes: sample.rss_bytes,
                rss_budget_bytes: config.cache.memory_bytes.saturating_add(RSS_HEADROOM_BYTES),
                requests_in_flight: self.metrics.in_flight.get(),
            },
            erp: erp_doc(&config, &erp),
            cache: CacheDoc {
                memory: TierDoc {
                    state: "open".to_owned(),
                    reason: None,
                    since_unix_ms: None,
                    bytes: Some(sample.memory_bytes),
                    entries: Some(sample.memory_entries),
                    capacity_bytes: config.cache.memory_bytes,
                },
                disk: TierDoc {
                    state: disk_state.to_owned(),
                    reason,
                    since_unix_ms,
                    bytes: sample.disk_bytes,
                    entries: None,
                    capacity_bytes: if self.has_disk() {
                        config.cache.disk_bytes
                    } else {
                        0
                    },
                },
                memory_evictions: self.metrics.read("foyer_memory_op_total", ("op", "evict"))
                    as u64,
                coalesced: totals.coalesced,
                bans: self.bans.len(),
            },
            totals,
            routes,
            slowest,
            hot_keys: stats.hot_keys(),
            kept_from_erp: Some(kept_from_erp),
            cluster: super::cluster_stats::cluster_doc(&config, &self.metrics),
        }
    }
}

/// The counters of `family` whose series pass `keep`, summed by the value of label `by`.
fn counts(
    metrics: &Metrics,
    family: &str,
    by: &str,
    keep: impl Fn(&prometheus::proto::Metric) -> bool,
) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for f in metrics
        .registry
        .gather()
        .iter()
        .filter(|f| f.name() == family)
    {
        for m in f.get_metric().iter().filter(|m| keep(m)) {
            if let Some(key) = label(m, by) {
                *out.entry(key.to_owned()).or_insert(0) += m.get_counter().value() as u64;
            }
        }
    }
    out
}

fn label<'m>(m: &'m prometheus::proto::Metric, name: &str) -> Option<&'m str> {
    m.get_label()
        .iter()
        .find(|l| l.name() == name)
        .map(|l| l.value())
}

fn erp_doc(config: &Config, h: &ErpHealth) -> ErpDoc {
    ErpDoc {
        address: config.upstream.address.to_string(),
        health_path: config.upstream.health_path.clone(),
        healthy: h.healthy,
        last_checked_secs_ago: h.last_checked.map(|t| {
            SystemTime::now()
                .duration_since(t)
                .unwrap_or_default()
                .as_secs_f64()
        }),
        last_latency_ms: h.last_latency.map(|d| d.as_secs_f64() * 1000.0),
        last_status: h.last_status,
        last_error: h.last_error.clone(),
        consecutive_failures: h.consecutive_failures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_sum_5xx_by_route_over_methods_and_cache_results() {
        let m = Metrics::new(["kpis", "orders"]).expect("metrics");
        let ms = std::time::Duration::from_millis(1);
        m.observe_request("kpis", &http::Method::GET, 503, "miss", ms);
        m.observe_request("kpis", &http::Method::HEAD, 502, "bypass", ms);
        m.observe_request("kpis", &http::Method::GET, 200, "hit", ms);
        m.observe_request("orders", &http::Method::GET, 404, "miss", ms);
        let by_route = counts(&m, "knitcache_requests_total", "route", |s| {
            label(s, "status") == Some("5xx")
        });
        assert_eq!(by_route.get("kpis"), Some(&2), "{by_route:?}");
        assert_eq!(by_route.get("orders").copied().unwrap_or(0), 0);
    }

    #[test]
    fn rss_is_read_from_proc() {
        let rss = rss_bytes();
        assert!(
            rss > 1024 * 1024,
            "a test process uses more than 1 MiB: {rss}"
        );
    }
}
