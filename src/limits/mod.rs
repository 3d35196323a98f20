//! Protecting the ERP: one process whose slow handlers run one at a time, so a burst can take it
//! down for everyone. Everything here is consulted by the proxy's phases:
//!
//! * `client`      who a request is charged to (peer IP, or a trusted proxy's `X-Forwarded-For`)
//! * `rate`        per-client token buckets per rate class -> `429` with `Retry-After`
//! * `concurrency` the cap on requests in flight to the ERP, with a bounded, timed queue
//! * `breaker`     circuit breakers: the global one opens only when the ERP itself is down
//!   (refused or timed-out connects, failed health probes) and then no request reaches it; one
//!   per route opens on that route's own errors (5xx, timeouts) and keeps only that route's
//!   requests away, so one broken endpoint never takes the others down
//! * `retry`       the retry budget for idempotent requests whose connection failed
//!
//! When the ERP cannot be asked (breaker open, queue full or timed out) the request fails with
//! an upstream-sourced error, so pingora serves the stale copy where the cache has one
//! (stale-if-error) and the proxy answers a fast `503` with `Retry-After` where it has none.

pub mod breaker;
pub mod client;
pub mod concurrency;
pub mod rate;
pub mod retry;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_error::{Error, ErrorSource, ErrorType};
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::config::{BreakerSettings, ConcurrencySettings, Config, RateLimitSettings};
use breaker::{Admission, Breaker, Outcome, Transition};
use concurrency::{Gate, Refused, Slot};
use rate::RateLimits;
use retry::RetryBudget;

/// The error kind of a request the breaker kept from the ERP.
pub const BREAKER_OPEN: &str = "upstream circuit open";
/// The error kind of a request its route's breaker kept from the ERP (that endpoint fails).
pub const ROUTE_BREAKER_OPEN: &str = "route circuit open";
/// The error kind of a request refused because the queue for the ERP was full.
pub const QUEUE_FULL: &str = "upstream queue full";
/// The error kind of a request that waited too long for a slot at the ERP.
pub const QUEUE_TIMEOUT: &str = "upstream queue timeout";

/// An error that pingora treats like an ERP failure (so stale-if-error applies).
pub fn refusal(kind: &'static str) -> Box<Error> {
    Error::create(ErrorType::Custom(kind), ErrorSource::Upstream, None, None)
}

/// Whether `e` is one of ours (answered `503` with `Retry-After`).
pub fn is_refusal(e: &Error) -> bool {
    refusal_reason(e).is_some()
}

/// The `reason` label of one of our refusals (`knitcache_refusals_total`), `None` for any
/// other error.
pub fn refusal_reason(e: &Error) -> Option<&'static str> {
    match e.etype() {
        ErrorType::Custom(BREAKER_OPEN) => Some("breaker_open"),
        ErrorType::Custom(ROUTE_BREAKER_OPEN) => Some("route_breaker_open"),
        ErrorType::Custom(QUEUE_FULL) => Some("queue_full"),
        ErrorType::Custom(QUEUE_TIMEOUT) => Some("queue_timeout"),
        _ => None,
    }
}

/// The protection state of one proxy. The parts a configuration sets live in one `Tuned`
/// snapshot, replaced whole when the configuration is reloaded; parts whose settings did not
/// change are carried over, so a reload resets no bucket, slot count or breaker needlessly.
pub struct Limits {
    tuned: ArcSwap<Tuned>,
    /// Shared by all requests.
    pub retry_budget: RetryBudget,
    metrics: LimitMetrics,
}

/// What the configuration decides.
pub struct Tuned {
    /// Per-client buckets; `None` when rate limiting is off.
    pub rate: Option<Arc<RateLimits>>,
    rate_settings: Option<RateLimitSettings>,
    gate: Arc<Gate>,
    cap: ConcurrencySettings,
    /// Per-route gates and their size, by route name.
    route_gates: HashMap<String, (usize, Arc<Gate>)>,
    breaker: Option<Arc<Breaker>>,
    breaker_settings: Option<BreakerSettings>,
    /// One breaker per route, by route name (same settings as the global one).
    route_breakers: HashMap<String, Arc<Breaker>>,
}

impl Tuned {
    /// Builds the tuned parts of `config`, reusing from `old` what did not change.
    fn build(config: &Config, old: Option<&Tuned>) -> Tuned {
        let p = &config.protection;
        let cap = p.upstream_cap;
        let rate = match old {
            Some(o) if o.rate_settings == p.rate_limit => o.rate.clone(),
            _ => p.rate_limit.as_ref().map(|s| Arc::new(RateLimits::new(s))),
        };
        let gate = match old {
            Some(o) if o.cap == cap => o.gate.clone(),
            _ => Arc::new(Gate::new(cap.max_in_flight, cap.queue, cap.queue_timeout)),
        };
        let route_gates = config
            .routes
            .iter()
            .filter_map(|r| {
                let max = r.limits.max_in_flight?;
                let reuse = old
                    .filter(|o| o.cap == cap)
                    .and_then(|o| o.route_gates.get(&r.name))
                    .filter(|(m, _)| *m == max)
                    .map(|(_, g)| g.clone());
                let gate =
                    reuse.unwrap_or_else(|| Arc::new(Gate::new(max, cap.queue, cap.queue_timeout)));
                Some((r.name.clone(), (max, gate)))
            })
            .collect();
        let same_breaker = old.filter(|o| o.breaker_settings == p.breaker);
        let breaker = match same_breaker {
            Some(o) => o.breaker.clone(),
            None => p.breaker.map(|b| Arc::new(Breaker::new(b, Instant::now()))),
        };
        let route_breakers = match p.breaker {
            None => HashMap::new(),
            Some(settings) => config
                .routes
                .iter()
                .map(|r| {
                    let kept = same_breaker
                        .and_then(|o| o.route_breakers.get(&r.name))
                        .cloned();
                    let b =
                        kept.unwrap_or_else(|| Arc::new(Breaker::new(settings, Instant::now())));
                    (r.name.clone(), b)
                })
                .collect(),
        };
        Tuned {
            rate,
            rate_settings: p.rate_limit.clone(),
            gate,
            cap,
            route_gates,
            breaker,
            breaker_settings: p.breaker,
            route_breakers,
        }
    }
}

/// Which breakers let a request through as a half-open probe: its outcome decides their state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Probes {
    /// The global breaker's probe.
    pub global: bool,
    /// The route breaker's probe.
    pub route: bool,
}

/// How a request that was admitted to the ERP ended, as the breakers judge it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The ERP answered (a 5xx too, unless `trip_on_5xx`).
    Answered,
    /// The ERP could not be reached: a refused or timed-out connect. The ERP is down.
    Unreachable,
    /// The route failed: a counted 5xx, or a timeout after the request reached the ERP.
    RouteFailed,
    /// Neither: the client went away first, or the request never left.
    Abandoned,
}

impl Verdict {
    /// What the global breaker learns: only whether the ERP is reachable.
    fn global(self) -> Outcome {
        match self {
            Verdict::Answered | Verdict::RouteFailed => Outcome::Success,
            Verdict::Unreachable => Outcome::Failure,
            Verdict::Abandoned => Outcome::Abandoned,
        }
    }

    /// What the route's breaker learns: only how the route's requests went once sent.
    fn route(self) -> Outcome {
        match self {
            Verdict::Answered => Outcome::Success,
            Verdict::RouteFailed => Outcome::Failure,
            Verdict::Unreachable | Verdict::Abandoned => Outcome::Abandoned,
        }
    }
}

/// The slots a request holds at the ERP (route gate, then global gate).
#[derive(Default)]
pub struct Slots {
    route: Option<Slot>,
    global: Option<Slot>,
}

impl Slots {
    /// True once the request holds its global slot.
    pub fn held(&self) -> bool {
        self.global.is_some()
    }

    /// Frees the slots (the ERP's answer is complete).
    pub fn release(&mut self) {
        self.global = None;
        self.route = None;
    }
}

impl Limits {
    /// Builds the protection of `config`, registering its metrics in `registry`.
    pub fn new(config: &Config, registry: &Registry) -> prometheus::Result<Limits> {
        let metrics = LimitMetrics::register(registry)?;
        metrics.breaker_state.set(0);
        let limits = Limits {
            tuned: ArcSwap::from_pointee(Tuned::build(config, None)),
            retry_budget: RetryBudget::new(config.protection.retries.budget_ratio),
            metrics,
        };
        limits.sample();
        Ok(limits)
    }

    /// Applies a reloaded configuration. Requests in flight keep the slots they hold; parts
    /// whose settings did not change keep their state (buckets, slot counts, breaker).
    pub fn apply(&self, config: &Config) {
        let next = Tuned::build(config, Some(&self.tuned.load()));
        self.tuned.store(Arc::new(next));
        self.sample();
    }

    /// The current tuned parts (one load per request).
    pub fn tuned(&self) -> Arc<Tuned> {
        self.tuned.load_full()
    }

    /// Counts a request refused by its rate limit.
    pub fn count_limited(&self, class: &str) {
        self.metrics.rate_limited.with_label_values(&[class]).inc();
    }

    /// May a request of `route` go to the ERP? The global breaker first (is the ERP up?),
    /// then the route's own. `Ok(probes)` if so; `Err((kind, retry_after))` names the breaker
    /// that refused.
    pub fn admit(&self, route: Option<&str>) -> Result<Probes, (&'static str, Duration)> {
        let tuned = self.tuned.load();
        let Some(breaker) = &tuned.breaker else {
            return Ok(Probes::default());
        };
        let now = Instant::now();
        let (admission, transition) = breaker.admit(now);
        self.note(transition);
        let global = match admission {
            Admission::Allowed => false,
            Admission::Probe => true,
            Admission::Refused { retry_after } => {
                self.metrics
                    .refused
                    .with_label_values(&["breaker_open"])
                    .inc();
                return Err((BREAKER_OPEN, retry_after));
            }
        };
        let Some((name, route_breaker)) =
            route.and_then(|name| Some((name, tuned.route_breakers.get(name)?)))
        else {
            return Ok(Probes {
                global,
                route: false,
            });
        };
        let (admission, transition) = route_breaker.admit(now);
        self.note_route(name, transition);
        match admission {
            Admission::Allowed => Ok(Probes {
                global,
                route: false,
            }),
            Admission::Probe => Ok(Probes {
                global,
                route: true,
            }),
            Admission::Refused { retry_after } => {
                // Not sent after all: a global probe slot is given back undecided.
                breaker.record(Outcome::Abandoned, global, now);
                self.metrics
                    .refused
                    .with_label_values(&["route_breaker_open"])
                    .inc();
                Err((ROUTE_BREAKER_OPEN, retry_after))
            }
        }
    }

    /// Takes the request's slots at the ERP (its route's cap first, then the global one).
    pub async fn enter(&self, route: Option<&str>, slots: &mut Slots) -> Result<(), Refused> {
        let tuned = self.tuned.load_full();
        let result: Result<(), Refused> = async {
            if slots.route.is_none()
                && let Some((_, gate)) = route.and_then(|name| tuned.route_gates.get(name))
            {
                slots.route = Some(gate.enter().await?);
            }
            if slots.global.is_none() {
                slots.global = Some(tuned.gate.enter().await?);
            }
            Ok(())
        }
        .await;
        if let Err(refused) = result {
            slots.release();
            self.metrics
                .refused
                .with_label_values(&[refused.as_str()])
                .inc();
        }
        result
    }

    /// Records how a request of `route` admitted to the ERP ended: the global breaker learns
    /// whether the ERP was reachable, the route's breaker how the route fared.
    pub fn record(&self, route: Option<&str>, verdict: Verdict, probes: Probes) {
        let tuned = self.tuned.load();
        let now = Instant::now();
        if let Some(breaker) = &tuned.breaker {
            let transition = breaker.record(verdict.global(), probes.global, now);
            self.note(transition);
        }
        if let Some((name, b)) = route.and_then(|n| Some((n, tuned.route_breakers.get(n)?))) {
            let transition = b.record(verdict.route(), probes.route, now);
            self.note_route(name, transition);
        }
    }

    /// The state of `route`'s breaker (`closed` when there is none).
    pub fn route_breaker_state(&self, route: &str) -> breaker::State {
        self.tuned
            .load()
            .route_breakers
            .get(route)
            .map_or(breaker::State::Closed, |b| b.state())
    }

    /// Feeds an active health check's result to the breaker.
    pub fn health(&self, ok: bool) {
        if let Some(breaker) = &self.tuned.load().breaker {
            let transition = breaker.health(ok, Instant::now());
            self.note(transition);
        }
    }

    /// Whether a 5xx from the ERP counts as a failure.
    pub fn trips_on_5xx(&self, config: &Config) -> bool {
        config.protection.breaker.is_some_and(|b| b.trip_on_5xx)
    }

    /// Counts a retry.
    pub fn count_retry(&self) {
        self.metrics.retries.inc();
    }

    /// The breaker's state, for `/stats` and logs (`closed` when there is no breaker).
    pub fn breaker_state(&self) -> breaker::State {
        self.tuned
            .load()
            .breaker
            .as_ref()
            .map_or(breaker::State::Closed, |b| b.state())
    }

    fn note_route(&self, route: &str, transition: Option<Transition>) {
        let Some(t) = transition else { return };
        self.metrics
            .route_breaker_state
            .with_label_values(&[route])
            .set(t.to.code());
        self.metrics
            .route_transitions
            .with_label_values(&[route, t.to.as_str(), t.reason.as_str()])
            .inc();
        tracing::warn!(
            route,
            from = t.from.as_str(),
            to = t.to.as_str(),
            reason = t.reason.as_str(),
            "route circuit breaker changed state: only this route's requests are kept from the ERP"
        );
    }

    fn note(&self, transition: Option<Transition>) {
        let Some(t) = transition else { return };
        self.metrics.breaker_state.set(t.to.code());
        self.metrics
            .transitions
            .with_label_values(&[t.to.as_str(), t.reason.as_str()])
            .inc();
        tracing::warn!(
            from = t.from.as_str(),
            to = t.to.as_str(),
            reason = t.reason.as_str(),
            "upstream circuit breaker changed state"
        );
    }

    fn sample(&self) {
        let tuned = self.tuned.load();
        self.metrics.in_flight.set(tuned.gate.in_flight() as i64);
        self.metrics.waiting.set(tuned.gate.waiting() as i64);
        if let Some(rate) = &tuned.rate {
            self.metrics.clients.set(rate.tracked() as i64);
        }
        self.metrics.breaker_state.set(self.breaker_state().code());
        for (route, b) in &tuned.route_breakers {
            self.metrics
                .route_breaker_state
                .with_label_values(&[route])
                .set(b.state().code());
        }
    }
}

struct LimitMetrics {
    rate_limited: IntCounterVec,
    refused: IntCounterVec,
    retries: IntCounter,
    in_flight: IntGauge,
    waiting: IntGauge,
    clients: IntGauge,
    breaker_state: IntGauge,
    transitions: IntCounterVec,
    route_breaker_state: prometheus::IntGaugeVec,
    route_transitions: IntCounterVec,
}

impl LimitMetrics {
    fn register(reg: &Registry) -> prometheus::Result<Self> {
        let m = LimitMetrics {
            rate_limited: IntCounterVec::new(
                Opts::new(
                    "knitcache_rate_limited_total",
                    "Requests refused with 429, by rate class",
                ),
                &["class"],
            )?,
            refused: IntCounterVec::new(
                Opts::new(
                    "knitcache_upstream_refused_total",
                    "Requests kept from the ERP (served stale or 503), by reason",
                ),
                &["reason"],
            )?,
            retries: IntCounter::new(
                "knitcache_upstream_retries_total",
                "Retries of requests whose ERP connection failed (a refused connect, or a reused \
                 connection the ERP closed), within retries.max_per_request and the budget",
            )?,
            in_flight: IntGauge::new(
                "knitcache_upstream_in_flight",
                "Requests in flight to the ERP",
            )?,
            waiting: IntGauge::new(
                "knitcache_upstream_queue_waiting",
                "Requests waiting for a slot at the ERP",
            )?,
            clients: IntGauge::new(
                "knitcache_rate_limit_clients",
                "Clients tracked by the rate limiter",
            )?,
            breaker_state: IntGauge::new(
                "knitcache_breaker_state",
                "Circuit breaker state: 0 closed, 1 open, 2 half-open",
            )?,
            transitions: IntCounterVec::new(
                Opts::new(
                    "knitcache_breaker_transitions_total",
                    "Circuit breaker state changes, by new state and reason",
                ),
                &["to", "reason"],
            )?,
            route_breaker_state: prometheus::IntGaugeVec::new(
                Opts::new(
                    "knitcache_route_breaker_state",
                    "A route's circuit breaker (0 closed, 1 open, 2 half-open): opens on that \
                     route's own errors and keeps only its requests from the ERP",
                ),
                &["route"],
            )?,
            route_transitions: IntCounterVec::new(
                Opts::new(
                    "knitcache_route_breaker_transitions_total",
                    "Route circuit breaker state changes, by route, new state and reason",
                ),
                &["route", "to", "reason"],
            )?,
        };
        reg.register(Box::new(m.rate_limited.clone()))?;
        reg.register(Box::new(m.refused.clone()))?;
        reg.register(Box::new(m.retries.clone()))?;
        reg.register(Box::new(m.in_flight.clone()))?;
        reg.register(Box::new(m.waiting.clone()))?;
        reg.register(Box::new(m.clients.clone()))?;
        reg.register(Box::new(m.breaker_state.clone()))?;
        reg.register(Box::new(m.transitions.clone()))?;
        reg.register(Box::new(m.route_breaker_state.clone()))?;
        reg.register(Box::new(m.route_transitions.clone()))?;
        for reason in [
            "breaker_open",
            "route_breaker_open",
            "queue_full",
            "queue_timeout",
        ] {
            m.refused.with_label_values(&[reason]);
        }
        Ok(m)
    }
}

/// How often the gauges are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Background upkeep: samples the gauges every second and, every
/// `protection.rate_limit.idle_secs`, forgets the rate-limit clients whose bucket has refilled.
pub struct Upkeep {
    limits: Arc<Limits>,
    sweep_every: Duration,
    health: Option<tokio::sync::watch::Receiver<crate::health::ErpHealth>>,
}

impl Upkeep {
    /// Upkeep of `limits`; `idle` is how often the rate limiter is swept, if it is on.
    pub fn new(limits: Arc<Limits>, idle: Option<Duration>) -> Self {
        Upkeep {
            limits,
            sweep_every: idle.unwrap_or(Duration::MAX),
            health: None,
        }
    }

    /// Also feeds every active health check's result to the breaker.
    pub fn with_health(
        mut self,
        health: tokio::sync::watch::Receiver<crate::health::ErpHealth>,
    ) -> Self {
        self.health = Some(health);
        self
    }
}

#[async_trait]
impl BackgroundService for Upkeep {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut last_sweep = Instant::now();
        let mut health = self.health.clone();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(SAMPLE_EVERY) => {}
                _ = shutdown.changed() => return,
                Some(checked) = async {
                    match health.as_mut() {
                        Some(rx) => match rx.changed().await {
                            Ok(()) => Some(rx.borrow_and_update().healthy),
                            Err(_) => std::future::pending().await,
                        },
                        None => std::future::pending().await,
                    }
                } => {
                    if let Some(ok) = checked {
                        self.limits.health(ok);
                    }
                    continue;
                }
            }
            self.limits.sample();
            if last_sweep.elapsed() >= self.sweep_every {
                if let Some(rate) = &self.limits.tuned().rate {
                    rate.sweep();
                    tracing::debug!(clients = rate.tracked(), "rate limiter swept");
                }
                last_sweep = Instant::now();
            }
        }
    }
}

/// How a request admitted to the ERP ended, from what the proxy saw: `status` is the ERP's
/// answer, if one came.
pub fn verdict(status: Option<u16>, error: Option<&Error>, trip_on_5xx: bool) -> Verdict {
    match (status, error) {
        (Some(s), _) if s >= 500 && trip_on_5xx => Verdict::RouteFailed,
        (Some(_), Some(e)) if is_timeout(e) => Verdict::RouteFailed,
        (Some(_), _) => Verdict::Answered,
        (None, Some(e)) if is_refusal(e) => Verdict::Abandoned,
        (None, Some(e)) if is_unreachable(e) => Verdict::Unreachable,
        // Sent, but no answer in time, or the connection broke: this route's request failed.
        (None, Some(e)) if *e.esource() == ErrorSource::Upstream => Verdict::RouteFailed,
        (None, _) => Verdict::Abandoned,
    }
}

/// A connect that failed: nothing reached the ERP, which is down or not listening.
fn is_unreachable(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ConnectTimedout
            | ErrorType::ConnectRefused
            | ErrorType::ConnectNoRoute
            | ErrorType::ConnectError
            | ErrorType::ConnectProxyFailure
    )
}

fn is_timeout(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout | ErrorType::ConnectTimedout
    ) || matches!(e.etype(), ErrorType::Custom(k) if *k == TOTAL_TIMEOUT)
}

/// The error kind of an ERP response that took longer than the route's total timeout.
pub const TOTAL_TIMEOUT: &str = "upstream total timeout";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_from_what_the_proxy_saw() {
        let err = |t| Error::create(t, ErrorSource::Upstream, None, None);
        let refused = err(ErrorType::ConnectRefused);
        let connect_timeout = err(ErrorType::ConnectTimedout);
        let read_timeout = err(ErrorType::ReadTimedout);
        let closed = err(ErrorType::ConnectionClosed);
        let total = err(ErrorType::Custom(TOTAL_TIMEOUT));
        let breaker = refusal(ROUTE_BREAKER_OPEN);
        let client_gone = Error::create(ErrorType::WriteError, ErrorSource::Downstream, None, None);
        assert_eq!(verdict(Some(200), None, true), Verdict::Answered);
        assert_eq!(verdict(Some(503), None, true), Verdict::RouteFailed);
        assert_eq!(verdict(Some(503), None, false), Verdict::Answered);
        assert_eq!(verdict(None, Some(&refused), true), Verdict::Unreachable);
        assert_eq!(
            verdict(None, Some(&connect_timeout), true),
            Verdict::Unreachable
        );
        assert_eq!(
            verdict(None, Some(&read_timeout), true),
            Verdict::RouteFailed
        );
        assert_eq!(verdict(None, Some(&closed), true), Verdict::RouteFailed);
        assert_eq!(verdict(Some(200), Some(&total), true), Verdict::RouteFailed);
        assert_eq!(verdict(None, Some(&breaker), true), Verdict::Abandoned);
        assert_eq!(verdict(None, Some(&client_gone), true), Verdict::Abandoned);
        assert_eq!(verdict(None, None, true), Verdict::Abandoned);
    }

    #[test]
    fn the_global_breaker_hears_only_reachability_and_a_route_only_its_own_errors() {
        assert_eq!(Verdict::Unreachable.global(), Outcome::Failure);
        assert_eq!(
            Verdict::RouteFailed.global(),
            Outcome::Success,
            "the ERP answered"
        );
        assert_eq!(Verdict::Answered.global(), Outcome::Success);
        assert_eq!(Verdict::Abandoned.global(), Outcome::Abandoned);
        assert_eq!(Verdict::RouteFailed.route(), Outcome::Failure);
        assert_eq!(
            Verdict::Unreachable.route(),
            Outcome::Abandoned,
            "not the route's fault"
        );
        assert_eq!(Verdict::Answered.route(), Outcome::Success);
        assert_eq!(Verdict::Abandoned.route(), Outcome::Abandoned);
    }

    #[test]
    fn a_failing_route_opens_its_own_breaker_only() {
        let limits = Limits::new(
            &config(concat!(
                "protection: { breaker: { consecutive_failures: 3, open_secs: 60 } }\n",
                "routes: [{ name: broken, prefix: /b }, { name: fine, prefix: /f }]\n",
            )),
            &Registry::new(),
        )
        .expect("limits");
        for _ in 0..3 {
            let probes = limits.admit(Some("broken")).expect("admitted while closed");
            limits.record(Some("broken"), Verdict::RouteFailed, probes);
        }
        assert_eq!(
            limits.admit(Some("broken")).map_err(|(kind, _)| kind),
            Err(ROUTE_BREAKER_OPEN)
        );
        assert!(matches!(
            limits.route_breaker_state("broken"),
            breaker::State::Open { .. }
        ));
        assert!(limits.admit(Some("fine")).is_ok(), "other routes still go");
        assert!(limits.admit(None).is_ok(), "unmatched paths still go");
        assert_eq!(limits.breaker_state(), breaker::State::Closed);
        for _ in 0..3 {
            let probes = limits.admit(Some("fine")).expect("admitted");
            limits.record(Some("fine"), Verdict::Unreachable, probes);
        }
        assert_eq!(
            limits.admit(Some("fine")).map_err(|(kind, _)| kind),
            Err(BREAKER_OPEN),
            "an unreachable ERP opens the global breaker"
        );
        assert_eq!(limits.route_breaker_state("fine"), breaker::State::Closed);
    }

    fn config(yaml: &str) -> Config {
        let base = "upstream: { address: \"127.0.0.1:5007\" }\n";
        crate::config::parse(&format!("{base}{yaml}"), "t.yaml").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_reload_keeps_what_did_not_change() {
        let limits = Limits::new(
            &config("routes: [{ name: f, prefix: /f, max_in_flight: 1 }]\n"),
            &Registry::new(),
        )
        .expect("limits");
        let before = limits.tuned();
        limits.apply(&config(
            "routes: [{ name: f, prefix: /f, max_in_flight: 1 }, { name: g, prefix: /g }]\n",
        ));
        let after = limits.tuned();
        assert!(
            Arc::ptr_eq(&before.gate, &after.gate),
            "same cap: same global gate"
        );
        assert!(
            Arc::ptr_eq(&before.route_gates["f"].1, &after.route_gates["f"].1),
            "same route cap kept"
        );
        let (b, a) = (
            before.breaker.as_ref().expect("breaker"),
            after.breaker.as_ref().expect("breaker"),
        );
        assert!(
            Arc::ptr_eq(b, a),
            "same breaker settings: same breaker state"
        );

        limits.apply(&config(
            "protection: { upstream_cap: { max_in_flight: 2 }, breaker: { open_secs: 3 } }\nroutes: [{ name: f, prefix: /f, max_in_flight: 2 }]\n",
        ));
        let changed = limits.tuned();
        assert!(
            !Arc::ptr_eq(&after.gate, &changed.gate),
            "a new cap takes a new gate"
        );
        assert_eq!(changed.route_gates["f"].0, 2);
        assert!(!Arc::ptr_eq(a, changed.breaker.as_ref().expect("breaker")));
        assert!(changed.rate.is_none());
    }

    #[test]
    fn our_refusals_are_recognised() {
        assert!(is_refusal(&refusal(BREAKER_OPEN)));
        assert!(is_refusal(&refusal(QUEUE_FULL)));
        let other = Error::create(ErrorType::ConnectRefused, ErrorSource::Upstream, None, None);
        assert!(!is_refusal(&other));
        assert_eq!(
            *refusal(QUEUE_TIMEOUT).esource(),
            ErrorSource::Upstream,
            "stale-if-error applies"
        );
    }
}
