//! Control endpoints, served under `/__sim/` on the main port and on the optional control
//! listener (which stays up while the main port is down). They are never counted as ERP
//! requests.
//!
//! * `GET  /__sim/counters`                 JSON: totals, per path, per path+query, switches
//! * `GET  /__sim/hits?path=P`              JSON: hits of path `P` (add `&query=Q` for `P?Q`)
//! * `GET  /__sim/last-body?path=P`         the last request body sent to `P`, raw; 404 if none
//! * `POST /__sim/reset`                    zero the counters, forget bodies
//! * `POST /__sim/fail?status=500`          every ERP request answers that status
//! * `POST /__sim/fail?path=P&status=500`   only path `P` (exact, without query) answers that
//!   status, persistently, while every other path is served normally (one broken endpoint)
//! * `POST /__sim/slow?ms=N`                add N ms to every ERP request
//! * `POST /__sim/hang`                     accept requests and never answer
//! * `POST /__sim/drop?after=N`             a worker that crashes: N requests are answered,
//!   the next one is read and its connection closed without a byte of response, and again.
//!   The ERP closes every connection after one response, so this is what a proxy sees when
//!   the worker dies mid-request on the connection it sent the request on
//! * `POST /__sim/health?says=healthy`      the health path (`path=P`, default `/hello`, the
//!   one knitcache's shipped config probes) answers normally whatever the other switches do
//!   to every other request; `says=unhealthy`: it answers 503 while the rest is served;
//!   `says=truth`: it stops lying
//! * `POST /__sim/normal`                   clear every switch above (fail, path fails, slow,
//!   hang, drop, health); `?path=P`: clear only that path's fail
//! * `POST /__sim/down`, `POST /__sim/up`   close / rebind the main listener
//! * `POST /__sim/mode?mode=shipped`        switch mode (`shipped` or `rollback`)

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use hyper::body::Incoming;

use super::body::{JsonObject, push_json_str};
use super::server::{CONTROL_PREFIX, Server};
use super::state::HealthLie;
use super::url::{first_value, parse_query};
use super::{HealthSays, Mode};

/// The health path a lie applies to when the switch names none: the path knitcache's shipped
/// config probes (`upstream.health_path`), which exists in both of the ERP's modes.
const DEFAULT_HEALTH_PATH: &str = "/hello";

/// Answers one control request.
pub(crate) async fn handle(
    server: &Arc<Server>,
    req: hyper::Request<Incoming>,
) -> http::Response<Bytes> {
    let path = req
        .uri()
        .path()
        .strip_prefix(CONTROL_PREFIX)
        .unwrap_or("")
        .to_owned();
    let args = parse_query(req.uri().query().unwrap_or(""));
    let method = req.method().clone();
    let shared = &server.shared;
    let is_post = method == Method::POST || method == Method::PUT;

    match (path.as_str(), is_post) {
        ("counters", false) => json(StatusCode::OK, counters_json(server)),
        ("hits", false) => match first_value(&args, "path") {
            Some(p) => {
                let hits = match first_value(&args, "query") {
                    Some(q) => shared.hits_with_query(&format!("{p}?{q}")),
                    None => shared.hits(p),
                };
                json(
                    StatusCode::OK,
                    JsonObject::new().str("path", p).num("hits", hits).finish(),
                )
            }
            None => bad_request("missing ?path="),
        },
        ("last-body", false) => {
            match first_value(&args, "path").and_then(|p| shared.last_body(p)) {
                Some(body) => {
                    let mut res = http::Response::new(body);
                    res.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    close(res)
                }
                None => status_only(StatusCode::NOT_FOUND, "no body recorded for that path"),
            }
        }
        ("reset", true) => {
            shared.reset();
            ok()
        }
        ("fail", true) => {
            let status = first_value(&args, "status").unwrap_or("500");
            match status.parse::<u16>() {
                Ok(s) if (100..=599).contains(&s) => {
                    match first_value(&args, "path") {
                        Some(p) if p.starts_with('/') => shared.set_path_fail(p, Some(s)),
                        Some(_) => return bad_request("path must start with /"),
                        None => shared.set_fail(Some(s)),
                    }
                    ok()
                }
                _ => bad_request("status must be a number from 100 to 599"),
            }
        }
        ("drop", true) => match first_value(&args, "after").map(str::parse::<u64>) {
            Some(Ok(n)) => {
                shared.set_drop_after(Some(n));
                ok()
            }
            _ => bad_request("after must be a whole number of requests"),
        },
        ("health", true) => {
            let path = first_value(&args, "path").unwrap_or(DEFAULT_HEALTH_PATH);
            if !path.starts_with('/') {
                return bad_request("path must start with /");
            }
            match first_value(&args, "says") {
                Some("truth") => {
                    shared.set_health_lie(None);
                    ok()
                }
                Some(says) => match says.parse::<HealthSays>() {
                    Ok(says) => {
                        shared.set_health_lie(Some(HealthLie {
                            path: path.to_owned(),
                            says,
                        }));
                        ok()
                    }
                    Err(_) => bad_request("says must be healthy, unhealthy or truth"),
                },
                None => bad_request("missing ?says= (healthy, unhealthy or truth)"),
            }
        }
        ("slow", true) => match first_value(&args, "ms").map(str::parse::<u64>) {
            Some(Ok(ms)) => {
                shared.set_extra_latency(Duration::from_millis(ms));
                ok()
            }
            _ => bad_request("ms must be a whole number of milliseconds"),
        },
        ("hang", true) => {
            shared.set_hang(true);
            ok()
        }
        ("normal", true) => {
            if let Some(p) = first_value(&args, "path") {
                shared.set_path_fail(p, None);
                return ok();
            }
            shared.set_fail(None);
            shared.clear_path_fails();
            shared.set_extra_latency(Duration::ZERO);
            shared.set_hang(false);
            shared.set_drop_after(None);
            shared.set_health_lie(None);
            ok()
        }
        ("down", true) => match server.set_down(true).await {
            Ok(()) => ok(),
            Err(e) => status_only(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        },
        ("up", true) => match server.set_down(false).await {
            Ok(()) => ok(),
            Err(e) => status_only(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        },
        ("mode", true) => match first_value(&args, "mode").map(str::parse::<Mode>) {
            Some(Ok(mode)) => {
                shared.set_mode(mode);
                ok()
            }
            _ => bad_request("mode must be shipped or rollback"),
        },
        (
            "counters" | "hits" | "last-body" | "reset" | "fail" | "slow" | "hang" | "drop"
            | "health" | "normal" | "down" | "up" | "mode",
            _,
        ) => status_only(
            StatusCode::METHOD_NOT_ALLOWED,
            "wrong method for this control endpoint",
        ),
        _ => status_only(
            StatusCode::NOT_FOUND,
            "unknown control endpoint; see GET /__sim/counters",
        ),
    }
}

fn counters_json(server: &Server) -> String {
    let shared = &server.shared;
    let (paths, queries) = shared.snapshot();
    let path_fails: Vec<(String, u64)> = shared
        .path_fails()
        .into_iter()
        .map(|(p, s)| (p, u64::from(s)))
        .collect();
    let faults = shared.faults();
    let map = |pairs: &[(String, u64)]| {
        let mut s = String::from("{");
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            push_json_str(&mut s, k);
            s.push(':');
            s.push_str(&v.to_string());
        }
        s.push('}');
        s
    };
    JsonObject::new()
        .str("mode", &shared.mode().to_string())
        .raw("time_scale", &format!("{:?}", shared.time_scale))
        .num("total", shared.total())
        .num("in_flight", shared.in_flight())
        .num("max_in_flight", shared.max_in_flight())
        .num("max_cpu_running", shared.max_cpu_running())
        .raw(
            "down",
            if shared.down.load(std::sync::atomic::Ordering::Relaxed) {
                "true"
            } else {
                "false"
            },
        )
        .raw(
            "fail",
            &faults
                .fail
                .map_or_else(|| "null".to_owned(), |s| s.to_string()),
        )
        .num("extra_latency_ms", faults.extra_latency.as_millis() as u64)
        .raw("hang", if shared.hanging() { "true" } else { "false" })
        .raw("path_fail", &map(&path_fails))
        .raw(
            "drop_after",
            &shared
                .drop_after()
                .map_or_else(|| "null".to_owned(), |n| n.to_string()),
        )
        .raw(
            "health_lie",
            &shared.health_lie().map_or_else(
                || "null".to_owned(),
                |l| {
                    JsonObject::new()
                        .str("path", &l.path)
                        .str("says", &l.says.to_string())
                        .finish()
                },
            ),
        )
        .num("data_version", shared.data_version())
        .raw("paths", &map(&paths))
        .raw("path_queries", &map(&queries))
        .finish()
}

fn close(mut res: http::Response<Bytes>) -> http::Response<Bytes> {
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

fn json(status: StatusCode, body: String) -> http::Response<Bytes> {
    let mut res = http::Response::new(Bytes::from(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    close(res)
}

fn ok() -> http::Response<Bytes> {
    json(
        StatusCode::OK,
        JsonObject::new().str("status", "ok").finish(),
    )
}

fn bad_request(why: &str) -> http::Response<Bytes> {
    status_only(StatusCode::BAD_REQUEST, why)
}

fn status_only(status: StatusCode, why: &str) -> http::Response<Bytes> {
    json(status, JsonObject::new().str("error", why).finish())
}
