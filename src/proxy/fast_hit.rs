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
//!
//! On a plain HTTP/1 connection the response is written straight to the socket
//! (`socket_write`): the stored wire form of the header (`cache::hit_head`, the bytes pingora's
//! writer would send) with this response's `Date`, `Age`, `Cache-Status` and `Connection`
//! filled in, and the body, in one `writev`; a body kept in a sealed file
//! (`cache::sealed_body`) follows the header with `sendfile` instead, without a copy. A `304`,
//! TLS and HTTP/2 go through pingora's writer.

use std::io::{IoSlice, Write};
use std::time::SystemTime;

use bytes::Bytes;
use foyer::HybridCacheEntry;
use http::{HeaderMap, StatusCode, header};
use pingora_cache::key::{CacheHashKey, HashBinary};
use pingora_cache::{CacheKey, CachePhase};
use pingora_core::protocols::http::{conditional_filter, date};
use pingora_error::Result;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

use super::cache_status::{self, FreshHit};
use super::socket_write;
use crate::cache::HybridStorage;
use crate::cache::encoding::Coding;
use crate::cache::hit_head::{CACHE_STATUS, Slot};
use crate::cache::object::CachedObject;
use crate::cache::parsed::ParsedMeta;
use crate::cache::vary;

/// A stored variant found in the memory tier.
pub type Entry = HybridCacheEntry<u128, CachedObject>;

/// What a request answered here was served from, for the logging phase.
#[derive(Debug, Clone, Copy)]
pub struct Served {
    /// When the served response was stored.
    pub created: SystemTime,
    /// When it stops being fresh.
    pub fresh_until: SystemTime,
    /// Set when the response was written straight to the socket, which pingora's session does
    /// not see.
    pub sent: Option<Sent>,
}

/// A response written straight to the client's socket.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// Its status.
    pub status: u16,
    /// Body bytes written (fewer than the body's length if the client went away).
    pub body_bytes: usize,
}

/// Whether the request may be answered here at all: byte ranges need pingora's range filter.
pub fn applies(req: &RequestHeader) -> bool {
    !req.headers.contains_key(header::RANGE)
}

/// What selects a stored variant for a request (`vary::variance`'s inputs).
pub struct Selector<'a> {
    /// The coding the request will be served in.
    pub coding: Coding,
    /// Whether stored bodies are compressed (one variant per coding).
    pub compression: bool,
    /// The request's fields, for the stored response's `Vary`.
    pub req: &'a HeaderMap,
}

/// The stored variant of `key` this request selects, if the memory tier holds it with parsed
/// metadata. Looks in the primary slot, then in the variant's own slot, as pingora's vary
/// lookup does; the primary's `Vary` says which request fields select the variant. `key` is
/// left as it was given (without a variance).
pub fn find(storage: &HybridStorage, key: &mut CacheKey, selector: &Selector<'_>) -> Option<Entry> {
    let primary = storage.memory_entry(u128::from_be_bytes(key.primary_bin()))?;
    let primary_meta = parsed(&primary)?;
    let variance = vary::variance(
        selector.coding,
        selector.compression,
        primary_meta.vary(),
        selector.req,
    );
    if primary_meta.variance() == variance {
        return Some(primary);
    }
    let variance = variance?;
    let variant = storage.memory_entry(variant_slot(key, variance))?;
    let variant_meta = parsed(&variant)?;
    // Purging a key removes only its primary slot; its replacement's provenance (its creation,
    // or that of the lineage it refreshed) is the tombstone of every older variant (pingora's
    // `valid_after`).
    (variant_meta.variance() == Some(variance)
        && variant_meta.created() >= primary_meta.provenance())
    .then_some(variant)
}

/// The storage slot of `key`'s variant with `variance`: pingora's own `combined_bin` of the key
/// with that variance. `key` is left as it was given (without a variance).
pub fn variant_slot(key: &mut CacheKey, variance: HashBinary) -> u128 {
    key.set_variance_key(variance);
    let slot = u128::from_be_bytes(key.combined_bin());
    key.remove_variance_key();
    slot
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
            sent: None,
        }
    }
}

/// Writes the stored response `meta` + `body` (or `304 Not Modified` for a matching
/// validator) to the client, with `hsts` as `Strict-Transport-Security` if given (only ever on
/// TLS, which never takes the socket path). Returns what was sent when it went straight to
/// the socket.
pub async fn serve(
    session: &mut Session,
    meta: &ParsedMeta,
    object: &CachedObject,
    now: SystemTime,
    hsts: Option<&str>,
) -> Result<Option<Sent>> {
    let body = &object.body;
    let req = session.req_header();
    if !conditional_filter::not_modified_filter(req, meta.hit_header()) {
        let header_only =
            req.method == http::Method::HEAD || meta.hit_header().status == StatusCode::NO_CONTENT;
        let direct = match socket_write::client_socket(session) {
            Some(socket) => {
                let head = wire_header(meta, now, socket.keepalive());
                let body: &[u8] = if header_only { &[] } else { body };
                let (written, result) = match object.sealed.as_deref() {
                    Some(sealed) if !header_only => socket.write_sealed(&head, sealed).await,
                    _ => {
                        let mut parts = [IoSlice::new(&head), IoSlice::new(body)];
                        let parts = if body.is_empty() {
                            &mut parts[..1]
                        } else {
                            &mut parts[..]
                        };
                        socket.write_all(parts).await
                    }
                };
                let sent = Sent {
                    status: meta.hit_header().status.as_u16(),
                    body_bytes: written.saturating_sub(head.len()),
                };
                Some((sent, result))
            }
            None => None,
        };
        if let Some((sent, result)) = direct {
            if let Err(e) = result {
                // The client is gone or broken: nothing more can be said on this connection.
                tracing::debug!(error = %e, "writing a hit to the client failed");
                session.set_keepalive(None);
            }
            return Ok(Some(sent));
        }
    }
    write_through_session(session, meta, body, now, hsts).await?;
    Ok(None)
}

/// Writes the stored response `meta` + `body` (or `304`) with pingora's writer, which then
/// knows a response was sent (`Session::response_written`).
pub async fn write_through_session(
    session: &mut Session,
    meta: &ParsedMeta,
    body: &Bytes,
    now: SystemTime,
    hsts: Option<&str>,
) -> Result<()> {
    let mut resp = hit_header(session.req_header(), meta, now)?;
    if let Some(hsts) = hsts {
        resp.insert_header(super::https::HSTS, hsts)?;
    }
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

/// A hit's header on the wire: the stored head with this response's values, as pingora's
/// writer would send them (`hit_head`).
fn wire_header(meta: &ParsedMeta, now: SystemTime, keepalive: bool) -> Vec<u8> {
    let head = meta.wire_head();
    let mut buf = Vec::with_capacity(head.len() + 96);
    let age = now
        .duration_since(meta.epoch())
        .unwrap_or_default()
        .as_secs();
    let status = FreshHit {
        fresh_until: meta.fresh_until(),
        now,
    };
    head.write(&mut buf, |slot, buf| {
        // Writing to a `Vec` cannot fail.
        let _ = match slot {
            Slot::Age => write!(buf, "{age}"),
            Slot::CacheStatus => write!(buf, "{status}"),
            Slot::Date => buf.write_all(date::get_cached_date().as_bytes()),
            Slot::Connection => buf.write_all(if keepalive { b"keep-alive" } else { b"close" }),
        };
    });
    buf
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
    let status = cache_status::header_value(
        &CachePhase::Hit,
        true,
        Some(meta.fresh_until()),
        false,
        false,
    );
    resp.insert_header(CACHE_STATUS, status)?;
    Ok(resp)
}
