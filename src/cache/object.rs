//! The unit the hybrid cache stores: one HTTP response (metadata + whole body).
//!
//! The same bytes live in foyer's memory tier and, encoded with [`foyer::Code`], in its disk
//! tier. The encoding is length-prefixed blobs, so a torn or foreign record fails to decode
//! instead of producing a wrong response.

use std::io::{Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use foyer::{Code, ErrorKind};
use pingora_cache::CacheMeta;

use super::parsed::ParsedMeta;
use super::sealed_body::{self, SealedBody};

/// One cached response.
#[derive(Debug, Clone)]
pub struct CachedObject {
    /// pingora's internal metadata (freshness, stale windows, variance), serialised.
    pub meta_internal: Bytes,
    /// The response header, serialised (and compressed) by pingora.
    pub meta_header: Bytes,
    /// The whole body as it is served (already compressed when the variant is).
    pub body: Bytes,
    /// The sealed file `body` is a view of, for a large body (`sealed_body`): hits send it with
    /// `sendfile`. Never encoded.
    pub sealed: Option<Arc<SealedBody>>,
    /// The metadata already parsed, so a memory-tier hit skips deserialising it. Never
    /// encoded: an entry read back from disk parses it again once, as it is decoded.
    pub parsed: Option<Arc<ParsedMeta>>,
}

impl CachedObject {
    /// The record that replaces a removed response. foyer's `remove` leaves a copy still
    /// waiting to be written to disk readable (and a read promotes it back into memory), so a
    /// removal writes this in its place instead: later in the same write order, it supersedes
    /// the removed response in both tiers, and survives a restart.
    pub fn tombstone() -> Self {
        CachedObject {
            meta_internal: Bytes::new(),
            meta_header: Bytes::new(),
            body: Bytes::new(),
            sealed: None,
            parsed: None,
        }
    }

    /// Whether this is a removal record rather than a response (a response's metadata is never
    /// empty).
    pub fn is_tombstone(&self) -> bool {
        self.meta_internal.is_empty()
    }

    /// Bytes this object occupies in a tier; the memory tier is weighed with it.
    pub fn weight(&self) -> usize {
        self.meta_internal.len() + self.meta_header.len() + self.body.len()
    }

    /// Bytes it occupies in the memory tier: the serialised form plus the parsed metadata, and
    /// the end of a sealed body's last page.
    pub fn memory_weight(&self) -> usize {
        let page_tail = self
            .sealed
            .as_ref()
            .map_or(0, |s| s.resident_bytes() - s.len());
        self.weight() + page_tail + self.parsed.as_ref().map_or(0, |p| p.weight())
    }
}

/// First byte of every record; bump it when the layout changes so old records read as misses.
const FORMAT: u8 = 1;
/// No blob in a record may claim more than this; the configured object cap is far below it.
const MAX_BLOB_BYTES: u32 = 256 * 1024 * 1024;

fn write_blob(w: &mut impl Write, blob: &[u8]) -> foyer::Result<()> {
    let len = u32::try_from(blob.len())
        .ok()
        .filter(|l| *l <= MAX_BLOB_BYTES)
        .ok_or_else(|| foyer::Error::new(ErrorKind::Parse, "cached blob too large to encode"))?;
    w.write_all(&len.to_le_bytes())
        .map_err(foyer::Error::io_error)?;
    w.write_all(blob).map_err(foyer::Error::io_error)
}

fn read_blob(r: &mut impl Read) -> foyer::Result<Bytes> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).map_err(foyer::Error::io_error)?;
    let len = u32::from_le_bytes(len);
    if len > MAX_BLOB_BYTES {
        return Err(foyer::Error::new(
            ErrorKind::Parse,
            "cached blob length out of range",
        ));
    }
    let mut blob = vec![0u8; len as usize];
    r.read_exact(&mut blob).map_err(foyer::Error::io_error)?;
    Ok(Bytes::from(blob))
}

impl Code for CachedObject {
    fn encode(&self, w: &mut impl Write) -> foyer::Result<()> {
        w.write_all(&[FORMAT]).map_err(foyer::Error::io_error)?;
        write_blob(w, &self.meta_internal)?;
        write_blob(w, &self.meta_header)?;
        write_blob(w, &self.body)
    }

    fn decode(r: &mut impl Read) -> foyer::Result<Self> {
        let mut format = [0u8; 1];
        r.read_exact(&mut format).map_err(foyer::Error::io_error)?;
        if format[0] != FORMAT {
            return Err(foyer::Error::new(
                ErrorKind::Parse,
                "unknown cached object format",
            ));
        }
        let meta_internal = read_blob(r)?;
        let meta_header = read_blob(r)?;
        // Read back into the memory tier: sealed again if it is large.
        let (body, sealed) = sealed_body::store(read_blob(r)?, |b| b);
        // Parsed once here, so the copy promoted into the memory tier is served like any other
        // memory hit. Metadata that does not parse is left to the lookup, which counts it.
        let parsed = (!meta_internal.is_empty())
            .then(|| CacheMeta::deserialize(&meta_internal, &meta_header).ok())
            .flatten()
            .and_then(|meta| ParsedMeta::capture(&meta));
        Ok(CachedObject {
            meta_internal,
            meta_header,
            body,
            sealed,
            parsed,
        })
    }

    fn estimated_size(&self) -> usize {
        1 + 3 * 4 + self.weight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tombstone_survives_encoding() {
        let mut buf = Vec::new();
        CachedObject::tombstone().encode(&mut buf).expect("encode");
        let back = CachedObject::decode(&mut buf.as_slice()).expect("decode");
        assert!(back.is_tombstone() && back.parsed.is_none());
        assert!(
            !CachedObject {
                meta_internal: Bytes::from_static(b"m"),
                ..CachedObject::tombstone()
            }
            .is_tombstone()
        );
    }

    #[test]
    fn encode_decode_round_trip() {
        let obj = CachedObject {
            meta_internal: Bytes::from_static(b"internal"),
            meta_header: Bytes::from_static(b"header"),
            body: Bytes::from(vec![7u8; 10_000]),
            sealed: None,
            parsed: None,
        };
        let mut buf = Vec::new();
        obj.encode(&mut buf).expect("encode");
        assert_eq!(
            buf.len(),
            obj.estimated_size(),
            "estimated size must be exact"
        );
        let back = CachedObject::decode(&mut buf.as_slice()).expect("decode");
        assert_eq!(back.meta_internal, obj.meta_internal);
        assert_eq!(back.meta_header, obj.meta_header);
        assert_eq!(back.body, obj.body);
    }

    #[test]
    fn a_large_body_read_back_is_sealed_and_a_small_one_is_not() {
        let body: Vec<u8> = (0..super::sealed_body::MIN_BYTES + 1)
            .map(|i| i as u8)
            .collect();
        for (len, sealed) in [
            (body.len(), true),
            (super::sealed_body::MIN_BYTES - 1, false),
        ] {
            let obj = CachedObject {
                meta_internal: Bytes::from_static(b"internal"),
                meta_header: Bytes::from_static(b"header"),
                body: Bytes::copy_from_slice(&body[..len]),
                sealed: None,
                parsed: None,
            };
            let mut buf = Vec::new();
            obj.encode(&mut buf).expect("encode");
            let back = CachedObject::decode(&mut buf.as_slice()).expect("decode");
            assert_eq!(back.body, obj.body, "{len} bytes");
            assert_eq!(back.sealed.is_some(), sealed, "{len} bytes");
            if let Some(file) = &back.sealed {
                assert_eq!(file.len(), len);
                assert_eq!(
                    back.memory_weight(),
                    back.weight() + file.resident_bytes() - len,
                    "the memory tier weighs whole pages"
                );
                assert!(file.resident_bytes() > len, "{len} bytes end inside a page");
            }
        }
    }

    #[test]
    fn a_decoded_response_has_its_metadata_parsed() {
        let now = std::time::SystemTime::now();
        let mut header = pingora_http::ResponseHeader::build(200, None).expect("header");
        header.append_header("content-length", "4").expect("append");
        let meta = CacheMeta::new(now + std::time::Duration::from_secs(60), now, 0, 0, header);
        let (internal, header) = meta.serialize().expect("serialize");
        let obj = CachedObject {
            meta_internal: internal.into(),
            meta_header: header.into(),
            body: Bytes::from_static(b"body"),
            sealed: None,
            parsed: None,
        };
        let mut buf = Vec::new();
        obj.encode(&mut buf).expect("encode");
        let back = CachedObject::decode(&mut buf.as_slice()).expect("decode");
        let parsed = back
            .parsed
            .as_ref()
            .expect("read back from disk, served from memory as parsed");
        assert_eq!(parsed.fresh_until(), meta.fresh_until());
        assert!(
            back.memory_weight() > back.weight(),
            "the parsed copy is weighed"
        );
    }

    #[test]
    fn truncated_record_fails_to_decode() {
        let obj = CachedObject {
            meta_internal: Bytes::from_static(b"i"),
            meta_header: Bytes::from_static(b"h"),
            body: Bytes::from_static(b"body bytes"),
            sealed: None,
            parsed: None,
        };
        let mut buf = Vec::new();
        obj.encode(&mut buf).expect("encode");
        buf.truncate(buf.len() - 3);
        assert!(CachedObject::decode(&mut buf.as_slice()).is_err());
    }

    #[test]
    fn absurd_length_is_rejected_before_allocating() {
        let mut buf = vec![FORMAT];
        buf.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(CachedObject::decode(&mut buf.as_slice()).is_err());
        let mut other_format = vec![FORMAT + 1];
        other_format.extend_from_slice(&[0u8; 12]);
        assert!(CachedObject::decode(&mut other_format.as_slice()).is_err());
    }
}
