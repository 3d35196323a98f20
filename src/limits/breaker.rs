//! The circuit breaker in front of the ERP.
//!
//! Standard states: `Closed` (traffic flows; failures are counted), `Open` (no request reaches
//! the ERP until the cool-down ends; cached keys are served stale, others get a fast `503`),
//! `HalfOpen` (a few probe requests go through; the first success closes the breaker, a failure
//! opens it again). Failures are connect errors, timeouts and, if configured, 5xx answers.
//! Time is passed in, so every transition is tested without sleeping.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::BreakerSettings;

/// The breaker's state as exported (`knitcache_breaker_state`: 0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Requests flow.
    Closed,
    /// Requests are refused until `until`.
    Open {
        /// End of the cool-down.
        until: Instant,
    },
    /// Probes are let through, `probes` of them right now.
    HalfOpen {
        /// Probes in flight.
        probes: u32,
    },
}

impl State {
    /// The gauge value: 0 closed, 1 open, 2 half-open.
    pub fn code(self) -> i64 {
        match self {
            State::Closed => 0,
            State::Open { .. } => 1,
            State::HalfOpen { .. } => 2,
        }
    }

    /// A label for logs and `/stats`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half_open",
        }
    }
}

/// What a request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go to the ERP.
    Allowed,
    /// Go to the ERP as a half-open probe; its outcome decides the state.
    Probe,
    /// Do not go; the breaker opens again for at least this long.
    Refused {
        /// Time left until probes are let through.
        retry_after: Duration,
    },
}

/// How a request to the ERP ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The ERP answered (not a failure status).
    Success,
    /// Connect error, timeout, or a counted 5xx.
    Failure,
    /// Neither: the client went away first. Frees a probe slot without deciding anything.
    Abandoned,
}

/// Why the breaker changed state, for the transitions counter and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `consecutive_failures` failures in a row.
    Consecutive,
    /// The failure share of the window passed `error_ratio`.
    ErrorRatio,
    /// The cool-down ended.
    CoolDown,
    /// A probe succeeded.
    ProbeSucceeded,
    /// A probe failed.
    ProbeFailed,
    /// The active health check reached the ERP while the breaker was open.
    HealthCheck,
}

impl Reason {
    /// A label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Consecutive => "consecutive_failures",
            Reason::ErrorRatio => "error_ratio",
            Reason::CoolDown => "cool_down",
            Reason::ProbeSucceeded => "probe_succeeded",
            Reason::ProbeFailed => "probe_failed",
            Reason::HealthCheck => "health_check",
        }
    }
}

/// A state change, returned so the caller can log and count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Before.
    pub from: State,
    /// After.
    pub to: State,
    /// Why.
    pub reason: Reason,
}

/// One breaker (the ERP is one upstream).
pub struct Breaker {
    settings: BreakerSettings,
    inner: Mutex<Inner>,
}

struct Inner {
    state: State,
    consecutive: u32,
    /// One bucket per second of the window: (second, successes, failures).
    window: Vec<(u64, u32, u32)>,
    epoch: Instant,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings, now: Instant) -> Self {
        let buckets = settings.window.as_secs().max(1) as usize;
        Breaker {
            settings,
            inner: Mutex::new(Inner {
                state: State::Closed,
                consecutive: 0,
                window: vec![(u64::MAX, 0, 0); buckets],
                epoch: now,
            }),
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.inner.lock().state
    }

    /// May a request go to the ERP now? Moves `Open` to `HalfOpen` when the cool-down is over.
    pub fn admit(&self, now: Instant) -> (Admission, Option<Transition>) {
        let mut inner = self.inner.lock();
        match inner.state {
            State::Closed => (Admission::Allowed, None),
            State::Open { until } if now < until => (
                Admission::Refused {
                    retry_after: until - now,
                },
                None,
            ),
            State::Open { .. } => {
                let from = inner.state;
                inner.state = State::HalfOpen { probes: 1 };
                let t = Transition {
                    from,
                    to: inner.state,
                    reason: Reason::CoolDown,
                };
                (Admission::Probe, Some(t))
            }
            State::HalfOpen { probes } if probes < self.settings.half_open_probes => {
                inner.state = State::HalfOpen { probes: probes + 1 };
                (Admission::Probe, None)
            }
            // Probes are out; the rest wait as if open (a probe answers within its timeouts).
            State::HalfOpen { .. } => (
                Admission::Refused {
                    retry_after: Duration::from_secs(1),
                },
                None,
            ),
        }
    }

    /// Feeds the active health check in: a failed check counts like a failed request (so an ERP
    /// that is down opens the breaker even with no traffic); a passing check while open ends
    /// the cool-down early, so the next request probes at once.
    pub fn health(&self, ok: bool, now: Instant) -> Option<Transition> {
        if !ok {
            return self.record(Outcome::Failure, false, now);
        }
        let mut inner = self.inner.lock();
        let from = inner.state;
        if matches!(from, State::Open { .. }) {
            inner.state = State::HalfOpen { probes: 0 };
            return Some(Transition {
                from,
                to: inner.state,
                reason: Reason::HealthCheck,
            });
        }
        None
    }

    /// Records how an admitted request ended (`probe`: it was admitted as a probe).
    pub fn record(&self, outcome: Outcome, probe: bool, now: Instant) -> Option<Transition> {
        let mut inner = self.inner.lock();
        let from = inner.state;
        if let State::HalfOpen { probes } = inner.state
            && probe
        {
            let probes = probes.saturating_sub(1);
            match outcome {
                Outcome::Success => {
                    inner.reset();
                    return Some(Transition {
                        from,
                        to: inner.state,
                        reason: Reason::ProbeSucceeded,
                    });
                }
                Outcome::Failure => {
                    inner.state = State::Open {
                        until: now + self.settings.open_for,
                    };
                    return Some(Transition {
                        from,
                        to: inner.state,
                        reason: Reason::ProbeFailed,
                    });
                }
                Outcome::Abandoned => {
                    inner.state = State::HalfOpen { probes };
                    return None;
                }
            }
        }
        if inner.state != State::Closed || outcome == Outcome::Abandoned {
            // Late answers of requests admitted before the breaker opened change nothing.
            return None;
        }
        let (ok, failed) = inner.count(outcome, now);
        if outcome == Outcome::Failure {
            inner.consecutive += 1;
        } else {
            inner.consecutive = 0;
        }
        let reason = if inner.consecutive >= self.settings.consecutive_failures {
            Some(Reason::Consecutive)
        } else {
            let total = ok + failed;
            (total >= self.settings.min_requests
                && f64::from(failed) >= self.settings.error_ratio * f64::from(total))
            .then_some(Reason::ErrorRatio)
        };
        let reason = reason?;
        inner.state = State::Open {
            until: now + self.settings.open_for,
        };
        Some(Transition {
            from,
            to: inner.state,
            reason,
        })
    }
}

impl Inner {
    fn reset(&mut self) {
        self.state = State::Closed;
        self.consecutive = 0;
        for bucket in &mut self.window {
            *bucket = (u64::MAX, 0, 0);
        }
    }

    /// Adds the outcome to its second's bucket; returns the window's totals.
    fn count(&mut self, outcome: Outcome, now: Instant) -> (u32, u32) {
        let second = now.saturating_duration_since(self.epoch).as_secs();
        let len = self.window.len() as u64;
        let slot = &mut self.window[(second % len) as usize];
        if slot.0 != second {
            *slot = (second, 0, 0);
        }
        match outcome {
            Outcome::Success => slot.1 += 1,
            Outcome::Failure => slot.2 += 1,
            Outcome::Abandoned => {}
        }
        self.window
            .iter()
            .filter(|(s, _, _)| *s != u64::MAX && second.saturating_sub(*s) < len)
            .fold((0, 0), |(ok, failed), (_, o, f)| (ok + o, failed + f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            consecutive_failures: 3,
            error_ratio: 0.5,
            window: Duration::from_secs(10),
            min_requests: 10,
            open_for: Duration::from_secs(5),
            half_open_probes: 1,
            trip_on_5xx: true,
        }
    }

    #[test]
    fn consecutive_failures_open_it() {
        let t0 = Instant::now();
        let b = Breaker::new(settings(), t0);
        assert_eq!(b.record(Outcome::Failure, false, t0), None);
        assert_eq!(b.record(Outcome::Failure, false, t0), None);
        let t = b
            .record(Outcome::Failure, false, t0)
            .expect("third failure opens");
        assert_eq!(t.reason, Reason::Consecutive);
        assert_eq!(
            t.to,
            State::Open {
                until: t0 + Duration::from_secs(5)
            }
        );
        match b.admit(t0 + Duration::from_secs(1)).0 {
            Admission::Refused { retry_after } => assert_eq!(retry_after, Duration::from_secs(4)),
            other => panic!("open must refuse, got {other:?}"),
        }
    }

    #[test]
    fn a_success_resets_the_run() {
        let t0 = Instant::now();
        let b = Breaker::new(settings(), t0);
        for _ in 0..2 {
            b.record(Outcome::Failure, false, t0);
        }
        b.record(Outcome::Success, false, t0);
        for _ in 0..2 {
            assert_eq!(b.record(Outcome::Failure, false, t0), None);
        }
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn an_error_ratio_over_the_window_opens_it() {
        let t0 = Instant::now();
        let b = Breaker::new(settings(), t0);
        let mut opened = None;
        // alternate failure/success: never 3 in a row, but 50 % failed
        for i in 0..10 {
            let o = if i % 2 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            opened = opened.or(b.record(o, false, t0 + Duration::from_millis(i * 100)));
        }
        assert_eq!(opened.map(|t| t.reason), Some(Reason::ErrorRatio));
    }

    #[test]
    fn old_failures_leave_the_window() {
        let t0 = Instant::now();
        let b = Breaker::new(settings(), t0);
        for i in 0..9u64 {
            let o = if i % 2 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            b.record(o, false, t0 + Duration::from_millis(i));
        }
        // 20 s later the window is empty: one failure among fresh successes does not open it
        let later = t0 + Duration::from_secs(20);
        for _ in 0..9 {
            assert_eq!(b.record(Outcome::Success, false, later), None);
        }
        assert_eq!(b.record(Outcome::Failure, false, later), None);
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn half_open_probe_closes_or_reopens() {
        let t0 = Instant::now();
        let b = Breaker::new(settings(), t0);
        for _ in 0..3 {
            b.record(Outcome::Failure, false, t0);
        }
        let after = t0 + Duration::from_secs(5);
        let (admission, t) = b.admit(after);
        assert_eq!(admission, Admission::Probe);
        assert_eq!(t.map(|t| t.reason), Some(Reason::CoolDown));
        assert!(
            matches!(b.admit(after).0, Admission::Refused { .. }),
            "one probe at a time"
        );

        let t = b
            .record(Outcome::Failure, true, after)
            .expect("failed probe reopens");
        assert_eq!(t.reason, Reason::ProbeFailed);
        assert!(matches!(b.state(), State::Open { .. }));

        let later = after + Duration::from_secs(5);
        assert_eq!(b.admit(later).0, Admission::Probe);
        let t = b
            .record(Outcome::Success, true, later)
            .expect("good probe closes");
        assert_eq!((t.to, t.reason), (State::Closed, Reason::ProbeSucceeded));
        assert_eq!(b.admit(later).0, Admission::Allowed);
    }

    #[test]
    fn an_abandoned_probe_frees_its_slot() {
        let t0 = Instant::now();
        let b = Breaker::new(settings(), t0);
        for _ in 0..3 {
            b.record(Outcome::Failure, false, t0);
        }
        let after = t0 + Duration::from_secs(6);
        assert_eq!(b.admit(after).0, Admission::Probe);
        assert_eq!(b.record(Outcome::Abandoned, true, after), None);
        assert_eq!(b.admit(after).0, Admission::Probe, "the slot is free again");
    }

    #[test]
    fn health_checks_open_it_without_traffic_and_shorten_the_cool_down() {
        let t0 = Instant::now();
        let b = Breaker::new(settings(), t0);
        assert_eq!(
            b.health(true, t0),
            None,
            "a passing check on a closed breaker changes nothing"
        );
        b.health(false, t0);
        b.health(false, t0);
        let t = b.health(false, t0).expect("three failed checks open it");
        assert_eq!(t.reason, Reason::Consecutive);
        let t = b
            .health(true, t0 + Duration::from_secs(1))
            .expect("a passing check ends the cool-down");
        assert_eq!(
            (t.to, t.reason),
            (State::HalfOpen { probes: 0 }, Reason::HealthCheck)
        );
        assert_eq!(
            b.admit(t0 + Duration::from_secs(1)).0,
            Admission::Probe,
            "the next request probes"
        );
    }

    #[test]
    fn gauge_codes() {
        assert_eq!(State::Closed.code(), 0);
        assert_eq!(
            State::Open {
                until: Instant::now()
            }
            .code(),
            1
        );
        assert_eq!(State::HalfOpen { probes: 0 }.code(), 2);
    }
}
