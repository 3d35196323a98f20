//! A small, standards-speaking HTTP/1.1 origin for tests (not the ERP simulator): a hyper
//! server on an ephemeral loopback port whose every response the test decides, path by path.
//!
//! It owns three things and nothing else:
//! * the handlers: `origin.on(path, |req, n| Reply ...)` answers requests for `path` (any query);
//!   `n` is how many requests that path had before this one (0 for the first), so a handler can
//!   change its answer over time, answer `304` when `If-None-Match` matches, echo a request field
//!   for `Vary` tests, or fail (`Reply::status(503)`, or `Reply::drop()`: the connection closes
//!   without an answer). Unregistered paths answer `404`.
//! * the record of what arrived: `count(path)` and `requests(path)` (method, URI, header lines in
//!   order, body), to assert what the proxy sent (`If-None-Match` on revalidation, no `Cookie`
//!   leaked, a write's body byte for byte).
//! * `Date`: a response carries `Date` only when its handler sets one (hyper's automatic `Date`
//!   is off), so tests control the clock the proxy reads; `http_date` formats one.
//!
//! Header lines are sent in the order the `Reply` lists them, repeated names as separate lines;
//! hyper writes names in lower case (field names are case-insensitive, RFC 9110 §5.1).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the origin answers to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
    delay: Duration,
    hang_up: bool,
}

impl Reply {
    /// A response with this status, no header fields and an empty body.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            delay: Duration::ZERO,
            hang_up: false,
        }
    }

    /// `200` with this body.
    pub fn ok(body: impl Into<Bytes>) -> Reply {
        Reply::status(200).body(body)
    }

    /// No answer at all: the origin reads the request and closes the connection (an origin
    /// failure as the proxy sees a crashed or cut-off server).
    pub fn drop() -> Reply {
        Reply {
            hang_up: true,
            ..Reply::status(502)
        }
    }

    /// Adds a header line (repeatable; lines keep their order).
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The body (`Content-Length` is set from it unless a header line sets one).
    pub fn body(mut self, body: impl Into<Bytes>) -> Reply {
        self.body = body.into();
        self
    }

    /// Waits this long before answering.
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// One request as the origin received it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    /// Path and query, as sent.
    pub uri: String,
    /// Header lines in arrival order, names lower case.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl SeenRequest {
    /// The first value of `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }
}

type Handler = Arc<dyn Fn(&SeenRequest, usize) -> Reply + Send + Sync>;

#[derive(Default)]
struct State {
    handlers: Mutex<HashMap<String, Handler>>,
    seen: Mutex<Vec<SeenRequest>>,
}

/// A running origin. Dropping it stops accepting connections.
pub struct Origin {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

impl Origin {
    /// Binds `127.0.0.1:0` and serves until dropped.
    pub async fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let state = Arc::new(State::default());
        let shared = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(state.clone(), req));
                    // An error here is a `Reply::drop()` or a proxy closing early: both end the
                    // connection, which is all that should happen.
                    let _ = http1::Builder::new()
                        .auto_date_header(false)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Origin {
            addr,
            state,
            accept,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers requests for `path` (any query) with `handler(request, n)`, `n` being how many
    /// requests for `path` arrived before this one. Replaces an earlier handler for `path`.
    pub fn on(
        &self,
        path: &str,
        handler: impl Fn(&SeenRequest, usize) -> Reply + Send + Sync + 'static,
    ) {
        self.state
            .handlers
            .lock()
            .insert(path.to_owned(), Arc::new(handler));
    }

    /// Answers every request for `path` with the same `reply`.
    pub fn always(&self, path: &str, reply: Reply) {
        self.on(path, move |_, _| reply.clone());
    }

    /// Requests received for `path`, any method, any query.
    pub fn count(&self, path: &str) -> usize {
        self.state
            .seen
            .lock()
            .iter()
            .filter(|r| r.path() == path)
            .count()
    }

    /// The requests received for `path` (any query), in arrival order.
    pub fn requests(&self, path: &str) -> Vec<SeenRequest> {
        self.state
            .seen
            .lock()
            .iter()
            .filter(|r| r.path() == path)
            .cloned()
            .collect()
    }

    /// The last request received for `path`; panics if there was none.
    pub fn last(&self, path: &str) -> SeenRequest {
        self.requests(path)
            .pop()
            .unwrap_or_else(|| panic!("the origin received no request for {path}"))
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Why a connection closes without an answer (`Reply::drop()`).
#[derive(Debug)]
struct HangUp;

impl std::fmt::Display for HangUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the origin hung up")
    }
}

impl std::error::Error for HangUp {}

/// Records `req`, runs its path's handler and turns the `Reply` into a response.
async fn answer(
    state: Arc<State>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, HangUp> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let seen = SeenRequest {
        method: parts.method.as_str().to_owned(),
        uri: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned()),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    let (handler, n) = {
        let mut log = state.seen.lock();
        let n = log.iter().filter(|r| r.path() == seen.path()).count();
        log.push(seen.clone());
        (state.handlers.lock().get(seen.path()).cloned(), n)
    };
    let reply = match handler {
        Some(h) => h(&seen, n),
        None => Reply::status(404).body("no handler for this path\n"),
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    if reply.hang_up {
        return Err(HangUp);
    }
    let mut resp = hyper::Response::new(Full::new(reply.body));
    *resp.status_mut() = hyper::StatusCode::from_u16(reply.status).expect("valid status");
    for (name, value) in &reply.headers {
        resp.headers_mut().append(
            hyper::header::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            hyper::header::HeaderValue::from_str(value).expect("header value"),
        );
    }
    Ok(resp)
}

/// An IMF-fixdate (RFC 9110 §5.6.7) `offset_secs` from now, e.g. for `Date`, `Expires` and
/// `Last-Modified`: `http_date(0)` is now, `http_date(-3600)` an hour ago.
pub fn http_date(offset_secs: i64) -> String {
    let now = SystemTime::now();
    let at = if offset_secs >= 0 {
        now + Duration::from_secs(offset_secs.unsigned_abs())
    } else {
        now - Duration::from_secs(offset_secs.unsigned_abs())
    };
    httpdate::fmt_http_date(at)
}
