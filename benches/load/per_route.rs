//! Per-route accounting of a load run against knitcache: for each route, the client requests
//! and the proxy's own refusals (`503`s it wrote itself: an open breaker, a full or timed-out
//! queue) from its `/stats`, and the ERP requests from the simulator's per-path counters,
//! mapped to routes by the proxy's own route table. Differences of two snapshots, so only the
//! measured run counts. Kept free of I/O so the harness can check it without starting anything.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// One route's figures over a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteRow {
    pub route: String,
    /// Requests clients sent on this route (knitcache's count).
    pub requests: u64,
    /// Of them, refused by knitcache itself with `503`.
    pub refused: u64,
    /// Requests that reached the ERP on this route's paths (clients' misses, the warmer, ...).
    pub erp_requests: u64,
}

impl RouteRow {
    /// ERP requests per 1,000 client requests; `None` without client requests.
    pub fn erp_per_1000(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.erp_requests as f64 * 1000.0 / self.requests as f64)
    }
}

/// `(requests, refused)` per route of a `/stats` document.
pub fn stats_counts(doc: &Value) -> Result<BTreeMap<String, (u64, u64)>, String> {
    let routes = doc["routes"].as_array().ok_or("/stats: no routes")?;
    routes
        .iter()
        .map(|r| {
            let name = r["name"].as_str().ok_or("/stats: a route without a name")?;
            let requests = r["requests"].as_u64().ok_or("/stats: no requests")?;
            // `null` from a proxy that did not count refusals per route.
            let refused = r["refused"].as_u64().ok_or(format!(
                "/stats: route {name} has no refused count (a proxy older than per-route refusals)"
            ))?;
            Ok((name.to_owned(), (requests, refused)))
        })
        .collect()
}

/// ERP requests per path of the simulator's `/__sim/counters`.
pub fn sim_paths(doc: &Value) -> Result<BTreeMap<String, u64>, String> {
    let paths = doc["paths"].as_object().ok_or("sim counters: no paths")?;
    paths
        .iter()
        .map(|(p, n)| Ok((p.clone(), n.as_u64().ok_or("sim counters: not a count")?)))
        .collect()
}

/// The rows of the routes that saw client or ERP traffic between the snapshots, busiest first.
/// `route_of` names the route of an ERP path.
pub fn rows(
    stats_before: &BTreeMap<String, (u64, u64)>,
    stats_after: &BTreeMap<String, (u64, u64)>,
    sim_before: &BTreeMap<String, u64>,
    sim_after: &BTreeMap<String, u64>,
    route_of: impl Fn(&str) -> String,
) -> Vec<RouteRow> {
    let mut rows: BTreeMap<String, RouteRow> = BTreeMap::new();
    fn row<'a>(rows: &'a mut BTreeMap<String, RouteRow>, route: &str) -> &'a mut RouteRow {
        rows.entry(route.to_owned()).or_insert_with(|| RouteRow {
            route: route.to_owned(),
            requests: 0,
            refused: 0,
            erp_requests: 0,
        })
    }
    for (route, &(requests, refused)) in stats_after {
        let (r0, f0) = stats_before.get(route).copied().unwrap_or((0, 0));
        let r = row(&mut rows, route);
        r.requests += requests.saturating_sub(r0);
        r.refused += refused.saturating_sub(f0);
    }
    for (path, &n) in sim_after {
        let d = n.saturating_sub(sim_before.get(path).copied().unwrap_or(0));
        if d > 0 {
            row(&mut rows, &route_of(path)).erp_requests += d;
        }
    }
    let mut out: Vec<RouteRow> = rows
        .into_values()
        .filter(|r| r.requests > 0 || r.erp_requests > 0)
        .collect();
    out.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.route.cmp(&b.route)));
    out
}

/// The rows as JSON.
pub fn rows_json(rows: &[RouteRow]) -> Value {
    rows.iter()
        .map(|r| {
            json!({
                "route": r.route, "requests": r.requests, "refused": r.refused,
                "erp_requests": r.erp_requests, "erp_per_1000": r.erp_per_1000(),
            })
        })
        .collect()
}

/// The rows as a Markdown table, `broken` marked.
pub fn table(rows: &[RouteRow], broken: &str) -> String {
    let mut s = String::from(
        "| route | client requests | refused (503 by knitcache) | ERP requests | ERP per 1,000 |\n\
         | --- | --- | --- | --- | --- |\n",
    );
    for r in rows {
        let mark = if r.route == broken { " (broken)" } else { "" };
        let per = r
            .erp_per_1000()
            .map_or_else(|| "-".to_owned(), |p| format!("{p:.2}"));
        s.push_str(&format!(
            "| {}{mark} | {} | {} | {} | {per} |\n",
            r.route, r.requests, r.refused, r.erp_requests
        ));
    }
    s
}

/// Checks the accounting on made-up snapshots.
pub fn self_check() -> Result<(), String> {
    let stats = |v: Value| stats_counts(&v);
    let before = stats(json!({"routes": [
        {"name": "kpis", "requests": 10, "refused": 0},
        {"name": "broken", "requests": 5, "refused": 1},
    ]}))?;
    let after = stats(json!({"routes": [
        {"name": "kpis", "requests": 1010, "refused": 0},
        {"name": "broken", "requests": 505, "refused": 490},
        {"name": "idle", "requests": 0, "refused": 0},
    ]}))?;
    let sim = |v: Value| sim_paths(&v);
    let s0 = sim(json!({"paths": {"/api/kpis": 3}}))?;
    let s1 = sim(json!({"paths": {"/api/kpis": 4, "/api/broken": 10, "/hello": 2}}))?;
    let route_of = |p: &str| match p {
        "/api/kpis" => "kpis".to_owned(),
        "/api/broken" => "broken".to_owned(),
        _ => "unmatched".to_owned(),
    };
    let rows = rows(&before, &after, &s0, &s1, route_of);
    let want = [
        ("kpis", 1000, 0, 1),
        ("broken", 500, 489, 10),
        ("unmatched", 0, 0, 2),
    ];
    let got: Vec<(&str, u64, u64, u64)> = rows
        .iter()
        .map(|r| (r.route.as_str(), r.requests, r.refused, r.erp_requests))
        .collect();
    if got != want {
        return Err(format!("per-route rows: {got:?}, want {want:?}"));
    }
    if rows[1].erp_per_1000() != Some(20.0) || rows[2].erp_per_1000().is_some() {
        return Err("ERP requests per 1,000".into());
    }
    if stats(json!({"routes": [{"name": "x", "requests": 1, "refused": null}]})).is_ok() {
        return Err("a proxy without per-route refusals must be named, not read as 0".into());
    }
    Ok(())
}
