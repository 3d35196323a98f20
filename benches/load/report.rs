//! Parsing wrk's output (the `KC ` and `KR ` lines the Lua scripts print) and summarising runs:
//! percentiles from the scripts' log-bucket histograms, medians and spreads over rounds.
//! Kept free of I/O so the harness can check it without starting anything.

use std::collections::BTreeMap;

/// Histogram bucket width: mix.lua files a latency of `us` microseconds under
/// `floor(ln(us) * BUCKETS_PER_E)`, i.e. buckets about 2 % wide.
pub const BUCKETS_PER_E: f64 = 50.0;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
}

/// A latency histogram: bucket index (as the Lua scripts compute it) to count.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    pub buckets: BTreeMap<i64, u64>,
}

impl Histogram {
    pub fn count(&self) -> u64 {
        self.buckets.values().sum()
    }

    /// The upper edge (µs) of the bucket holding quantile `q` (0..1); 0 for an empty histogram.
    pub fn quantile(&self, q: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return 0.0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (&b, &n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return ((b + 1) as f64 / BUCKETS_PER_E).exp();
            }
        }
        0.0
    }

    pub fn percentiles(&self) -> Percentiles {
        Percentiles {
            p50: self.quantile(0.50),
            p95: self.quantile(0.95),
            p99: self.quantile(0.99),
            p999: self.quantile(0.999),
        }
    }
}

/// One wrk run, as parsed from its `KC ` lines.
#[derive(Debug, Clone, Default)]
pub struct WrkRun {
    pub requests: u64,
    pub duration_s: f64,
    pub bytes: u64,
    /// Socket errors and timeouts (wrk's connect/read/write/timeout counters).
    pub socket_errors: u64,
    /// Responses with a status >= 400 as wrk counts them.
    pub bad_status: u64,
    /// wrk's own percentiles over every response (µs).
    pub latency: Percentiles,
    pub latency_max_us: f64,
    /// Responses by what the cache did (mix.lua only).
    pub hits: u64,
    pub misses: u64,
    pub other: u64,
    /// Responses by status class (mix.lua only): 2xx, 3xx, 4xx, 5xx.
    pub status: [u64; 4],
    pub hist_hit: Histogram,
    pub hist_miss: Histogram,
    pub hist_other: Histogram,
}

impl WrkRun {
    pub fn rps(&self) -> f64 {
        if self.duration_s > 0.0 {
            self.requests as f64 / self.duration_s
        } else {
            0.0
        }
    }

    /// Hits over hits + misses (responses the cache was not asked about are left out).
    pub fn hit_ratio(&self) -> f64 {
        let asked = self.hits + self.misses;
        if asked == 0 {
            0.0
        } else {
            self.hits as f64 / asked as f64
        }
    }
}

fn field(words: &[&str], name: &str) -> Option<u64> {
    words.iter().find_map(|w| {
        let (k, v) = w.split_once('=')?;
        (k == name).then(|| v.parse().ok()).flatten()
    })
}

/// Parses wrk's stdout. Fails if the summary line is missing (wrk did not finish).
pub fn parse_wrk(out: &str) -> Result<WrkRun, String> {
    let mut run = WrkRun::default();
    let mut saw_summary = false;
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("KR ") {
            add_response(&mut run, rest)?;
            continue;
        }
        let Some(rest) = line.strip_prefix("KC ") else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        let get = |name| field(&words, name).unwrap_or(0);
        match words.first() {
            Some(&"summary") => {
                saw_summary = true;
                run.requests = get("requests");
                run.duration_s = get("duration_us") as f64 / 1e6;
                run.bytes = get("bytes");
                run.socket_errors = get("connect") + get("read") + get("write") + get("timeout");
                run.bad_status = get("status");
            }
            Some(&"wrk_latency") => {
                run.latency = Percentiles {
                    p50: get("p50") as f64,
                    p95: get("p95") as f64,
                    p99: get("p99") as f64,
                    p999: get("p999") as f64,
                };
                run.latency_max_us = get("max") as f64;
            }
            _ => {}
        }
    }
    if !saw_summary {
        let tail = &out[out.len().saturating_sub(2000)..];
        return Err(format!("wrk printed no summary; its output ended:\n{tail}"));
    }
    Ok(run)
}

/// One `KR <class> <bucket> <status class>` line (mix.lua, one per response).
fn add_response(run: &mut WrkRun, line: &str) -> Result<(), String> {
    let mut w = line.split_whitespace();
    let (Some(class), Some(bucket), Some(status)) = (
        w.next(),
        w.next().and_then(|b| b.parse::<i64>().ok()),
        w.next().and_then(|s| s.parse::<usize>().ok()),
    ) else {
        return Err(format!("bad response line: KR {line}"));
    };
    let h = match class {
        "h" => {
            run.hits += 1;
            &mut run.hist_hit
        }
        "m" => {
            run.misses += 1;
            &mut run.hist_miss
        }
        _ => {
            run.other += 1;
            &mut run.hist_other
        }
    };
    *h.buckets.entry(bucket).or_default() += 1;
    if let Some(n) = status.checked_sub(2).and_then(|i| run.status.get_mut(i)) {
        *n += 1;
    }
    Ok(())
}

/// A Prometheus histogram as the text exposition gives it: cumulative bucket counts by upper
/// edge (`+Inf` left out), the sum and the count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromHistogram {
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

/// The histogram `name` (without labels) in a `/metrics` text, if it is there.
pub fn prometheus_histogram(text: &str, name: &str) -> Option<PromHistogram> {
    let mut h = PromHistogram::default();
    let mut seen = false;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((sample, value)) = line.rsplit_once(' ') else {
            continue;
        };
        if let Some(rest) = sample.strip_prefix(&format!("{name}_bucket{{le=\"")) {
            let le = rest.trim_end_matches("\"}");
            if le != "+Inf" {
                h.buckets.push((le.parse().ok()?, value.parse().ok()?));
            }
            seen = true;
        } else if sample == format!("{name}_sum") {
            h.sum = value.parse().ok()?;
        } else if sample == format!("{name}_count") {
            h.count = value.parse().ok()?;
        }
    }
    seen.then_some(h)
}

/// The upper edge of the bucket holding quantile `q` of `count` observations, from cumulative
/// `buckets` sorted by edge; `None` when there are none, or when it is past the last edge.
pub fn bucket_quantile(buckets: &[(f64, u64)], count: u64, q: f64) -> Option<f64> {
    if count == 0 {
        return None;
    }
    let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
    buckets.iter().find(|(_, n)| *n >= rank).map(|(le, _)| *le)
}

/// Median and spread of one figure over rounds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub fn spread(values: &[f64]) -> Spread {
    if values.is_empty() {
        return Spread::default();
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Spread {
        median,
        min: v[0],
        max: v[n - 1],
    }
}

/// `a / b`, or 0 when `b` is 0.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

/// Zipf weights `1 / rank^s` for ranks 1..=n.
pub fn zipf_weights(n: usize, s: f64) -> Vec<f64> {
    (1..=n).map(|r| 1.0 / (r as f64).powf(s)).collect()
}

/// Resident set size and its high-water mark (KiB) from a `/proc/PID/status` text.
pub fn parse_status_rss(status: &str) -> Option<(u64, u64)> {
    let kib = |name: &str| {
        status.lines().find_map(|l| {
            l.strip_prefix(name)?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    Some((kib("VmRSS:")?, kib("VmHWM:")?))
}

/// RSS drift over a soak: change from the first sample after warm-up to the last, in percent
/// of the first, and the largest sample after warm-up relative to the same base.
pub fn drift(samples_kib: &[u64], warmup: usize) -> Option<(f64, f64)> {
    let after = samples_kib.get(warmup..)?;
    let (&first, &last) = (after.first()?, after.last()?);
    let max = *after.iter().max()?;
    let pct = |x: u64| (x as f64 - first as f64) * 100.0 / first as f64;
    Some((pct(last), pct(max)))
}

/// Checks the parsing and summaries on canned input; `cargo test` runs this instead of the suite.
pub fn self_check() -> Result<(), String> {
    let out = "Running 1s test @ http://127.0.0.1:1/\n\
        KC summary requests=1000 duration_us=2000000 bytes=5 connect=0 read=1 write=0 status=3 timeout=2\n\
        KC wrk_latency p50=100 p95=200 p99=300 p999=400 max=900\n\
        KR h 345 2\n";
    let mut out = out.to_string();
    for _ in 0..89 {
        out.push_str("KR h 230 2\n");
    }
    for i in 0..10 {
        out.push_str(if i < 5 {
            "KR m 460 2\n"
        } else {
            "KR m 460 3\n"
        });
    }
    let run = parse_wrk(&out)?;
    let check = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_string()) };
    check(
        run.requests == 1000 && run.rps() == 500.0,
        "requests and rps",
    )?;
    check(run.socket_errors == 3 && run.bad_status == 3, "errors")?;
    check(run.latency.p99 == 300.0, "wrk percentiles")?;
    check((run.hit_ratio() - 0.9).abs() < 1e-9, "hit ratio")?;
    check(run.status == [95, 5, 0, 0], "status classes")?;
    check(run.misses == 10 && run.other == 0, "classes")?;
    let p = run.hist_hit.percentiles();
    // bucket 230 covers e^(230/50)..e^(231/50) = 99.5..101.5 µs
    check((99.0..102.0).contains(&p.p50), "hit p50 from buckets")?;
    check(p.p999 > 900.0, "hit p99.9 lands in the slow bucket")?;
    check(
        parse_wrk("no summary").is_err(),
        "missing summary is an error",
    )?;
    check(
        parse_wrk("KC summary requests=1\nKR h x 2\n").is_err(),
        "bad response line is an error",
    )?;
    let s = spread(&[3.0, 1.0, 2.0, 10.0]);
    check(
        s == Spread {
            median: 2.5,
            min: 1.0,
            max: 10.0,
        },
        "spread",
    )?;
    check(ratio(1.0, 0.0) == 0.0, "ratio by zero")?;
    let w = zipf_weights(3, 1.0);
    check((w[2] - 1.0 / 3.0).abs() < 1e-12, "zipf weights")?;
    let status = "Name:\tknitcache\nVmHWM:\t   81234 kB\nVmRSS:\t   70000 kB\n";
    check(parse_status_rss(status) == Some((70000, 81234)), "rss")?;
    let (d, m) = drift(&[500, 100, 101, 102], 1).ok_or("drift")?;
    check((d - 2.0).abs() < 1e-9 && (m - 2.0).abs() < 1e-9, "drift")?;
    let metrics = "# HELP x_seconds lag\n# TYPE x_seconds histogram\n\
        x_seconds_bucket{le=\"0.001\"} 90\nx_seconds_bucket{le=\"0.01\"} 99\n\
        x_seconds_bucket{le=\"0.1\"} 100\nx_seconds_bucket{le=\"+Inf\"} 100\n\
        x_seconds_sum 0.25\nx_seconds_count 100\nx_seconds_total 7\n";
    let h = prometheus_histogram(metrics, "x_seconds").ok_or("prometheus histogram")?;
    check(
        h.buckets == [(0.001, 90), (0.01, 99), (0.1, 100)] && h.sum == 0.25 && h.count == 100,
        "prometheus histogram parsed",
    )?;
    check(
        prometheus_histogram(metrics, "y_seconds").is_none(),
        "absent histogram",
    )?;
    check(
        bucket_quantile(&h.buckets, h.count, 0.5) == Some(0.001)
            && bucket_quantile(&h.buckets, h.count, 0.99) == Some(0.01)
            && bucket_quantile(&h.buckets, h.count, 0.999) == Some(0.1)
            && bucket_quantile(&h.buckets, 0, 0.5).is_none(),
        "bucket quantiles",
    )?;
    Ok(())
}
