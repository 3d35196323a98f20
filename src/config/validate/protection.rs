//! The `protection:` section (rate limits and their classes, the concurrency cap, the circuit
//! breaker, retries) and a route's own protection keys (rate class, `max_in_flight`, timeouts).

use std::net::IpAddr;
use std::time::Duration;

use super::super::defaults::*;
use super::super::file::*;
use super::super::model::*;
use super::{Problems, positive_ms};

pub(super) fn protection(f: &FileProtection, p: &mut Problems) -> Option<Protection> {
    let mut ok = true;
    let retry_after = match f.retry_after_secs {
        0 => {
            let msg = "retry_after_secs = 0 tells clients to retry at once, which is what a \
                       struggling ERP needs least; write e.g. retry_after_secs: 5";
            p.at("protection.retry_after_secs", None, msg.to_owned());
            ok = false;
            Duration::ZERO
        }
        s if s > 3600 => {
            let msg = format!(
                "retry_after_secs = {s} asks clients to stay away for over an hour; write at \
                 most 3600, e.g. retry_after_secs: 5"
            );
            p.at("protection.retry_after_secs", None, msg);
            ok = false;
            Duration::ZERO
        }
        s => Duration::from_secs(s),
    };
    let rate_limit = rate_limit(&f.rate_limit, p);
    let trusted_proxies = trusted_proxies(&f.rate_limit.trusted_proxies, p);
    let upstream_cap = upstream_cap(&f.upstream_cap, p);
    let breaker = breaker(&f.breaker, p);
    let retries = retries(&f.retries, p);
    if !ok {
        return None;
    }
    Some(Protection {
        rate_limit: rate_limit?,
        trusted_proxies: trusted_proxies?,
        upstream_cap: upstream_cap?,
        breaker: breaker?,
        retries: retries?,
        retry_after,
    })
}

fn rate_class(per_sec: u64, burst: u64, path: &str, p: &mut Problems) -> Option<RateClass> {
    let mut ok = true;
    if per_sec == 0 || per_sec > u64::from(u32::MAX) {
        let msg = format!(
            "requests_per_sec = {per_sec} must be a whole number from 1 to {}; write e.g. \
             requests_per_sec: 20 (to turn limiting off, set protection.rate_limit.enabled: false)",
            u32::MAX
        );
        p.at(&format!("{path}.requests_per_sec"), None, msg);
        ok = false;
    }
    if burst == 0 || burst > u64::from(u32::MAX) {
        let msg = format!(
            "burst = {burst} must be a whole number from 1 to {}; write e.g. burst: 60 (at \
             least the requests one page load sends at once)",
            u32::MAX
        );
        p.at(&format!("{path}.burst"), None, msg);
        ok = false;
    }
    ok.then_some(RateClass {
        per_sec: per_sec as u32,
        burst: burst as u32,
    })
}

/// `Some(None)`: valid and off.
fn rate_limit(f: &FileRateLimit, p: &mut Problems) -> Option<Option<RateLimitSettings>> {
    let base = "protection.rate_limit";
    let default = rate_class(f.requests_per_sec, f.burst, base, p);
    let mut classes = Vec::new();
    let mut ok = default.is_some();
    for (name, c) in &f.classes {
        let path = format!("{base}.classes.{name}");
        match rate_class(c.requests_per_sec, c.burst, &path, p) {
            Some(class) => classes.push((name.clone(), class)),
            None => ok = false,
        }
    }
    if f.max_clients == 0 {
        let msg = "max_clients = 0 would track no client, so no bucket could be kept; write \
                   e.g. max_clients: 10000";
        p.at(&format!("{base}.max_clients"), None, msg.to_owned());
        ok = false;
    }
    if f.idle_secs == 0 {
        let msg = "idle_secs = 0 would sweep the client table on every tick (each second); write \
                   e.g. idle_secs: 300";
        p.at(&format!("{base}.idle_secs"), None, msg.to_owned());
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(f.enabled.then(|| RateLimitSettings {
        default: default.unwrap_or(RateClass {
            per_sec: 1,
            burst: 1,
        }),
        classes,
        max_clients: usize::try_from(f.max_clients).unwrap_or(usize::MAX),
        idle: Duration::from_secs(f.idle_secs),
    }))
}

/// `protection.rate_limit.trusted_proxies`: read whether or not rate limiting is on, since the
/// client address it yields also decides access rules and the ERP's forwarding fields.
fn trusted_proxies(list: &[String], p: &mut Problems) -> Option<Vec<ipnet::IpNet>> {
    let base = "protection.rate_limit";
    let mut ok = true;
    let mut trusted_proxies = Vec::new();
    for (i, text) in list.iter().enumerate() {
        let parsed = text
            .parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(net) => trusted_proxies.push(net),
            Err(_) => {
                let msg = format!(
                    "{text:?} is not an IP address or network; write e.g. \"10.0.0.5\" or \
                     \"10.0.0.0/24\" (the load balancer in front of knitcache)"
                );
                p.at(&format!("{base}.trusted_proxies[{i}]"), None, msg);
                ok = false;
            }
        }
    }
    ok.then_some(trusted_proxies)
}

fn upstream_cap(f: &FileUpstreamCap, p: &mut Problems) -> Option<ConcurrencySettings> {
    let base = "protection.upstream_cap";
    let mut ok = true;
    if f.max_in_flight == 0 {
        let msg = "max_in_flight = 0 would let no request reach the ERP; write e.g. \
                   max_in_flight: 8";
        p.at(&format!("{base}.max_in_flight"), None, msg.to_owned());
        ok = false;
    }
    let timeout = positive_ms(f.queue_timeout_ms, &format!("{base}.queue_timeout_ms"), p);
    if !ok {
        return None;
    }
    Some(ConcurrencySettings {
        max_in_flight: usize::try_from(f.max_in_flight).unwrap_or(usize::MAX),
        queue: usize::try_from(f.queue).unwrap_or(usize::MAX),
        queue_timeout: timeout?,
    })
}

/// `Some(None)`: valid and off.
fn breaker(f: &FileBreaker, p: &mut Problems) -> Option<Option<BreakerSettings>> {
    let base = "protection.breaker";
    let mut ok = true;
    let mut nonzero = |key: &str, value: u64, example: u64, why: &str| {
        if value == 0 {
            let msg = format!("{key} = 0 {why}; write e.g. {key}: {example}");
            p.at(&format!("{base}.{key}"), None, msg);
            ok = false;
        }
    };
    nonzero(
        "consecutive_failures",
        f.consecutive_failures,
        5,
        "would open the breaker on no failure at all",
    );
    nonzero(
        "window_secs",
        f.window_secs,
        30,
        "leaves no window to count failures in",
    );
    nonzero(
        "min_requests",
        f.min_requests,
        20,
        "would open the breaker on a single failed request",
    );
    nonzero(
        "open_secs",
        f.open_secs,
        10,
        "would close the breaker again at once",
    );
    nonzero(
        "half_open_probes",
        f.half_open_probes,
        1,
        "would never let a probe through, so the breaker could never close",
    );
    if f.error_ratio_percent == 0 || f.error_ratio_percent > 100 {
        let msg = format!(
            "error_ratio_percent = {} must be from 1 to 100; write e.g. error_ratio_percent: 50",
            f.error_ratio_percent
        );
        p.at(&format!("{base}.error_ratio_percent"), None, msg);
        ok = false;
    }
    if !ok {
        return None;
    }
    let count = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    Some(f.enabled.then(|| BreakerSettings {
        consecutive_failures: count(f.consecutive_failures),
        error_ratio: f.error_ratio_percent as f64 / 100.0,
        window: Duration::from_secs(f.window_secs),
        min_requests: count(f.min_requests),
        open_for: Duration::from_secs(f.open_secs),
        half_open_probes: count(f.half_open_probes),
        trip_on_5xx: f.trip_on_5xx,
    }))
}

fn retries(f: &FileRetries, p: &mut Problems) -> Option<RetrySettings> {
    if f.budget_percent > 100 {
        let msg = format!(
            "budget_percent = {} would let retries more than double the traffic a failing ERP \
             sees; write at most 100, e.g. budget_percent: 10",
            f.budget_percent
        );
        p.at("protection.retries.budget_percent", None, msg);
        return None;
    }
    if f.max_per_request > 10 {
        let msg = format!(
            "max_per_request = {} retries of one request; write at most 10, e.g. \
             max_per_request: 1",
            f.max_per_request
        );
        p.at("protection.retries.max_per_request", None, msg);
        return None;
    }
    Some(RetrySettings {
        max_per_request: f.max_per_request as u32,
        budget_ratio: f.budget_percent as f64 / 100.0,
    })
}

pub(super) fn route_limits(
    r: &FileRoute,
    base: &str,
    name: Option<&str>,
    classes: &[&str],
    p: &mut Problems,
) -> Option<RouteLimits> {
    let mut ok = true;
    if let Some(class) = &r.rate_limit_class
        && !classes.contains(&class.as_str())
    {
        let known = if classes.is_empty() {
            "none are defined; add it under protection.rate_limit.classes".to_owned()
        } else {
            format!("defined classes: {}", classes.join(", "))
        };
        let msg = format!(
            "rate_limit_class {class:?} is not a class in protection.rate_limit.classes; {known}"
        );
        p.at(&format!("{base}.rate_limit_class"), name, msg);
        ok = false;
    }
    if r.max_in_flight == Some(0) {
        let msg = "max_in_flight = 0 would let no request of this route reach the ERP; write e.g. \
                   max_in_flight: 1, or remove it to use only the global cap";
        p.at(&format!("{base}.max_in_flight"), name, msg.to_owned());
        ok = false;
    }
    let mut timeout = |key: &str, value: Option<u64>| match value {
        None => Some(None),
        Some(ms) => positive_ms(ms, &format!("{base}.{key}"), p).map(Some),
    };
    let connect = timeout("connect_timeout_ms", r.connect_timeout_ms);
    let first_byte = timeout("first_byte_timeout_ms", r.first_byte_timeout_ms);
    let total = timeout("total_timeout_ms", r.total_timeout_ms);
    if let (Some(Some(first)), Some(Some(total))) = (first_byte, total)
        && first > total
    {
        let msg = format!(
            "first_byte_timeout_ms = {} is longer than total_timeout_ms = {}, so it can never \
             fire; make total_timeout_ms the larger",
            first.as_millis(),
            total.as_millis()
        );
        p.at(&format!("{base}.first_byte_timeout_ms"), name, msg);
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(RouteLimits {
        rate_class: r.rate_limit_class.clone(),
        rate_limit_hits: r.rate_limit_hits.unwrap_or(DEFAULT_RATE_LIMIT_HITS),
        max_in_flight: r
            .max_in_flight
            .map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
        connect_timeout: connect?,
        first_byte_timeout: first_byte?,
        total_timeout: total?,
    })
}
