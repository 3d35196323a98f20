//! The parsed form of a stored response's metadata, kept beside the serialised form in the
//! memory tier so that a hit does not deserialise it again.
//!
//! `CacheMeta::deserialize` (decompress the header blob, parse it, build the header maps) was
//! most of a memory-tier hit's cost. A `ParsedMeta` is built once, when the response is stored,
//! and a hit rebuilds its `CacheMeta` from it with `CacheMeta::new` and a clone of the header.
//! It is never written to disk: an entry read back from the disk tier has none and is
//! deserialised as before.

use std::sync::Arc;
use std::time::SystemTime;

use pingora_cache::CacheMeta;
use pingora_cache::key::HashBinary;
use pingora_http::ResponseHeader;

/// Everything `CacheMeta::new` and its public setters need to reproduce a stored meta.
#[derive(Debug)]
pub struct ParsedMeta {
    fresh_until: SystemTime,
    created: SystemTime,
    stale_while_revalidate_sec: u32,
    stale_if_error_sec: u32,
    variance: Option<HashBinary>,
    epoch_override: Option<SystemTime>,
    header: ResponseHeader,
    bytes: usize,
}

impl ParsedMeta {
    /// The parsed copy of `meta`, if `CacheMeta::new` reproduces it exactly: that constructor
    /// sets `updated` and `provenance` to `created`, so a revalidated meta (updated later than
    /// created, or provenance carried over from an older object) keeps the serialised path.
    pub fn capture(meta: &CacheMeta) -> Option<Arc<ParsedMeta>> {
        let created = meta.created();
        if meta.updated() != created || meta.provenance() != created {
            return None;
        }
        let header = meta.response_header_copy();
        let bytes = 256
            + header
                .headers
                .iter()
                .map(|(n, v)| 2 * (n.as_str().len() + v.len()) + 32)
                .sum::<usize>();
        Some(Arc::new(ParsedMeta {
            fresh_until: meta.fresh_until(),
            created,
            stale_while_revalidate_sec: meta.stale_while_revalidate_sec(),
            stale_if_error_sec: meta.stale_if_error_sec(),
            variance: meta.variance(),
            epoch_override: meta.epoch_override(),
            header,
            bytes,
        }))
    }

    /// A `CacheMeta` equal to the one captured.
    pub fn rebuild(&self) -> CacheMeta {
        let mut meta = CacheMeta::new(
            self.fresh_until,
            self.created,
            self.stale_while_revalidate_sec,
            self.stale_if_error_sec,
            self.header.clone(),
        );
        if let Some(v) = self.variance {
            meta.set_variance(v);
        }
        if let Some(e) = self.epoch_override {
            meta.set_epoch_override(e);
        }
        meta
    }

    /// Rough bytes it occupies (header maps with their allocations), for the memory tier's weight.
    pub fn weight(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn meta() -> CacheMeta {
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut header = ResponseHeader::build(200, None).expect("header");
        header
            .insert_header("content-type", "application/json")
            .expect("insert");
        header.insert_header("ETag", "\"abc\"").expect("insert");
        let mut meta = CacheMeta::new(created + Duration::from_secs(60), created, 30, 600, header);
        meta.set_variance(*b"0123456789abcdef");
        meta
    }

    #[test]
    fn rebuild_equals_a_deserialised_copy() {
        let original = meta();
        let (internal, header) = original.serialize().expect("serialize");
        let parsed = ParsedMeta::capture(&original).expect("fresh meta is captured");
        let rebuilt = parsed.rebuild();
        assert_eq!(
            rebuilt.serialize().expect("serialize"),
            (internal.clone(), header.clone()),
            "same bytes as the stored form"
        );
        let read_back = CacheMeta::deserialize(&internal, &header).expect("deserialize");
        assert_eq!(rebuilt.fresh_until(), read_back.fresh_until());
        assert_eq!(rebuilt.variance(), read_back.variance());
        assert_eq!(
            rebuilt.headers().get("etag"),
            read_back.headers().get("etag")
        );
        assert!(parsed.weight() > 256);
    }

    #[test]
    fn revalidated_meta_is_not_captured() {
        let mut m = meta();
        let created = m.created();
        m.update_freshness(created + Duration::from_secs(500), 30, 600);
        assert!(ParsedMeta::capture(&m).is_none());
    }
}
