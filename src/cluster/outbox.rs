//! The outbox: where a replica's purges and invalidations wait to be published to the shared
//! stream. Handing one over never waits and never fails a request: it goes into a bounded queue
//! that the publisher drains, holding what Redis could not take until it can. When the queue is
//! full (Redis down for a long time under many writes), the newest is dropped and counted.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::event::Invalidation;
use crate::metrics::ClusterMetrics;

/// Invalidations held while Redis is away. Each is a few hundred bytes at most; a write-heavy
/// minute is far below this.
pub const OUTBOX_CAPACITY: usize = 10_000;

/// The sending end. Off (single node): every announcement is a no-op.
#[derive(Clone, Default)]
pub struct Outbox {
    tx: Option<(mpsc::Sender<Invalidation>, Arc<ClusterMetrics>)>,
}

/// The receiving end, owned by the publisher.
pub struct OutboxReceiver(pub(super) mpsc::Receiver<Invalidation>);

impl Outbox {
    /// An outbox that publishes nothing: single-node mode, and the applier of other replicas'
    /// invalidations (which must not echo them back).
    pub fn off() -> Outbox {
        Outbox::default()
    }

    /// A connected pair: the outbox every purge announces through, and the publisher's end.
    pub fn channel(metrics: Arc<ClusterMetrics>) -> (Outbox, OutboxReceiver) {
        let (tx, rx) = mpsc::channel(OUTBOX_CAPACITY);
        (
            Outbox {
                tx: Some((tx, metrics)),
            },
            OutboxReceiver(rx),
        )
    }

    /// Whether announcements go anywhere.
    pub fn is_on(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues `inv` for the other replicas.
    pub fn announce(&self, inv: Invalidation) {
        let Some((tx, metrics)) = &self.tx else {
            return;
        };
        match tx.try_send(inv) {
            Ok(()) => metrics.pending.inc(),
            Err(mpsc::error::TrySendError::Full(inv)) => {
                metrics.dropped.inc();
                tracing::error!(
                    invalidation = ?inv,
                    "cluster outbox full (Redis unreachable for long); this purge reaches this \
                     replica only"
                );
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // The publisher has stopped: the process is shutting down.
                metrics.dropped.inc();
            }
        }
    }
}
