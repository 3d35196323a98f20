//! The parsed metadata a memory hit serves from (`cache::parsed`), over any stored response.
//!
//! Input: a first line `NNN reason` (optional), then the stored response's fields, one
//! `Name: value` a line. Invariants: capturing never panics, and declines only a response that
//! already has a field a hit adds, or `Vary: *`; what it captured rebuilds the same `CacheMeta`
//! (serialised byte for byte), survives the disk tier's round trip (serialise, deserialise,
//! capture again) unchanged, and its wire head is a well-formed HTTP/1.1 response head with the
//! stored status and every stored field but `Date`.
#![no_main]

use std::time::{Duration, SystemTime};

use http::header::{ACCEPT_RANGES, AGE, CONNECTION, DATE};
use knitcache::cache::parsed::{CACHE_STATUS, ParsedMeta};
use knitcache::cache::vary::Vary;
use knitcache_fuzz::{lines, response};
use libfuzzer_sys::fuzz_target;
use pingora_cache::CacheMeta;

fuzz_target!(|data: &[u8]| {
    let header = response(lines(data));
    let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let meta = CacheMeta::new(created + Duration::from_secs(60), created, 30, 600, header);
    let Some(parsed) = ParsedMeta::capture(&meta) else {
        let stored = meta.headers();
        assert!(
            [AGE, ACCEPT_RANGES, CACHE_STATUS, CONNECTION]
                .iter()
                .any(|n| stored.contains_key(n))
                || Vary::of(stored) == Vary::Star,
            "a storable response was not captured: {:?}",
            meta.response_header()
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

    // The wire head, closed with a Date and a blank line, parses as the stored response.
    let mut head = parsed.wire_head().to_vec();
    head.extend_from_slice(b"Date: Tue, 14 Nov 2023 22:13:20 GMT\r\n\r\n");
    let mut fields = [httparse::EMPTY_HEADER; 256];
    let mut wire = httparse::Response::new(&mut fields);
    let stored = meta.response_header();
    if stored.headers.len() < 250 {
        let status = wire.parse(&head).expect("the wire head parses");
        assert!(status.is_complete(), "the wire head is cut short");
        assert_eq!(wire.code, Some(stored.status.as_u16()));
        let without_date = stored.headers.iter().filter(|(n, _)| **n != DATE).count();
        // Theirs, Accept-Ranges when ranges are offered, and the Date just added.
        let expected =
            without_date
                + usize::from(wire.headers.iter().any(|h| {
                    h.name == "Accept-Ranges" && !stored.headers.contains_key(ACCEPT_RANGES)
                }))
                + 1;
        assert_eq!(wire.headers.len(), expected);
    }
});
