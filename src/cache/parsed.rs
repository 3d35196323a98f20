//! The parsed form of a stored response's metadata, kept beside the serialised form in the
//! memory tier so that a hit does not deserialise it again.
//!
//! `CacheMeta::deserialize` (decompress the header blob, parse it, build the header maps) was
//! most of a memory-tier hit's cost. A `ParsedMeta` is built once, when the response is stored
//! or read back from the disk tier. It holds the header as a hit sends it (`hit_head`), so a
//! hit clones it and replaces values in place, or writes its wire form; pingora's path gets a
//! `CacheMeta` rebuilt from it with the stored fields given back. It is never written to disk.

use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderName;
use pingora_cache::CacheMeta;
use pingora_cache::key::HashBinary;
use pingora_http::ResponseHeader;

use super::hit_head::{HitHead, WireHead};
use super::vary::Vary;

/// A stored response's metadata, parsed: what a hit needs, and what `CacheMeta::new` and its
/// public setters need to reproduce the stored meta.
#[derive(Debug)]
pub struct ParsedMeta {
    fresh_until: SystemTime,
    created: SystemTime,
    updated: SystemTime,
    provenance: SystemTime,
    stale_while_revalidate_sec: u32,
    stale_if_error_sec: u32,
    variance: Option<HashBinary>,
    /// The fields the stored response's `Vary` names: which request fields select a variant.
    vary: Box<[HeaderName]>,
    epoch_override: Option<SystemTime>,
    /// The header a hit sends, in both forms.
    hit: HitHead,
    bytes: usize,
}

impl ParsedMeta {
    /// The parsed copy of `meta`; `None` for a response only pingora's path can send (see
    /// `HitHead::of`), which keeps the serialised path.
    pub fn capture(meta: &CacheMeta) -> Option<Arc<ParsedMeta>> {
        let created = meta.created();
        let stored = meta.headers();
        let vary = match Vary::of(stored) {
            Vary::Fields(fields) => fields,
            // Never stored (`policy`); should one be, pingora's path decides.
            Vary::Star => return None,
        };
        let hit = HitHead::of(meta.response_header())?;
        // Per field: a bucket in the value map and one in the name-case map, an index slot,
        // and the heap copies of the value and the name as written (about 200 bytes of
        // structure); per header: the two maps' fixed parts. Then the wire form and the
        // displaced stored fields.
        let bytes = 256
            + hit.wire.len()
            + hit
                .header
                .headers
                .iter()
                .map(|(n, v)| 200 + n.as_str().len() + v.len())
                .sum::<usize>()
            + hit
                .displaced
                .iter()
                .map(|(n, v)| 64 + n.len() + v.len())
                .sum::<usize>();
        Some(Arc::new(ParsedMeta {
            fresh_until: meta.fresh_until(),
            created,
            updated: meta.updated(),
            provenance: meta.provenance(),
            stale_while_revalidate_sec: meta.stale_while_revalidate_sec(),
            stale_if_error_sec: meta.stale_if_error_sec(),
            variance: meta.variance(),
            vary,
            epoch_override: meta.epoch_override(),
            hit,
            bytes,
        }))
    }

    /// A `CacheMeta` equal to the one captured, if one can be made. `CacheMeta::new` sets
    /// `updated` and `provenance` to `created`, and neither has a public setter: a revalidated
    /// meta (updated later) or a refreshed one (provenance carried over from the copy it
    /// replaced) is deserialised from its stored form instead.
    pub fn rebuild(&self) -> Option<CacheMeta> {
        if self.updated != self.created || self.provenance != self.created {
            return None;
        }
        let mut header = self.hit.header.clone();
        self.hit.restore(&mut header)?;
        let mut meta = CacheMeta::new(
            self.fresh_until,
            self.created,
            self.stale_while_revalidate_sec,
            self.stale_if_error_sec,
            header,
        );
        if let Some(v) = self.variance {
            meta.set_variance(v);
        }
        if let Some(e) = self.epoch_override {
            meta.set_epoch_override(e);
        }
        Some(meta)
    }

    /// When the stored response stops being fresh.
    pub fn fresh_until(&self) -> SystemTime {
        self.fresh_until
    }

    /// When the response was stored.
    pub fn created(&self) -> SystemTime {
        self.created
    }

    /// The reference point of `Age` (`CacheMeta::epoch`: the override, else the last update).
    pub fn epoch(&self) -> SystemTime {
        self.epoch_override.unwrap_or(self.updated)
    }

    /// The start of this response's lineage (`CacheMeta::provenance`): variants stored before
    /// it are out of date.
    pub fn provenance(&self) -> SystemTime {
        self.provenance
    }

    /// The stored variant's variance, as in `CacheMeta::variance`.
    pub fn variance(&self) -> Option<HashBinary> {
        self.variance
    }

    /// The fields the stored response varies on.
    pub fn vary(&self) -> &[HeaderName] {
        &self.vary
    }

    /// The header a hit gives pingora's writer, with placeholder `Age` and `Cache-Status`
    /// values to replace.
    pub fn hit_header(&self) -> &ResponseHeader {
        &self.hit.header
    }

    /// A hit's header as the writer sends it, to fill in and write to the socket.
    pub fn wire_head(&self) -> &WireHead {
        &self.hit.wire
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

    fn meta_with(status: u16, fields: &[(&str, &str)]) -> CacheMeta {
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut header = ResponseHeader::build(status, None).expect("header");
        for (name, value) in fields {
            header
                .append_header(name.to_string(), *value)
                .expect("append");
        }
        let mut meta = CacheMeta::new(created + Duration::from_secs(60), created, 30, 600, header);
        meta.set_variance(*b"0123456789abcdef");
        meta
    }

    fn meta() -> CacheMeta {
        meta_with(
            200,
            &[
                ("content-type", "application/json"),
                ("Vary", "accept-encoding"),
                ("set-thing", "a"),
                ("set-thing", "b"),
                ("ETag", "\"abc\""),
                ("Content-Length", "42"),
            ],
        )
    }

    fn names(h: &ResponseHeader) -> Vec<String> {
        h.headers.keys().map(|k| k.as_str().to_owned()).collect()
    }

    fn wire(parsed: &ParsedMeta) -> String {
        let mut buf = Vec::new();
        parsed.wire_head().write(&mut buf, |slot, buf| {
            buf.extend_from_slice(format!("<{slot:?}>").as_bytes())
        });
        String::from_utf8(buf).expect("utf8")
    }

    #[test]
    fn a_hit_header_appends_what_a_hit_adds() {
        let parsed = ParsedMeta::capture(&meta()).expect("captured");
        let h = parsed.hit_header();
        let all = names(h);
        assert_eq!(
            all[all.len() - 3..],
            ["age", "accept-ranges", "cache-status"],
            "appended after the stored fields; the writer adds Date and Connection"
        );
        assert_eq!(h.headers.get("accept-ranges").expect("ranges"), "bytes");
        let redirect = ParsedMeta::capture(&meta_with(
            301,
            &[("location", "/x"), ("content-length", "0")],
        ))
        .expect("captured");
        assert!(
            !redirect.hit_header().headers.contains_key("accept-ranges"),
            "ranges are offered on a 200 only"
        );
        assert_eq!(
            redirect
                .rebuild()
                .expect("rebuilt")
                .serialize()
                .expect("serialize"),
            meta_with(301, &[("location", "/x"), ("content-length", "0")])
                .serialize()
                .expect("serialize")
        );
    }

    #[test]
    fn the_wire_head_replaces_the_stored_date_where_it_stands() {
        let mut fields = vec![("Date", "Mon, 01 Jan 2024 00:00:00 GMT")];
        fields.extend([("content-type", "application/json"), ("ETag", "\"abc\"")]);
        fields.push(("Content-Length", "42"));
        let parsed = ParsedMeta::capture(&meta_with(200, &fields)).expect("captured");
        assert_eq!(
            wire(&parsed),
            "HTTP/1.1 200 OK\r\nDate: <Date>\r\ncontent-type: application/json\r\n\
             ETag: \"abc\"\r\nContent-Length: 42\r\nAge: <Age>\r\nAccept-Ranges: bytes\r\n\
             cache-status: <CacheStatus>\r\nConnection: <Connection>\r\n\r\n"
        );
        let gone = ParsedMeta::capture(&meta_with(410, &[("content-length", "0")])).expect("410");
        assert_eq!(
            wire(&gone),
            "HTTP/1.1 410 Gone\r\ncontent-length: 0\r\nAge: <Age>\r\n\
             cache-status: <CacheStatus>\r\nDate: <Date>\r\nConnection: <Connection>\r\n\r\n",
            "ranges only on a 200"
        );
    }

    #[test]
    fn the_origin_reason_phrase_is_dropped_as_the_stored_form_drops_it() {
        let stored = meta_with(404, &[("content-length", "0")]);
        let mut header = stored.response_header().clone();
        header.set_reason_phrase(Some("NOT FOUND")).expect("reason");
        let original = CacheMeta::new(stored.fresh_until(), stored.created(), 30, 600, header);
        let (internal, header) = original.serialize().expect("serialize");
        let read_back = CacheMeta::deserialize(&internal, &header).expect("deserialize");
        let before = ParsedMeta::capture(&original).expect("captured");
        let after = ParsedMeta::capture(&read_back).expect("captured");
        assert!(
            wire(&before).starts_with("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n"),
            "{}",
            wire(&before)
        );
        assert_eq!(wire(&before), wire(&after), "memory and disk agree");
        assert_eq!(
            before.hit_header().get_reason_phrase(),
            after.hit_header().get_reason_phrase()
        );
    }

    #[test]
    fn a_stored_field_a_hit_sets_is_replaced_and_given_back_on_rebuild() {
        for field in ["age", "Accept-Ranges", "cache-status", "connection", "date"] {
            let m = meta_with(
                200,
                &[
                    (field, "stored-1"),
                    ("content-length", "1"),
                    (field, "stored-2"),
                    ("x", "y"),
                ],
            );
            let parsed = ParsedMeta::capture(&m).expect(field);
            let on_wire = wire(&parsed);
            assert!(
                !on_wire.contains("stored-"),
                "{field}: the stored values are not sent: {on_wire}"
            );
            assert_eq!(
                parsed
                    .rebuild()
                    .expect(field)
                    .serialize()
                    .expect("serialize"),
                m.serialize().expect("serialize"),
                "{field}: the stored header is given back whole"
            );
        }
    }

    #[test]
    fn rebuild_equals_a_deserialised_copy() {
        let original = meta();
        let (internal, header) = original.serialize().expect("serialize");
        let parsed = ParsedMeta::capture(&original).expect("fresh meta is captured");
        let rebuilt = parsed.rebuild().expect("a meta as stored is rebuilt");
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
    fn a_revalidated_meta_serves_hits_but_is_not_rebuilt() {
        let mut m = meta();
        let created = m.created();
        m.update_freshness(created + Duration::from_secs(500), 30, 600);
        let parsed = ParsedMeta::capture(&m).expect("captured for hits");
        assert_eq!(parsed.fresh_until(), created + Duration::from_secs(500));
        assert_eq!(
            parsed.epoch(),
            m.epoch(),
            "Age counts from the revalidation"
        );
        assert_eq!(parsed.provenance(), m.provenance());
        assert!(
            parsed.rebuild().is_none(),
            "CacheMeta::new cannot set `updated`: pingora's path deserialises it"
        );
    }
}
