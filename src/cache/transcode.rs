//! A stored response in another coding, made from the stored bytes instead of asking the origin.
//!
//! Each coding a client may be served in is its own stored variant (`encoding`). Filling each
//! from the origin would cost one origin computation per coding and key: a browser asking for
//! gzip beside one asking for br made the ERP compute a 1.1 s forecast twice. Instead, the
//! response stored in one coding is decoded and encoded again into the one asked for.
//!
//! The decisions are pingora's own, so a derived variant is the one a fill from the origin would
//! have stored: its compression context decodes what it can decode and compresses only what it
//! would compress (content type, size). Its `ETag` handling is left off, and the entity tag is
//! derived as on a fill (`validators`): from the origin's tag, suffixed with the coding.
//!
//! A response that says `no-transform` (`no_transform`) is never decoded or encoded again: its
//! stored bytes are the other variant as they are, where its clients can take them.

use std::io::Read;

use bytes::Bytes;
use http::header;
use pingora_core::protocols::http::compression::ResponseCompressionCtx;
use pingora_error::{Error, ErrorType, OrErr, Result};
use pingora_http::{RequestHeader, ResponseHeader};

use super::encoding::Coding;
use super::no_transform;
use super::validators;

/// The stored response `stored` + `body` as it would be stored for clients served in `to`,
/// compressing at `level`. `None` when its content coding is one knitcache cannot decode, or
/// when the decoded body would exceed `limit` bytes (what the cache stores at most: a small
/// compressed body may expand enormously).
///
/// A response that says `no-transform` is never decoded or encoded: its bytes serve clients
/// served in `to` as they are, if those clients can take them (uncompressed, or already in
/// `to`), and otherwise it is `None`.
pub fn recode(
    stored: &ResponseHeader,
    body: &Bytes,
    to: Coding,
    level: u32,
    limit: usize,
) -> Result<Option<(ResponseHeader, Bytes)>> {
    if no_transform::forbidden(stored) {
        return as_stored(stored, body, to);
    }
    let plain = match content_coding(stored) {
        None => body.clone(),
        Some(None) => return Ok(None),
        Some(Some(from)) => match decode(from, body, limit)? {
            Some(plain) => plain,
            None => return Ok(None),
        },
    };
    let origin_tag = origin_etag(stored);
    let mut resp = stored.clone();
    resp.remove_header(&header::CONTENT_ENCODING);
    // Encode, if pingora would for a client asking for `to`.
    let body = match to.token() {
        Some(token) => encode(&mut resp, &plain, token, level)?,
        None => plain,
    };
    resp.remove_header(&header::TRANSFER_ENCODING);
    resp.insert_header(header::CONTENT_LENGTH, body.len())?;
    let tag = match (origin_tag, content_coding(&resp).flatten()) {
        (Some(tag), Some(coding)) => coding.token().and_then(|t| validators::derive(&tag, t)),
        (tag, _) => tag,
    };
    match tag {
        Some(tag) => resp.insert_header(header::ETAG, tag)?,
        None => {
            // A validator computed over the old bytes says nothing of these: the storage
            // computes one over them where the route wants it.
            resp.remove_header(&header::ETAG);
        }
    }
    Ok(Some((resp, body)))
}

/// `stored` + `body` unchanged for clients served in `to`, when they accept its coding.
fn as_stored(
    stored: &ResponseHeader,
    body: &Bytes,
    to: Coding,
) -> Result<Option<(ResponseHeader, Bytes)>> {
    let acceptable = match content_coding(stored) {
        None => true,
        Some(coding) => coding == Some(to),
    };
    if !acceptable {
        return Ok(None);
    }
    let mut resp = stored.clone();
    resp.remove_header(&header::TRANSFER_ENCODING);
    resp.insert_header(header::CONTENT_LENGTH, body.len())?;
    Ok(Some((resp, body.clone())))
}

/// `body` decoded from `coding`; `None` past `limit` bytes.
fn decode(coding: Coding, body: &[u8], limit: usize) -> Result<Option<Bytes>> {
    let reader: Box<dyn Read + '_> = match coding {
        Coding::Identity => return Ok(Some(Bytes::copy_from_slice(body))),
        Coding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(body)),
        Coding::Brotli => Box::new(brotli::Decompressor::new(body, 4096)),
        Coding::Zstd => Box::new(
            zstd::stream::read::Decoder::new(body)
                .or_err(ErrorType::InternalError, "starting a zstd decoder")?,
        ),
    };
    let mut plain = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(cap).read_to_end(&mut plain).or_err(
        ErrorType::InternalError,
        "a stored body did not decode in its coding",
    )?;
    Ok((plain.len() <= limit).then(|| Bytes::from(plain)))
}

/// `plain` compressed as pingora's compression context does for a client that accepts only
/// `token`, and `resp` adjusted as it adjusts it; unchanged when it would not compress.
fn encode(resp: &mut ResponseHeader, plain: &Bytes, token: &str, level: u32) -> Result<Bytes> {
    let mut ctx = ResponseCompressionCtx::new(level, false, true);
    let mut req = RequestHeader::build(http::Method::GET, b"/", None)?;
    req.insert_header(header::ACCEPT_ENCODING, token)?;
    ctx.request_filter(&req);
    resp.insert_header(header::CONTENT_LENGTH, plain.len())?;
    ctx.response_header_filter(resp, plain.is_empty());
    if !ctx.is_enabled() {
        // Not compressible (content type, size): pingora stores it as it is.
        return Ok(plain.clone());
    }
    // The whole body at once: `end` makes the encoder flush everything it holds.
    ctx.response_body_filter(Some(plain), true)
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "compressing a stored body failed"))
}

/// The response's content coding: `None` for none, `Some(None)` for one knitcache does not
/// store (or a list of several).
fn content_coding(resp: &ResponseHeader) -> Option<Option<Coding>> {
    let value = resp.headers.get(header::CONTENT_ENCODING)?;
    let token = value.to_str().ok().map(str::trim);
    Some(token.and_then(Coding::from_token))
}

/// The origin's entity tag of the stored response, as far as it can be known: a tag derived
/// for the stored coding loses its suffix; a tag on a compressed body that is not derived was
/// computed over those bytes (routes whose origin sends none) and describes nothing else.
fn origin_etag(stored: &ResponseHeader) -> Option<http::HeaderValue> {
    let etag = stored.headers.get(header::ETAG)?;
    match content_coding(stored) {
        None => Some(etag.clone()),
        Some(coding) => {
            let token = coding?.token()?;
            validators::is_derived(etag, token).then(|| validators::to_origin(etag, token))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 1 << 20;

    fn json_response(extra: &[(&str, &str)]) -> ResponseHeader {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("content-type", "application/json")
            .unwrap();
        for (n, v) in extra {
            resp.insert_header(n.to_string(), *v).unwrap();
        }
        resp
    }

    fn body() -> Bytes {
        Bytes::from(
            (0..2000)
                .map(|i| format!("{{\"row\":{i},\"qty\":{}}},", i * 7))
                .collect::<String>(),
        )
    }

    fn gunzip(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(b)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn identity_to_gzip_compresses_and_derives_the_tag() {
        let stored = json_response(&[("etag", "\"v1\"")]);
        let (resp, out) = recode(&stored, &body(), Coding::Gzip, 5, LIMIT)
            .unwrap()
            .unwrap();
        assert_eq!(resp.headers["content-encoding"], "gzip");
        assert_eq!(resp.headers["etag"], "\"v1-gzip\"");
        assert_eq!(
            resp.headers["content-length"],
            out.len().to_string().as_str()
        );
        assert!(resp.headers.get("transfer-encoding").is_none());
        assert_eq!(gunzip(&out), body());
    }

    /// A body an origin sent in br, as a finished brotli stream.
    fn brotli(plain: &[u8]) -> Bytes {
        let mut w = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22);
        std::io::Write::write_all(&mut w, plain).unwrap();
        Bytes::from(w.into_inner())
    }

    #[test]
    fn brotli_to_gzip_goes_through_the_plain_bytes() {
        let br = json_response(&[("etag", "\"v1-br\""), ("content-encoding", "br")]);
        let br_body = brotli(&body());
        let (gz, gz_body) = recode(&br, &br_body, Coding::Gzip, 5, LIMIT)
            .unwrap()
            .unwrap();
        assert_eq!(gz.headers["content-encoding"], "gzip");
        assert_eq!(
            gz.headers["etag"], "\"v1-gzip\"",
            "the origin's tag, derived again"
        );
        let plain = gunzip(&gz_body);
        assert_eq!(plain.len(), body().len());
        assert!(plain == body(), "the same bytes");
        let (plain, plain_body) = recode(&br, &br_body, Coding::Identity, 5, LIMIT)
            .unwrap()
            .unwrap();
        assert!(plain.headers.get("content-encoding").is_none());
        assert_eq!(plain.headers["etag"], "\"v1\"");
        assert!(plain_body == body());
    }

    #[test]
    fn zstd_round_trips() {
        let stored = json_response(&[]);
        let (zs, zs_body) = recode(&stored, &body(), Coding::Zstd, 5, LIMIT)
            .unwrap()
            .unwrap();
        assert_eq!(zs.headers["content-encoding"], "zstd");
        let (_, back) = recode(&zs, &zs_body, Coding::Identity, 5, LIMIT)
            .unwrap()
            .unwrap();
        assert!(back == body());
    }

    #[test]
    fn a_tag_computed_over_compressed_bytes_is_dropped() {
        // No origin tag: the storage computed one over the br bytes.
        let stored = json_response(&[]);
        let (mut zs, zs_body) = recode(&stored, &body(), Coding::Zstd, 5, LIMIT)
            .unwrap()
            .unwrap();
        zs.insert_header("etag", "\"0123abcd\"").unwrap();
        let (gz, _) = recode(&zs, &zs_body, Coding::Gzip, 5, LIMIT)
            .unwrap()
            .unwrap();
        assert!(gz.headers.get("etag").is_none());
    }

    #[test]
    fn what_pingora_would_not_compress_stays_as_it_is() {
        let mut stored = ResponseHeader::build(200, None).unwrap();
        stored.insert_header("content-type", "image/png").unwrap();
        let (resp, out) = recode(&stored, &body(), Coding::Zstd, 5, LIMIT)
            .unwrap()
            .unwrap();
        assert!(resp.headers.get("content-encoding").is_none());
        assert_eq!(out, body());
    }

    #[test]
    fn a_body_that_would_decode_past_the_limit_is_not_recoded() {
        let stored = json_response(&[]);
        let (gz, gz_body) = recode(&stored, &body(), Coding::Gzip, 5, LIMIT)
            .unwrap()
            .unwrap();
        assert!(
            gz_body.len() * 3 < body().len(),
            "a small body that expands"
        );
        let limit = body().len() - 1;
        assert!(
            recode(&gz, &gz_body, Coding::Zstd, 5, limit)
                .unwrap()
                .is_none()
        );
        assert!(
            recode(&gz, &gz_body, Coding::Zstd, 5, limit + 1)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_corrupt_body_is_an_error_not_a_short_body() {
        let stored = json_response(&[("content-encoding", "gzip")]);
        let garbage = Bytes::from_static(b"\x1f\x8b\x08\x00not gzip at all");
        assert!(recode(&stored, &garbage, Coding::Zstd, 5, LIMIT).is_err());
    }

    #[test]
    fn a_no_transform_body_is_served_as_it_is_where_it_is_accepted() {
        let stored = json_response(&[
            ("cache-control", "max-age=60, no-transform"),
            ("etag", "\"v1\""),
            ("transfer-encoding", "chunked"),
        ]);
        for to in [Coding::Gzip, Coding::Zstd, Coding::Identity] {
            let (resp, out) = recode(&stored, &body(), to, 5, LIMIT).unwrap().unwrap();
            assert!(resp.headers.get("content-encoding").is_none(), "{to:?}");
            assert_eq!(
                resp.headers["etag"], "\"v1\"",
                "the same bytes, the same tag"
            );
            assert_eq!(
                resp.headers["content-length"],
                body().len().to_string().as_str()
            );
            assert!(resp.headers.get("transfer-encoding").is_none());
            assert_eq!(out, body());
        }
        // The origin's own gzip: never decoded, and served only to clients served in gzip.
        let gz_body = Bytes::from(b"\x1f\x8b the origin's gzip".to_vec());
        let gz = json_response(&[
            ("cache-control", "no-transform"),
            ("content-encoding", "gzip"),
        ]);
        for to in [Coding::Zstd, Coding::Identity] {
            assert!(
                recode(&gz, &gz_body, to, 5, LIMIT).unwrap().is_none(),
                "{to:?}"
            );
        }
        let (resp, out) = recode(&gz, &gz_body, Coding::Gzip, 5, LIMIT)
            .unwrap()
            .unwrap();
        assert_eq!(resp.headers["content-encoding"], "gzip");
        assert_eq!(out, gz_body);
        // An unknown coding is not served to anyone.
        let compress = json_response(&[
            ("cache-control", "no-transform"),
            ("content-encoding", "compress"),
        ]);
        for to in Coding::ALL {
            assert!(
                recode(&compress, &body(), to, 5, LIMIT).unwrap().is_none(),
                "{to:?}"
            );
        }
    }

    #[test]
    fn an_unknown_coding_is_left_alone() {
        let stored = json_response(&[("content-encoding", "compress")]);
        assert!(
            recode(&stored, &body(), Coding::Gzip, 5, LIMIT)
                .unwrap()
                .is_none()
        );
    }
}
