//! The parsed metadata a memory hit serves from (`cache::parsed`), over any stored response.
//!
//! Input: a first line `NNN reason` (optional), then the stored response's fields, one
//! `Name: value` a line. Invariants: capturing never panics, and declines only `Vary: *` or a
//! response a hit cannot send as a header and the stored body (`Transfer-Encoding`, or no
//! `Content-Length` on a status with a body); what it captured rebuilds the same `CacheMeta`
//! (serialised byte for byte), survives the disk tier's round trip (serialise, deserialise,
//! capture again) unchanged, and its wire head, filled in, is a well-formed HTTP/1.1 response
//! head with the stored status, every stored field but those a hit sets, and each of those once.
#![no_main]

use std::time::{Duration, SystemTime};

use http::header::{ACCEPT_RANGES, AGE, CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use knitcache::cache::hit_head::{CACHE_STATUS, Slot};
use knitcache::cache::parsed::ParsedMeta;
use knitcache::cache::vary::Vary;
use knitcache_fuzz::{lines, response};
use libfuzzer_sys::fuzz_target;
use pingora_cache::CacheMeta;

fuzz_target!(|data: &[u8]| {
    let header = response(lines(data));
    let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let meta = CacheMeta::new(created + Duration::from_secs(60), created, 30, 600, header);
    let stored = meta.response_header();
    let Some(parsed) = ParsedMeta::capture(&meta) else {
        let bodiless =
            matches!(stored.status.as_u16(), 204 | 304) || stored.status.is_informational();
        assert!(
            Vary::of(&stored.headers) == Vary::Star
                || stored.headers.contains_key(TRANSFER_ENCODING)
                || !(bodiless || stored.headers.contains_key(CONTENT_LENGTH)),
            "a storable response was not captured: {stored:?}"
        );
        return;
    };
    let (internal, serialised_header) = meta.serialize().expect("a new meta serialises");
    let rebuilt = parsed.rebuild().expect("a new meta rebuilds");
    let (r_internal, r_header) = rebuilt.serialize().expect("a rebuilt meta serialises");
    assert_eq!(r_internal, internal, "rebuilt internal metadata differs");
    assert_eq!(r_header, serialised_header, "rebuilt header differs");

    // Through the disk tier: the same parsed form.
    let read_back = CacheMeta::deserialize(&internal, &serialised_header)
        .expect("a serialised meta deserialises");
    let again = ParsedMeta::capture(&read_back).expect("read back, it still captures");
    assert_eq!(again.wire_head(), parsed.wire_head());
    assert_eq!(again.vary(), parsed.vary());
    assert_eq!(again.fresh_until(), parsed.fresh_until());

    // The wire head, filled in, parses as the stored response with the hit's fields.
    let mut head = Vec::new();
    parsed.wire_head().write(&mut head, |slot, buf| {
        buf.extend_from_slice(match slot {
            Slot::Age => b"0".as_slice(),
            Slot::CacheStatus => b"knitcache; hit; ttl=60",
            Slot::Date => b"Tue, 14 Nov 2023 22:13:20 GMT",
            Slot::Connection => b"keep-alive",
        })
    });
    let mut fields = [httparse::EMPTY_HEADER; 256];
    let mut wire = httparse::Response::new(&mut fields);
    if stored.headers.len() < 250 {
        let status = wire.parse(&head).expect("the wire head parses");
        assert!(status.is_complete(), "the wire head is cut short");
        assert_eq!(wire.code, Some(stored.status.as_u16()));
        // pingora's range filter offers ranges on a 200 whose length is a number.
        let ranges = stored.status == 200
            && stored
                .headers
                .get(CONTENT_LENGTH)
                .and_then(|v| {
                    std::str::from_utf8(v.as_bytes())
                        .ok()?
                        .parse::<usize>()
                        .ok()
                })
                .is_some();
        let mut set = vec![AGE, CACHE_STATUS, DATE, CONNECTION];
        if ranges {
            set.push(ACCEPT_RANGES);
        }
        let kept = stored
            .headers
            .iter()
            .filter(|(n, _)| !set.contains(n))
            .count();
        assert_eq!(wire.headers.len(), kept + set.len());
        for name in &set {
            let times = wire
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(name.as_str()))
                .count();
            assert_eq!(times, 1, "{name} sent {times} times");
        }
    }
});
