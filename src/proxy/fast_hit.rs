//! Fresh hits in the memory tier, answered in `request_filter` before pingora's cache runs.
//!
//! pingora's hit path (the `HttpCache` state machine, a lookup future, a `CacheMeta` rebuilt
//! from the stored one, a second header copy, the hit, range and conditional filters) was most
//! of a hit's cost. The commonest request of all needs none of it: a GET or HEAD, without
//! `Range`, for a variant that is fresh and already in memory. That request is answered here
//! from the stored header and the stored `Bytes`, with the same rules as pingora's path:
//! the same variant choice (primary slot, then the coding's slot, which must be no older than
//! the primary), the same freshness test, the same `304` test and the same headers.
//!
//! Everything else falls through to pingora unchanged: entries only on disk, stale ones
//! (stale-while-revalidate needs the cache lock), ranged requests, the warmer's requests and
//! banned entries.

use std::time::SystemTime;

use bytes::Bytes;
use foyer::HybridCacheEntry;
use http::{StatusCode, header};
use pingora_cache::key::{CacheHashKey, HashBinary};
use pingora_cache::{CacheKey, CachePhase};
use pingora_core::protocols::http::conditional_filter;
use pingora_error::Result;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

use super::cache_status;
use crate::cache::HybridStorage;
use crate::cache::object::CachedObject;
use crate::cache::parsed::{CACHE_STATUS, ParsedMeta};

/// A stored variant found in the memory tier.
pub type Entry = HybridCacheEntry<u128, CachedObject>;

/// What a request answered here was served from, for the logging phase.
#[derive(Debug, Clone, Copy)]
pub struct Served {
    /// When the served response was stored.
    pub created: SystemTime,
    /// When it stops being fresh.
    pub fresh_until: SystemTime,
}

/// Whether the request may be answered here at all: byte ranges need pingora's range filter.
pub fn applies(req: &RequestHeader) -> bool {
    !req.headers.contains_key(header::RANGE)
}

/// The stored variant `key` + `variance` names, if the memory tier holds it with parsed
/// metadata. Looks in the primary slot, then in the variant's own slot, as pingora's vary
/// lookup does. `key` is left as it was given (without a variance).
pub fn find(
    storage: &HybridStorage,
    key: &mut CacheKey,
    variance: Option<HashBinary>,
) -> Option<Entry> {
    let primary = storage.memory_entry(u128::from_be_bytes(key.primary_bin()))?;
    let primary_meta = parsed(&primary)?;
    if primary_meta.variance() == variance {
        return Some(primary);
    }
    let variance = variance?;
    // The variant's slot is pingora's own `combined_bin` of the key with that variance.
    key.set_variance_key(variance);
    let slot = key.combined_bin();
    key.remove_variance_key();
    let variant = storage.memory_entry(u128::from_be_bytes(slot))?;
    let variant_meta = parsed(&variant)?;
    // Purging a key removes only its primary slot; its replacement's provenance (its creation,
    // or that of the lineage it refreshed) is the tombstone of every older variant (pingora's
    // `valid_after`).
    (variant_meta.variance() == Some(variance)
        && variant_meta.created() >= primary_meta.provenance())
    .then_some(variant)
}

/// The parsed metadata of a memory-tier entry.
pub fn parsed(entry: &Entry) -> Option<&ParsedMeta> {
    entry.value().parsed.as_deref()
}

/// Whether `meta` may be served without asking anyone, at `now` (pingora's `is_fresh`).
pub fn is_fresh(meta: &ParsedMeta, now: SystemTime) -> bool {
    meta.fresh_until() >= now
}

impl Served {
    /// The record of serving `meta`.
    pub fn of(meta: &ParsedMeta) -> Self {
        Served {
            created: meta.created(),
            fresh_until: meta.fresh_until(),
        }
    }
}

/// Writes the stored response `meta` + `body` (or `304 Not Modified` for a matching
/// validator) to the client.
pub async fn serve(
    session: &mut Session,
    meta: &ParsedMeta,
    body: &Bytes,
    now: SystemTime,
) -> Result<()> {
    let resp = hit_header(session.req_header(), meta, now)?;
    // The same statuses and method pingora's hit path sends without a body.
    let header_only = matches!(
        resp.status,
        StatusCode::NOT_MODIFIED | StatusCode::NO_CONTENT
    ) || session.req_header().method == http::Method::HEAD;
    session.write_response_header(resp, header_only).await?;
    if !header_only {
        session
            .write_response_body(Some(Bytes::clone(body)), true)
            .await?;
    }
    Ok(())
}

/// The header a hit sends: the stored one with its `Age` and `Cache-Status`, turned into a
/// `304` when the request's validator matches (pingora's own test).
fn hit_header(
    req: &RequestHeader,
    meta: &ParsedMeta,
    now: SystemTime,
) -> Result<Box<ResponseHeader>> {
    let mut resp = Box::new(meta.hit_header().clone());
    resp.set_version(http::Version::HTTP_11);
    let age = now
        .duration_since(meta.epoch())
        .unwrap_or_default()
        .as_secs();
    resp.insert_header(header::AGE, age)?;
    if conditional_filter::not_modified_filter(req, &resp) {
        conditional_filter::to_304(&mut resp);
    }
    let status =
        cache_status::header_value(&CachePhase::Hit, true, Some(meta.fresh_until()), false);
    resp.insert_header(CACHE_STATUS, status)?;
    Ok(resp)
}
