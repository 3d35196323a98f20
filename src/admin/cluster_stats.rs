//! The `cluster` section of `/stats`: what the cluster's metrics (`metrics::ClusterMetrics`)
//! have counted, read back from the registry so the section and `/metrics` never disagree.

use std::collections::BTreeMap;

use prometheus::proto::{Metric, MetricFamily};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::stats::doc::{ClusterDoc, RedisOpDoc};

/// The section; `None` on a single node.
pub fn cluster_doc(config: &Config, metrics: &Metrics) -> Option<ClusterDoc> {
    let settings = config.cluster.as_ref()?;
    let families = metrics.registry.gather();
    let family = |name: &str| families.iter().find(|f| f.name() == name);
    let by_outcome = |name: &str| by_label(family(name), "outcome");
    let counter = |name: &str| family(name).map_or(0.0, |f| sum(f, |m| m.get_counter().value()));
    let gauge = |name: &str| family(name).map_or(0.0, |f| sum(f, |m| m.get_gauge().value()));
    let lag = family("knitcache_cluster_invalidation_lag_seconds")
        .and_then(|f| f.get_metric().first())
        .map(|m| m.get_histogram())
        .filter(|h| h.get_sample_count() > 0)
        .map(|h| h.get_sample_sum() / h.get_sample_count() as f64 * 1000.0);
    let errors = by_label(family("knitcache_cluster_redis_errors_total"), "op");
    let mut redis_ops = BTreeMap::new();
    for m in family("knitcache_cluster_redis_op_duration_seconds")
        .map(|f| f.get_metric())
        .unwrap_or_default()
    {
        let Some(op) = label(m, "op") else { continue };
        let h = m.get_histogram();
        let count = h.get_sample_count();
        let p99 = h
            .get_bucket()
            .iter()
            .find(|b| b.cumulative_count() as f64 >= count as f64 * 0.99)
            .map(|b| b.upper_bound() * 1000.0);
        redis_ops.insert(
            op.to_owned(),
            RedisOpDoc {
                count,
                errors: errors.get(op).copied().unwrap_or(0),
                mean_ms: (count > 0).then(|| h.get_sample_sum() / count as f64 * 1000.0),
                p99_ms: p99.filter(|_| count > 0),
            },
        );
    }
    Some(ClusterDoc {
        url: settings.url.clone(),
        redis_up: gauge("knitcache_cluster_redis_up") >= 1.0,
        shared_lookups: by_outcome("knitcache_cluster_shared_lookups_total"),
        shared_stores: by_outcome("knitcache_cluster_shared_stores_total"),
        leases: by_outcome("knitcache_cluster_leases_total"),
        warm_refreshes: by_outcome("knitcache_cluster_warm_refreshes_total"),
        invalidations_published: counter("knitcache_cluster_invalidations_published_total") as u64,
        invalidations_applied: counter("knitcache_cluster_invalidations_applied_total") as u64,
        invalidations_pending: gauge("knitcache_cluster_invalidations_pending").max(0.0) as u64,
        invalidation_lag_ms: lag,
        redis_ops,
    })
}

/// A counter family's values by the value of label `by`.
fn by_label(family: Option<&MetricFamily>, by: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for m in family.map(|f| f.get_metric()).unwrap_or_default() {
        if let Some(key) = label(m, by) {
            *out.entry(key.to_owned()).or_insert(0) += m.get_counter().value() as u64;
        }
    }
    out
}

fn sum(family: &MetricFamily, value: impl Fn(&Metric) -> f64) -> f64 {
    family.get_metric().iter().map(value).sum()
}

fn label<'m>(m: &'m Metric, name: &str) -> Option<&'m str> {
    m.get_label()
        .iter()
        .find(|l| l.name() == name)
        .map(|l| l.value())
}
