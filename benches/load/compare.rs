//! The comparison: knitcache build(s), nginx `proxy_cache` and Varnish in front of one origin
//! on one machine, in alternating rounds, per cell (origin x pinning) and workload: medians,
//! spreads and knitcache's ratios, then one summary table of every cell.
//!
//! Origins (`--origins`):
//! * `sim`: the ERP simulator, whose answers carry the ERP's own headers.
//! * `static`: nginx serving the simulator's bodies as files, with nginx's default headers
//!   (`ETag`, `Last-Modified`, `Accept-Ranges`), as a generic web server, Apache or Flask's
//!   `send_file` answers. A claim about hits must hold for the headers real origins send.
//!
//! Pinnings (`--pinning`):
//! * `pinned`: each proxy on CPU 1; wrk and the origin on CPU 0. A proxy gets one core.
//! * `unpinned`: everything shares every core, as on a user's machine; nginx runs its two
//!   workers, Varnish its thread pools, knitcache the shipped config's workers.
//!
//! knitcache runs the shipped config with rate limiting switched on, its limits far above the
//! load (which comes from one address), so that the limiter's cost is paid by every request it
//! applies to.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::report::{Spread, ratio, spread};
use super::{
    CATALOGUE, HIT_PATHS, HitRun, Opts, Proc, World, WrkSpec, cacheable, free_port, hit_run,
    http_get, knitcache_conf, measured_run, spawn_nginx, start_knitcache_at, start_nginx,
    start_varnish, wait_quiet, warm, warm_hit, write_plan, zipf_plan_over,
};

/// The comparison's origins.
pub const ORIGINS: [&str; 2] = ["sim", "static"];

/// One line of the closing summary: a knitcache build against another target, one workload.
struct SummaryRow {
    workload: String,
    knitcache: String,
    other: String,
    /// Median req/s of the knitcache build and of the other target.
    rps: (f64, f64),
    /// knitcache's req/s over the other's, round by round.
    by_round: Spread,
}

/// Every cell of `--origins` x `--pinning`, then the summary.
pub fn scenario(w: &World, opts: &Opts) -> Result<Value, String> {
    let mut out = serde_json::Map::new();
    let mut rows: Vec<(String, SummaryRow)> = Vec::new();
    for origin in &opts.origins {
        for &pin in &opts.pinnings {
            let pinning = if pin { "pinned" } else { "unpinned" };
            let name = format!("{origin}/{pinning}");
            println!("\n=== {name} ===");
            let cell_opts = Opts {
                pin,
                ..opts.clone()
            };
            // The simulator is the static origin's source and, for `sim`, the origin itself.
            repin(w.sim.pid(), pin)?;
            let (value, summary) = match origin.as_str() {
                "sim" => cell(w, &cell_opts, w.sim_port)?,
                "static" => {
                    let (_origin, port) = start_static_origin(w, &cell_opts)?;
                    cell(w, &cell_opts, port)?
                }
                other => return Err(format!("unknown origin {other}")),
            };
            w.upstream.store(w.sim_port, Ordering::Relaxed);
            out.insert(name.clone(), value);
            rows.extend(summary.into_iter().map(|r| (name.clone(), r)));
        }
    }
    repin(w.sim.pid(), opts.pin)?;
    println!(
        "\nsummary: median req/s, and knitcache's ratio (of the medians; round by round, median [min-max])\n\
         | cell | workload | knitcache | other | req/s | other req/s | ratio | by round |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    let mut summary = Vec::new();
    for (cell, r) in &rows {
        println!(
            "| {cell} | {} | {} | {} | {:.0} | {:.0} | x{:.2} | x{:.2} [{:.2}-{:.2}] |",
            r.workload,
            r.knitcache,
            r.other,
            r.rps.0,
            r.rps.1,
            ratio(r.rps.0, r.rps.1),
            r.by_round.median,
            r.by_round.min,
            r.by_round.max
        );
        summary.push(json!({
            "cell": cell, "workload": r.workload, "knitcache": r.knitcache, "other": r.other,
            "rps": r.rps.0, "other_rps": r.rps.1, "ratio": ratio(r.rps.0, r.rps.1),
            "by_round": {"median": r.by_round.median, "min": r.by_round.min, "max": r.by_round.max},
        }));
    }
    out.insert("summary".into(), Value::Array(summary));
    Ok(Value::Object(out))
}

/// Moves every thread of `pid` to CPU 0 (`pin`) or to every CPU.
fn repin(pid: u32, pin: bool) -> Result<(), String> {
    let cpus = if pin {
        "0".to_owned()
    } else {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        format!("0-{}", n - 1)
    };
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("taskset: {e}"))?;
    if !status.success() {
        return Err(format!("taskset -a -p -c {cpus} {pid}: {status}"));
    }
    Ok(())
}

/// Rewrites the YAML config at `path` with `edit`.
fn edit_yaml(
    path: &Path,
    edit: impl FnOnce(&mut serde_yaml::Value) -> Result<(), String>,
) -> Result<(), String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut conf: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    edit(&mut conf)?;
    let text = serde_yaml::to_string(&conf).map_err(|e| e.to_string())?;
    fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Switches `protection.rate_limit` on, with limits no single-address load here reaches (the
/// limiter's work is measured, never a refusal), and sets `server.threads` if given.
fn rate_limiting_on(conf: &mut serde_yaml::Value, threads: Option<usize>) -> Result<(), String> {
    let limit = conf
        .get_mut("protection")
        .and_then(|p| p.get_mut("rate_limit"))
        .and_then(serde_yaml::Value::as_mapping_mut)
        .ok_or("the shipped config has no protection.rate_limit section")?;
    limit.insert("enabled".into(), true.into());
    limit.insert("requests_per_sec".into(), 10_000_000.into());
    limit.insert("burst".into(), 10_000_000.into());
    if let Some(n) = threads {
        let server = conf
            .get_mut("server")
            .and_then(serde_yaml::Value::as_mapping_mut)
            .ok_or("the shipped config has no server section")?;
        server.insert("threads".into(), n.into());
    }
    Ok(())
}

/// nginx serving, as files, the bodies the simulator answers `200` for the hit paths and the
/// catalogue (a query string names the same file as its path; the first body wins). Returns
/// the process and its port.
fn start_static_origin(w: &World, opts: &Opts) -> Result<(Proc, u16), String> {
    let prefix = w.dir.join("static-origin");
    let root = prefix.join("root");
    let _ = fs::remove_dir_all(&prefix);
    fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let paths = HIT_PATHS
        .iter()
        .map(|(_, p)| *p)
        .chain(CATALOGUE.iter().copied());
    for path in paths {
        let file = root.join(
            path.split('?')
                .next()
                .unwrap_or(path)
                .trim_start_matches('/'),
        );
        if file.exists() {
            continue;
        }
        let (status, _, body) = http_get(w.sim_port, path)?;
        if status != 200 {
            continue;
        }
        if let Some(dir) = file.parent() {
            fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        fs::write(&file, body).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    let port = free_port()?;
    let template = fs::read_to_string(w.bench_dir.join("static_origin.conf"))
        .map_err(|e| format!("benches/load/static_origin.conf: {e}"))?;
    let conf = template
        .replace("@PREFIX@", &prefix.display().to_string())
        .replace("@ROOT@", &root.display().to_string())
        .replace("@PORT@", &port.to_string());
    let proc = spawn_nginx(w, opts, "0", &prefix, &conf, "static origin", port)?;
    Ok((proc, port))
}

/// One cell: every target in front of the origin listening on `upstream`, the rounds, and the
/// tables. Returns the cell's JSON and its summary rows.
fn cell(w: &World, opts: &Opts, upstream: u16) -> Result<(Value, Vec<SummaryRow>), String> {
    w.upstream.store(upstream, Ordering::Relaxed);
    let mut targets = Vec::new();
    let mut knitcaches = Vec::new();
    for (build, bin) in &opts.knitcache {
        // Each build once as shipped, or once per `--knitcache-threads` count.
        let counts: Vec<Option<usize>> = match &opts.knitcache_threads {
            Some(counts) => counts.iter().copied().map(Some).collect(),
            None => vec![None],
        };
        for threads in counts {
            let name = match threads {
                Some(n) => format!("{build}/t{n}"),
                None => build.clone(),
            };
            let conf = knitcache_conf(w, &name.replace('/', "-"))?;
            edit_yaml(&conf, |c| rate_limiting_on(c, threads))?;
            let mut t = start_knitcache_at(w, opts, &name.replace('/', "-"), bin, &conf, &[])?;
            t.name = name.clone();
            targets.push(t);
            knitcaches.push(name);
        }
    }
    for t in &opts.targets {
        match t.as_str() {
            "nginx" => targets.push(start_nginx(w, opts)?),
            "varnish" => targets.push(start_varnish(w, opts)?),
            other => return Err(format!("unknown target {other}")),
        }
    }
    // The mix compares caches, so it keeps the catalogue keys every target stores: those the
    // ERP answers 200. With the others (a 400 in rollback mode, a 404) knitcache and nginx send
    // each request to the one-at-a-time ERP while Varnish, storing every status, does not.
    let stored = cacheable(upstream, CATALOGUE)?;
    let mix_plan = write_plan(
        w,
        "compare-mix",
        &zipf_plan_over(&stored, stored.len(), opts.zipf),
    )?;
    for t in &targets {
        for (_, p) in HIT_PATHS {
            warm_hit(t, p)?;
        }
        warm(t.port, &stored)?;
    }
    // results[workload][target] = runs
    let mut results: BTreeMap<String, BTreeMap<String, Vec<HitRun>>> = BTreeMap::new();
    for round in 0..opts.rounds {
        println!("round {}/{}", round + 1, opts.rounds);
        for wl in opts.workloads.iter().map(String::as_str) {
            let n = targets.len();
            for k in 0..n {
                let t = &targets[(k + round) % n];
                let r = match wl {
                    "mix" => {
                        wait_quiet();
                        let c = opts.concurrency;
                        let spec = WrkSpec {
                            port: t.port,
                            path: "/",
                            threads: c,
                            connections: c,
                            duration: opts.duration,
                            plan: Some(&mix_plan),
                        };
                        measured_run(w, opts, t, &spec)?
                    }
                    size => {
                        let path = HIT_PATHS
                            .iter()
                            .find(|(s, _)| *s == size)
                            .map_or("/", |(_, p)| p);
                        hit_run(w, opts, t, path, opts.duration)?
                    }
                };
                println!(
                    "  {wl:>4} {:<12} {:>8.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms  {:>8.0} req/CPU-s  (others {:.1} CPU-s)",
                    t.name,
                    r.rps,
                    r.p50_us / 1e3,
                    r.p99_us / 1e3,
                    r.hits_per_cpu_s,
                    r.foreign_cpu_s
                );
                results
                    .entry(wl.into())
                    .or_default()
                    .entry(t.name.clone())
                    .or_default()
                    .push(r);
            }
        }
    }
    let mut out = serde_json::Map::new();
    let mut summary = Vec::new();
    for wl in opts.workloads.iter().map(String::as_str) {
        let Some(by_target) = results.get(wl) else {
            continue;
        };
        let stat = |runs: &Vec<HitRun>, f: fn(&HitRun) -> f64| -> Spread {
            spread(&runs.iter().map(f).collect::<Vec<_>>())
        };
        let mut wl_json = serde_json::Map::new();
        println!(
            "\n{wl}: medians over {} rounds [min-max]\n| target | req/s | p50 ms | p99 ms | req per proxy CPU-s |\n| --- | --- | --- | --- | --- |",
            opts.rounds
        );
        let mut med: BTreeMap<&str, (f64, f64, f64, f64)> = BTreeMap::new();
        for t in &targets {
            let Some(runs) = by_target.get(&t.name) else {
                continue;
            };
            let rps = stat(runs, |r| r.rps);
            let p50 = stat(runs, |r| r.p50_us);
            let p99 = stat(runs, |r| r.p99_us);
            let hpc = stat(runs, |r| r.hits_per_cpu_s);
            println!(
                "| {} | {:.0} [{:.0}-{:.0}] | {:.3} | {:.3} [{:.3}-{:.3}] | {:.0} [{:.0}-{:.0}] |",
                t.name,
                rps.median,
                rps.min,
                rps.max,
                p50.median / 1e3,
                p99.median / 1e3,
                p99.min / 1e3,
                p99.max / 1e3,
                hpc.median,
                hpc.min,
                hpc.max
            );
            med.insert(&t.name, (rps.median, p50.median, p99.median, hpc.median));
            let sp = |s: Spread| json!({"median": s.median, "min": s.min, "max": s.max});
            wl_json.insert(
                t.name.clone(),
                json!({"rps": sp(rps), "p50_us": sp(p50), "p99_us": sp(p99), "per_cpu_s": sp(hpc),
                       "errors": runs.iter().map(|r| r.errors).sum::<u64>(),
                       "foreign_cpu_s": runs.iter().map(|r| r.foreign_cpu_s).collect::<Vec<_>>()}),
            );
        }
        let mut ratios = serde_json::Map::new();
        for kname in &knitcaches {
            let Some(k) = med.get(kname.as_str()) else {
                continue;
            };
            for (other, o) in &med {
                if *other == kname.as_str() {
                    continue;
                }
                // Round by round: the two ran minutes apart at most, so a ratio per round
                // cancels much of the machine's drift that the medians keep.
                let paired: Vec<f64> = match (by_target.get(kname), by_target.get(*other)) {
                    (Some(a), Some(b)) => {
                        a.iter().zip(b).map(|(a, b)| ratio(a.rps, b.rps)).collect()
                    }
                    _ => Vec::new(),
                };
                let by_round = spread(&paired);
                let r = json!({
                    "rps": ratio(k.0, o.0),
                    "p50_latency": ratio(k.1, o.1),
                    "p99_latency": ratio(k.2, o.2),
                    "per_cpu_s": ratio(k.3, o.3),
                    "rps_by_round": paired,
                });
                println!(
                    "{kname} vs {other}: req/s x{:.2}, p99 latency x{:.2} (lower is better), req per CPU-s x{:.2}; req/s round by round x{:.2} [{:.2}-{:.2}]",
                    ratio(k.0, o.0),
                    ratio(k.2, o.2),
                    ratio(k.3, o.3),
                    by_round.median,
                    by_round.min,
                    by_round.max
                );
                ratios.insert(format!("{kname}/{other}"), r);
                summary.push(SummaryRow {
                    workload: wl.to_owned(),
                    knitcache: kname.clone(),
                    other: (*other).to_owned(),
                    rps: (k.0, o.0),
                    by_round,
                });
            }
        }
        wl_json.insert("ratios".into(), Value::Object(ratios));
        out.insert(wl.into(), Value::Object(wl_json));
    }
    out.insert("mix_keys".into(), json!(stored));
    Ok((Value::Object(out), summary))
}
