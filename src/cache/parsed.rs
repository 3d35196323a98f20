//! The parsed form of a stored response's metadata, kept beside the serialised form in the
//! memory tier so that a hit does not deserialise it again.
//!
//! `CacheMeta::deserialize` (decompress the header blob, parse it, build the header maps) was
//! most of a memory-tier hit's cost. A `ParsedMeta` is built once, when the response is stored
//! or read back from the disk tier. It holds the header as a hit sends it (the stored fields,
//! then `Age`, `Accept-Ranges`, `Cache-Status` and `Connection`), so a hit clones it and
//! replaces values in place; pingora's path gets a `CacheMeta` rebuilt from it with those
//! removed. It is never written to disk.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::BufMut;
use http::header::{ACCEPT_RANGES, AGE, CONNECTION, CONTENT_LENGTH, DATE};
use http::{HeaderName, StatusCode};
use pingora_cache::CacheMeta;
use pingora_cache::key::HashBinary;
use pingora_http::ResponseHeader;

use super::vary::Vary;

/// The `Cache-Status` field (RFC 9211), which every response carries.
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

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
    /// The stored header followed by `Age`, `Accept-Ranges` (when `ranges`), `Cache-Status` and
    /// `Connection` with placeholder values. A clone is allocated at its exact size: appending the three
    /// fields to a clone of the stored header grew and rehashed its maps on every hit.
    hit_header: ResponseHeader,
    /// The hit's status line and fields as HTTP/1.1 writes them, up to the fields that change
    /// per response: the stored fields without `Date`, then `Accept-Ranges` (when `ranges`).
    /// A hit written straight to the client's socket appends `Date`, `Age`, `Cache-Status`,
    /// `Connection` and the blank line (`proxy::fast_hit`).
    wire_head: Box<[u8]>,
    ranges: bool,
    bytes: usize,
}

/// Fields a hit adds after the stored ones.
const HIT_FIELDS: usize = 4;

/// A copy of `stored` with room for `extra` more fields. A clone is allocated at its exact
/// size, so appending the hit's fields to one doubled its maps for the life of the entry.
fn copy_with_room(stored: &ResponseHeader, extra: usize) -> Option<ResponseHeader> {
    let size = Some(stored.headers.len() + extra);
    let mut copy = if stored.has_case() {
        ResponseHeader::build(stored.status, size).ok()?
    } else {
        ResponseHeader::build_no_case(stored.status, size).ok()?
    };
    copy.set_version(stored.version);
    // No reason phrase of the origin's own (the ERP's "NOT FOUND"): the stored form keeps only
    // the status's standard one, so a copy captured before storing and one read back from the
    // disk tier send the same status line.
    if stored.has_case() {
        for (name, value) in stored.case_header_iter() {
            copy.append_header(name.clone(), value.clone()).ok()?;
        }
    } else {
        for (name, value) in &stored.headers {
            copy.append_header(name.clone(), value.clone()).ok()?;
        }
    }
    Some(copy)
}

/// The status line and the fields of `stored` as pingora's HTTP/1 writer sends them on a hit
/// (HTTP/1.1, the names as the ERP wrote them), without `Date`, which is the time of sending,
/// and with `Accept-Ranges` when ranges are offered. No final blank line.
fn wire_head(stored: &ResponseHeader, ranges: bool) -> Box<[u8]> {
    let mut buf = Vec::with_capacity(256);
    buf.put_slice(b"HTTP/1.1 ");
    buf.put_slice(stored.status.as_str().as_bytes());
    buf.put_u8(b' ');
    // The standard reason, as in `copy_with_room`.
    if let Some(reason) = stored.status.canonical_reason() {
        buf.put_slice(reason.as_bytes());
    }
    buf.put_slice(b"\r\n");
    let mut field = |name: &[u8], value: &[u8]| {
        buf.put_slice(name);
        buf.put_slice(b": ");
        buf.put_slice(value);
        buf.put_slice(b"\r\n");
    };
    // In the stored order, names as the ERP wrote them when their case was kept.
    if stored.has_case() {
        for (name, value) in stored.case_header_iter() {
            if !name.as_slice().eq_ignore_ascii_case(b"date") {
                field(name.as_slice(), value.as_bytes());
            }
        }
    } else {
        for (name, value) in stored.headers.iter().filter(|(n, _)| **n != DATE) {
            field(name.as_str().as_bytes(), value.as_bytes());
        }
    }
    if ranges {
        field(b"Accept-Ranges", b"bytes");
    }
    buf.into_boxed_slice()
}

impl ParsedMeta {
    /// The parsed copy of `meta`. `None` if the stored header already has one of the fields a
    /// hit adds (removing the hit's copy would lose the stored one): that response keeps the
    /// serialised path.
    pub fn capture(meta: &CacheMeta) -> Option<Arc<ParsedMeta>> {
        let created = meta.created();
        let stored = meta.headers();
        if [AGE, ACCEPT_RANGES, CACHE_STATUS, CONNECTION]
            .iter()
            .any(|name| stored.contains_key(name))
        {
            return None;
        }
        let mut hit_header = copy_with_room(meta.response_header(), HIT_FIELDS)?;
        // pingora's range filter offers ranges on a 200 whose length is known.
        let ranges = hit_header.status == StatusCode::OK && stored.contains_key(CONTENT_LENGTH);
        hit_header.append_header(AGE, 0).ok()?;
        if ranges {
            hit_header.append_header(ACCEPT_RANGES, "bytes").ok()?;
        }
        hit_header.append_header(CACHE_STATUS, "").ok()?;
        // pingora's HTTP/1 writer sets `Connection` on every response it sends; a placeholder
        // makes that a replacement too.
        hit_header.append_header(CONNECTION, "keep-alive").ok()?;
        let wire_head = wire_head(meta.response_header(), ranges);
        // Per field: a bucket in the value map and one in the name-case map, an index slot,
        // and the heap copies of the value and the name as written (about 200 bytes of
        // structure); per header: the two maps' fixed parts. Then the wire form.
        let bytes = 256
            + wire_head.len()
            + hit_header
                .headers
                .iter()
                .map(|(n, v)| 200 + n.as_str().len() + v.len())
                .sum::<usize>();
        Some(Arc::new(ParsedMeta {
            fresh_until: meta.fresh_until(),
            created,
            updated: meta.updated(),
            provenance: meta.provenance(),
            stale_while_revalidate_sec: meta.stale_while_revalidate_sec(),
            stale_if_error_sec: meta.stale_if_error_sec(),
            variance: meta.variance(),
            vary: match Vary::of(stored) {
                Vary::Fields(fields) => fields,
                // Never stored (`policy`); should one be, pingora's path decides.
                Vary::Star => return None,
            },
            epoch_override: meta.epoch_override(),
            hit_header,
            wire_head,
            ranges,
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
        let mut header = self.hit_header.clone();
        // They were appended after the stored fields, which their removal leaves as they
        // were (a header map removes by swapping its last field into the gap).
        header.remove_header(&CONNECTION);
        header.remove_header(&CACHE_STATUS);
        if self.ranges {
            header.remove_header(&ACCEPT_RANGES);
        }
        header.remove_header(&AGE);
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

    /// The header a hit sends, with placeholder `Age` and `Cache-Status` values to replace.
    pub fn hit_header(&self) -> &ResponseHeader {
        &self.hit_header
    }

    /// The start of a hit's header on the wire: status line and fields, up to `Date`.
    pub fn wire_head(&self) -> &[u8] {
        &self.wire_head
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

    #[test]
    fn a_hit_header_appends_what_a_hit_adds() {
        let parsed = ParsedMeta::capture(&meta()).expect("captured");
        let h = parsed.hit_header();
        let all = names(h);
        assert_eq!(
            all[all.len() - 4..],
            ["age", "accept-ranges", "cache-status", "connection"],
            "appended after the stored fields"
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
    fn the_wire_head_is_the_stored_header_as_written_without_its_date() {
        let mut fields = vec![("Date", "Mon, 01 Jan 2024 00:00:00 GMT")];
        fields.extend([("content-type", "application/json"), ("ETag", "\"abc\"")]);
        fields.push(("Content-Length", "42"));
        let parsed = ParsedMeta::capture(&meta_with(200, &fields)).expect("captured");
        assert_eq!(
            String::from_utf8_lossy(parsed.wire_head()),
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nETag: \"abc\"\r\n\
             Content-Length: 42\r\nAccept-Ranges: bytes\r\n"
        );
        let gone = ParsedMeta::capture(&meta_with(410, &[("content-length", "0")])).expect("410");
        assert_eq!(
            String::from_utf8_lossy(gone.wire_head()),
            "HTTP/1.1 410 Gone\r\ncontent-length: 0\r\n",
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
        assert_eq!(
            String::from_utf8_lossy(before.wire_head()),
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n"
        );
        assert_eq!(
            before.wire_head(),
            after.wire_head(),
            "memory and disk agree"
        );
        assert_eq!(
            before.hit_header().get_reason_phrase(),
            after.hit_header().get_reason_phrase()
        );
    }

    #[test]
    fn a_stored_field_a_hit_would_replace_keeps_the_serialised_path() {
        for field in ["age", "Accept-Ranges", "cache-status", "connection"] {
            let m = meta_with(200, &[("content-length", "1"), (field, "1")]);
            assert!(ParsedMeta::capture(&m).is_none(), "{field}");
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
