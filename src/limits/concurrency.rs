//! The cap on concurrent work at the ERP: a semaphore of `max_in_flight` slots with a bounded
//! queue in front of it. A request that finds the queue full, or waits past the deadline, is
//! refused at once (the proxy then serves stale or answers `503`), so a burst never turns into
//! an unbounded pile of waiting connections. Only requests that really go to the ERP take a
//! slot: coalesced misses wait on the cache lock, not here.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue already holds `queue` requests.
    QueueFull,
    /// No slot freed up within the queue timeout.
    Timeout,
}

impl Refused {
    /// A short label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::QueueFull => "queue_full",
            Refused::Timeout => "queue_timeout",
        }
    }
}

/// One cap (global, or a route's own).
pub struct Gate {
    slots: Arc<Semaphore>,
    max_in_flight: usize,
    waiting: AtomicUsize,
    queue: usize,
    timeout: Duration,
}

/// A held slot; the slot frees when it is dropped.
pub type Slot = OwnedSemaphorePermit;

/// Decrements the waiting count however the wait ends (slot, timeout, or a dropped request).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gate {
    /// A gate of `max_in_flight` slots, `queue` waiters and a `timeout` per wait.
    pub fn new(max_in_flight: usize, queue: usize, timeout: Duration) -> Self {
        Gate {
            slots: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            waiting: AtomicUsize::new(0),
            queue,
            timeout,
        }
    }

    /// Takes a slot, waiting in the queue if needed.
    pub async fn enter(&self) -> Result<Slot, Refused> {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return Ok(slot);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::QueueFull);
        }
        let _waiting = Waiting(&self.waiting);
        match tokio::time::timeout(self.timeout, self.slots.clone().acquire_owned()).await {
            Ok(Ok(slot)) => Ok(slot),
            // The semaphore is never closed; treat it like a timeout if it ever is.
            Ok(Err(_)) | Err(_) => Err(Refused::Timeout),
        }
    }

    /// Requests holding a slot now.
    pub fn in_flight(&self) -> usize {
        self.max_in_flight
            .saturating_sub(self.slots.available_permits())
    }

    /// Requests waiting for a slot now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slots_then_queue_then_refusal() {
        let gate = Arc::new(Gate::new(2, 1, Duration::from_secs(5)));
        let a = gate.enter().await.expect("slot 1");
        let _b = gate.enter().await.expect("slot 2");
        assert_eq!(gate.in_flight(), 2);

        let g = gate.clone();
        let queued = tokio::spawn(async move { g.enter().await });
        tokio::task::yield_now().await;
        assert_eq!(gate.waiting(), 1);
        assert_eq!(
            gate.enter().await.err(),
            Some(Refused::QueueFull),
            "the queue holds one"
        );

        drop(a);
        let slot = queued
            .await
            .expect("task")
            .expect("the waiter gets the freed slot");
        assert_eq!(gate.waiting(), 0);
        drop(slot);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_past_the_deadline_is_refused() {
        let gate = Gate::new(1, 10, Duration::from_millis(200));
        let _held = gate.enter().await.expect("slot");
        let started = tokio::time::Instant::now();
        assert_eq!(gate.enter().await.err(), Some(Refused::Timeout));
        assert_eq!(started.elapsed(), Duration::from_millis(200));
        assert_eq!(gate.waiting(), 0, "a timed-out waiter leaves the queue");
    }
}
