//! The endpoint table: every path the ERP registers (docs/ERP.md §5, 173 rows), with its
//! methods, what it returns in each mode, the measured body size and latency, plus the query
//! variants measured separately (§4) and the messages of the ERP's known failures (§6).
//!
//! Numbers are the measurements as taken: `ok(status, bytes, cold_ms, warm_ms)` is a path's
//! status, body size and first and second call's time; `slow(…)` uses the ranges of §7; `r308`/`r301` are
//! the redirect cells (the `Location` comes from `redirects`); `absent` is a path with no route
//! in that mode (404); `nt()` is "not timed" (writes; see [`write_timing`]). This module is data
//! and lookups only: the server decides what to do with an [`Outcome`].

use std::collections::HashMap;
use std::sync::LazyLock;

use super::Mode;
use super::url::first_value;

/// Method bit for `GET` (and `HEAD`, which Flask adds to every GET rule).
pub(crate) const GET: u8 = 1;
/// Method bit for `POST`.
pub(crate) const POST: u8 = 2;
/// Method bit for `PUT`.
pub(crate) const PUT: u8 = 4;
/// Method bit for `DELETE`.
pub(crate) const DELETE: u8 = 8;
/// Method bit for `PATCH` (no ERP rule accepts it).
pub(crate) const PATCH: u8 = 16;
/// The methods of the v2 compat redirect rules (blueprint_integration.py:158-170).
const ANY4: u8 = GET | POST | PUT | DELETE;

/// Handlers slower than this hold the interpreter lock for their whole latency (the ERP is one
/// Python process: §1.7 "CPU-bound handlers are effectively serialized").
pub(crate) const CPU_BOUND_MS: u32 = 100;

/// What a path's handler returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `jsonify(...)`.
    Json,
    /// A plain string (`text/html; charset=utf-8`, Flask's default for `str`).
    Text(&'static str),
    /// `web/consolidated_dashboard.html`, served with no-store headers.
    Dashboard,
    /// `send_file` of `web/ai_factory_floor_dashboard.html`: ETag, Last-Modified, conditional.
    SendFile,
    /// `Response(status=204)`.
    Empty,
}

/// What a path does to the ERP's state (docs/ERP.md §3, §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Read-only.
    Read,
    /// Only a v2 compat redirect; no handler behind it.
    RedirectOnly,
    /// A write endpoint.
    Write,
    /// A GET with side effects (reloads, backtests).
    SideEffect,
    /// GET reads, POST writes.
    ReadWrite,
}

/// Latency of one handler: the first call ("cold") and the spread of later ones ("warm").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    /// First call after start, in ms.
    pub cold_ms: u32,
    /// Fastest later call, in ms.
    pub warm_lo_ms: u32,
    /// Slowest later call, in ms.
    pub warm_hi_ms: u32,
}

impl Timing {
    /// From a measurement's two passes: pass 1 is cold, later calls fall between the two.
    const fn passes(cold_ms: u32, warm_ms: u32) -> Self {
        let (lo, hi) = if cold_ms < warm_ms {
            (cold_ms, warm_ms)
        } else {
            (warm_ms, cold_ms)
        };
        Self {
            cold_ms,
            warm_lo_ms: lo,
            warm_hi_ms: hi,
        }
    }

    /// Whether the handler is CPU-bound and must run under the interpreter lock.
    pub(crate) fn cpu_bound(&self) -> bool {
        self.cold_ms.max(self.warm_hi_ms) >= CPU_BOUND_MS
    }
}

/// How one mode answers a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The handler runs and answers `status` with a body of about `bytes` bytes.
    Answer {
        status: u16,
        bytes: u32,
        timing: Timing,
    },
    /// The v2 compat rule answers 308 (as shipped).
    V2Redirect(Timing),
    /// `intercept_deprecated_endpoints` answers 301 (as shipped).
    Legacy301(Timing),
    /// No route in this mode: the 404 handler answers.
    Absent(Timing),
    /// A write endpoint nobody timed: see [`write_timing`].
    Untimed,
}

/// One mode's rule for a path: accepted methods and the outcome.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ModeRule {
    /// Accepted method bits (`GET` implies `HEAD`; `OPTIONS` is automatic).
    pub methods: u8,
    /// What the handler does.
    pub outcome: Outcome,
}

/// One registered path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Endpoint {
    /// Row number: the order in which the paths were measured (docs/ERP.md §5).
    pub row: u16,
    /// The Flask rule; a `<name>` segment matches any one path segment.
    pub path: &'static str,
    /// What the handler returns.
    pub kind: Kind,
    /// Read, write, side effect.
    pub class: Class,
    /// As shipped.
    pub shipped: ModeRule,
    /// With the rollback flags.
    pub rollback: ModeRule,
}

impl Endpoint {
    /// The rule for `mode`.
    pub(crate) fn rule(&self, mode: Mode) -> ModeRule {
        match mode {
            Mode::Shipped => self.shipped,
            Mode::Rollback => self.rollback,
        }
    }
}

const fn ok(status: u16, bytes: u32, cold_ms: u32, warm_ms: u32) -> Outcome {
    Outcome::Answer {
        status,
        bytes,
        timing: Timing::passes(cold_ms, warm_ms),
    }
}
const fn slow(status: u16, bytes: u32, cold_ms: u32, warm_lo_ms: u32, warm_hi_ms: u32) -> Outcome {
    Outcome::Answer {
        status,
        bytes,
        timing: Timing {
            cold_ms,
            warm_lo_ms,
            warm_hi_ms,
        },
    }
}
const fn r308(cold_ms: u32, warm_ms: u32) -> Outcome {
    Outcome::V2Redirect(Timing::passes(cold_ms, warm_ms))
}
const fn r301(cold_ms: u32, warm_ms: u32) -> Outcome {
    Outcome::Legacy301(Timing::passes(cold_ms, warm_ms))
}
const fn absent(cold_ms: u32, warm_ms: u32) -> Outcome {
    Outcome::Absent(Timing::passes(cold_ms, warm_ms))
}
const fn nt() -> Outcome {
    Outcome::Untimed
}
#[allow(clippy::too_many_arguments)] // one argument per measured column
const fn row(
    row: u16,
    path: &'static str,
    kind: Kind,
    class: Class,
    shipped_methods: u8,
    shipped: Outcome,
    rollback_methods: u8,
    rollback: Outcome,
) -> Endpoint {
    Endpoint {
        row,
        path,
        kind,
        class,
        shipped: ModeRule {
            methods: shipped_methods,
            outcome: shipped,
        },
        rollback: ModeRule {
            methods: rollback_methods,
            outcome: rollback,
        },
    }
}

use Class::{Read, ReadWrite, RedirectOnly, SideEffect, Write};
use Kind::{Dashboard, Empty, Json, SendFile, Text};

/// docs/ERP.md §5, one entry per registered path. Where a v2 compat rule shadows a monolith
/// handler, the shipped column is the 308 and the rollback column is the monolith handler
/// (GET only: none of those handlers declares other methods). `/api/fabric-production`
/// ("500/200 · 87B") is taken as 500.
#[rustfmt::skip]
pub(crate) static CATALOGUE: &[Endpoint] = &[
    // #1 v2/consolidated_routes.py:78; args: view, analysis, realtime, format(json/csv/excel), shortage_only; dashboard: tab
    row(1, "/api/v2/inventory", Json, Read, GET, ok(200, 156, 4, 6), GET, ok(200, 411, 9, 5)),
    // #2 v2/consolidated_routes.py:154; args: view(status/planning/recommendations/machines/pipeline), include_forecast, machine_id, status; dashboard: pageload
    row(2, "/api/v2/production", Json, ReadWrite, GET | POST, ok(500, 231, 11, 10), GET | POST, ok(500, 198, 5, 4)),
    // #3 v2/consolidated_routes.py:235; args: model, horizon, detail(summary/full/accuracy), format(json/chart/report), style_id; dashboard: tab
    row(3, "/api/v2/forecast", Json, ReadWrite, GET | POST, ok(500, 238, 4, 7), GET | POST, absent(2, 4)),
    // #4 v2/consolidated_routes.py:322; args: category(kpi/performance/business/all), realtime, period
    row(4, "/api/v2/analytics", Json, Read, GET, ok(500, 231, 5, 3), GET, absent(4, 3)),
    // #5 v2/consolidated_routes.py:376; args: action(intelligence/substitution/requirements/inventory), yarn_id, include_substitutes; dashboard: poll30s pageload
    row(5, "/api/v2/yarn", Json, ReadWrite, GET | POST, ok(500, 257, 5, 2), GET | POST, ok(200, 5840, 12, 12)),
    // #6 v2/consolidated_routes.py:469
    row(6, "/api/v2/health", Json, Read, GET, ok(200, 220, 3, 5), GET, absent(5, 4)),
    // #7 v2/consolidated_routes.py:496
    row(7, "/api/v2/docs", Json, Read, GET, ok(200, 848, 4, 4), GET, absent(2, 2)),
    // #8 v2/blueprint_integration.py:77
    row(8, "/api/yarn-inventory", Json, RedirectOnly, ANY4, r308(5, 6), ANY4, absent(2, 2)),
    // #9 monolith:10151
    row(9, "/api/yarn-data", Json, Read, ANY4, r301(3, 2), GET, ok(200, 37160, 5, 4)),
    // #10 monolith:13114; args: ai='false', analysis='standard', realtime='false', view='full'; dashboard: poll30s pageload; code uses: CACHE
    row(10, "/api/inventory-intelligence-enhanced", Json, Read, ANY4, r308(3, 6), GET, ok(200, 642, 10, 2)),
    // #11 monolith:10243
    row(11, "/api/real-time-inventory-dashboard", Json, Read, ANY4, r301(2, 3), GET, ok(200, 157, 4, 5)),
    // #12 monolith:10172
    row(12, "/api/emergency-shortage-dashboard", Json, Read, ANY4, r308(3, 2), GET, ok(200, 4234, 7, 6)),
    // #13 monolith:11673
    row(13, "/api/inventory-netting", Json, Read, ANY4, r308(3, 3), GET, ok(200, 9116, 8, 5)),
    // #14 v2/blueprint_integration.py:77
    row(14, "/api/yarn-coverage", Json, RedirectOnly, ANY4, r308(4, 2), ANY4, absent(2, 2)),
    // #15 monolith:16195; args: forecast, forecast='false', include_capacity='true', view='planning'; dashboard: tab; code uses: iterrows
    row(15, "/api/production-planning", Json, Read, ANY4, r308(3, 2), GET, ok(200, 2863, 9, 10)),
    // #16 v2/blueprint_integration.py:77
    row(16, "/api/production-status", Json, RedirectOnly, ANY4, r308(2, 6), ANY4, absent(3, 2)),
    // #17 monolith:11943; dashboard: tab
    row(17, "/api/production-pipeline", Json, Read, ANY4, r308(3, 2), GET, ok(200, 786, 16, 39)),
    // #18 monolith:15314
    row(18, "/api/production-recommendations-ml", Json, Read, ANY4, r308(3, 6), GET, ok(200, 152, 2, 5)),
    // #19 monolith:17267; dashboard: tab; code uses: iterrows/read_excel/read_csv
    row(19, "/api/machine-assignment-suggestions", Json, Read, ANY4, r308(2, 6), GET, ok(200, 9257, 715, 925)),
    // #20 v2/blueprint_integration.py:77
    row(20, "/api/production-flow", Json, RedirectOnly, ANY4, r308(3, 3), ANY4, absent(2, 5)),
    // #21 monolith:10498; dashboard: tab; code uses: iterrows
    row(21, "/api/knit-orders", Json, Read, ANY4, r308(2, 2), GET, ok(200, 102505, 30, 55)),
    // #22 monolith:17637; dashboard: tab; code uses: iterrows
    row(22, "/api/production-suggestions", Json, Read, ANY4, r308(3, 2), GET, ok(200, 509, 18, 12)),
    // #23 monolith:9867; code uses: iterrows
    row(23, "/api/ml-forecasting", Json, Read, ANY4, r301(4, 2), GET, ok(200, 281, 2, 5)),
    // #24 monolith:14859; args: compare, detail='full', format='json', horizon='90', source='ml'; dashboard: pageload; code uses: prophet/xgb/arima/iterrows
    row(24, "/api/ml-forecast-detailed", Json, Read, ANY4, r308(2, 2), GET, ok(200, 9337, 10, 8)),
    // #25 v2/blueprint_integration.py:77
    row(25, "/api/sales-forecasting", Json, RedirectOnly, ANY4, r308(2, 2), ANY4, absent(5, 7)),
    // #26 v2/blueprint_integration.py:77
    row(26, "/api/demand-forecast", Json, RedirectOnly, ANY4, r308(6, 7), ANY4, absent(2, 8)),
    // #27 v2/blueprint_integration.py:77
    row(27, "/api/forecast-accuracy", Json, RedirectOnly, ANY4, r308(7, 2), ANY4, absent(6, 3)),
    // #28 v2/blueprint_integration.py:77
    row(28, "/api/ml-forecast", Json, RedirectOnly, ANY4, r308(3, 6), ANY4, absent(1, 3)),
    // #29 v2/blueprint_integration.py:77
    row(29, "/api/sales-forecast", Json, RedirectOnly, ANY4, r308(4, 6), ANY4, absent(2, 2)),
    // #30 monolith:8761; dashboard: poll30s pageload; code uses: CACHE
    row(30, "/api/comprehensive-kpis", Json, Read, ANY4, r308(3, 6), GET, ok(200, 342, 4, 2)),
    // #31 v2/blueprint_integration.py:77
    row(31, "/api/business-metrics", Json, RedirectOnly, ANY4, r308(3, 8), ANY4, absent(2, 1)),
    // #32 v2/blueprint_integration.py:77
    row(32, "/api/performance-metrics", Json, RedirectOnly, ANY4, r308(3, 42), ANY4, absent(3, 2)),
    // #33 v2/blueprint_integration.py:77
    row(33, "/api/analytics-dashboard", Json, RedirectOnly, ANY4, r308(2, 6), ANY4, absent(2, 1)),
    // #34 v2/blueprint_integration.py:77
    row(34, "/api/real-time-metrics", Json, RedirectOnly, ANY4, r308(3, 6), ANY4, absent(2, 2)),
    // #35 v2/blueprint_integration.py:77
    row(35, "/api/kpi-dashboard", Json, RedirectOnly, ANY4, r308(3, 8), ANY4, absent(2, 2)),
    // #36 monolith:12373; args: ai='false', analysis='standard', forecast='false', view='full', yarn_id; dashboard: tab; code uses: CACHE/iterrows
    row(36, "/api/yarn-intelligence", Json, Read, ANY4, r308(2, 2), GET, ok(200, 14094, 38, 73)),
    // #37 monolith:15531
    row(37, "/api/yarn-substitution-intelligent", Json, Read, ANY4, r308(2, 2), GET, ok(200, 8933, 15, 7)),
    // #38 v2/blueprint_integration.py:77
    row(38, "/api/yarn-interchangeability", Json, RedirectOnly, ANY4, r308(2, 1), ANY4, absent(2, 5)),
    // #39 v2/blueprint_integration.py:77
    row(39, "/api/yarn-requirements", Json, RedirectOnly, ANY4, r308(3, 3), ANY4, absent(3, 12)),
    // #40 monolith:10319; args: yarn_id=''
    row(40, "/api/yarn-shortage-analysis", Json, Read, ANY4, r301(4, 7), GET, ok(200, 12378, 8, 5)),
    // #41 monolith:17427; dashboard: tab
    row(41, "/api/factory-floor-ai-dashboard", Json, Read, ANY4, r308(3, 2), GET, ok(200, 1934, 28, 4)),
    // #42 v2/blueprint_integration.py:77
    row(42, "/api/machine-planning", Json, RedirectOnly, ANY4, r308(2, 6), ANY4, absent(7, 2)),
    // #43 monolith:16531; dashboard: tab; code uses: iterrows
    row(43, "/api/po-risk-analysis", Json, Read, ANY4, r308(3, 4), GET, ok(200, 18995, 133, 168)),
    // #44 v2/blueprint_integration.py:77
    row(44, "/api/supply-chain-optimization", Json, RedirectOnly, ANY4, r308(2, 10), ANY4, absent(5, 3)),
    // #45 v2/blueprint_integration.py:77
    row(45, "/api/capacity-planning", Json, RedirectOnly, ANY4, r308(3, 2), ANY4, absent(3, 4)),
    // #46 v2/blueprint_integration.py:77
    row(46, "/api/capacity-optimization", Json, RedirectOnly, ANY4, r308(4, 2), ANY4, absent(6, 4)),
    // #47 v2/blueprint_integration.py:141
    row(47, "/api/consolidation-metrics", Json, Read, GET, ok(200, 145, 2, 2), GET, absent(4, 4)),
    // #48 api/consolidation_middleware.py:282
    row(48, "/api/admin/deprecation-report", Json, Read, GET, ok(200, 2637, 3, 11), GET, ok(200, 2637, 4, 4)),
    // #49 api/consolidation_middleware.py:286; POST flips consolidation flags (no auth)
    row(49, "/api/admin/feature-flags", Json, SideEffect, GET | POST, ok(200, 263, 3, 6), GET | POST, ok(200, 263, 4, 3)),
    // #50 monolith:811
    row(50, "/test-early", Text("Early test route works!"), Read, GET, ok(200, 23, 2, 6), GET, ok(200, 23, 3, 4)),
    // #51 monolith:816
    row(51, "/favicon.ico", Empty, Read, GET, ok(204, 0, 2, 2), GET, ok(204, 0, 1, 5)),
    // #52 api/consolidated_endpoints.py:19; args: type, intelligence, yarn, production, style
    row(52, "/api/inventory/unified", Json, Read, GET, ok(200, 370, 2, 6), GET, ok(200, 370, 3, 3)),
    // #53 api/consolidated_endpoints.py:102; args: type, horizon, ml, details, style
    row(53, "/api/forecast/unified", Json, Read, GET, ok(200, 424, 4, 3), GET, ok(200, 424, 3, 5)),
    // #54 api/consolidated_endpoints.py:200; args: type, ml, pipeline, suggestions, order
    row(54, "/api/production/unified", Json, Read, GET, ok(200, 614, 2, 6), GET, ok(200, 614, 1, 2)),
    // #55 api/consolidated_endpoints.py:304; args: type, intelligence, substitutions, shortages, yarn
    row(55, "/api/yarn/unified", Json, Read, GET, ok(200, 624, 2, 8), GET, ok(200, 624, 3, 2)),
    // #56 api/consolidated_endpoints.py:409; args: type, optimization, capacity, phase
    row(56, "/api/planning/unified", Json, Read, GET, ok(200, 361, 3, 2), GET, ok(200, 361, 2, 4)),
    // #57 api/consolidated_endpoints.py:492; args: operation(status/cache/debug/all/reload), force_reload; GET ?operation=reload/force_reload=true reloads data
    row(57, "/api/system/unified", Json, SideEffect, GET | POST, ok(200, 244, 3, 7), GET | POST, ok(200, 244, 3, 3)),
    // #58 monolith:8687; dashboard: pageload
    row(58, "/", Dashboard, Read, GET, ok(200, 808563, 7, 24), GET, ok(200, 808563, 15, 4)),
    // #59 monolith:8714
    row(59, "/consolidated", Dashboard, Read, GET, ok(200, 808563, 5, 15), GET, ok(200, 808563, 5, 9)),
    // #60 monolith:8718; dashboard: tab
    row(60, "/ai-factory-floor", SendFile, Read, GET, ok(200, 25302, 4, 8), GET, ok(200, 25302, 3, 5)),
    // #61 monolith:8730
    row(61, "/test-tabs", Text("Test file not found"), Read, GET, ok(404, 19, 3, 4), GET, ok(404, 19, 3, 5)),
    // #62 monolith:8739
    row(62, "/final-test", Text("Test file not found"), Read, GET, ok(404, 19, 4, 7), GET, ok(404, 19, 1, 3)),
    // #63 monolith:8748
    row(63, "/test_dashboard.html", Text("Test dashboard not found"), Read, GET, ok(404, 24, 2, 6), GET, ok(404, 24, 3, 3)),
    // #64 monolith:8825; dashboard: tab
    row(64, "/api/planning-phases", Json, Read, GET, ok(200, 1444, 3, 7), GET, ok(200, 1444, 7, 4)),
    // #65 monolith:9222
    row(65, "/api/planning-status", Json, Read, GET, ok(200, 265, 3, 5), GET, ok(200, 265, 5, 3)),
    // #66 monolith:9238; dashboard: tab
    row(66, "/api/planning/execute", Json, ReadWrite, GET | POST, ok(200, 262, 6, 8), GET | POST, ok(200, 262, 4, 2)),
    // #67 monolith:9246
    row(67, "/api/execute-planning", Json, ReadWrite, GET | POST, ok(200, 262, 3, 2), GET | POST, ok(200, 262, 4, 3)),
    // #68 monolith:10008; dashboard: tab
    row(68, "/api/advanced-optimization", Json, Read, GET, ok(200, 15007, 18, 44), GET, ok(200, 15007, 28, 10)),
    // #69 monolith:10074
    row(69, "/api/sales-forecast-analysis", Json, Read, GET, ok(200, 70, 7, 6), GET, ok(200, 70, 3, 3)),
    // #70 monolith:10088
    row(70, "/api/debug-data", Json, Read, GET, ok(200, 1356, 5, 4), GET, ok(200, 1356, 2, 9)),
    // #71 monolith:10112; code uses: CACHE
    row(71, "/api/cache-stats", Json, Read, GET, ok(200, 154, 2, 6), GET, ok(200, 159, 2, 5)),
    // #72 monolith:10121; code uses: CACHE
    row(72, "/api/cache-clear", Json, Write, POST, nt(), POST, nt()),
    // #73 monolith:10133; GET reloads all data (cache "clear" uses wrong namespace); code uses: CACHE
    row(73, "/api/reload-data", Json, SideEffect, GET, ok(200, 65, 17, 44), GET, ok(200, 65, 17, 44)), // §1.3: 65 B, 17-44 ms
    // #74 monolith:10215
    row(74, "/api/service-status", Json, Read, GET, ok(500, 151, 4, 5), GET, ok(500, 151, 9, 2)),
    // #75 monolith:10284
    row(75, "/api/six-phase-planning", Json, Read, GET, ok(200, 756, 3, 7), GET, ok(200, 756, 7, 5)),
    // #76 monolith:10310; dashboard: tab
    row(76, "/api/supplier-intelligence", Json, Read, GET, ok(200, 2094, 6, 6), GET, ok(200, 2094, 7, 5)),
    // #77 monolith:10363
    row(77, "/api/purchase-orders", Json, ReadWrite, GET | POST, ok(200, 84, 1, 1), GET | POST, ok(200, 84, 2, 6)),
    // #78 monolith:10399; args: original='', substitute=''
    row(78, "/api/validate-substitution", Json, Read, GET, ok(200, 169, 2, 5), GET, ok(200, 169, 1, 4)),
    // #79 monolith:10422; args: yarn_id=''
    row(79, "/api/yarn-alternatives", Json, Read, GET, r301(2, 2), GET, ok(400, 58, 3, 2)),
    // #80 monolith:10462; dashboard: tab; code uses: iterrows/read_excel
    row(80, "/api/knit-orders-styles", Json, Read, GET, ok(200, 70, 2, 4), GET, ok(200, 70, 1, 1)),
    // #81 monolith:10663
    row(81, "/api/knit-orders-analysis", Json, Read, GET, ok(200, 6734, 12, 13), GET, ok(200, 6734, 16, 10)),
    // #82 monolith:10669
    row(82, "/api/yarn-requirements-calculation", Json, Read, GET, ok(200, 2180, 224, 384), GET, ok(200, 2182, 271, 443)),
    // #83 monolith:10675
    row(83, "/api/knit-orders/generate", Json, Write, POST, nt(), POST, nt()),
    // #84 monolith:10737; code uses: iterrows
    row(84, "/api/procurement-recommendations", Json, Read, GET, ok(200, 2633, 6, 9), GET, ok(200, 2633, 4, 8)),
    // #85 monolith:10816
    row(85, "/api/fabric/convert", Json, Write, POST, nt(), POST, nt()),
    // #86 monolith:10857; code uses: CACHE
    row(86, "/api/fabric/specs", Json, Read, GET, ok(200, 56, 2, 6), GET, ok(200, 56, 2, 15)),
    // #87 monolith:10890; dashboard: tab; code uses: iterrows/read_csv
    row(87, "/api/bom-explosion-net-requirements", Json, Read, GET, ok(200, 6153, 296, 252), GET, ok(200, 6153, 304, 463)),
    // #88 monolith:11154
    row(88, "/api/textile-bom", Json, Write, POST, nt(), POST, nt()),
    // #89 monolith:11179
    row(89, "/api/fabric/yarn-requirements", Json, Write, POST, nt(), POST, nt()),
    // #90 monolith:11218
    row(90, "/api/production-metrics-enhanced", Json, Read, GET, ok(200, 349, 6, 2), GET, ok(200, 349, 7, 9)),
    // #91 monolith:11228; args: end_date, forecast='false', horizon_days=30, start_date, style
    row(91, "/api/fabric-production", Json, Read, GET, ok(500, 87, 9, 2), GET, ok(500, 87, 8, 7)),
    // #92 monolith:11297; code uses: iterrows/read_excel/read_csv
    row(92, "/api/fabric-forecast", Json, Read, GET, r301(3, 1), GET, slow(200, 14733, 1705, 1705, 2317)), // §1.7
    // #93 monolith:11683; code uses: read_csv
    row(93, "/api/consistency-forecast", Json, ReadWrite, GET | POST, ok(200, 643, 4, 1), GET | POST, ok(200, 643, 3, 2)),
    // #94 monolith:11865; dashboard: tab
    row(94, "/api/fabric-forecast-integrated", Json, Read, GET, slow(200, 14733, 1938, 1233, 2499), GET, slow(200, 14733, 1761, 1233, 2499)), // §1.7
    // #95 monolith:12013; dashboard: tab
    row(95, "/api/executive-insights", Json, Read, GET, ok(200, 1232, 7, 2), GET, ok(200, 1232, 5, 9)),
    // #96 monolith:12020
    row(96, "/api/yarn", Json, Read, GET, r301(7, 1), GET, ok(200, 2360, 7, 14)),
    // #97 monolith:12038
    row(97, "/api/inventory-analysis", Json, Read, GET, r301(7, 1), GET, ok(200, 139, 5, 12)),
    // #98 monolith:12106
    row(98, "/api/emergency-shortage", Json, Read, GET, r301(3, 1), GET, ok(200, 2064, 8, 3)),
    // #99 monolith:12181
    row(99, "/api/yarn-aggregation", Json, Read, GET, ok(500, 60, 13, 2), GET, ok(500, 60, 4, 5)),
    // #100 monolith:12199; dashboard: tab; code uses: CACHE
    row(100, "/api/supply-chain-analysis-cached", Json, Read, GET, r301(9, 1), GET, ok(200, 358, 2, 2)),
    // #101 monolith:12290
    row(101, "/api/supply-chain-analysis", Json, Read, GET, ok(200, 351, 5, 2), GET, ok(200, 351, 6, 8)),
    // #102 monolith:12847; args: format='json', weeks='9', yarn_id
    row(102, "/api/yarn-shortage-timeline", Json, Read, GET, ok(501, 128, 2, 1), GET, ok(501, 128, 3, 7)),
    // #103 monolith:12911; args: include_totals='true', yarn_id
    row(103, "/api/po-delivery-schedule", Json, Read, GET, ok(501, 45, 3, 1), GET, ok(501, 45, 2, 3)),
    // #104 monolith:12975; args: include_demand='true', weeks='9', yarn_id
    row(104, "/api/time-phased-planning", Json, Read, GET, ok(501, 45, 11, 2), GET, ok(501, 45, 4, 2)),
    // #105 monolith:13041; args: include_timing='false'
    row(105, "/api/yarn-intelligence-enhanced", Json, Read, GET, ok(200, 14159, 88, 24), GET, ok(200, 14159, 73, 74)),
    // #106 monolith:13097
    row(106, "/api/debug-time-phased-init", Json, Read, GET, ok(200, 113, 12, 2), GET, ok(200, 113, 26, 2)),
    // #107 monolith:13353; code uses: read_excel
    row(107, "/api/real-time-inventory", Json, Read, GET, r301(4, 1), GET, ok(200, 31, 5, 3)),
    // #108 monolith:13395; code uses: iterrows/read_excel
    row(108, "/api/safety-stock", Json, Read, GET, ok(404, 125, 3, 1), GET, ok(404, 125, 5, 6)),
    // #109 monolith:13475; code uses: read_excel
    row(109, "/api/multi-stage-inventory", Json, Read, GET, ok(200, 789, 10, 2), GET, ok(200, 789, 2, 2)),
    // #110 monolith:13587
    row(110, "/api/sales", Json, Read, GET, r301(9, 2), GET, ok(500, 47, 3, 8)),
    // #111 monolith:13623
    row(111, "/api/dynamic-eoq", Json, Read, GET, ok(200, 19, 14, 4), GET, ok(200, 19, 4, 11)),
    // #112 monolith:13631
    row(112, "/api/supplier-risk-scoring", Json, Read, GET, ok(200, 75522, 130, 29), GET, ok(200, 75522, 102, 63)),
    // #113 monolith:13639
    row(113, "/api/emergency-procurement", Json, Read, GET, r301(8, 2), GET, ok(200, 3277, 100, 61)),
    // #114 monolith:13649; code uses: prophet/xgb
    row(114, "/api/ai/yarn-forecast/<yarn_id>", Json, Read, GET, ok(500, 73, 5, 2), GET, ok(500, 73, 6, 7)),
    // #115 monolith:13778
    row(115, "/api/ai/optimize-safety-stock", Json, Write, POST, r301(2, 2), POST, nt()),
    // #116 monolith:13870
    row(116, "/api/ai/reorder-recommendation", Json, Write, POST, r301(2, 2), POST, nt()),
    // #117 monolith:13946; dashboard: tab; code uses: prophet/xgb/iterrows
    row(117, "/api/ai/inventory-intelligence", Json, Read, GET, ok(200, 1763, 6, 4), GET, ok(200, 1763, 8, 7)),
    // #118 monolith:14045
    row(118, "/api/ai/ensemble-forecast", Json, Write, POST, r301(2, 2), POST, nt()),
    // #119 monolith:14227; code uses: read_excel
    row(119, "/api/pipeline/run", Json, Write, POST, r301(2, 2), POST, nt()),
    // #120 monolith:14292; code uses: read_excel
    row(120, "/api/pipeline/forecast", Json, Read, GET, r301(4, 2), GET, slow(200, 1269, 6969, 740, 924)), // §1.7
    // #121 monolith:14340; code uses: iterrows/read_excel
    row(121, "/api/pipeline/yarn-shortages", Json, Read, GET, r301(2, 2), GET, slow(200, 985, 459, 459, 1029)), // §1.7
    // #122 monolith:14427
    row(122, "/api/pipeline/inventory-risks", Json, Read, GET, r301(2, 2), GET, ok(500, 50, 5, 11)),
    // #123 monolith:14488
    row(123, "/api/inventory-analysis/complete", Json, Read, GET, r301(7, 2), GET, ok(500, 70, 3, 2)),
    // #124 monolith:14510
    row(124, "/api/inventory-analysis/yarn-shortages", Json, Read, GET, r301(3, 1), GET, ok(500, 83, 2, 1)),
    // #125 monolith:14532
    row(125, "/api/inventory-analysis/stock-risks", Json, Read, GET, r301(2, 1), GET, ok(500, 70, 2, 1)),
    // #126 monolith:14554
    row(126, "/api/inventory-analysis/forecast-vs-stock", Json, Read, GET, r301(5, 2), GET, ok(500, 72, 2, 7)),
    // #127 monolith:14584
    row(127, "/api/inventory-analysis/yarn-requirements", Json, Write, POST, r301(2, 2), POST, nt()),
    // #128 monolith:14628
    row(128, "/api/inventory-analysis/action-items", Json, Read, GET, r301(3, 2), GET, ok(500, 70, 2, 7)),
    // #129 monolith:14677
    row(129, "/api/inventory-analysis/dashboard-data", Json, Read, GET, r301(3, 2), GET, ok(500, 70, 2, 2)),
    // #130 monolith:14725
    row(130, "/api/backtest/run", Json, Write, POST, nt(), POST, nt()),
    // #131 monolith:14749
    row(131, "/api/backtest/models", Json, Read, GET, ok(500, 132, 3, 2), GET, ok(500, 132, 2, 3)),
    // #132 monolith:14790
    row(132, "/api/backtest/accuracy", Json, Read, GET, ok(404, 66, 11, 2), GET, ok(404, 66, 2, 9)),
    // #133 monolith:14843
    row(133, "/api/ml-forecast-report", Json, Read, GET, r301(3, 2), GET, ok(404, 41, 3, 2)),
    // #134 monolith:15189; dashboard: tab
    row(134, "/api/ml-validation-summary", Json, Read, GET, ok(200, 655, 10, 2), GET, ok(200, 655, 3, 2)),
    // #135 monolith:15241; dashboard: tab
    row(135, "/api/retrain-ml", Json, Write, POST, nt(), POST, nt()),
    // #136 monolith:15396; code uses: read_csv
    row(136, "/api/inventory-overview", Json, Read, GET, r301(3, 2), GET, ok(200, 117, 6, 5)),
    // #137 monolith:15441; code uses: iterrows
    row(137, "/api/yarn-substitution-opportunities", Json, Read, GET, r301(5, 2), GET, ok(200, 5309, 14, 62)),
    // #138 monolith:15678; code uses: CACHE/iterrows
    row(138, "/api/yarn-forecast-shortages", Json, Read, GET, r301(7, 2), GET, ok(200, 8741, 49, 119)),
    // #139 monolith:15860
    row(139, "/api/production-data", Json, Read, GET, r301(5, 2), GET, ok(200, 754, 5, 10)),
    // #140 monolith:15873
    row(140, "/api/production-orders", Json, Read, GET, r301(5, 2), GET, ok(200, 593, 2, 5)),
    // #141 monolith:15886
    row(141, "/api/machines-status", Json, Read, GET, r301(2, 1), GET, ok(200, 780, 2, 3)),
    // #142 monolith:15899
    row(142, "/api/production-orders/create", Json, Write, POST, nt(), POST, nt()),
    // #143 monolith:15924; dashboard: tab
    row(143, "/api/production-plan-forecast", Json, Write, POST, r301(2, 2), POST, nt()),
    // #144 monolith:16024
    row(144, "/live_sales_data.js", Text("// live_sales_data.js not found"), Read, GET, ok(404, 31, 21, 1), GET, ok(404, 31, 2, 1)),
    // #145 monolith:16041; code uses: iterrows
    row(145, "/api/live-sales", Json, Read, GET, r301(5, 2), GET, ok(200, 3886, 7, 11)),
    // #146 monolith:16521
    row(146, "/hello", Text("Hello World"), Read, GET, ok(200, 11, 6, 1), GET, ok(200, 11, 1, 1)),
    // #147 monolith:16525
    row(147, "/api/test-po", Json, Read, GET, ok(200, 45, 3, 1), GET, ok(200, 45, 1, 2)),
    // #148 monolith:16767
    row(148, "/api/style-mapping", Json, Read, GET, ok(200, 170, 11, 2), GET, ok(200, 170, 2, 11)),
    // #149 monolith:16794; args: style; code uses: iterrows
    row(149, "/api/production-capacity", Json, Read, GET, ok(200, 145, 54, 2), GET, ok(200, 145, 2, 2)),
    // #150 monolith:16842; args: style
    row(150, "/api/production-machine-mapping", Json, Read, GET, ok(200, 215, 9, 2), GET, ok(200, 215, 1, 3)),
    // #151 monolith:16897; args: machine_id, work_center
    row(151, "/api/machine-utilization", Json, Read, GET, ok(200, 266, 2, 2), GET, ok(200, 266, 1, 9)),
    // #152 monolith:16948; args: work_center
    row(152, "/api/work-center-capacity", Json, Read, GET, ok(200, 62, 4, 2), GET, ok(200, 62, 3, 9)),
    // #153 monolith:17011
    row(153, "/api/factory-floor-status", Json, Read, GET, ok(200, 246, 11, 2), GET, ok(200, 246, 1, 5)),
    // #154 monolith:17083
    row(154, "/api/ai-production-insights", Json, Read, GET, ok(500, 35, 71, 2), GET, ok(500, 35, 2, 10)),
    // #155 monolith:17099; args: limit, severity=''
    row(155, "/api/ai-bottleneck-detection", Json, Read, GET, ok(200, 104, 4, 2), GET, ok(200, 104, 4, 4)),
    // #156 monolith:17131; args: effort='', type=''
    row(156, "/api/ai-optimization-recommendations", Json, Read, GET, ok(200, 116, 7, 2), GET, ok(200, 116, 3, 7)),
    // #157 monolith:17159; args: horizon='30'
    row(157, "/api/ai-production-forecast", Json, Read, GET, ok(500, 35, 6, 2), GET, ok(500, 35, 4, 2)),
    // #158 monolith:17185
    row(158, "/api/style-work-center-mapping", Json, Read, GET, ok(500, 90, 19, 6), GET, ok(500, 90, 7, 23)),
    // #159 monolith:17586
    row(159, "/api/production-schedule", Json, Read, GET, ok(200, 85, 34, 5), GET, ok(200, 85, 7, 19)),
    // #160 monolith:17899; args: period=30, type=int; GET runs backtest
    row(160, "/api/backtest/fabric-comprehensive", Json, SideEffect, GET | POST, ok(500, 67, 12, 2), GET | POST, ok(500, 67, 4, 3)),
    // #161 monolith:17959; args: period=30, type=int; GET runs backtest
    row(161, "/api/backtest/yarn-comprehensive", Json, SideEffect, GET | POST, ok(500, 67, 4, 2), GET | POST, ok(500, 67, 3, 2)),
    // #162 monolith:18019; args: periods='7,14,30,60'; GET runs backtests
    row(162, "/api/backtest/full-report", Json, SideEffect, GET | POST, ok(500, 67, 5, 2), GET | POST, ok(500, 67, 4, 3)),
    // #163 api/production_flow_endpoints.py:14
    row(163, "/api/production-flow/status", Json, Read, GET, ok(200, 852, 2, 2), GET, ok(200, 852, 3, 6)),
    // #164 api/production_flow_endpoints.py:26
    row(164, "/api/production-flow/batch/<batch_id>", Json, Read, GET, ok(200, 33, 4, 1), GET, ok(200, 33, 4, 2)),
    // #165 api/production_flow_endpoints.py:38
    row(165, "/api/production-flow/batches", Json, Read, GET, ok(200, 3, 3, 2), GET, ok(200, 3, 3, 11)),
    // #166 api/production_flow_endpoints.py:61
    row(166, "/api/production-flow/create-order", Json, Write, POST, nt(), POST, nt()),
    // #167 api/production_flow_endpoints.py:103
    row(167, "/api/production-flow/move-batch", Json, Write, POST, nt(), POST, nt()),
    // #168 api/production_flow_endpoints.py:149; args: safety_stock_days=20
    row(168, "/api/production-flow/f01-replenishment", Json, Read, GET, ok(200, 50, 6, 1), GET, ok(200, 50, 3, 4)),
    // #169 api/production_flow_endpoints.py:170
    row(169, "/api/production-flow/production-plan", Json, Write, POST, nt(), POST, nt()),
    // #170 api/production_flow_endpoints.py:200
    row(170, "/api/production-flow/yarn-impact", Json, Write, POST, nt(), POST, nt()),
    // #171 api/production_flow_endpoints.py:220
    row(171, "/api/production-flow/metrics", Json, Read, GET, ok(200, 1220, 3, 1), GET, ok(200, 1220, 3, 7)),
    // #172 api/production_flow_endpoints.py:232
    row(172, "/api/production-flow/capacity", Json, Read, GET, ok(200, 401, 1, 2), GET, ok(200, 401, 3, 3)),
    // #173 api/production_flow_endpoints.py:256
    row(173, "/api/production-flow/test-data", Json, Write, POST, nt(), POST, nt()),
];

/// A query-dependent outcome measured separately (docs/ERP.md §4). A variant applies when every one of
/// its `when` pairs is in the request's query; the one with the most pairs wins.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Variant {
    /// The path (without query).
    pub path: &'static str,
    /// Parameters that must all be present with these values.
    pub when: &'static [(&'static str, &'static str)],
    /// As shipped.
    pub shipped: Outcome,
    /// With the rollback flags.
    pub rollback: Outcome,
}

const fn var(
    path: &'static str,
    when: &'static [(&'static str, &'static str)],
    shipped: Outcome,
    rollback: Outcome,
) -> Variant {
    Variant {
        path,
        when,
        shipped,
        rollback,
    }
}

/// docs/ERP.md §4, one line per measured URL (the 501 rows equal their base rows and are
/// left out).
#[rustfmt::skip]
pub(crate) static VARIANTS: &[Variant] = &[
    var("/api/v2/yarn", &[("analysis", "intelligence")], ok(500, 257, 2, 2), ok(200, 5865, 6, 28)),
    var("/api/v2/yarn", &[("view", "substitutions")], ok(500, 257, 4, 2), ok(400, 252, 2, 5)),
    var("/api/v2/yarn", &[("action", "intelligence")], ok(500, 257, 5, 1), ok(200, 5863, 9, 7)),
    var("/api/v2/yarn", &[("action", "requirements")], ok(500, 257, 2, 1), ok(200, 5863, 4, 18)),
    var("/api/v2/production", &[("view", "pipeline")], ok(500, 231, 5, 2), ok(400, 276, 3, 4)),
    var("/api/v2/production", &[("view", "suggestions")], ok(500, 231, 4, 2), ok(500, 218, 3, 1)),
    var("/api/v2/production", &[("view", "planning")], ok(500, 231, 4, 2), ok(400, 276, 3, 4)),
    var("/api/v2/production", &[("view", "recommendations")], ok(500, 231, 3, 1), ok(400, 283, 3, 6)),
    var("/api/v2/production", &[("view", "machines")], ok(500, 231, 6, 1), ok(400, 276, 3, 7)),
    var("/api/v2/production", &[("view", "status")], ok(500, 231, 5, 1), ok(400, 274, 2, 5)),
    var("/api/v2/inventory", &[("analysis", "intelligence"), ("realtime", "true")], ok(200, 156, 4, 2), ok(200, 470, 3, 5)),
    var("/api/v2/inventory", &[("analysis", "intelligence")], ok(200, 156, 4, 2), ok(200, 436, 5, 8)),
    var("/api/v2/inventory", &[("view", "yarn"), ("format", "json")], ok(200, 156, 13, 2), ok(400, 294, 3, 17)),
    var("/api/v2/inventory", &[("view", "shortage"), ("analysis", "shortage")], ok(200, 156, 12, 1), ok(400, 304, 4, 1)),
    var("/api/v2/inventory", &[("realtime", "true")], ok(200, 156, 6, 1), ok(200, 444, 5, 3)),
    var("/api/v2/forecast", &[("detail", "full")], ok(500, 238, 2, 2), absent(2, 1)),
    var("/api/v2/forecast", &[("detail", "summary")], ok(500, 238, 6, 1), absent(5, 2)),
    var("/api/v2/analytics", &[("category", "kpi")], ok(500, 231, 5, 2), absent(14, 2)),
    var("/api/ml-forecast-detailed", &[("detail", "summary")], r308(2, 2), ok(200, 1400, 4, 5)),
    var("/api/ml-forecast-detailed", &[("format", "report")], r308(9, 2), ok(200, 7732, 5, 7)),
    var("/api/ml-forecast-detailed", &[("detail", "full"), ("format", "report"), ("horizon", "90")], r308(4, 1), ok(200, 7714, 4, 3)),
    var("/api/ml-forecast-detailed", &[("detail", "full"), ("format", "report"), ("horizon", "30")], r308(7, 1), ok(200, 7578, 3, 8)),
    var("/api/inventory-intelligence-enhanced", &[("realtime", "true")], r308(3, 1), ok(200, 701, 13, 19)),
    var("/api/inventory-intelligence-enhanced", &[("view", "summary"), ("analysis", "shortage"), ("realtime", "true")], r308(6, 1), ok(200, 705, 16, 6)),
    var("/api/yarn-intelligence", &[("forecast", "true"), ("analysis", "shortage")], r308(3, 1), ok(200, 22472, 32, 65)),
    var("/api/production-planning", &[("view", "orders"), ("forecast", "true")], r308(8, 1), ok(200, 2582, 6, 5)),
];

/// Exact paths → index, and the patterned rules, built once.
struct Index {
    exact: HashMap<&'static str, usize>,
    patterned: Vec<usize>,
}

static INDEX: LazyLock<Index> = LazyLock::new(|| {
    let mut exact = HashMap::new();
    let mut patterned = Vec::new();
    for (i, e) in CATALOGUE.iter().enumerate() {
        if e.path.contains('<') {
            patterned.push(i);
        } else {
            exact.insert(e.path, i);
        }
    }
    Index { exact, patterned }
});

/// The catalogue entry for a decoded request path, with its index.
pub(crate) fn find(path: &str) -> Option<(usize, &'static Endpoint)> {
    if let Some(&i) = INDEX.exact.get(path) {
        return Some((i, &CATALOGUE[i]));
    }
    INDEX
        .patterned
        .iter()
        .map(|&i| (i, &CATALOGUE[i]))
        .find(|(_, e)| rule_matches(e.path, path))
}

/// Werkzeug's default converter: a `<name>` segment matches one non-empty segment.
fn rule_matches(rule: &str, path: &str) -> bool {
    let mut rs = rule.split('/');
    let mut ps = path.split('/');
    loop {
        match (rs.next(), ps.next()) {
            (None, None) => return true,
            (Some(r), Some(p)) if r.starts_with('<') => {
                if p.is_empty() {
                    return false;
                }
            }
            (Some(r), Some(p)) if r == p => {}
            _ => return false,
        }
    }
}

/// The query variant for `path` and the parsed query in `mode`, if one was measured.
pub(crate) fn variant(path: &str, args: &[(String, String)], mode: Mode) -> Option<Outcome> {
    VARIANTS
        .iter()
        .filter(|v| v.path == path)
        .filter(|v| {
            v.when
                .iter()
                .all(|(k, want)| first_value(args, k) == Some(*want))
        })
        .max_by_key(|v| v.when.len())
        .map(|v| match mode {
            Mode::Shipped => v.shipped,
            Mode::Rollback => v.rollback,
        })
}

/// Latency of an untimed write. (guess) No write was timed; heavy ones run the planning
/// engine or model training (docs/ERP.md §7), so they get the fabric forecast's
/// 1.2-2.5 s and the interpreter lock; light ones get a fast handler's 5-25 ms.
pub(crate) fn write_timing(path: &str) -> Timing {
    const HEAVY: &[&str] = &[
        "/api/execute-planning",
        "/api/planning/execute",
        "/api/retrain-ml",
        "/api/pipeline/run",
        "/api/ai/ensemble-forecast",
        "/api/backtest/run",
        "/api/production-plan-forecast",
        "/api/consistency-forecast",
        "/api/backtest/fabric-comprehensive",
        "/api/backtest/yarn-comprehensive",
        "/api/backtest/full-report",
    ];
    if HEAVY.contains(&path) {
        Timing {
            cold_ms: 2000,
            warm_lo_ms: 1200,
            warm_hi_ms: 2500,
        }
    } else {
        Timing {
            cold_ms: 15,
            warm_lo_ms: 5,
            warm_hi_ms: 25,
        }
    }
}

/// Whether a request reloads the ERP's data (GET side effects, §1.3).
pub(crate) fn reloads_data(path: &str, args: &[(String, String)]) -> bool {
    path == "/api/reload-data"
        || (path == "/api/system/unified"
            && (first_value(args, "operation") == Some("reload")
                || first_value(args, "force_reload") == Some("true")))
}

/// The error message a failing handler reports (docs/ERP.md §6), for the JSON body.
pub(crate) fn error_message(path: &str, status: u16) -> &'static str {
    match (path, status) {
        ("/api/v2/production", 500) => {
            "cannot import name 'get_production_planning' from 'src.core.beverly_comprehensive_erp'"
        }
        ("/api/v2/yarn", 500) => {
            "cannot import name 'get_yarn_requirements' from 'src.yarn_intelligence.yarn_intelligence_enhanced'"
        }
        ("/api/v2/analytics", 500) => "cannot import name 'get_performance_metrics'",
        ("/api/v2/forecast", 500) => {
            "cannot import name 'get_forecast' from 'src.forecasting.enhanced_forecasting_engine'"
        }
        (p, 500) if p.starts_with("/api/inventory-analysis") => {
            "'InventoryAnalyzer' object has no attribute 'analyze_all'"
        }
        ("/api/ai-production-insights" | "/api/ai-production-forecast", 500) => {
            "float division by zero"
        }
        ("/api/yarn-aggregation", 500) => "No module named 'yarn_aggregation_intelligence'",
        (p, 500) if p.starts_with("/api/backtest/") => "No module named 'backtest_analysis'",
        (_, 501) => "Expected_Yarn_Report.xlsx not found or time-phased modules unavailable",
        (_, 400) => "Invalid parameter combination",
        (_, 404) => "Not found",
        _ => "An unexpected error occurred",
    }
}

#[cfg(test)]
mod tests {
    use super::super::redirects;
    use super::super::url::parse_query;
    use super::*;

    #[test]
    fn catalogue_has_every_row_once() {
        assert_eq!(CATALOGUE.len(), 173, "docs/ERP.md §5: 173 paths");
        let mut seen = std::collections::HashSet::new();
        for (i, e) in CATALOGUE.iter().enumerate() {
            assert_eq!(usize::from(e.row), i + 1, "rows are in order");
            assert!(seen.insert(e.path), "duplicate path {}", e.path);
        }
    }

    #[test]
    fn finds_exact_and_patterned_paths() {
        assert_eq!(find("/api/knit-orders").map(|(_, e)| e.row), Some(21));
        assert_eq!(
            find("/api/ai/yarn-forecast/18868").map(|(_, e)| e.row),
            Some(114)
        );
        assert_eq!(
            find("/api/production-flow/batch/B-1").map(|(_, e)| e.row),
            Some(164)
        );
        assert!(find("/api/ai/yarn-forecast/").is_none());
        assert!(find("/api/nope").is_none());
    }

    #[test]
    fn slow_set_is_cpu_bound_and_fast_set_is_not() {
        let rollback = |p: &str| find(p).map(|(_, e)| e.rollback.outcome);
        for p in [
            "/api/fabric-forecast-integrated",
            "/api/pipeline/forecast",
            "/api/machine-assignment-suggestions",
        ] {
            let Some(Outcome::Answer { timing, .. }) = rollback(p) else {
                panic!("{p} answers")
            };
            assert!(timing.cpu_bound(), "{p}");
        }
        let Some(Outcome::Answer { timing, .. }) = rollback("/api/comprehensive-kpis") else {
            panic!()
        };
        assert!(!timing.cpu_bound());
        let Some(Outcome::Answer { timing, .. }) = rollback("/api/pipeline/forecast") else {
            panic!()
        };
        assert_eq!(
            (timing.cold_ms, timing.warm_lo_ms, timing.warm_hi_ms),
            (6969, 740, 924)
        );
    }

    #[test]
    fn most_specific_variant_wins() {
        let args = parse_query("analysis=intelligence&realtime=true");
        assert_eq!(
            variant("/api/v2/inventory", &args, Mode::Rollback),
            Some(ok(200, 470, 3, 5))
        );
        let args = parse_query("analysis=intelligence");
        assert_eq!(
            variant("/api/v2/inventory", &args, Mode::Rollback),
            Some(ok(200, 436, 5, 8))
        );
        assert_eq!(variant("/api/v2/inventory", &[], Mode::Rollback), None);
    }

    #[test]
    fn every_redirect_cell_has_a_location() {
        for e in CATALOGUE {
            match e.shipped.outcome {
                Outcome::V2Redirect(_) => {
                    assert!(
                        redirects::v2_location(e.path, &[]).is_some(),
                        "308 row {}",
                        e.path
                    );
                }
                Outcome::Legacy301(_) => {
                    assert!(
                        redirects::legacy_location(e.path, &[]).is_some(),
                        "301 row {}",
                        e.path
                    );
                }
                _ => {}
            }
            assert!(
                !matches!(
                    e.rollback.outcome,
                    Outcome::V2Redirect(_) | Outcome::Legacy301(_)
                ),
                "rollback mode has no redirects: {}",
                e.path
            );
        }
    }

    #[test]
    fn side_effect_gets() {
        assert!(reloads_data("/api/reload-data", &[]));
        assert!(reloads_data(
            "/api/system/unified",
            &parse_query("operation=reload")
        ));
        assert!(!reloads_data(
            "/api/system/unified",
            &parse_query("operation=status")
        ));
    }
}
