//! The retry budget: retries may add at most a fixed share of the traffic, so a failing ERP is
//! never hit by a retry storm. Each request deposits `ratio` of a token; each retry withdraws
//! one; the balance is capped so a long quiet period cannot save up a storm.

use std::sync::atomic::{AtomicI64, Ordering};

/// Tokens are counted in thousandths.
const SCALE: i64 = 1000;
/// Most retries the budget can hold at once.
const CAP_TOKENS: i64 = 10;

/// A shared budget of retries.
pub struct RetryBudget {
    milli_tokens: AtomicI64,
    deposit: i64,
}

impl RetryBudget {
    /// A budget allowing retries of up to `ratio` (0.0..=1.0) of requests, starting full so an
    /// ERP restart's first refused connects can be retried.
    pub fn new(ratio: f64) -> Self {
        RetryBudget {
            milli_tokens: AtomicI64::new(CAP_TOKENS * SCALE),
            deposit: (ratio.clamp(0.0, 1.0) * SCALE as f64) as i64,
        }
    }

    /// Called once per request.
    pub fn deposit(&self) {
        let _ = self
            .milli_tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some((t + self.deposit).min(CAP_TOKENS * SCALE))
            });
    }

    /// Takes one retry if the budget allows it.
    pub fn withdraw(&self) -> bool {
        self.milli_tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                (t >= SCALE).then_some(t - SCALE)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_limits_retries_to_a_share_of_requests() {
        let b = RetryBudget::new(0.1);
        let mut granted = 0;
        for _ in 0..1000 {
            b.deposit();
            if b.withdraw() {
                granted += 1;
            }
        }
        // 10 saved up at start plus 10 % of 1000 requests
        assert!((100..=110).contains(&granted), "granted {granted}");
    }

    #[test]
    fn zero_ratio_allows_only_the_initial_reserve() {
        let b = RetryBudget::new(0.0);
        let granted = (0..100).filter(|_| b.withdraw()).count();
        assert_eq!(granted, CAP_TOKENS as usize);
    }
}
