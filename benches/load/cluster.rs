//! The cluster scenario: what three replicas sharing one Redis cost the ERP next to one node.
//!
//! The same dashboard mix (`--tabs` tabs, split into three wrk processes of a third each) runs
//! twice against the simulator: first against a single knitcache, then against three replicas
//! in cluster mode (`knitcache run --cluster`, one `redis-server` on loopback), each wrk process
//! on a replica of its own, as a connection-balancing Service spreads clients. Each run has a
//! cold phase (every key misses once) and a measured steady state; the figure that matters is
//! the ERP's requests in the steady state, cluster over single node (the design's promise: one
//! ERP request per key for the whole cluster). Latency of hits is reported per run, over all
//! three wrk processes.
//!
//! While the cluster's steady state runs, one replica is sent a URL purge of a cached path the
//! mix never asks for (`LAG_PROBE`) every `PURGE_EVERY`, and the other two report in
//! `knitcache_cluster_invalidation_lag_seconds` how long each took to reach them (publish to
//! apply, on loopback): the scenario reads their histograms.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::report::{Histogram, WrkRun};
use super::{
    Opts, Proc, Signal, Target, World, WrkSpec, dashboard_plan, free_port, http_get, pct_json,
    pinned, ratio, run_wrk, sim_total, start_knitcache_with, wait_listening, wait_quiet,
    write_plan,
};

/// Replicas of the cluster, and wrk processes of either run.
const REPLICAS: usize = 3;

/// A cached path of the shipped config that the dashboard mix never requests: purging it costs
/// the ERP nothing.
const LAG_PROBE: &str = "/favicon.ico";

/// Time between two purges of `LAG_PROBE`.
const PURGE_EVERY: Duration = Duration::from_millis(250);

pub fn scenario(w: &World, opts: &Opts) -> Result<Value, String> {
    let (name, bin) = &opts.knitcache[0];
    let plan = write_plan(w, "cluster-dashboard", &dashboard_plan(opts.compress))?;
    let per_client = (opts.tabs / REPLICAS).max(1);

    println!("cluster: single node, {} tabs", per_client * REPLICAS);
    let single = {
        let t = start_knitcache_with(w, opts, &format!("{name}-single"), bin, &[])?;
        let ports = vec![t.port; REPLICAS];
        measure(w, opts, &ports, per_client, &plan, None)?
    };

    let redis_port = free_port()?;
    let _redis = start_redis(w, redis_port)?;
    let url = format!("redis://127.0.0.1:{redis_port}/0");
    println!("cluster: {REPLICAS} replicas on {url}");
    let replicas: Vec<Target> = (1..=REPLICAS)
        .map(|i| {
            start_knitcache_with(
                w,
                opts,
                &format!("{name}-replica-{i}"),
                bin,
                &["--cluster".to_owned(), url.clone()],
            )
        })
        .collect::<Result<_, _>>()?;
    let ports: Vec<u16> = replicas.iter().map(|t| t.port).collect();
    let admins: Vec<u16> = replicas.iter().filter_map(|t| t.admin).collect();
    let cluster = measure(w, opts, &ports, per_client, &plan, Some(admins[0]))?;
    let lag = lag(&admins[1..])?;

    let per_thousand = |m: &Measured| ratio(m.erp_requests as f64 * 1000.0, m.requests() as f64);
    let v = json!({
        "tabs": per_client * REPLICAS,
        "refresh_ms": (30_000.0 / opts.compress).round(),
        "duration_s": opts.duration,
        "single": single.json(),
        "cluster": cluster.json(),
        "erp_requests_cluster_over_single": ratio(cluster.erp_requests as f64, single.erp_requests as f64),
        "erp_per_1000_cluster_over_single": ratio(per_thousand(&cluster), per_thousand(&single)),
        "invalidation_lag": lag,
    });
    println!(
        "\ncluster: steady state, {}s\n| | client requests | ERP requests | per 1,000 | hit ratio | hit p50 ms | hit p99 ms |\n| --- | --- | --- | --- | --- | --- | --- |",
        opts.duration
    );
    for (label, m) in [("single node", &single), ("3 replicas", &cluster)] {
        let hit = m.hits().percentiles();
        println!(
            "| {label} | {} | {} | {:.2} | {:.4} | {:.3} | {:.3} |",
            m.requests(),
            m.erp_requests,
            per_thousand(m),
            m.hit_ratio(),
            hit.p50 / 1e3,
            hit.p99 / 1e3
        );
    }
    println!("ERP requests in the steady state by path: single node / 3 replicas");
    let paths: std::collections::BTreeSet<&String> = single
        .erp_by_path
        .keys()
        .chain(cluster.erp_by_path.keys())
        .collect();
    for p in paths {
        println!(
            "  {p}: {} / {}",
            single.erp_by_path.get(p).copied().unwrap_or(0),
            cluster.erp_by_path.get(p).copied().unwrap_or(0)
        );
    }
    println!(
        "ERP requests, cluster / single node: x{:.3}; invalidation lag: {}",
        ratio(cluster.erp_requests as f64, single.erp_requests as f64),
        v["invalidation_lag"]
    );
    Ok(v)
}

/// One run's steady state: the wrk processes' results and the ERP's requests meanwhile.
struct Measured {
    runs: Vec<WrkRun>,
    erp_requests: u64,
    /// The ERP's requests in the steady state, by path (query left out).
    erp_by_path: BTreeMap<String, u64>,
    cold_erp_requests: u64,
    purges: u64,
}

impl Measured {
    fn requests(&self) -> u64 {
        self.runs.iter().map(|r| r.requests).sum()
    }

    fn hit_ratio(&self) -> f64 {
        let hits: u64 = self.runs.iter().map(|r| r.hits).sum();
        let misses: u64 = self.runs.iter().map(|r| r.misses).sum();
        ratio(hits as f64, (hits + misses) as f64)
    }

    /// Every wrk process's hits in one histogram.
    fn hits(&self) -> Histogram {
        let mut all = Histogram::default();
        for r in &self.runs {
            for (b, n) in &r.hist_hit.buckets {
                *all.buckets.entry(*b).or_default() += n;
            }
        }
        all
    }

    fn json(&self) -> Value {
        let status = |i: usize| self.runs.iter().map(|r| r.status[i]).sum::<u64>();
        json!({
            "requests": self.requests(),
            "rps": self.runs.iter().map(WrkRun::rps).sum::<f64>(),
            "erp_requests": self.erp_requests,
            "cold_erp_requests": self.cold_erp_requests,
            "hit_ratio": self.hit_ratio(),
            "latency_hit": pct_json(&self.hits().percentiles()),
            "status": {"2xx": status(0), "3xx": status(1), "4xx": status(2), "5xx": status(3)},
            "socket_errors": self.runs.iter().map(|r| r.socket_errors).sum::<u64>(),
            "lag_probe_purges": self.purges,
            "erp_by_path": self.erp_by_path,
        })
    }
}

/// A cold phase, then the measured steady state, each with one wrk process per entry of
/// `ports`; while the steady state runs, `purge_on` (an admin port) is sent `LAG_PROBE` purges.
fn measure(
    w: &World,
    opts: &Opts,
    ports: &[u16],
    tabs_each: usize,
    plan: &Path,
    purge_on: Option<u16>,
) -> Result<Measured, String> {
    let before = sim_total(w.sim_port)?;
    drive(
        w,
        opts,
        ports,
        tabs_each,
        plan,
        opts.duration.div_ceil(2).max(3),
    )?;
    let cold_erp_requests = sim_total(w.sim_port)? - before;
    wait_quiet();
    let before = sim_total(w.sim_port)?;
    let paths_before = sim_paths(w)?;
    let stop = Arc::new(AtomicBool::new(false));
    let purger = purge_on.map(|admin| {
        let stop = stop.clone();
        std::thread::spawn(move || purge_until(admin, &stop))
    });
    let runs = drive(w, opts, ports, tabs_each, plan, opts.duration);
    stop.store(true, Ordering::Relaxed);
    let purges = match purger.map(|p| p.join()) {
        Some(Ok(n)) => n?,
        Some(Err(_)) => return Err("the purging thread panicked".into()),
        None => 0,
    };
    let erp_requests = sim_total(w.sim_port)? - before;
    let erp_by_path = sim_paths(w)?
        .into_iter()
        .filter_map(|(p, n)| {
            let d = n.saturating_sub(paths_before.get(&p).copied().unwrap_or(0));
            (d > 0).then_some((p, d))
        })
        .collect();
    Ok(Measured {
        runs: runs?,
        erp_requests,
        erp_by_path,
        cold_erp_requests,
        purges,
    })
}

/// The simulator's requests so far, by path.
fn sim_paths(w: &World) -> Result<BTreeMap<String, u64>, String> {
    let (status, _, body) = http_get(w.sim_port, "/__sim/counters")?;
    if status != 200 {
        return Err(format!("GET /__sim/counters: {status}"));
    }
    let doc: Value = serde_json::from_slice(&body).map_err(|e| format!("sim counters: {e}"))?;
    super::per_route::sim_paths(&doc)
}

/// One wrk process per entry of `ports`, all at once, each playing `tabs_each` tabs.
fn drive(
    w: &World,
    opts: &Opts,
    ports: &[u16],
    tabs_each: usize,
    plan: &Path,
    duration: u64,
) -> Result<Vec<WrkRun>, String> {
    std::thread::scope(|s| {
        let runs: Vec<_> = ports
            .iter()
            .map(|&port| {
                s.spawn(move || {
                    let spec = WrkSpec {
                        port,
                        path: "/",
                        threads: tabs_each,
                        connections: tabs_each,
                        duration,
                        plan: Some(plan),
                    };
                    run_wrk(w, opts, &spec)
                })
            })
            .collect();
        runs.into_iter()
            .map(|h| h.join().map_err(|_| "a wrk thread panicked".to_string())?)
            .collect()
    })
}

/// Purges `LAG_PROBE` on the admin port `admin` every `PURGE_EVERY` until `stop`; how many.
fn purge_until(admin: u16, stop: &AtomicBool) -> Result<u64, String> {
    let body = format!("{{\"url\": \"{LAG_PROBE}\"}}");
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) {
        let (status, _, answer) = super::http_request_with_body(admin, "POST", "/purge", &body)?;
        if status != 200 {
            return Err(format!(
                "purge of {LAG_PROBE}: {status} {}",
                String::from_utf8_lossy(&answer)
            ));
        }
        sent += 1;
        std::thread::sleep(PURGE_EVERY);
    }
    Ok(sent)
}

/// The invalidation lag the replicas on `admins` saw: how many purges reached them, the mean,
/// and the histogram bucket holding the 99th percentile (its upper edge).
fn lag(admins: &[u16]) -> Result<Value, String> {
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    let (mut sum, mut count) = (0.0, 0u64);
    for &admin in admins {
        let (status, _, body) = http_get(admin, "/metrics")?;
        if status != 200 {
            return Err(format!("GET /metrics: {status}"));
        }
        let text = String::from_utf8_lossy(&body);
        let h = super::report::prometheus_histogram(
            &text,
            "knitcache_cluster_invalidation_lag_seconds",
        )
        .ok_or("no knitcache_cluster_invalidation_lag_seconds in /metrics")?;
        for (le, n) in h.buckets {
            match buckets.iter_mut().find(|(l, _)| *l == le) {
                Some((_, total)) => *total += n,
                None => buckets.push((le, n)),
            }
        }
        sum += h.sum;
        count += h.count;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let p99_le = super::report::bucket_quantile(&buckets, count, 0.99);
    let p50_le = super::report::bucket_quantile(&buckets, count, 0.50);
    Ok(json!({
        "applied": count,
        "mean_ms": ratio(sum * 1e3, count as f64),
        "p50_at_most_ms": p50_le.map(|s| s * 1e3),
        "p99_at_most_ms": p99_le.map(|s| s * 1e3),
    }))
}

/// `redis-server` on loopback `port`, without persistence (Debian's package).
fn start_redis(w: &World, port: u16) -> Result<Proc, String> {
    let dir = w.dir.join("redis");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut cmd: Command = pinned(false, "0", Path::new("redis-server"));
    cmd.args(["--bind", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(&dir);
    let p = Proc::spawn("redis-server", cmd, &w.dir.join("redis.log"), Signal::Term)
        .map_err(|e| format!("{e} (apt-get install redis-server)"))?;
    wait_listening(port, "redis-server")?;
    Ok(p)
}
