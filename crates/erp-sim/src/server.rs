//! The network side of the simulator: listeners, one hyper HTTP/1 connection per accepted
//! socket (closed after one response, like Werkzeug's dev server), the request pipeline
//! (count → read body → [a lying health path answers here] → hang → slow → drop → fail →
//! path fail → app), and the up/down/shutdown lifecycle.
//!
//! "Down" is real: the accept loop ends and the listening socket is dropped, so connects are
//! refused, and open connections are cut like a dying process would cut them. "Up" binds the
//! same address again.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::HealthSays;
use super::app::{self, Request};
use super::control;
use super::state::Shared;

/// Largest request body read (Werkzeug has no limit; this keeps a bad client from exhausting
/// memory). Bigger bodies get a 413.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Reserved path prefix of the control endpoints on the main port.
pub(crate) const CONTROL_PREFIX: &str = "/__sim/";

/// The error a connection's service returns to make hyper close without a response
/// (hung requests released, bodies cut short).
#[derive(Debug)]
pub(crate) struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed without a response")
    }
}

impl std::error::Error for Closed {}

/// One running accept loop and the switch that stops it and cuts its connections.
#[derive(Debug)]
struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.stop.send_replace(true);
        // The task only ends by this signal; a JoinError means it panicked, already reported.
        let _ = self.task.await;
    }
}

/// Listener state, changed only under the lifecycle lock.
#[derive(Debug, Default)]
struct Life {
    main: Option<Running>,
    control: Option<Running>,
    shut_down: bool,
}

/// One simulator: shared state, the bound addresses and the listener lifecycle.
#[derive(Debug)]
pub(crate) struct Server {
    /// Counters, switches and the rest of the shared state.
    pub shared: Arc<Shared>,
    /// The main (ERP) address; kept across down/up.
    pub addr: SocketAddr,
    /// The control listener's address, when one was asked for.
    pub control_addr: Option<SocketAddr>,
    life: tokio::sync::Mutex<Life>,
    shutdown: watch::Sender<bool>,
}

impl Server {
    /// Starts serving `main` (and `control`, if given) on the current runtime.
    pub(crate) fn start(
        shared: Arc<Shared>,
        main: TcpListener,
        control: Option<TcpListener>,
    ) -> io::Result<Arc<Self>> {
        let addr = main.local_addr()?;
        let control_addr = control.as_ref().map(TcpListener::local_addr).transpose()?;
        let server = Arc::new(Self {
            shared,
            addr,
            control_addr,
            life: tokio::sync::Mutex::new(Life::default()),
            shutdown: watch::Sender::new(false),
        });
        let main = server.spawn_accept(main, false);
        let control = control.map(|l| server.spawn_accept(l, true));
        // Nothing else can hold the lock yet.
        if let Ok(mut life) = server.life.try_lock() {
            life.main = Some(main);
            life.control = control;
        }
        Ok(server)
    }

    fn spawn_accept(self: &Arc<Self>, listener: TcpListener, control_port: bool) -> Running {
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(Arc::clone(self).accept_loop(listener, stop_rx, control_port));
        Running { stop, task }
    }

    async fn accept_loop(
        self: Arc<Self>,
        listener: TcpListener,
        mut stop: watch::Receiver<bool>,
        control_port: bool,
    ) {
        let conn_stop = stop.clone();
        let mut shutdown = self.shutdown.subscribe();
        loop {
            tokio::select! {
                () = until_set(&mut stop) => break,
                () = until_set(&mut shutdown) => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => {
                        let _ = stream.set_nodelay(true);
                        let conn = Arc::clone(&self)
                            .serve_connection(stream, conn_stop.clone(), control_port);
                        tokio::spawn(conn);
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::debug!(error = %e, "erp-sim: accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
            }
        }
        // Dropping `listener` here closes the socket: new connects are refused.
    }

    async fn serve_connection(
        self: Arc<Self>,
        stream: TcpStream,
        mut stop: watch::Receiver<bool>,
        control_port: bool,
    ) {
        // Set once the connection turns out to carry a control request, so that
        // `POST /__sim/down` on the main port can answer after the port went down.
        let is_control = Arc::new(AtomicBool::new(control_port));
        let svc = {
            let server = Arc::clone(&self);
            let is_control = Arc::clone(&is_control);
            service_fn(move |req| {
                let server = Arc::clone(&server);
                let is_control = Arc::clone(&is_control);
                async move { server.handle(req, control_port, &is_control).await }
            })
        };
        let mut builder = http1::Builder::new();
        builder.keep_alive(false).timer(TokioTimer::new());
        let conn = builder.serve_connection(TokioIo::new(stream), svc);
        tokio::pin!(conn);
        let mut shutdown = self.shutdown.subscribe();
        tokio::select! {
            res = &mut conn => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "erp-sim: connection ended with an error");
                }
            }
            () = until_set(&mut stop) => {
                if is_control.load(Ordering::Relaxed) {
                    let _ = conn.await;
                }
            }
            () = until_set(&mut shutdown) => {}
        }
    }

    /// One request: control requests go to `control`; ERP requests are counted, their body
    /// read and recorded, fault switches applied, then the app answers.
    async fn handle(
        self: Arc<Self>,
        req: hyper::Request<Incoming>,
        control_port: bool,
        is_control: &AtomicBool,
    ) -> Result<hyper::Response<Full<Bytes>>, Closed> {
        if control_port || req.uri().path().starts_with(CONTROL_PREFIX) {
            is_control.store(true, Ordering::Relaxed);
            return Ok(control::handle(&self, req).await.map(Full::new));
        }
        let shared = &*self.shared;
        let _in_flight = shared.enter();
        let (parts, body) = req.into_parts();
        let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        shared.count(parts.uri.path(), path_and_query);

        let (body, too_large) = match Limited::new(body, MAX_BODY_BYTES).collect().await {
            Ok(collected) => (collected.to_bytes(), false),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => (Bytes::new(), true),
            // The client went away mid-body: nothing to answer.
            Err(_) => return Err(Closed),
        };
        let request = Request::new(parts.method, &parts.uri, parts.headers, body);
        if request.carries_body() && !too_large {
            shared.record_body(&request.raw_path, request.body.clone());
        }

        let paths = [request.raw_path.as_str(), request.path.as_str()];
        let reply = match shared.health_says(&paths) {
            // A lying health path skips every other switch: it is what they do not reach.
            Some(HealthSays::Healthy) => app::respond(shared, &request).await,
            Some(HealthSays::Unhealthy) => app::forced_failure(shared, &request, 503),
            None => {
                if shared.hanging() {
                    shared.hang_released().await;
                    return Err(Closed);
                }
                let faults = shared.faults();
                if !faults.extra_latency.is_zero() {
                    tokio::time::sleep(faults.extra_latency).await;
                }
                if shared.take_drop() {
                    // A crashing worker: the request was read, no byte of answer follows.
                    return Err(Closed);
                }
                if too_large {
                    app::too_large(shared, &request)
                } else if let Some(status) = faults.fail.or_else(|| shared.path_fail(&paths)) {
                    app::forced_failure(shared, &request, status)
                } else {
                    app::respond(shared, &request).await
                }
            }
        };
        let echo_origin = shared.cors_echo_origin();
        let res = app::finish(reply, &request.method, &request.headers, echo_origin);
        Ok(res.map(Full::new))
    }

    /// Takes the main listener down (`true`) or binds it again (`false`). Idempotent.
    pub(crate) async fn set_down(self: &Arc<Self>, down: bool) -> io::Result<()> {
        let mut life = self.life.lock().await;
        if life.shut_down {
            return Err(io::Error::other("the ERP simulator is shut down"));
        }
        if down {
            if let Some(running) = life.main.take() {
                running.stop().await;
            }
            self.shared.down.store(true, Ordering::Relaxed);
        } else if life.main.is_none() {
            let listener = rebind(self.addr).await?;
            life.main = Some(self.spawn_accept(listener, false));
            self.shared.down.store(false, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Signals every loop and connection to stop, without waiting (used on drop).
    pub(crate) fn signal_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Stops both listeners and every connection, and waits for the listeners to close.
    pub(crate) async fn shutdown(&self) {
        let mut life = self.life.lock().await;
        life.shut_down = true;
        self.signal_shutdown();
        if let Some(running) = life.main.take() {
            running.stop().await;
        }
        if let Some(running) = life.control.take() {
            running.stop().await;
        }
        // Release hung requests' waiters too; their connections are already cut.
        self.shared.set_hang(false);
    }
}

/// Resolves once the flag is set (or its sender is gone, which means the same).
async fn until_set(rx: &mut watch::Receiver<bool>) {
    // The `Ref` the wait returns must not live across other awaits (it is not `Send`).
    let _ = rx.wait_for(|set| *set).await;
}

/// Binds `addr` with `SO_REUSEADDR`, so a port released by `set_down` can be taken again
/// while its old connections sit in TIME_WAIT.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// [`bind`], retried briefly: the kernel may need a moment after the old socket closed.
async fn rebind(addr: SocketAddr) -> io::Result<TcpListener> {
    let mut last = None;
    for _ in 0..50 {
        match bind(addr) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(last.unwrap_or_else(|| io::Error::other("rebind failed")))
}
