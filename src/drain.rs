//! A graceful stop that ends as soon as nothing is left to finish: the requests in flight on
//! the proxy port, the switch that closes the listeners, and the wait between the two.
//!
//! pingora 0.9 sleeps its whole grace period after SIGTERM whatever is in flight (its
//! `Server::run` waits `grace_period_seconds` unconditionally), so an idle proxy took the full
//! 10 s to stop. knitcache does the draining itself instead: on a graceful stop it closes its
//! listeners (every service listens on `Drain::listeners` rather than pingora's own shutdown
//! watch), waits until the last request in flight has been answered, or the grace period has
//! passed, and only then lets pingora tear the runtimes down, without a grace period of its own.

use std::time::Duration;

use tokio::sync::watch;

use pingora_core::server::ShutdownWatch;

/// The proxy's requests in flight and its listeners' switch, shared by the connection loop
/// (which counts) and the shutdown (which waits).
#[derive(Debug)]
pub struct Drain {
    /// `true` once the listeners are to close and kept-alive connections to end.
    stopping: watch::Sender<bool>,
    /// Requests whose head has been read and whose answer is not complete yet.
    in_flight: watch::Sender<usize>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            stopping: watch::channel(false).0,
            in_flight: watch::channel(0).0,
        }
    }
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every request in flight was answered.
    Idle,
    /// The grace period passed with this many requests still in flight.
    GaveUp(usize),
}

impl Drain {
    /// What the services listen on instead of pingora's shutdown watch: it turns `true` when
    /// `stop_accepting` is called.
    pub fn listeners(&self) -> ShutdownWatch {
        self.stopping.subscribe()
    }

    /// Closes the listeners; kept-alive connections end after their current request.
    pub fn stop_accepting(&self) {
        self.stopping.send_replace(true);
    }

    /// Counts one request as in flight until the returned guard is dropped.
    pub fn request(&self) -> InFlightRequest<'_> {
        self.in_flight.send_modify(|n| *n += 1);
        InFlightRequest(self)
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        *self.in_flight.borrow()
    }

    /// Waits until no request is in flight, for at most `grace`.
    pub async fn idle(&self, grace: Duration) -> Drained {
        let mut count = self.in_flight.subscribe();
        match tokio::time::timeout(grace, count.wait_for(|n| *n == 0)).await {
            Ok(_) => Drained::Idle,
            Err(_) => Drained::GaveUp(self.in_flight()),
        }
    }
}

/// One request in flight; dropping it ends the request, however it ended.
#[derive(Debug)]
pub struct InFlightRequest<'a>(&'a Drain);

impl Drop for InFlightRequest<'_> {
    fn drop(&mut self) {
        self.0.in_flight.send_modify(|n| *n = n.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_idle_drain_ends_at_once() {
        let drain = Drain::default();
        assert_eq!(drain.idle(Duration::from_secs(3600)).await, Drained::Idle);
    }

    #[tokio::test]
    async fn a_drain_waits_for_the_last_request() {
        let drain = std::sync::Arc::new(Drain::default());
        let (started, start) = tokio::sync::oneshot::channel();
        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        let d = drain.clone();
        let request = tokio::spawn(async move {
            let _guard = d.request();
            let _ = started.send(());
            let _ = finished.await;
        });
        start.await.expect("request started");
        assert_eq!(drain.in_flight(), 1);
        let waiting = {
            let drain = drain.clone();
            tokio::spawn(async move { drain.idle(Duration::from_secs(3600)).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the drain waits for the request");
        let _ = finish.send(());
        request.await.expect("request");
        assert_eq!(waiting.await.expect("drain"), Drained::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_gives_up_after_the_grace_period() {
        let drain = Drain::default();
        let _stuck = drain.request();
        assert_eq!(
            drain.idle(Duration::from_secs(10)).await,
            Drained::GaveUp(1)
        );
    }

    #[test]
    fn stopping_closes_the_listeners() {
        let drain = Drain::default();
        let listeners = drain.listeners();
        assert!(!*listeners.borrow());
        drain.stop_accepting();
        assert!(*listeners.borrow());
    }
}
