//! A simulator of the Beverly Knits ERP (one Flask process; see docs/ERP.md), for
//! knitcache's tests, its demo example and its load suite; the `erp-sim` binary runs it alone.
//! It knows nothing of knitcache.
//!
//! It serves the ERP's 173 paths with their methods, measured body sizes and latencies, in
//! either mode ([`Mode`]), runs CPU-bound handlers one at a time as the GIL does, closes every
//! connection after one response, counts requests per path, records request bodies, and has
//! fault switches (fail, fail one path, slow, hang, drop connections, a lying health path,
//! down) reachable in-process and over HTTP under `/__sim/` (listed in `control`).
//!
//! * `app`       what the ERP answers: routing, redirect hooks, handlers, error handlers, CORS
//! * `binary`    the `erp-sim` binary for tests and benches that run it as a process
//! * `body`      JSON bodies padded to the measured sizes, the HTML pages, timestamps, FNV-1a
//! * `catalogue` the endpoint table of docs/ERP.md §4/§5
//! * `control`   the `/__sim/*` endpoints
//! * `redirects` the 301/308 maps and `Location` building
//! * `server`    listeners, connections, the request pipeline, down/up/shutdown
//! * `state`     counters, switches, the interpreter lock
//! * `url`       percent-decoding and query parsing

mod app;
pub mod binary;
mod body;
mod catalogue;
mod control;
mod redirects;
mod server;
mod state;
mod url;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use body::fnv1a64;

use server::Server;
use state::Shared;

/// Which of the ERP's two documented configurations to simulate (docs/ERP.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The rollback flags set (`api_consolidation_enabled=False`,
    /// `redirect_deprecated_apis=False`): the monolith's handlers answer, mostly 200.
    #[default]
    Rollback = 0,
    /// As committed: v2 compat rules answer 308 (their targets mostly 500) and
    /// `intercept_deprecated_endpoints` answers 301 for 37 legacy paths.
    Shipped = 1,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Rollback => "rollback",
            Mode::Shipped => "shipped",
        })
    }
}

impl FromStr for Mode {
    type Err = String;

    /// Parses `rollback` or `shipped` (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "rollback" => Ok(Mode::Rollback),
            "shipped" | "as-shipped" => Ok(Mode::Shipped),
            other => Err(format!(
                "unknown ERP mode {other:?}; use rollback or shipped"
            )),
        }
    }
}

/// What a lying health path says ([`ErpSim::set_health_lie`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthSays {
    /// Answers as if all were well (its normal answer), even while every other request fails,
    /// hangs or is dropped.
    Healthy,
    /// Answers 503 while every other request is served normally.
    Unhealthy,
}

impl fmt::Display for HealthSays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HealthSays::Healthy => "healthy",
            HealthSays::Unhealthy => "unhealthy",
        })
    }
}

impl FromStr for HealthSays {
    type Err = String;

    /// Parses `healthy` or `unhealthy`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "healthy" => Ok(HealthSays::Healthy),
            "unhealthy" => Ok(HealthSays::Unhealthy),
            other => Err(format!(
                "unknown health answer {other:?}; use healthy or unhealthy"
            )),
        }
    }
}

/// How to run a simulator.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// Which ERP configuration to simulate. Default: [`Mode::Rollback`].
    pub mode: Mode,
    /// Multiplies every latency of the ERP's table (not the scripted or fault latencies):
    /// `0.01` runs the 7 s cold forecast in 70 ms. Must be finite and >= 0. Default: 1.0.
    pub time_scale: f64,
    /// A second listener for the `/__sim/*` control endpoints that stays up while the main
    /// port is down. Default: none (control is then only on the main port and in-process).
    pub control_listen: Option<SocketAddr>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            mode: Mode::Rollback,
            time_scale: 1.0,
            control_listen: None,
        }
    }
}

/// A fixed answer for a path, overriding the ERP's table (or adding a path it lacks), for
/// cases the ERP itself does not produce: `Set-Cookie`, `Cache-Control: no-store`, huge or
/// fixed bodies. Scripted answers are still counted and still obey the fault switches; they
/// get `Connection: close` and, unless their headers set it, `Access-Control-Allow-Origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptedResponse {
    /// Status code.
    pub status: u16,
    /// Extra headers, in order (invalid names or values are skipped with a warning).
    pub headers: Vec<(String, String)>,
    /// The body, sent as is (dropped for `HEAD`).
    pub body: Bytes,
    /// How long to wait before answering; not multiplied by `time_scale`.
    pub latency: Duration,
}

impl ScriptedResponse {
    /// A 200 with `body` and no extra headers or latency.
    pub fn ok(body: impl Into<Bytes>) -> Self {
        Self {
            status: 200,
            headers: Vec::new(),
            body: body.into(),
            latency: Duration::ZERO,
        }
    }

    /// Replaces the status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the latency.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }
}

/// A running simulator. Clones share it; it stops when the last clone is dropped or on
/// [`ErpSim::shutdown`].
#[derive(Debug, Clone)]
pub struct ErpSim {
    guard: Arc<Guard>,
}

/// Owned only by handles, so dropping the last handle stops the server tasks (which hold the
/// `Server` themselves).
#[derive(Debug)]
struct Guard {
    server: Arc<Server>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.server.signal_shutdown();
    }
}

impl ErpSim {
    /// Binds `listen` (use `127.0.0.1:0` in tests) and serves on the current tokio runtime.
    pub async fn start(listen: SocketAddr, opts: SimOptions) -> io::Result<ErpSim> {
        let listener = server::bind(listen)?;
        Self::serve(listener, opts)
    }

    /// Serves on a std listener that is already bound (made non-blocking here), so a harness
    /// can reserve the port before starting the simulator.
    pub async fn from_listener(
        listener: std::net::TcpListener,
        opts: SimOptions,
    ) -> io::Result<ErpSim> {
        listener.set_nonblocking(true)?;
        Self::serve(tokio::net::TcpListener::from_std(listener)?, opts)
    }

    fn serve(listener: tokio::net::TcpListener, opts: SimOptions) -> io::Result<ErpSim> {
        if !opts.time_scale.is_finite() || opts.time_scale < 0.0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "time_scale = {} but it must be finite and >= 0",
                    opts.time_scale
                ),
            ));
        }
        let control = opts.control_listen.map(server::bind).transpose()?;
        let shared = Arc::new(Shared::new(opts.mode, opts.time_scale));
        let server = Server::start(shared, listener, control)?;
        tracing::debug!(addr = %server.addr, mode = %opts.mode, "erp-sim: listening");
        Ok(ErpSim {
            guard: Arc::new(Guard { server }),
        })
    }

    fn server(&self) -> &Arc<Server> {
        &self.guard.server
    }

    fn shared(&self) -> &Shared {
        &self.guard.server.shared
    }

    /// The main (ERP) address; the same before and after a down/up cycle.
    pub fn addr(&self) -> SocketAddr {
        self.server().addr
    }

    /// The control listener's address, if [`SimOptions::control_listen`] was set.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.server().control_addr
    }

    /// The mode requests are answered in.
    pub fn mode(&self) -> Mode {
        self.shared().mode()
    }

    /// Switches the mode for requests that arrive from now on.
    pub fn set_mode(&self, mode: Mode) {
        self.shared().set_mode(mode);
    }

    /// ERP requests to `path` (the path as sent, without query), control requests excluded.
    pub fn hits(&self, path: &str) -> u64 {
        self.shared().hits(path)
    }

    /// ERP requests to exactly `path_and_query` (`/a?x=1`; a bare path counts query-less ones).
    pub fn hits_with_query(&self, path_and_query: &str) -> u64 {
        self.shared().hits_with_query(path_and_query)
    }

    /// All ERP requests since start or the last reset.
    pub fn total_hits(&self) -> u64 {
        self.shared().total()
    }

    /// The body of the latest request to `path` that carried one (writes always count, even
    /// empty), byte for byte.
    pub fn last_body(&self, path: &str) -> Option<Bytes> {
        self.shared().last_body(path)
    }

    /// Zeroes the counters, forgets recorded bodies, restarts the concurrency high-water marks.
    /// The cold/warm state of handlers is kept (the "process" did not restart).
    pub fn reset_counters(&self) {
        self.shared().reset();
    }

    /// `Some(status)`: every ERP request answers `status` with a JSON error body (after any
    /// extra latency). `None`: back to normal.
    pub fn set_fail(&self, status: Option<u16>) {
        self.shared().set_fail(status);
    }

    /// `Some(status)`: every ERP request to `path` (matched exactly, without query; raw or
    /// percent-decoded) answers `status` with a JSON error body, persistently, while the other
    /// paths are served normally. `None`: `path` back to normal. [`ErpSim::set_fail`] wins
    /// over it.
    pub fn set_path_fail(&self, path: &str, status: Option<u16>) {
        self.shared().set_path_fail(path, status);
    }

    /// `Some(n)`: a worker that crashes every `n + 1` requests: `n` ERP requests are answered,
    /// then the next one is read (and counted) and its connection closed without a byte of
    /// response, and so on. `Some(0)` drops every request. `None`: off.
    pub fn set_drop_after(&self, after: Option<u64>) {
        self.shared().set_drop_after(after);
    }

    /// `Some(says)`: `path` (matched exactly, without query) lies: [`HealthSays::Healthy`]
    /// answers normally whatever the other switches (fail, path fail, hang, slow, drop) do to
    /// every other request; [`HealthSays::Unhealthy`] answers 503 while the rest is served.
    /// `None`: the health path tells the truth again.
    pub fn set_health_lie(&self, path: &str, says: Option<HealthSays>) {
        self.shared()
            .set_health_lie(says.map(|says| state::HealthLie {
                path: path.to_owned(),
                says,
            }));
    }

    /// Adds `d` to every ERP request (before the handler's own latency). `ZERO` turns it off.
    pub fn set_extra_latency(&self, d: Duration) {
        self.shared().set_extra_latency(d);
    }

    /// `true`: requests are read (and counted) but never answered. `false`: the hung requests'
    /// connections are closed without an answer and new requests are served again.
    pub fn set_hang(&self, on: bool) {
        self.shared().set_hang(on);
    }

    /// `true`: stop accepting and close the listening socket (connects are refused) and cut
    /// open connections. `false`: bind the same address again. Idempotent; errs if the
    /// address cannot be bound again or the simulator is shut down.
    pub async fn set_down(&self, down: bool) -> io::Result<()> {
        self.server().set_down(down).await
    }

    /// Off (the default): `Access-Control-Allow-Origin: *` on every response, as measured
    /// (without an `Origin`, docs/ERP.md §2). On: what flask-cors' `CORS(app)` defaults do when the
    /// request carries an `Origin`: echo it and add `Vary: Origin`.
    pub fn set_cors_echo_origin(&self, on: bool) {
        self.shared().set_cors_echo_origin(on);
    }

    /// Adds or replaces a scripted answer for `path` (matched exactly, without query).
    pub fn add_route(&self, path: impl Into<String>, response: ScriptedResponse) {
        self.shared().add_route(path.into(), response);
    }

    /// Removes a scripted answer; true if there was one.
    pub fn remove_route(&self, path: &str) -> bool {
        self.shared().remove_route(path)
    }

    /// Highest number of ERP requests handled at once since start or reset (hung ones included).
    pub fn max_in_flight(&self) -> u64 {
        self.shared().max_in_flight()
    }

    /// ERP requests being handled now.
    pub fn in_flight(&self) -> u64 {
        self.shared().in_flight()
    }

    /// Highest number of CPU-bound handlers running at once: 1 while the interpreter lock
    /// serialises them.
    pub fn max_cpu_concurrency(&self) -> u64 {
        self.shared().max_cpu_running()
    }

    /// Data reloads done (`/api/reload-data`, `/api/system/unified?operation=reload`); JSON
    /// bodies carry it as `data_version`.
    pub fn data_version(&self) -> u64 {
        self.shared().data_version()
    }

    /// Stops both listeners and every connection; returns once the sockets are closed.
    pub async fn shutdown(self) {
        self.server().shutdown().await;
    }
}
