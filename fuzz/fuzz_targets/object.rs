//! The stored-object decoder (`cache::object`): a record read back from the disk tier.
//!
//! Invariants: decoding never panics; a record that decodes re-encodes to exactly the bytes it
//! was read from, at its estimated size; the metadata parsed while decoding rebuilds a `CacheMeta`
//! equal to the one it was parsed from. And the other way: any three blobs encode and decode back.
#![no_main]

use bytes::Bytes;
use foyer::Code;
use knitcache::cache::object::CachedObject;
use libfuzzer_sys::fuzz_target;
use pingora_cache::CacheMeta;

/// The rebuilt meta means what the stored one means. Not byte for byte: a record of an older
/// layout (without a provenance) rebuilds with the provenance it implies, made explicit.
fn assert_same(rebuilt: &CacheMeta, stored: &CacheMeta) {
    assert_eq!(rebuilt.fresh_until(), stored.fresh_until());
    assert_eq!(rebuilt.created(), stored.created());
    assert_eq!(rebuilt.updated(), stored.updated());
    assert_eq!(rebuilt.epoch(), stored.epoch());
    assert_eq!(rebuilt.provenance(), stored.provenance());
    assert_eq!(
        rebuilt.stale_while_revalidate_sec(),
        stored.stale_while_revalidate_sec()
    );
    assert_eq!(rebuilt.stale_if_error_sec(), stored.stale_if_error_sec());
    assert_eq!(rebuilt.variance(), stored.variance());
    assert_eq!(
        rebuilt.serialize().ok().map(|(_, header)| header),
        stored.serialize().ok().map(|(_, header)| header),
        "the rebuilt header differs"
    );
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    if let Ok(obj) = CachedObject::decode(&mut rest) {
        let consumed = &data[..data.len() - rest.len()];
        let mut again = Vec::new();
        obj.encode(&mut again).expect("a decoded record encodes");
        assert_eq!(again, consumed, "decode then encode changed the record");
        assert_eq!(again.len(), obj.estimated_size());
        if let Some(parsed) = &obj.parsed {
            let stored = CacheMeta::deserialize(&obj.meta_internal, &obj.meta_header)
                .expect("parsed metadata was deserialised from these blobs");
            if let Some(rebuilt) = parsed.rebuild() {
                assert_same(&rebuilt, &stored);
            }
        }
    }

    // The input cut in three as a response: encoding and decoding give it back.
    let third = data.len() / 3;
    let obj = CachedObject {
        meta_internal: Bytes::copy_from_slice(&data[..third]),
        meta_header: Bytes::copy_from_slice(&data[third..2 * third]),
        body: Bytes::copy_from_slice(&data[2 * third..]),
        sealed: None,
        parsed: None,
    };
    let mut buf = Vec::new();
    obj.encode(&mut buf).expect("small blobs encode");
    assert_eq!(buf.len(), obj.estimated_size());
    let back = CachedObject::decode(&mut buf.as_slice()).expect("an encoded record decodes");
    assert_eq!(back.meta_internal, obj.meta_internal);
    assert_eq!(back.meta_header, obj.meta_header);
    assert_eq!(back.body, obj.body);
    assert_eq!(back.is_tombstone(), obj.is_tombstone());
});
