//! What became of a miss's fill: stored, or abandoned and why.
//!
//! A miss streams: pingora sends the response header to the client before the ERP's body has
//! arrived, so whether the body will be stored is only known at the end. `Cache-Status` says
//! `stored` only when the fill was already complete as the header went out (`Fill::at_header`);
//! the outcome of every fill is known when the request ends (`Fill::at_end`), and goes to
//! `knitcache_cache_fills_total{route, outcome}` and the access line's `fill` field.
//!
//! pingora leaves the state needed to tell the outcomes apart in the session: a fill that
//! completed has had its miss handler taken (`finish_miss_handler`) with the phase still `Miss`
//! or `Expired`, which the body filter notes as the last chunk goes by (a failure after that,
//! e.g. the client leaving as the last bytes are written, disables the cache but does not undo
//! the store); a write that failed or a body over `max_object_bytes` disables the cache with
//! `StorageError` (the size cap also sets `exceeded_max_file_size`); a body cut short (the ERP
//! closed or reset the connection, the client went away) ends the request with an error, and
//! the unfinished fill is dropped without being stored.

use pingora_cache::{CachePhase, NoCacheReason};
use pingora_error::{Error, ErrorSource};
use pingora_proxy::Session;

/// The `outcome` label of `knitcache_cache_fills_total`, and the access line's `fill`.
pub const OUTCOMES: [&str; 7] = [
    "stored",
    "purged",
    "truncated",
    "too_large",
    "storage_error",
    "client_abort",
    "other",
];

/// How a fill ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The whole body was stored.
    Stored,
    /// The whole body arrived, but a purge of its URL came after the response did: it was not
    /// kept (`cache::recent_purges`).
    Purged,
    /// The ERP's body ended early (connection closed before `Content-Length`, chunked body not
    /// terminated, connection reset) or failed mid-body: nothing was stored.
    Truncated,
    /// The body grew past `cache.max_object_bytes`: served whole, not stored.
    TooLarge,
    /// The storage refused the write: served whole, not stored.
    StorageError,
    /// The client went away before the body was complete: nothing was stored.
    ClientAbort,
    /// The request failed otherwise before the body was stored: nothing was stored.
    Other,
}

impl Outcome {
    /// The metric label and access-log value (one of `OUTCOMES`).
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Stored => "stored",
            Outcome::Purged => "purged",
            Outcome::Truncated => "truncated",
            Outcome::TooLarge => "too_large",
            Outcome::StorageError => "storage_error",
            Outcome::ClientAbort => "client_abort",
            Outcome::Other => "other",
        }
    }
}

/// Whether a fill may be under way: the phases in which pingora writes the ERP's answer to the
/// cache.
fn filling(phase: &CachePhase) -> bool {
    matches!(phase, CachePhase::Miss | CachePhase::Expired)
}

/// Whether the fill of this miss is complete now: in `response_filter`, whether it was as the
/// header goes out (a body that ended with its header); in the body filter, whether the chunk
/// just written ended it.
pub fn complete(session: &mut Session) -> bool {
    filling(&session.cache.phase()) && session.cache.miss_handler().is_none()
}

/// How the fill of a request ended, if it had one. `began`: the response header was sent
/// while a fill was under way; `completed`: `complete` was seen true since; `error`: the
/// request's error, if it failed.
pub fn at_end(
    session: &mut Session,
    began: bool,
    completed: bool,
    error: Option<&Error>,
) -> Option<Outcome> {
    if !began {
        return None;
    }
    if completed || complete(session) {
        return Some(Outcome::Stored);
    }
    Some(match session.cache.phase() {
        CachePhase::Disabled(NoCacheReason::ResponseTooLarge) => Outcome::TooLarge,
        CachePhase::Disabled(NoCacheReason::StorageError)
            if session.cache.exceeded_max_file_size() =>
        {
            Outcome::TooLarge
        }
        CachePhase::Disabled(NoCacheReason::StorageError) => Outcome::StorageError,
        _ => match error.map(Error::esource) {
            Some(ErrorSource::Upstream) => Outcome::Truncated,
            Some(ErrorSource::Downstream) => Outcome::ClientAbort,
            _ => Outcome::Other,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_its_label() {
        let all = [
            Outcome::Stored,
            Outcome::Purged,
            Outcome::Truncated,
            Outcome::TooLarge,
            Outcome::StorageError,
            Outcome::ClientAbort,
            Outcome::Other,
        ];
        let labels: Vec<_> = all.iter().map(|o| o.label()).collect();
        assert_eq!(labels, OUTCOMES);
    }
}
