//! The outbox: where a replica's purges and invalidations wait to be published to the shared
//! stream. Handing one over never waits on Redis and never fails a request: it is written to
//! the outbox file in the cache directory (`outbox_file`) and queued for the publisher, which
//! holds what Redis could not take until it can. What the file holds at start (the previous
//! run stopped or crashed before Redis took it) is queued first, so it is published before
//! anything newer. A memory-only cache has no file: its announcements wait in memory only and
//! are lost if the process stops before Redis returns.
//!
//! Bounded: at most `OUTBOX_CAPACITY` announcements (and `outbox_file::MAX_BYTES` of records)
//! wait; past that (Redis down for long under many writes) the newest is dropped, logged and
//! counted.

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::event::Invalidation;
use super::outbox_file::{AppendError, OUTBOX_FILE, OutboxFile};
use crate::metrics::ClusterMetrics;

/// Invalidations held while Redis is away. Each is a few hundred bytes at most; a write-heavy
/// minute is far below this.
pub const OUTBOX_CAPACITY: usize = 10_000;

/// The sending end. Off (single node): every announcement is a no-op.
#[derive(Clone, Default)]
pub struct Outbox {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    tx: mpsc::UnboundedSender<Queued>,
    metrics: Arc<ClusterMetrics>,
    /// Taken for each announcement and each publish: the file's order is the queue's.
    state: Mutex<State>,
}

struct State {
    /// Announcements queued and not yet published.
    waiting: usize,
    /// `None` when memory-only, or when the file could not be opened.
    file: Option<OutboxFile>,
    /// Whether a failed write to the file was logged since the last one that succeeded.
    failure_logged: bool,
}

/// One announcement on its way to the stream.
pub struct Queued {
    /// What is published.
    pub inv: Invalidation,
    /// The position past its record in the outbox file, when it has one.
    position: Option<u64>,
}

/// The receiving end, owned by the publisher.
pub struct OutboxReceiver {
    rx: mpsc::UnboundedReceiver<Queued>,
    inner: Arc<Inner>,
}

impl Outbox {
    /// An outbox that publishes nothing: single-node mode, and the applier of other replicas'
    /// invalidations (which must not echo them back).
    pub fn off() -> Outbox {
        Outbox::default()
    }

    /// A connected pair: the outbox every purge announces through, and the publisher's end.
    /// With a cache directory `dir`, announcements are kept in its outbox file until published,
    /// and what the file holds from the previous run is queued first.
    pub fn channel(metrics: Arc<ClusterMetrics>, dir: Option<&Path>) -> (Outbox, OutboxReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut waiting = 0;
        let (file, replay) = match dir.map(|dir| (dir, OutboxFile::open(dir))) {
            None => (None, None),
            Some((_, Ok((file, replay)))) => (Some(file), Some(replay)),
            Some((dir, Err(e))) => {
                tracing::error!(
                    file = %dir.join(OUTBOX_FILE).display(),
                    error = %e.error,
                    "cannot open the cluster outbox file; purges wait for Redis in memory only \
                     and are lost if this replica stops before Redis returns"
                );
                (None, Some(e.replay))
            }
        };
        if let (Some(replay), Some(dir)) = (replay, dir) {
            if replay.skipped > 0 {
                metrics.dropped.inc_by(replay.skipped as u64);
                tracing::error!(
                    file = %dir.join(OUTBOX_FILE).display(),
                    skipped = replay.skipped,
                    kept = replay.records.len(),
                    "unreadable records in the cluster outbox file skipped (a torn last write \
                     or a damaged disk): those purges never reach the other replicas; repeat \
                     recent purges if that matters"
                );
            }
            if !replay.records.is_empty() {
                tracing::info!(
                    announcements = replay.records.len(),
                    "purges of the previous run not yet published; publishing them first"
                );
            }
            for (inv, position) in replay.records {
                // The receiver is in hand: this cannot fail. Without a file the records are
                // published from memory only.
                let _ = tx.send(Queued {
                    inv,
                    position: file.is_some().then_some(position),
                });
                waiting += 1;
            }
        }
        metrics.pending.set(waiting as i64);
        let inner = Arc::new(Inner {
            tx,
            metrics,
            state: Mutex::new(State {
                waiting,
                file,
                failure_logged: false,
            }),
        });
        (
            Outbox {
                inner: Some(inner.clone()),
            },
            OutboxReceiver { rx, inner },
        )
    }

    /// Whether announcements go anywhere.
    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// Queues `inv` for the other replicas; it is in the outbox file when this returns.
    pub fn announce(&self, inv: Invalidation) {
        let Some(inner) = &self.inner else {
            return;
        };
        let mut state = inner.state.lock();
        if state.waiting >= OUTBOX_CAPACITY {
            return inner.drop_full(&inv);
        }
        let position = match state.file.as_mut().map(|f| f.append(&inv)) {
            None => None,
            Some(Ok(position)) => {
                state.failure_logged = false;
                Some(position)
            }
            Some(Err(AppendError::Full)) => return inner.drop_full(&inv),
            Some(Err(AppendError::Io(e))) => {
                if !std::mem::replace(&mut state.failure_logged, true) {
                    tracing::error!(
                        error = %e,
                        "cannot write to the cluster outbox file; purges wait for Redis in \
                         memory only and are lost if this replica stops before Redis returns"
                    );
                }
                None
            }
        };
        match inner.tx.send(Queued { inv, position }) {
            Ok(()) => {
                state.waiting += 1;
                inner.metrics.pending.inc();
            }
            Err(_) if position.is_some() => {
                // The publisher has stopped (the process is shutting down): the record waits
                // in the file for the next start.
            }
            Err(_) => inner.metrics.dropped.inc(),
        }
    }
}

impl Inner {
    fn drop_full(&self, inv: &Invalidation) {
        self.metrics.dropped.inc();
        tracing::error!(
            invalidation = ?inv,
            "cluster outbox full (Redis unreachable for long); this purge reaches this \
             replica only"
        );
    }
}

impl OutboxReceiver {
    /// The next announcement to publish, oldest first; `None` never comes while the outbox is
    /// in use.
    pub async fn recv(&mut self) -> Option<Queued> {
        self.rx.recv().await
    }

    /// Records that `queued` is on the stream: it leaves the count and, with everything
    /// before it, the outbox file.
    pub fn published(&self, queued: &Queued) {
        let mut state = self.inner.state.lock();
        state.waiting = state.waiting.saturating_sub(1);
        self.inner.metrics.pending.dec();
        if let (Some(file), Some(position)) = (state.file.as_mut(), queued.position) {
            file.published(position);
        }
    }
}
