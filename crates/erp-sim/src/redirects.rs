//! The ERP's two redirect layers as shipped (docs/ERP.md §2): the `before_request` hook
//! `intercept_deprecated_endpoints` (301, 37 legacy paths + a few unrouted ones) and the v2 compat
//! rules of `blueprint_integration.py` (308, parameters re-mapped by `ParameterMapper`).
//!
//! Both rebuild the query string with `'&'.join(f"{k}={v}")`, without URL-encoding, and the
//! parameter order follows Python dict semantics; `Location` values here reproduce that, so
//! `/api/yarn-data` → 301 `/api/yarn-intelligence?view=data` → 308 `/api/v2/yarn?action=…`.
//! This module only computes locations and bodies; it does not decide which mode is active.

use bytes::Bytes;

use super::url::OrderedParams;

/// `DEPRECATED_ENDPOINT_MAPPINGS` (blueprint_integration.py:18-73): legacy path → v2 URL with
/// default parameters. Registered before the monolith's rules, so as shipped they shadow them.
#[rustfmt::skip]
const V2_MAP: &[(&str, &str)] = &[
    ("/api/yarn-inventory", "/api/v2/inventory?view=yarn"),
    ("/api/yarn-data", "/api/v2/inventory?view=yarn"),
    ("/api/inventory-intelligence-enhanced", "/api/v2/inventory?analysis=intelligence"),
    ("/api/real-time-inventory-dashboard", "/api/v2/inventory?realtime=true"),
    ("/api/emergency-shortage-dashboard", "/api/v2/inventory?view=shortage&shortage_only=true"),
    ("/api/inventory-netting", "/api/v2/inventory?view=planning"),
    ("/api/yarn-coverage", "/api/v2/inventory?analysis=shortage"),
    ("/api/production-planning", "/api/v2/production?view=planning"),
    ("/api/production-status", "/api/v2/production?view=status"),
    ("/api/production-pipeline", "/api/v2/production?view=pipeline"),
    ("/api/production-recommendations-ml", "/api/v2/production?view=recommendations"),
    ("/api/machine-assignment-suggestions", "/api/v2/production?view=machines"),
    ("/api/production-flow", "/api/v2/production?view=pipeline"),
    ("/api/knit-orders", "/api/v2/production?view=status"),
    ("/api/production-suggestions", "/api/v2/production?view=recommendations"),
    ("/api/ml-forecasting", "/api/v2/forecast"),
    ("/api/ml-forecast-detailed", "/api/v2/forecast?detail=full"),
    ("/api/sales-forecasting", "/api/v2/forecast?model=prophet"),
    ("/api/demand-forecast", "/api/v2/forecast"),
    ("/api/forecast-accuracy", "/api/v2/forecast?detail=accuracy"),
    ("/api/ml-forecast", "/api/v2/forecast"),
    ("/api/sales-forecast", "/api/v2/forecast?model=prophet"),
    ("/api/comprehensive-kpis", "/api/v2/analytics?category=kpi"),
    ("/api/business-metrics", "/api/v2/analytics?category=business"),
    ("/api/performance-metrics", "/api/v2/analytics?category=performance"),
    ("/api/analytics-dashboard", "/api/v2/analytics"),
    ("/api/real-time-metrics", "/api/v2/analytics?realtime=true"),
    ("/api/kpi-dashboard", "/api/v2/analytics?category=kpi"),
    ("/api/yarn-intelligence", "/api/v2/yarn?action=intelligence"),
    ("/api/yarn-substitution-intelligent", "/api/v2/yarn?action=substitution"),
    ("/api/yarn-interchangeability", "/api/v2/yarn?action=substitution"),
    ("/api/yarn-requirements", "/api/v2/yarn?action=requirements"),
    ("/api/yarn-shortage-analysis", "/api/v2/yarn?action=intelligence&include_substitutes=true"),
    ("/api/factory-floor-ai-dashboard", "/api/v2/production?view=machines"),
    ("/api/machine-planning", "/api/v2/production?view=machines"),
    ("/api/po-risk-analysis", "/api/v2/production?view=planning&include_forecast=true"),
    ("/api/supply-chain-optimization", "/api/v2/analytics?category=business"),
    ("/api/capacity-planning", "/api/v2/production?view=planning"),
    ("/api/capacity-optimization", "/api/v2/production?view=planning&include_forecast=true"),
];

/// Fixed `(key, value)` pairs: query parameters or key renames.
type Params = &'static [(&'static str, &'static str)];

/// `ParameterMapper.PARAMETER_MAPPINGS`: per endpoint name, old key → new key, or → a fixed
/// `key=value` assignment when the target contains `=`.
#[rustfmt::skip]
const PARAM_MAP: &[(&str, Params)] = &[
    ("yarn-inventory", &[("include_shortages", "shortage_only"), ("show_all", "view=detailed"),
                         ("format_type", "format"), ("real_time", "realtime")]),
    ("inventory-intelligence-enhanced", &[("intelligence_level", "analysis"),
                                          ("include_ml", "analysis=forecast"),
                                          ("shortage_analysis", "analysis=shortage")]),
    ("production-planning", &[("include_ml", "include_forecast"), ("machine", "machine_id"),
                              ("order_status", "status"), ("show_unassigned", "status=unassigned")]),
    ("machine-assignment-suggestions", &[("work_center", "machine_id"), ("show_all", "view=detailed"),
                                         ("optimization_level", "view=recommendations")]),
    ("ml-forecasting", &[("forecast_days", "horizon"), ("model_type", "model"),
                         ("include_accuracy", "detail=accuracy"), ("style", "style_id")]),
    ("sales-forecasting", &[("period", "horizon"), ("product", "style_id"),
                            ("show_confidence", "detail=full")]),
    ("comprehensive-kpis", &[("kpi_type", "category"), ("real_time", "realtime"),
                             ("time_period", "period")]),
    ("yarn-intelligence", &[("yarn", "yarn_id"), ("show_substitutes", "include_substitutes"),
                            ("intelligence_type", "action")]),
    ("yarn-substitution-intelligent", &[("yarn", "yarn_id"), ("criteria_type", "action=substitution")]),
];

/// `ParameterMapper.VALUE_TRANSFORMATIONS`: per old key, old value → new value.
#[rustfmt::skip]
const VALUE_MAP: &[(&str, Params)] = &[
    ("intelligence_level", &[("basic", "none"), ("advanced", "intelligence"), ("full", "intelligence")]),
    ("model_type", &[("time_series", "arima"), ("neural", "lstm"), ("boosting", "xgboost"),
                     ("all", "ensemble")]),
    ("kpi_type", &[("operational", "performance"), ("financial", "business"), ("all_kpis", "all")]),
];

/// `intercept_deprecated_endpoints`' `redirect_map` (monolith lines 709-808): legacy path →
/// (new endpoint, default parameters). The hook runs before routing, so it answers 301 for any
/// method and even for paths with no route of their own (`/api/ai/yarn-forecast`).
#[rustfmt::skip]
const LEGACY_MAP: &[(&str, &str, Params)] = &[
    ("/api/inventory-analysis", "/api/inventory-intelligence-enhanced", &[]),
    ("/api/inventory-overview", "/api/inventory-intelligence-enhanced", &[("view", "summary")]),
    ("/api/real-time-inventory", "/api/inventory-intelligence-enhanced", &[("realtime", "true")]),
    ("/api/real-time-inventory-dashboard", "/api/inventory-intelligence-enhanced",
     &[("view", "dashboard"), ("realtime", "true")]),
    ("/api/inventory-analysis/complete", "/api/inventory-intelligence-enhanced", &[("view", "complete")]),
    ("/api/inventory-analysis/dashboard-data", "/api/inventory-intelligence-enhanced",
     &[("view", "dashboard")]),
    ("/api/inventory-analysis/stock-risks", "/api/inventory-intelligence-enhanced", &[("view", "risks")]),
    ("/api/inventory-analysis/action-items", "/api/inventory-intelligence-enhanced",
     &[("view", "actions")]),
    ("/api/pipeline/inventory-risks", "/api/inventory-intelligence-enhanced",
     &[("view", "risks"), ("source", "pipeline")]),
    ("/api/yarn", "/api/yarn-intelligence", &[]),
    ("/api/yarn-data", "/api/yarn-intelligence", &[("view", "data")]),
    ("/api/yarn-shortage-analysis", "/api/yarn-intelligence", &[("analysis", "shortage")]),
    ("/api/yarn-substitution-opportunities", "/api/yarn-substitution-intelligent",
     &[("view", "opportunities")]),
    ("/api/yarn-alternatives", "/api/yarn-substitution-intelligent", &[("view", "alternatives")]),
    ("/api/yarn-forecast-shortages", "/api/yarn-intelligence",
     &[("forecast", "true"), ("analysis", "shortage")]),
    ("/api/ai/yarn-forecast", "/api/yarn-intelligence", &[("forecast", "true"), ("ai", "true")]),
    ("/api/inventory-analysis/yarn-shortages", "/api/yarn-intelligence", &[("analysis", "shortage")]),
    ("/api/inventory-analysis/yarn-requirements", "/api/yarn-requirements-calculation", &[]),
    ("/api/production-data", "/api/production-planning", &[("view", "data")]),
    ("/api/production-orders", "/api/production-planning", &[("view", "orders")]),
    ("/api/production-plan-forecast", "/api/production-planning", &[("forecast", "true")]),
    ("/api/machines-status", "/api/production-planning", &[("view", "machines")]),
    ("/api/emergency-shortage", "/api/emergency-shortage-dashboard", &[]),
    ("/api/emergency-procurement", "/api/emergency-shortage-dashboard", &[("view", "procurement")]),
    ("/api/pipeline/yarn-shortages", "/api/emergency-shortage-dashboard", &[("type", "yarn")]),
    ("/api/ml-forecasting", "/api/ml-forecast-detailed", &[("detail", "summary")]),
    ("/api/ml-forecast-report", "/api/ml-forecast-detailed", &[("format", "report")]),
    ("/api/fabric-forecast", "/api/fabric-forecast-integrated", &[]),
    ("/api/pipeline/forecast", "/api/ml-forecast-detailed", &[("source", "pipeline")]),
    ("/api/inventory-analysis/forecast-vs-stock", "/api/ml-forecast-detailed", &[("compare", "stock")]),
    ("/api/supply-chain-analysis-cached", "/api/supply-chain-analysis", &[]),
    ("/api/pipeline/run", "/api/production-pipeline", &[("action", "run")]),
    ("/api/ai/optimize-safety-stock", "/api/inventory-intelligence-enhanced",
     &[("ai", "true"), ("action", "optimize-safety")]),
    ("/api/ai/reorder-recommendation", "/api/inventory-intelligence-enhanced",
     &[("ai", "true"), ("action", "reorder")]),
    ("/api/ai/ensemble-forecast", "/api/ml-forecast-detailed", &[("ai", "true"), ("method", "ensemble")]),
    ("/api/sales", "/api/sales-forecast-analysis", &[("view", "sales")]),
    ("/api/live-sales", "/api/sales-forecast-analysis", &[("view", "live")]),
];

/// The 308 target for `path` with the request's parsed query, as `create_redirect_handler`
/// builds it: the rule's default parameters, overridden in place by the mapped request
/// parameters, new ones appended. `None` when `path` has no v2 rule.
pub(crate) fn v2_location(path: &str, args: &[(String, String)]) -> Option<String> {
    let target = V2_MAP.iter().find(|(p, _)| *p == path)?.1;
    // `request.path.replace('/api/', '').strip('/')`, then `.replace('/', '')` in the mapper.
    let name = path.replace("/api/", "").trim_matches('/').replace('/', "");
    let mapping = PARAM_MAP
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, m)| *m)
        .unwrap_or(&[]);

    // `request.args.to_dict()`: first value per key.
    let mut mapped = OrderedParams::default();
    for (i, (k, v)) in args.iter().enumerate() {
        if args[..i].iter().any(|(earlier, _)| earlier == k) {
            continue;
        }
        match mapping.iter().find(|(old, _)| old == k) {
            Some((_, new)) => match new.split_once('=') {
                Some((fixed_k, fixed_v)) => mapped.set(fixed_k, fixed_v),
                None => mapped.set(new, &transform_value(k, v)),
            },
            None => mapped.set(k, v),
        }
    }

    let (base, defaults) = target.split_once('?').unwrap_or((target, ""));
    let mut all = OrderedParams::default();
    for pair in defaults.split('&') {
        if let Some((k, v)) = pair.split_once('=') {
            all.set(k, v);
        }
    }
    for (k, v) in mapped.iter() {
        all.set(k, v);
    }
    Some(if all.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", all.join_unencoded())
    })
}

fn transform_value(key: &str, value: &str) -> String {
    VALUE_MAP
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, table)| table.iter().find(|(old, _)| *old == value))
        .map_or_else(|| value.to_owned(), |(_, new)| (*new).to_owned())
}

/// The 301 of `intercept_deprecated_endpoints` for `path`: `(location, new endpoint)`, or `None`
/// when the hook leaves the path alone. Defaults first, then the request's arguments.
pub(crate) fn legacy_location(
    path: &str,
    args: &[(String, String)],
) -> Option<(String, &'static str)> {
    let (_, new_endpoint, defaults) = LEGACY_MAP.iter().find(|(p, _, _)| *p == path)?;
    let mut params = OrderedParams::default();
    for (k, v) in defaults.iter() {
        params.set(k, v);
    }
    params.update_from_args(args);
    let location = if params.is_empty() {
        (*new_endpoint).to_owned()
    } else {
        format!("{new_endpoint}?{}", params.join_unencoded())
    };
    Some((location, new_endpoint))
}

/// The `Location` header value: Werkzeug passes the location through `iri_to_uri` when it
/// writes headers, so spaces, quotes and non-ASCII bytes are percent-encoded there, while the
/// HTML body shows the raw location.
pub(crate) fn header_location(location: &str) -> String {
    let mut out = String::with_capacity(location.len());
    for &b in location.as_bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Werkzeug's `redirect()` body, byte for byte, so redirect sizes match the measured ones
/// (docs/ERP.md §4: `/api/yarn-intelligence` → 251 B).
pub(crate) fn werkzeug_redirect_body(location: &str) -> Bytes {
    let html = html_escape(location);
    Bytes::from(format!(
        "<!doctype html>\n<html lang=en>\n<title>Redirecting...</title>\n<h1>Redirecting...</h1>\n\
         <p>You should be redirected automatically to the target URL: <a href=\"{html}\">{html}</a>. \
         If not, click the link.\n"
    ))
}

/// markupsafe's `escape`.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::url::parse_query;
    use super::*;

    #[test]
    fn v2_locations_match_the_measured_ones() {
        // The as-shipped `Location`s measured (docs/ERP.md §4).
        let cases = [
            (
                "/api/ml-forecast-detailed",
                "detail=summary",
                "/api/v2/forecast?detail=summary",
            ),
            (
                "/api/inventory-intelligence-enhanced",
                "realtime=true",
                "/api/v2/inventory?analysis=intelligence&realtime=true",
            ),
            (
                "/api/yarn-intelligence",
                "forecast=true&analysis=shortage",
                "/api/v2/yarn?action=intelligence&forecast=true&analysis=shortage",
            ),
            (
                "/api/ml-forecast-detailed",
                "format=report",
                "/api/v2/forecast?detail=full&format=report",
            ),
            (
                "/api/inventory-intelligence-enhanced",
                "view=summary&analysis=shortage&realtime=true",
                "/api/v2/inventory?analysis=shortage&view=summary&realtime=true",
            ),
            (
                "/api/production-planning",
                "view=orders&forecast=true",
                "/api/v2/production?view=orders&forecast=true",
            ),
            (
                "/api/comprehensive-kpis",
                "",
                "/api/v2/analytics?category=kpi",
            ),
            ("/api/knit-orders", "", "/api/v2/production?view=status"),
        ];
        for (path, query, want) in cases {
            assert_eq!(
                v2_location(path, &parse_query(query)).as_deref(),
                Some(want),
                "{path}?{query}"
            );
        }
    }

    #[test]
    fn parameter_mapper_renames_and_transforms() {
        let got = v2_location(
            "/api/ml-forecasting",
            &parse_query("model_type=all&include_accuracy=1"),
        );
        assert_eq!(
            got.as_deref(),
            Some("/api/v2/forecast?model=ensemble&detail=accuracy")
        );
    }

    #[test]
    fn legacy_locations_match_the_measured_ones() {
        let (loc, _) = legacy_location("/api/pipeline/forecast", &[]).expect("mapped");
        assert_eq!(loc, "/api/ml-forecast-detailed?source=pipeline");
        let (loc, _) = legacy_location("/api/yarn-data", &[]).expect("mapped");
        assert_eq!(loc, "/api/yarn-intelligence?view=data");
        let (loc, new) =
            legacy_location("/api/fabric-forecast", &parse_query("a=1")).expect("mapped");
        assert_eq!(
            (loc.as_str(), new),
            (
                "/api/fabric-forecast-integrated?a=1",
                "/api/fabric-forecast-integrated"
            )
        );
        assert!(legacy_location("/api/knit-orders", &[]).is_none());
    }

    #[test]
    fn redirect_bodies_have_the_measured_sizes() {
        // 308 · 251 B and 308 · 331 B measured (docs/ERP.md §4); 301 · 269 B for catalogue row 120.
        assert_eq!(
            werkzeug_redirect_body("/api/v2/yarn?action=intelligence").len(),
            251
        );
        let long = "/api/v2/yarn?action=intelligence&forecast=true&analysis=shortage";
        assert_eq!(werkzeug_redirect_body(long).len(), 331);
        assert_eq!(
            werkzeug_redirect_body("/api/ml-forecast-detailed?source=pipeline").len(),
            269
        );
    }

    #[test]
    fn header_location_encodes_what_headers_cannot_carry() {
        assert_eq!(
            header_location("/a?x=a b&y=\"é\""),
            "/a?x=a%20b&y=%22%C3%A9%22"
        );
    }
}
