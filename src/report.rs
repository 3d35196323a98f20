//! `knitcache report --admin URL`: the performance report. Reads `/stats` from a running proxy
//! (one GET by the one client, [`crate::http_client`], on a small runtime of its own, as the
//! command runs outside the server's) and prints, per route, requests, hit ratio, p50/p95/p99 and the ERP's p95, slowest
//! first, marking the routes that miss the ERP plan's targets: p95 under 200 ms for every
//! request, under 50 ms for cached ones. Fast is not enough, so it also marks the routes that
//! need attention: more than 1 % of responses 5xx (the ERP's or the proxy's own), or any request
//! the proxy refused. `--format json` prints the same rows for machines.

use std::time::Duration;

use http::header::{ACCEPT, AUTHORIZATION};
use serde::Serialize;

use crate::config::defaults::DEFAULT_ADMIN_TOKEN_ENV;
use crate::http_client::{self, Body, Get};
use crate::stats::doc::{RouteDoc, StatsDoc};

/// The ERP plan's target for p95 of every request, in milliseconds.
pub const TARGET_P95_MS: f64 = 200.0;
/// The ERP plan's target for p95 of cached requests, in milliseconds.
pub const TARGET_CACHED_P95_MS: f64 = 50.0;
/// A route with more than this percentage of 5xx responses needs attention.
pub const MAX_5XX_PERCENT: u64 = 1;
/// Longest wait for the admin listener to accept (and for its name to resolve).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the whole `/stats` answer.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest `/stats` answer read.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// Most of a refusal's body quoted in the error.
const MAX_QUOTED_CHARS: usize = 200;

/// One route of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Route name.
    pub route: String,
    /// `cache`, `pass` or `unmatched`.
    pub kind: String,
    /// Requests since start.
    pub requests: u64,
    /// Hit ratio of cacheable requests (`null` without any).
    pub hit_ratio: Option<f64>,
    /// Every request's median.
    pub p50_ms: f64,
    /// Every request's p95.
    pub p95_ms: f64,
    /// Every request's p99.
    pub p99_ms: f64,
    /// Cached requests' p95 (`null` without hits).
    pub hit_p95_ms: Option<f64>,
    /// The ERP's p95 (`null` if the ERP was never asked).
    pub upstream_p95_ms: Option<f64>,
    /// Targets missed, as words (`p95`, `cached p95`); empty when all are met.
    pub missed: Vec<&'static str>,
    /// Responses with a 5xx status, the ERP's and the proxy's (`null` if /stats lacks them).
    pub responses_5xx: Option<u64>,
    /// `responses_5xx / requests` (`null` if /stats lacks them).
    pub share_5xx: Option<f64>,
    /// Requests the proxy refused with `503` (`null` if /stats does not count them per route).
    pub refused: Option<u64>,
    /// Why the route needs attention, as words (`5xx`: over 1 % of responses, `refusals`: any);
    /// empty when neither.
    pub attention: Vec<&'static str>,
}

/// Why a route with `requests` needs attention: `5xx` when more than [`MAX_5XX_PERCENT`] % of its
/// responses were 5xx, `refusals` when the proxy refused any of its requests. Unknown counts
/// mark nothing.
pub fn attention(
    requests: u64,
    responses_5xx: Option<u64>,
    refused: Option<u64>,
) -> Vec<&'static str> {
    let mut why = Vec::new();
    // More than 1 %, in integers so that exactly 1 % is never rounded over.
    if responses_5xx
        .is_some_and(|n| n.saturating_mul(100) > requests.saturating_mul(MAX_5XX_PERCENT))
    {
        why.push("5xx");
    }
    if refused.is_some_and(|n| n > 0) {
        why.push("refusals");
    }
    why
}

/// The rows of `doc`: routes with traffic, slowest p95 first.
pub fn rows(doc: &StatsDoc) -> Vec<Row> {
    let mut rows: Vec<Row> = doc
        .routes
        .iter()
        .filter(|r| r.requests > 0)
        .map(row)
        .collect();
    rows.sort_by(|a, b| b.p95_ms.total_cmp(&a.p95_ms));
    rows
}

fn row(r: &RouteDoc) -> Row {
    let l = &r.latency;
    let hit_p95 = (l.hit.count > 0).then_some(l.hit.p95_ms);
    let mut missed = Vec::new();
    if l.all.p95_ms > TARGET_P95_MS {
        missed.push("p95");
    }
    if hit_p95.is_some_and(|p| p > TARGET_CACHED_P95_MS) {
        missed.push("cached p95");
    }
    Row {
        route: r.name.clone(),
        kind: r.kind.clone(),
        requests: r.requests,
        hit_ratio: r.hit_ratio,
        p50_ms: l.all.p50_ms,
        p95_ms: l.all.p95_ms,
        p99_ms: l.all.p99_ms,
        hit_p95_ms: hit_p95,
        upstream_p95_ms: (l.upstream.count > 0).then_some(l.upstream.p95_ms),
        missed,
        responses_5xx: r.responses_5xx,
        share_5xx: r.responses_5xx.map(|n| n as f64 / r.requests.max(1) as f64),
        refused: r.refused,
        attention: attention(r.requests, r.responses_5xx, r.refused),
    }
}

/// The report as aligned text.
pub fn render_text(doc: &StatsDoc) -> String {
    let rows = rows(doc);
    let erp = match doc.erp.healthy {
        Some(true) => "up",
        Some(false) => "DOWN",
        None => "not probed yet",
    };
    let mut out = format!(
        "knitcache performance report: uptime {:.0} s, config {}, ERP {erp}\n\
         targets: p95 < {TARGET_P95_MS} ms for every request, < {TARGET_CACHED_P95_MS} ms cached\n\
         all routes: {} requests, hit ratio {}, p95 {:.1} ms\n\n",
        doc.uptime_secs,
        doc.config_version,
        doc.totals.requests,
        ratio(doc.totals.hit_ratio),
        doc.totals.latency.all.p95_ms,
    );
    let header = [
        "route", "requests", "hit", "p50 ms", "p95 ms", "p99 ms", "hit p95", "ERP p95", "5xx",
        "targets", "errors",
    ];
    let left = |c: usize| c == 0 || c + 2 >= header.len();
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for r in &rows {
        table.push(vec![
            r.route.clone(),
            r.requests.to_string(),
            ratio(r.hit_ratio),
            format!("{:.1}", r.p50_ms),
            format!("{:.1}", r.p95_ms),
            format!("{:.1}", r.p99_ms),
            r.hit_p95_ms.map_or("-".into(), |v| format!("{v:.2}")),
            r.upstream_p95_ms.map_or("-".into(), |v| format!("{v:.1}")),
            ratio(r.share_5xx),
            if r.missed.is_empty() {
                "ok".to_owned()
            } else {
                format!("MISSED {}", r.missed.join(", "))
            },
            errors(r),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| table.iter().map(|row| row[c].len()).max().unwrap_or(0))
        .collect();
    for row in &table {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let w = widths[c];
            if left(c) {
                line.push_str(&format!("{cell:<w$}  "));
            } else {
                line.push_str(&format!("{cell:>w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str("(no requests yet)\n");
    }
    let missed = rows.iter().filter(|r| !r.missed.is_empty()).count();
    out.push_str(&format!(
        "\n{missed} of {} routes with traffic miss a target\n",
        rows.len()
    ));
    out.push_str(&summary(doc, &rows));
    out
}

/// The `errors` cell: what needs attention, with the counts.
fn errors(r: &Row) -> String {
    let mut parts = Vec::new();
    if let (Some(n), Some(share)) = (r.responses_5xx, r.share_5xx)
        && r.attention.contains(&"5xx")
    {
        parts.push(format!("{n} of {} 5xx ({:.1}%)", r.requests, share * 100.0));
    }
    if let Some(n) = r.refused.filter(|_| r.attention.contains(&"refusals")) {
        parts.push(format!("{n} refused"));
    }
    if parts.is_empty() {
        "ok".to_owned()
    } else {
        format!("ATTENTION {}", parts.join(", "))
    }
}

/// The attention lines: how many routes need it and why, and what /stats could not say.
fn summary(doc: &StatsDoc, rows: &[Row]) -> String {
    let marked = |why: &str| rows.iter().filter(|r| r.attention.contains(&why)).count();
    let need = rows.iter().filter(|r| !r.attention.is_empty()).count();
    let refusals_per_route = rows.iter().any(|r| r.refused.is_some());
    let mut reasons = vec![format!("{} with 5xx over 1 %", marked("5xx"))];
    if refusals_per_route {
        reasons.push(format!("{} with refusals", marked("refusals")));
    }
    let mut out = format!(
        "{need} of {} routes need attention: {}\n",
        rows.len(),
        reasons.join(", ")
    );
    if rows.iter().any(|r| r.responses_5xx.is_none()) {
        out.push_str("5xx: this proxy's /stats does not count them per route\n");
    }
    if !refusals_per_route {
        match &doc.kept_from_erp {
            Some(kept) if kept.values().any(|n| *n > 0) => {
                let by: Vec<String> = kept
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(reason, n)| format!("{reason} {n}"))
                    .collect();
                out.push_str(&format!(
                    "refusals: the proxy kept {} requests from the ERP ({}), served stale or \
                     refused with 503; /stats does not say which routes\n",
                    kept.values().sum::<u64>(),
                    by.join(", ")
                ));
            }
            Some(_) => out.push_str("refusals: none\n"),
            None => out.push_str("refusals: this proxy's /stats does not count them\n"),
        }
    }
    out
}

fn ratio(r: Option<f64>) -> String {
    r.map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

/// Fetches and decodes `/stats` from the admin listener at `admin` (`http://host:port`).
pub fn fetch(admin: &str) -> Result<StatsDoc, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime for the request: {e}"))?;
    let body = runtime.block_on(get_ok(admin, "/stats"))?;
    serde_json::from_slice(&body).map_err(|e| format!("{admin}/stats is not a stats document: {e}"))
}

/// A GET of `path` on `base` (`http://host:port`); the body of a 200 answer.
async fn get_ok(base: &str, path: &str) -> Result<bytes::Bytes, String> {
    let authority = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("{base:?}: give the admin listener as http://host:port"))?
        .trim_end_matches('/');
    let failed = |e: http_client::Error| format!("{base}{path}: {e}");
    let addr = http_client::resolve(authority, CONNECT_TIMEOUT)
        .await
        .map_err(failed)?;
    let mut get = Get::new(addr, path)
        .host(authority)
        .header(ACCEPT, "application/json");
    // With admin.protect_reads, /stats needs the admin token: sent from the variable the
    // proxy reads it from by default.
    if let Some(token) = std::env::var(DEFAULT_ADMIN_TOKEN_ENV)
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
    {
        get = get.header(AUTHORIZATION, &format!("Bearer {token}"));
    }
    let answer = get
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(TIMEOUT)
        .body(Body::Keep {
            max_bytes: MAX_ANSWER_BYTES,
        })
        .send()
        .await
        .map_err(failed)?;
    if answer.status != 200 {
        let said: String = String::from_utf8_lossy(&answer.body)
            .trim()
            .chars()
            .take(MAX_QUOTED_CHARS)
            .collect();
        return Err(format!("{base}{path}: answered {}: {said}", answer.status));
    }
    Ok(answer.body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::doc::{Breakdown, Percentiles};

    fn route(name: &str, requests: u64, p95: f64, hit_p95: f64) -> RouteDoc {
        let p = |p95_ms: f64| Percentiles {
            count: requests,
            p50_ms: p95_ms / 2.0,
            p95_ms,
            p99_ms: p95_ms * 1.2,
            max_ms: p95_ms * 1.5,
        };
        RouteDoc {
            name: name.into(),
            kind: "cache".into(),
            requests,
            hit_ratio: Some(0.9),
            latency: Breakdown {
                all: p(p95),
                hit: p(hit_p95),
                miss: p(p95),
                upstream: p(p95),
            },
            ..RouteDoc::default()
        }
    }

    #[test]
    fn slowest_first_with_missed_targets_marked() {
        let doc = StatsDoc {
            routes: vec![
                route("kpis", 10, 3.0, 0.4),
                route("forecast", 5, 2400.0, 0.5),
                route("idle", 0, 0.0, 0.0),
                route("knit-orders", 7, 120.0, 60.0),
            ],
            ..StatsDoc::default()
        };
        let rows = rows(&doc);
        let names: Vec<&str> = rows.iter().map(|r| r.route.as_str()).collect();
        assert_eq!(
            names,
            ["forecast", "knit-orders", "kpis"],
            "idle routes left out"
        );
        assert_eq!(rows[0].missed, ["p95"]);
        assert_eq!(rows[1].missed, ["cached p95"]);
        assert!(rows[2].missed.is_empty());
        let text = render_text(&doc);
        assert!(text.contains("MISSED p95"), "{text}");
        assert!(
            text.contains("2 of 3 routes with traffic miss a target"),
            "{text}"
        );
    }

    #[test]
    fn more_than_one_percent_5xx_or_any_refusal_needs_attention() {
        assert!(attention(1000, Some(10), Some(0)).is_empty(), "exactly 1 %");
        assert_eq!(attention(1000, Some(11), Some(0)), ["5xx"], "just over 1 %");
        assert!(attention(100, Some(1), None).is_empty(), "exactly 1 %");
        assert_eq!(attention(99, Some(1), None), ["5xx"], "just over 1 %");
        assert!(attention(1000, Some(0), Some(0)).is_empty());
        assert_eq!(attention(1000, Some(0), Some(1)), ["refusals"]);
        assert_eq!(attention(1000, Some(200), Some(3)), ["5xx", "refusals"]);
        assert!(
            attention(1000, None, None).is_empty(),
            "unknown marks nothing"
        );
    }

    fn with_errors(mut r: RouteDoc, responses_5xx: u64, refused: Option<u64>) -> RouteDoc {
        r.responses_5xx = Some(responses_5xx);
        r.refused = refused;
        r
    }

    #[test]
    fn routes_needing_attention_are_marked_and_counted() {
        let doc = StatsDoc {
            routes: vec![
                with_errors(route("kpis", 1000, 3.0, 0.4), 10, Some(0)),
                with_errors(route("forecast", 200, 150.0, 0.5), 40, Some(0)),
                with_errors(route("orders", 100, 120.0, 1.0), 0, Some(7)),
            ],
            ..StatsDoc::default()
        };
        let rows = rows(&doc);
        assert_eq!(rows[0].route, "forecast");
        assert_eq!(rows[0].attention, ["5xx"]);
        assert_eq!(rows[0].share_5xx, Some(0.2));
        assert_eq!(rows[1].attention, ["refusals"]);
        assert!(rows[2].attention.is_empty(), "exactly 1 % is fine");
        let text = render_text(&doc);
        assert!(text.contains("ATTENTION 40 of 200 5xx (20.0%)"), "{text}");
        assert!(text.contains("ATTENTION 7 refused"), "{text}");
        assert!(
            text.contains("2 of 3 routes need attention: 1 with 5xx over 1 %, 1 with refusals"),
            "{text}"
        );
        assert!(
            text.contains("0 of 3 routes with traffic miss a target"),
            "{text}"
        );
    }

    #[test]
    fn proxy_wide_refusals_are_reported_when_routes_do_not_say() {
        let mut kept = std::collections::BTreeMap::new();
        kept.insert("breaker_open".to_owned(), 30);
        kept.insert("queue_full".to_owned(), 5);
        kept.insert("queue_timeout".to_owned(), 0);
        let doc = StatsDoc {
            routes: vec![with_errors(route("kpis", 100, 3.0, 0.4), 35, None)],
            kept_from_erp: Some(kept),
            ..StatsDoc::default()
        };
        let text = render_text(&doc);
        assert!(
            text.contains("1 of 1 routes need attention: 1 with 5xx over 1 %\n"),
            "{text}"
        );
        assert!(
            text.contains("kept 35 requests from the ERP (breaker_open 30, queue_full 5)"),
            "{text}"
        );
        let none = StatsDoc {
            kept_from_erp: Some(Default::default()),
            ..doc.clone()
        };
        assert!(render_text(&none).contains("refusals: none"));
        let old = StatsDoc {
            routes: vec![route("kpis", 100, 3.0, 0.4)],
            ..StatsDoc::default()
        };
        let text = render_text(&old);
        assert!(text.contains("0 of 1 routes need attention"), "{text}");
        assert!(text.contains("does not count them per route"), "{text}");
    }
}
