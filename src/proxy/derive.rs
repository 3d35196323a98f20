//! A request for a coding the cache does not hold, answered from another coding's fresh copy of
//! the same response instead of from the ERP.
//!
//! Each coding is a stored variant of its own (`cache::encoding`). Before this, every coding a
//! client asked for cost the ERP one more computation of the same answer: warming stored one
//! coding and the first client asking for another waited on a forecast again; two browsers with
//! different `Accept-Encoding` doubled the ERP's work. Now, when the variant a request selects
//! is missing or expired but a sibling (same URL and `Vary` selection, another coding) is fresh,
//! the sibling's bytes are recoded (`cache::transcode`), stored as the missing variant with the
//! sibling's lifetime, and served: one ERP computation per key, whatever the codings.
//!
//! It runs where a request is about to go to the ERP, holding the cache lock of its variant, so
//! concurrent requests for it wait and then find what was stored.

use std::time::SystemTime;

use pingora_cache::key::CacheHashKey;
use pingora_cache::storage::Storage;
use pingora_cache::{CacheKey, CacheMeta};
use pingora_error::Result;
use pingora_http::RequestHeader;

use super::fast_hit::{self, Entry};
use crate::cache::HybridStorage;
use crate::cache::encoding::Coding;
use crate::cache::parsed::ParsedMeta;
use crate::cache::policy;
use crate::cache::transcode;
use crate::cache::vary;
use crate::config::CachePolicy;

/// What a derived variant is made with.
pub struct Recipe<'a> {
    /// The coding the request is served in.
    pub want: Coding,
    /// The compression level of the route's configuration.
    pub level: u32,
    /// The largest body the cache stores.
    pub max_bytes: usize,
    /// The request's route's cache policy (what the storage is told, by status).
    pub policy: &'a CachePolicy,
}

/// Stores the variant `key` selects for `req` in `recipe.want`, made from a fresh sibling, and
/// returns it. `None` when there is no usable sibling: none fresh, none newer than `stale` (the
/// variant's own expired copy, when there is one), or one `banned` says a purge covers.
pub async fn variant(
    storage: &'static HybridStorage,
    key: &CacheKey,
    req: &RequestHeader,
    recipe: &Recipe<'_>,
    stale: Option<SystemTime>,
    banned: impl Fn(&ParsedMeta) -> bool,
) -> Result<Option<Entry>> {
    let mut key = key.clone();
    key.remove_variance_key();
    let Some(primary) = storage
        .entry(u128::from_be_bytes(key.primary_bin()))
        .await?
    else {
        return Ok(None);
    };
    let Some(first) = primary.value().parsed.clone() else {
        return Ok(None);
    };
    let now = SystemTime::now();
    // A variant's own slot; `None` for the variant the primary slot holds.
    let slot_of = |key: &mut CacheKey, variance| {
        (first.variance() != Some(variance)).then(|| fast_hit::variant_slot(key, variance))
    };
    // Identity first: it needs no decoding.
    for from in Coding::ALL.into_iter().filter(|c| *c != recipe.want) {
        // Compression is on here, so every coding has a variance.
        let Some(variance) = vary::variance(from, true, first.vary(), &req.headers) else {
            continue;
        };
        let sibling = match slot_of(&mut key, variance) {
            None => primary.clone(),
            Some(slot) => match storage.entry(slot).await? {
                Some(entry) => entry,
                None => continue,
            },
        };
        let Some(meta) = sibling.value().parsed.clone() else {
            continue;
        };
        // The same checks as a hit's (`fast_hit::find`): its own slot, not older than the
        // primary's lineage, fresh, not purged; and newer than what it would replace.
        let usable = meta.variance() == Some(variance)
            && meta.created() >= first.provenance()
            && meta.fresh_until() >= now
            && stale.is_none_or(|s| meta.created() > s)
            && !banned(&meta);
        if !usable {
            continue;
        }
        let object = sibling.value();
        let mut stored = CacheMeta::deserialize(&object.meta_internal, &object.meta_header)?;
        let Some((header, body)) = transcode::recode(
            stored.response_header(),
            &object.body,
            recipe.want,
            recipe.level,
            recipe.max_bytes,
        )?
        else {
            continue;
        };
        let want_variance = vary::variance(recipe.want, true, first.vary(), &req.headers);
        let Some(want_variance) = want_variance else {
            return Ok(None);
        };
        let hints = policy::store_hints(recipe.policy, header.status.as_u16());
        *stored.response_header_mut() = header;
        stored.set_variance(want_variance);
        stored.extensions_mut().insert(hints);
        let slot = slot_of(&mut key, want_variance);
        if slot.is_some() {
            key.set_variance_key(want_variance);
        }
        let span = pingora_cache::trace::Span::inactive().handle();
        let mut miss = storage.get_miss_handler(&key, &stored, &span).await?;
        miss.write_body(body, true).await?;
        miss.finish().await?;
        return Ok(storage.memory_entry(u128::from_be_bytes(key.combined_bin())));
    }
    Ok(None)
}
