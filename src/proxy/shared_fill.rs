//! Cluster mode's last step before the ERP: one fill per key for the whole cluster.
//!
//! It runs where a miss (or an expired copy) is about to go to the ERP, holding its replica's
//! cache lock, so within a replica only this request gets here and the others wait for what it
//! stores. It asks Redis for the key's fill lease (`cluster::lease`). The replica that gets it
//! goes to the ERP; its fill reaches the shared tier and releases the lease with it, and the
//! request releases the lease when it ends, whatever happened (`Proxy::logging`). A replica that
//! does not get it waits, at most the lease time, for the holder's object; a usable one (fresh,
//! newer than the copy it replaces, older than no ban, the variant this request selects) is
//! stored in the local tiers, so the requests waiting on the cache lock find it, and served.
//! Anything else (nothing stored, lease expired, Redis failing) sends this replica to the ERP on
//! its own: the lease saves the ERP work, never holds a request up past its time.

use std::sync::Arc;
use std::time::SystemTime;

use pingora_cache::key::CacheHashKey;
use pingora_cache::{CacheMeta, CachePhase};
use pingora_error::Result;
use pingora_proxy::Session;

use super::{Proxy, RequestCtx, fast_hit, https};
use crate::cache::object::CachedObject;
use crate::cache::parsed::ParsedMeta;
use crate::cache::vary;
use crate::cluster::lease::Acquired;

impl Proxy {
    /// Takes the key's fill lease (the request then goes to the ERP) or serves the fill of the
    /// replica that holds it. `true` when the response was written here.
    pub(super) async fn shared_fill(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let Some(tier) = self.storage.shared() else {
            return Ok(false);
        };
        if !ctx.cacheable
            || ctx.lease.is_some()
            || !matches!(
                session.cache.phase(),
                CachePhase::Miss | CachePhase::Expired
            )
        {
            return Ok(false);
        }
        let key = session.cache.cache_key();
        let slot = u128::from_be_bytes(key.combined_bin());
        let primary = u128::from_be_bytes(key.primary_bin());
        let at = (slot, primary);
        let found = match tier.acquire(slot, primary).await {
            Acquired::Won(lease) => {
                ctx.lease = Some(lease);
                return Ok(false);
            }
            Acquired::Unavailable => return Ok(false),
            Acquired::Found(object) => match self.usable(session, ctx, &object) {
                Some(meta) => {
                    tier.count_lookup("hit");
                    return self.serve_shared(session, ctx, at, object, meta).await;
                }
                // Older than a ban, or the copy this request is to replace: the key needs a
                // fill all the same.
                None => match tier.claim(primary).await {
                    Acquired::Won(lease) => {
                        ctx.lease = Some(lease);
                        return Ok(false);
                    }
                    Acquired::Lost => tier.wait(slot, primary).await,
                    Acquired::Found(_) | Acquired::Unavailable => return Ok(false),
                },
            },
            Acquired::Lost => tier.wait(slot, primary).await,
        };
        let usable = found.and_then(|o| Some((self.usable(session, ctx, &o)?, o)));
        match usable {
            Some((meta, object)) => {
                tier.count_lease("waited");
                self.serve_shared(session, ctx, at, object, meta).await
            }
            None => {
                tier.count_lease("expired");
                Ok(false)
            }
        }
    }

    /// The parsed metadata of `object` if this request may be answered with it.
    fn usable(
        &self,
        session: &Session,
        ctx: &RequestCtx,
        object: &CachedObject,
    ) -> Option<Arc<ParsedMeta>> {
        let meta = object.parsed.clone()?;
        let now = SystemTime::now();
        if !fast_hit::is_fresh(&meta, now) {
            return None;
        }
        // An expired copy (or the one a warm refresh replaces) gives way to a newer one only.
        if let Some(replacing) = session.cache.maybe_cache_meta().map(CacheMeta::fresh_until)
            && meta.fresh_until() <= replacing
        {
            return None;
        }
        let req = session.req_header();
        if self.is_banned(req.uri.path(), ctx, meta.created(), meta.hit_header()) {
            return None;
        }
        // The variant this request selects, as pingora's vary lookup would.
        let want = match session.cache.cache_key().variance_bin() {
            Some(v) => Some(v),
            None => vary::variance(
                ctx.coding,
                ctx.config.cache.compression.enabled,
                meta.vary(),
                &req.headers,
            ),
        };
        (meta.variance() == want).then_some(meta)
    }

    /// Stores `object` from the shared tier in the local `slot` of the key `primary` and
    /// answers with it; `false` (nothing written) if a purge here since it was made refuses it.
    async fn serve_shared(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        (slot, primary): (u128, u128),
        object: CachedObject,
        meta: Arc<ParsedMeta>,
    ) -> Result<bool> {
        if !self.storage.adopt(slot, primary, &object) {
            return Ok(false);
        }
        let body = object.body.clone();
        ctx.served = Some(fast_hit::Served::of(&meta));
        let hsts = https::hsts(session, &ctx.config);
        fast_hit::write_through_session(session, &meta, &body, SystemTime::now(), hsts.as_deref())
            .await?;
        Ok(true)
    }
}
