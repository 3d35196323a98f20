//! The header a hit sends, made once per stored response in both forms it is sent in.
//!
//! pingora's hit path makes it from the stored header in a fixed order: `Age` (its
//! `cache_hit_header`), `Accept-Ranges: bytes` on a `200` with a length (its range filter),
//! `Cache-Status` (knitcache's `response_filter`), then its HTTP/1 writer sets `Date` and
//! `Connection`. Each is an insert: a field the stored header already has is replaced where it
//! stands, in the hit's spelling and without its repeats; a field it lacks is appended. The same
//! steps, taken here once per stored response, give
//! * `HitHead::header`: what pingora's writer is given for a hit answered from the memory tier
//!   (`proxy::fast_hit::write_through_session`), `Age` and `Cache-Status` as placeholders;
//! * `WireHead`: the bytes that writer makes of it, cut where the per-response values go, for
//!   hits written straight to the client's socket (`proxy::fast_hit`).
//!
//! So a response whose origin sent any of these fields (nginx, Apache and Flask's `send_file`
//! send `Accept-Ranges`) is served by either path, and both send the same bytes.

use bytes::{BufMut, Bytes};
use http::header::{ACCEPT_RANGES, AGE, CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{HeaderName, HeaderValue, StatusCode};
use pingora_http::{IntoCaseHeaderName, ResponseHeader};

/// The `Cache-Status` field (RFC 9211), which every response carries.
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// A value that changes from one response to the next, left out of a `WireHead`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// `Age`, seconds since the stored response's epoch.
    Age,
    /// `Cache-Status`, with the time to live left.
    CacheStatus,
    /// `Date`, the time of sending.
    Date,
    /// `Connection`: `keep-alive` or `close`.
    Connection,
}

impl Slot {
    /// The slot a field of this name fills, if any.
    fn of(name: &[u8]) -> Option<Slot> {
        [
            (AGE, Slot::Age),
            (CACHE_STATUS, Slot::CacheStatus),
            (DATE, Slot::Date),
            (CONNECTION, Slot::Connection),
        ]
        .into_iter()
        .find(|(n, _)| name.eq_ignore_ascii_case(n.as_str().as_bytes()))
        .map(|(_, slot)| slot)
    }
}

/// A hit's status line and fields as pingora's HTTP/1 writer sends them, without the values of
/// the four slots and without the final blank line.
#[derive(Debug, PartialEq, Eq)]
pub struct WireHead {
    bytes: Box<[u8]>,
    /// Where each slot's value goes, in the order of the bytes.
    slots: [(usize, Slot); 4],
}

impl WireHead {
    /// Appends the whole head to `buf`, `value` writing each slot's value, then the blank line.
    pub fn write(&self, buf: &mut Vec<u8>, mut value: impl FnMut(Slot, &mut Vec<u8>)) {
        let mut from = 0;
        for (at, slot) in self.slots {
            buf.extend_from_slice(&self.bytes[from..at]);
            value(slot, buf);
            from = at;
        }
        buf.extend_from_slice(&self.bytes[from..]);
        buf.extend_from_slice(b"\r\n");
    }

    /// Bytes it holds.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never true: a head has at least its status line.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// The header a hit of one stored response sends.
#[derive(Debug)]
pub struct HitHead {
    /// The stored header after the hit's own fields (before the writer's `Date` and
    /// `Connection`), with placeholder `Age` and `Cache-Status` values to replace.
    pub header: ResponseHeader,
    /// The same, as the writer sends it.
    pub wire: WireHead,
    /// Whether the hit offers byte ranges (and so sets `Accept-Ranges: bytes`).
    pub ranges: bool,
    /// The stored fields the hit's own replaced, as the stored header had them (the name as
    /// written, the value), so the stored header can be given back (`restore`).
    pub displaced: Box<[(Bytes, HeaderValue)]>,
}

/// The fields a hit sets before the writer does, in the order pingora sets them.
fn set_by_hit(ranges: bool) -> impl Iterator<Item = HeaderName> {
    [
        Some(AGE),
        ranges.then_some(ACCEPT_RANGES),
        Some(CACHE_STATUS),
    ]
    .into_iter()
    .flatten()
}

/// Whether pingora's range filter offers ranges on a hit of `stored`: a `200` whose
/// `Content-Length` is a number (knitcache's storage can seek, which the filter also needs).
fn offers_ranges(stored: &ResponseHeader) -> bool {
    stored.status == StatusCode::OK
        && stored
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| {
                std::str::from_utf8(v.as_bytes())
                    .ok()?
                    .parse::<usize>()
                    .ok()
            })
            .is_some()
}

/// The fields of `header` as pingora writes them: names as the origin wrote them when their
/// case was kept, else in pingora's title case.
fn fields(header: &ResponseHeader) -> Vec<(Bytes, &HeaderValue)> {
    if header.has_case() {
        header
            .case_header_iter()
            .map(|(name, value)| (Bytes::copy_from_slice(name.as_slice()), value))
            .collect()
    } else {
        header
            .headers
            .iter()
            .map(|(name, value)| {
                let titled = name.into_case_header_name();
                (Bytes::copy_from_slice(titled.as_slice()), value)
            })
            .collect()
    }
}

/// A copy of `stored` with room for `extra` more fields. A clone is allocated at its exact
/// size, so adding the hit's fields to one grew and rehashed its maps.
fn copy_with_room(stored: &ResponseHeader, extra: usize) -> Option<ResponseHeader> {
    let size = Some(stored.headers.len() + extra);
    let mut copy = if stored.has_case() {
        ResponseHeader::build(stored.status, size).ok()?
    } else {
        ResponseHeader::build_no_case(stored.status, size).ok()?
    };
    // As stored, so the stored header can be given back; every hit is sent as HTTP/1.1.
    copy.set_version(stored.version);
    // No reason phrase of the origin's own (the ERP's "NOT FOUND"): the stored form keeps only
    // the status's standard one, so a copy captured before storing and one read back from the
    // disk tier send the same status line.
    for (name, value) in fields(stored) {
        copy.append_header(name, value.clone()).ok()?;
    }
    Some(copy)
}

impl HitHead {
    /// The hit header of the stored header `stored`. `None` when a hit of it needs more than
    /// a header and the stored body: without a `Content-Length`, pingora sends the body
    /// chunked.
    pub fn of(stored: &ResponseHeader) -> Option<HitHead> {
        let bodiless =
            matches!(stored.status.as_u16(), 204 | 304) || stored.status.is_informational();
        if stored.headers.contains_key(TRANSFER_ENCODING)
            || !(bodiless || stored.headers.contains_key(CONTENT_LENGTH))
        {
            return None;
        }
        let ranges = offers_ranges(stored);
        let displaced: Box<[(Bytes, HeaderValue)]> = set_by_hit(ranges)
            .flat_map(|name| {
                fields(stored)
                    .into_iter()
                    .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_str().as_bytes()))
                    .map(|(n, v)| (n, v.clone()))
            })
            .collect();
        // Room for the hit's fields and the writer's two.
        let mut header = copy_with_room(stored, 5)?;
        for name in set_by_hit(ranges) {
            let placeholder = if name == ACCEPT_RANGES { "bytes" } else { "0" };
            header.insert_header(name, placeholder).ok()?;
        }
        let wire = wire_head(&header)?;
        Some(HitHead {
            header,
            wire,
            ranges,
            displaced,
        })
    }

    /// Gives `header` (a copy of `self.header`) back the stored header's fields: the hit's
    /// fields that were appended are removed, and the displaced ones put back where they stood.
    pub fn restore(&self, header: &mut ResponseHeader) -> Option<()> {
        // Last appended first: each is then the last field, and a header map removes by
        // moving its last field into the gap.
        let names: Vec<HeaderName> = set_by_hit(self.ranges).collect();
        for name in names.iter().rev() {
            if !self.displaced_has(name) {
                header.remove_header(name);
            }
        }
        for name in &names {
            let mut stored = self
                .displaced
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_str().as_bytes()));
            if let Some((n, v)) = stored.next() {
                header.insert_header(n.clone(), v.clone()).ok()?;
            }
            for (n, v) in stored {
                header.append_header(n.clone(), v.clone()).ok()?;
            }
        }
        Some(())
    }

    fn displaced_has(&self, name: &HeaderName) -> bool {
        self.displaced
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name.as_str().as_bytes()))
    }
}

/// `header` as pingora's HTTP/1 writer sends it, after it set `Date` and `Connection`.
fn wire_head(header: &ResponseHeader) -> Option<WireHead> {
    let mut sent = header.clone();
    sent.insert_header(DATE, "").ok()?;
    sent.insert_header(CONNECTION, "").ok()?;
    let mut buf = Vec::with_capacity(256);
    buf.put_slice(b"HTTP/1.1 ");
    buf.put_slice(sent.status.as_str().as_bytes());
    buf.put_u8(b' ');
    if let Some(reason) = sent.get_reason_phrase() {
        buf.put_slice(reason.as_bytes());
    }
    buf.put_slice(b"\r\n");
    let mut slots = Vec::with_capacity(4);
    for (name, value) in fields(&sent) {
        buf.put_slice(&name);
        buf.put_slice(b": ");
        match Slot::of(&name) {
            Some(slot) => slots.push((buf.len(), slot)),
            None => buf.put_slice(value.as_bytes()),
        }
        buf.put_slice(b"\r\n");
    }
    Some(WireHead {
        bytes: buf.into_boxed_slice(),
        // Each slot's field was inserted, so it is there once.
        slots: slots.try_into().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(status: u16, fields: &[(&str, &str)]) -> ResponseHeader {
        let mut header = ResponseHeader::build(status, None).expect("header");
        for (name, value) in fields {
            header
                .append_header(name.to_string(), *value)
                .expect("append");
        }
        header
    }

    fn written(head: &HitHead) -> String {
        let mut buf = Vec::new();
        head.wire.write(&mut buf, |slot, buf| {
            buf.extend_from_slice(format!("<{slot:?}>").as_bytes())
        });
        String::from_utf8(buf).expect("utf8")
    }

    /// The bytes pingora's own writer makes of `header` with the hit's values set as
    /// `written` marks them, by pingora's own serialiser.
    fn by_pingora(header: &ResponseHeader) -> String {
        let mut h = header.clone();
        h.insert_header(AGE, "<Age>").expect("age");
        h.insert_header(CACHE_STATUS, "<CacheStatus>").expect("cs");
        h.insert_header(DATE, "<Date>").expect("date");
        h.insert_header(CONNECTION, "<Connection>").expect("conn");
        let mut buf = Vec::new();
        buf.put_slice(b"HTTP/1.1 ");
        buf.put_slice(h.status.as_str().as_bytes());
        buf.put_u8(b' ');
        buf.put_slice(h.get_reason_phrase().expect("reason").as_bytes());
        buf.put_slice(b"\r\n");
        h.header_to_h1_wire(&mut buf);
        buf.put_slice(b"\r\n");
        String::from_utf8(buf).expect("utf8")
    }

    #[test]
    fn fields_a_hit_sets_are_appended_in_pingoras_order() {
        let head = HitHead::of(&stored(
            200,
            &[("content-type", "text/plain"), ("Content-Length", "2")],
        ))
        .expect("head");
        assert_eq!(
            written(&head),
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nContent-Length: 2\r\nAge: <Age>\r\n\
             Accept-Ranges: bytes\r\ncache-status: <CacheStatus>\r\nDate: <Date>\r\n\
             Connection: <Connection>\r\n\r\n"
        );
        assert_eq!(written(&head), by_pingora(&head.header));
    }

    #[test]
    fn stored_fields_a_hit_sets_are_replaced_where_they_stand() {
        let head = HitHead::of(&stored(
            200,
            &[
                ("date", "Mon, 01 Jan 2024 00:00:00 GMT"),
                ("accept-ranges", "none"),
                ("Content-Length", "2"),
                ("age", "5"),
                ("X-One", "1"),
                ("Cache-Status", "upstream; hit"),
                ("cache-status", "other; fwd=miss"),
                ("connection", "keep-alive"),
            ],
        ))
        .expect("head");
        assert_eq!(
            written(&head),
            "HTTP/1.1 200 OK\r\nDate: <Date>\r\nAccept-Ranges: bytes\r\nContent-Length: 2\r\n\
             Age: <Age>\r\nX-One: 1\r\ncache-status: <CacheStatus>\r\n\
             Connection: <Connection>\r\n\r\n"
        );
        assert_eq!(written(&head), by_pingora(&head.header));
    }

    #[test]
    fn ranges_are_offered_on_a_200_with_a_length_only() {
        let gone = HitHead::of(&stored(
            410,
            &[("Accept-Ranges", "bytes"), ("content-length", "0")],
        ))
        .expect("410");
        assert!(!gone.ranges);
        assert_eq!(
            written(&gone),
            "HTTP/1.1 410 Gone\r\nAccept-Ranges: bytes\r\ncontent-length: 0\r\nAge: <Age>\r\n\
             cache-status: <CacheStatus>\r\nDate: <Date>\r\nConnection: <Connection>\r\n\r\n",
            "a stored Accept-Ranges the range filter leaves alone is sent as stored"
        );
        assert!(
            HitHead::of(&stored(200, &[("transfer-encoding", "chunked")])).is_none(),
            "no length: pingora chunks the body"
        );
        let empty = HitHead::of(&stored(204, &[])).expect("a 204 has no body");
        assert!(!empty.ranges);
    }

    #[test]
    fn a_header_without_case_is_written_in_title_case() {
        let mut h = ResponseHeader::build_no_case(200, None).expect("header");
        h.append_header("content-length", "2").expect("cl");
        h.append_header("x-thing", "a").expect("x");
        let head = HitHead::of(&h).expect("head");
        assert_eq!(written(&head), by_pingora(&head.header));
        assert!(written(&head).contains("Content-Length: 2\r\nx-thing: a\r\n"));
    }

    #[test]
    fn an_http_1_0_response_is_given_back_as_stored_and_sent_as_http_1_1() {
        let mut original = stored(200, &[("content-length", "2")]);
        original.set_version(http::Version::HTTP_10);
        let head = HitHead::of(&original).expect("head");
        assert!(written(&head).starts_with("HTTP/1.1 200 OK\r\n"));
        let mut back = head.header.clone();
        head.restore(&mut back).expect("restored");
        assert_eq!(back.version, http::Version::HTTP_10);
    }

    #[test]
    fn restore_gives_back_the_stored_header() {
        let original = stored(
            200,
            &[
                ("age", "5"),
                ("X-One", "1"),
                ("Accept-Ranges", "bytes"),
                ("cache-status", "a"),
                ("Cache-Status", "b"),
                ("Content-Length", "2"),
                ("X-Two", "2"),
            ],
        );
        let head = HitHead::of(&original).expect("head");
        let mut back = head.header.clone();
        head.restore(&mut back).expect("restored");
        let wire = |h: &ResponseHeader| {
            let mut buf = Vec::new();
            h.header_to_h1_wire(&mut buf);
            String::from_utf8(buf).expect("utf8")
        };
        assert_eq!(wire(&back), wire(&original));
        let plain = stored(200, &[("X-One", "1"), ("Content-Length", "2")]);
        let head = HitHead::of(&plain).expect("head");
        let mut back = head.header.clone();
        head.restore(&mut back).expect("restored");
        assert_eq!(wire(&back), wire(&plain));
    }
}
