//! The simulated Flask app: what the ERP answers to one request, in the order Flask works
//! (docs/ERP.md §2): scripted overrides, the `before_request` 301 hook (as shipped), routing,
//! automatic `OPTIONS`, method check, the handler (latency, interpreter lock, side effects),
//! the error handlers, and flask-cors on every response.
//!
//! It does not count, record bodies or apply fault switches; `server` does that first.

use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};

use super::Mode;
use super::body::{self, Echo, JsonObject};
use super::catalogue::{
    self, Class, DELETE, Endpoint, GET, Kind, Outcome, PATCH, POST, PUT, Timing,
};
use super::redirects;
use super::state::Shared;
use super::url::{parse_query, percent_decode};

/// `Server` header of the Werkzeug dev server. (guess) The version was not recorded.
const SERVER: &str = "Werkzeug/3.1.3 Python/3.12.3";
/// flask-cors' `ALL_METHODS`, serialised sorted, for preflight answers.
const CORS_METHODS: &str = "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT";
/// Latency of a path with no route (the 404 handler), in ms; §1.5 absent rows take 1-8 ms.
const NOT_FOUND_TIMING: Timing = Timing {
    cold_ms: 2,
    warm_lo_ms: 1,
    warm_hi_ms: 5,
};

/// The parts of a request the app looks at.
#[derive(Debug)]
pub(crate) struct Request {
    /// Method.
    pub method: Method,
    /// Raw path, as sent.
    pub raw_path: String,
    /// Percent-decoded path, what Werkzeug routes on.
    pub path: String,
    /// Raw query (without `?`), empty when absent.
    pub query: String,
    /// Parsed query, `request.args`.
    pub args: Vec<(String, String)>,
    /// Request headers.
    pub headers: HeaderMap,
    /// The whole request body.
    pub body: Bytes,
}

impl Request {
    /// Splits a request head into the fields the app uses.
    pub(crate) fn new(method: Method, uri: &http::Uri, headers: HeaderMap, body: Bytes) -> Self {
        let raw_path = uri.path().to_owned();
        let query = uri.query().unwrap_or("").to_owned();
        Self {
            method,
            path: percent_decode(&raw_path, false),
            args: parse_query(&query),
            raw_path,
            query,
            headers,
            body,
        }
    }

    fn echo(&self, data_version: u64) -> Echo<'_> {
        let received = self
            .carries_body()
            .then(|| (self.body.len(), body::fnv1a64(&self.body)));
        Echo {
            method: self.method.as_str(),
            path: &self.raw_path,
            query: &self.query,
            received,
            data_version,
        }
    }

    /// Whether this request is a write or sent a body anyway.
    pub(crate) fn carries_body(&self) -> bool {
        !self.body.is_empty()
            || !matches!(self.method, Method::GET | Method::HEAD | Method::OPTIONS)
    }
}

/// A response before the finishing touches of [`finish`].
#[derive(Debug)]
pub(crate) struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers set by the handler.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Body (dropped for `HEAD` in [`finish`], keeping its length).
    pub body: Bytes,
    /// Whether flask-cors should add its headers (everything the app answers).
    pub cors: bool,
}

impl Reply {
    fn new(status: u16, content_type: &'static str, body: Bytes) -> Self {
        let mut headers = Vec::with_capacity(4);
        if !content_type.is_empty() {
            headers.push((header::CONTENT_TYPE, HeaderValue::from_static(content_type)));
        }
        Self {
            status,
            headers,
            body,
            cors: true,
        }
    }

    /// A JSON reply.
    pub(crate) fn json(status: u16, body: impl Into<Bytes>) -> Self {
        Self::new(status, "application/json", body.into())
    }

    fn html(status: u16, body: impl Into<Bytes>) -> Self {
        Self::new(status, "text/html; charset=utf-8", body.into())
    }

    fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// Answers one request as the ERP would, sleeping for the handler's latency.
pub(crate) async fn respond(shared: &Shared, req: &Request) -> Reply {
    if let Some(scripted) = shared
        .route(&req.raw_path)
        .or_else(|| shared.route(&req.path))
    {
        tokio::time::sleep(scripted.latency).await;
        return scripted_reply(&scripted);
    }
    let mode = shared.mode();
    let entry = catalogue::find(&req.path);

    // before_request: `intercept_deprecated_endpoints` runs before routing and method checks.
    if mode == Mode::Shipped
        && let Some((location, new_endpoint)) = redirects::legacy_location(&req.path, &req.args)
    {
        let timing = match entry.map(|(_, e)| e.shipped.outcome) {
            Some(Outcome::Legacy301(t)) => t,
            _ => NOT_FOUND_TIMING,
        };
        work(
            shared,
            timing,
            entry.map(|(i, _)| Shared::warm_key(i, mode)),
        )
        .await;
        return redirect(301, &location)
            .header(
                HeaderName::from_static("x-deprecated"),
                HeaderValue::from_static("true"),
            )
            .header(
                HeaderName::from_static("x-new-endpoint"),
                HeaderValue::from_static(new_endpoint),
            )
            .header(
                HeaderName::from_static("x-deprecation-date"),
                HeaderValue::from_static("2025-10-01"),
            );
    }

    let Some((index, entry)) = entry else {
        work(shared, NOT_FOUND_TIMING, None).await;
        return not_found(shared, req);
    };
    tracing::trace!(row = entry.row, path = %req.path, %mode, "erp-sim: catalogue entry");
    let rule = entry.rule(mode);
    if let Outcome::Absent(timing) = rule.outcome {
        work(shared, timing, None).await;
        return not_found(shared, req);
    }
    if req.method == Method::OPTIONS {
        return options_reply(rule.methods);
    }
    if !method_allowed(&req.method, accepted_methods(entry, rule.methods)) {
        // Flask raises 405, and the ERP's `errorhandler(Exception)` turns it into a 500.
        work(shared, NOT_FOUND_TIMING, None).await;
        return error_json(shared, req, 500, "An unexpected error occurred");
    }

    let is_write = !matches!(req.method, Method::GET | Method::HEAD);
    let outcome = if is_write {
        rule.outcome
    } else {
        catalogue::variant(&req.path, &req.args, mode).unwrap_or(rule.outcome)
    };
    let warm_key = Some(Shared::warm_key(index, mode));
    match outcome {
        Outcome::V2Redirect(timing) => {
            work(shared, timing, warm_key).await;
            match redirects::v2_location(&req.path, &req.args) {
                Some(location) => redirect(308, &location),
                None => not_found(shared, req),
            }
        }
        // A 301 row whose path the hook does not map (none in the table) or rollback mode.
        Outcome::Legacy301(_) | Outcome::Absent(_) => not_found(shared, req),
        Outcome::Untimed => {
            work(shared, catalogue::write_timing(&req.path), warm_key).await;
            handler_reply(shared, req, entry, 200, 0)
        }
        Outcome::Answer {
            status,
            bytes,
            timing,
        } => {
            let (status, timing) = if is_write {
                (
                    if status >= 400 { status } else { 200 },
                    catalogue::write_timing(&req.path),
                )
            } else {
                (status, timing)
            };
            work(shared, timing, warm_key).await;
            if catalogue::reloads_data(&req.path, &req.args) {
                shared.bump_data_version();
            }
            handler_reply(shared, req, entry, status, bytes as usize)
        }
    }
}

/// Sleeps for the handler's latency; CPU-bound handlers hold the interpreter lock meanwhile,
/// so concurrent calls to slow endpoints queue like they do in one Python process.
async fn work(shared: &Shared, timing: Timing, warm_key: Option<usize>) {
    if timing.cpu_bound() {
        let _gil = shared.gil.lock().await;
        let _running = shared.enter_cpu();
        let d = shared.latency(timing, warm_key);
        tokio::time::sleep(d).await;
    } else {
        let d = shared.latency(timing, warm_key);
        tokio::time::sleep(d).await;
    }
}

/// The rule's methods, plus PUT, PATCH and DELETE on write endpoints. Flask would answer
/// those with 405 (a 500 through the ERP's catch-all handler), but the proxy's tests need every
/// write method to reach a handler that reports the body it got.
fn accepted_methods(entry: &Endpoint, methods: u8) -> u8 {
    let writes = matches!(
        entry.class,
        Class::Write | Class::ReadWrite | Class::SideEffect
    );
    if writes && methods & POST != 0 {
        methods | PUT | PATCH | DELETE
    } else {
        methods
    }
}

fn method_allowed(method: &Method, allowed: u8) -> bool {
    let bit = match *method {
        Method::GET | Method::HEAD => GET,
        Method::POST => POST,
        Method::PUT => PUT,
        Method::DELETE => DELETE,
        Method::PATCH => PATCH,
        _ => return false,
    };
    allowed & bit != 0
}

/// Flask's automatic `OPTIONS` answer; flask-cors adds the preflight headers in [`finish`].
fn options_reply(methods: u8) -> Reply {
    let mut names = vec!["HEAD", "OPTIONS"];
    for (bit, name) in [
        (GET, "GET"),
        (POST, "POST"),
        (PUT, "PUT"),
        (DELETE, "DELETE"),
        (PATCH, "PATCH"),
    ] {
        if methods & bit != 0 {
            names.push(name);
        }
    }
    names.sort_unstable();
    let allow = HeaderValue::from_str(&names.join(", ")).unwrap_or(HeaderValue::from_static("GET"));
    Reply::html(200, Bytes::new()).header(header::ALLOW, allow)
}

fn redirect(status: u16, location: &str) -> Reply {
    let header_value = HeaderValue::from_str(&redirects::header_location(location))
        .unwrap_or(HeaderValue::from_static("/"));
    Reply::html(status, redirects::werkzeug_redirect_body(location))
        .header(header::LOCATION, header_value)
}

/// The ERP's 404 handler: JSON under `/api/`, Werkzeug's page elsewhere.
fn not_found(shared: &Shared, req: &Request) -> Reply {
    if req.path.starts_with("/api/") {
        let body = JsonObject::new()
            .num("error_code", 404)
            .str("message", &format!("API endpoint {} not found", req.path))
            .str("status", "error")
            .echo(&req.echo(shared.data_version()))
            .finish();
        Reply::json(404, body)
    } else {
        Reply::html(404, body::WERKZEUG_404)
    }
}

/// A JSON error body like the ERP's error handlers make.
fn error_json(shared: &Shared, req: &Request, status: u16, message: &str) -> Reply {
    let body = JsonObject::new()
        .str("error", message)
        .num("error_code", u64::from(status))
        .str("status", "error")
        .echo(&req.echo(shared.data_version()))
        .finish();
    Reply::json(status, body)
}

/// The answer of `entry`'s handler with `status` and a body of about `bytes` bytes.
fn handler_reply(
    shared: &Shared,
    req: &Request,
    entry: &Endpoint,
    status: u16,
    bytes: usize,
) -> Reply {
    match entry.kind {
        Kind::Text(text) => Reply::html(status, Bytes::from_static(text.as_bytes())),
        Kind::Empty => Reply::new(status, "", Bytes::new()),
        Kind::Dashboard => Reply::html(status, body::dashboard_html())
            .header(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache, no-store, must-revalidate"),
            )
            .header(header::PRAGMA, HeaderValue::from_static("no-cache"))
            .header(header::EXPIRES, HeaderValue::from_static("0")),
        Kind::SendFile => send_file(shared, req),
        Kind::Json => {
            let echo = req.echo(shared.data_version());
            if status == 404 {
                return not_found(shared, req);
            }
            if status >= 400 {
                let message = catalogue::error_message(&req.path, status);
                if req.path.starts_with("/api/v2/") {
                    // consolidated_routes' `standardize_response` shape.
                    let body = JsonObject::new()
                        .raw("data", "null")
                        .str("error", message)
                        .raw("success", "false")
                        .echo(&echo)
                        .finish();
                    return Reply::json(status, body);
                }
                return error_json(shared, req, status, message);
            }
            let is_write = !matches!(req.method, Method::GET | Method::HEAD);
            if is_write || matches!(entry.class, Class::Write) {
                let body = JsonObject::new()
                    .str("message", "accepted")
                    .str("status", "success")
                    .echo(&echo)
                    .finish();
                return Reply::json(status, body);
            }
            // The shipped v2 inventory handler answers a placeholder (§1.6).
            let extra: &[(&str, &str)] =
                if req.path == "/api/v2/inventory" && shared.mode() == Mode::Shipped {
                    &[
                        ("error", "Inventory handler not available"),
                        ("status", "success"),
                    ]
                } else {
                    &[("status", "success")]
                };
            Reply::json(status, shared.records.success(&echo, extra, bytes))
        }
    }
}

/// `send_file` with Flask's defaults: ETag, Last-Modified, `no-cache`, conditional 304.
fn send_file(shared: &Shared, req: &Request) -> Reply {
    let page = body::factory_floor_html();
    let since_epoch = shared
        .started
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let etag = format!(
        "\"{}.{}-{}-4bd6a1c2\"",
        since_epoch.as_secs(),
        since_epoch.subsec_micros(),
        page.len()
    );
    let last_modified = body::http_date(shared.started);
    let not_modified = req
        .headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim() == "*"
                || v.split(',')
                    .any(|t| t.trim().trim_start_matches("W/") == etag)
        });
    let (status, page) = if not_modified {
        (304, Bytes::new())
    } else {
        (200, page)
    };
    let mut reply = Reply::html(status, page).header(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, max-age=0"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        reply = reply.header(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&last_modified) {
        reply = reply.header(header::LAST_MODIFIED, v);
    }
    reply
}

fn scripted_reply(s: &super::ScriptedResponse) -> Reply {
    let mut reply = Reply {
        status: s.status,
        headers: Vec::new(),
        body: s.body.clone(),
        cors: true,
    };
    for (name, value) in &s.headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => {
                if n == header::ACCESS_CONTROL_ALLOW_ORIGIN {
                    reply.cors = false;
                }
                reply.headers.push((n, v));
            }
            _ => {
                tracing::warn!(header = %name, "erp-sim: invalid scripted header skipped")
            }
        }
    }
    reply
}

/// The reply a fault switch forces.
pub(crate) fn forced_failure(shared: &Shared, req: &Request, status: u16) -> Reply {
    error_json(shared, req, status, "simulated failure")
}

/// A JSON reply for a request body over the size limit.
pub(crate) fn too_large(shared: &Shared, req: &Request) -> Reply {
    error_json(shared, req, 413, "request body too large")
}

/// Adds what every response of the ERP has (flask-cors, Werkzeug's `Server`, `Connection:
/// close`) and turns the reply into a hyper response. For `HEAD` the body is dropped and its
/// length kept.
pub(crate) fn finish(
    reply: Reply,
    method: &Method,
    req_headers: &HeaderMap,
    echo_origin: bool,
) -> http::Response<Bytes> {
    let mut res = http::Response::new(Bytes::new());
    *res.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = res.headers_mut();
    h.insert(header::SERVER, HeaderValue::from_static(SERVER));
    for (name, value) in reply.headers {
        h.append(name, value);
    }
    if reply.cors {
        add_cors(h, method, req_headers, echo_origin);
    }
    // The Werkzeug dev server closes every connection (docs/ERP.md §2).
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    let no_body = *method == Method::HEAD || reply.status == 204 || reply.status == 304;
    if *method == Method::HEAD && reply.status != 204 && reply.status != 304 {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(reply.body.len()));
    }
    if !no_body {
        *res.body_mut() = reply.body;
    }
    res
}

/// flask-cors: `Access-Control-Allow-Origin: *` (docs/ERP.md §2), preflight headers on
/// `OPTIONS`. With `echo_origin`, what flask-cors' `CORS(app)` defaults really do when a
/// request has an `Origin` (`send_wildcard=False`): echo it and add `Vary: Origin`.
fn add_cors(h: &mut HeaderMap, method: &Method, req_headers: &HeaderMap, echo_origin: bool) {
    match req_headers.get(header::ORIGIN).filter(|_| echo_origin) {
        Some(origin) => {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        None => {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
    }
    if *method != Method::OPTIONS {
        return;
    }
    let requested = req_headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_uppercase);
    let known = requested.is_some_and(|m| CORS_METHODS.split(", ").any(|k| k == m));
    if !known {
        return;
    }
    if let Some(list) = req_headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .and_then(|v| v.to_str().ok())
    {
        let mut names: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        names.sort_unstable();
        if let Ok(v) = HeaderValue::from_str(&names.join(", ")) {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(CORS_METHODS),
    );
}
