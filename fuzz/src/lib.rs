//! What the fuzz targets share: reading a fuzz input as text lines of HTTP fields, so that the
//! seed corpus is readable and libFuzzer's mutations of it stay close to real headers.

use http::{HeaderName, HeaderValue};
use pingora_http::ResponseHeader;

/// The input's lines, split at `\n` (a trailing `\r` removed).
pub fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// A line `Name: value` as a field, if both halves are valid in HTTP. The value loses the
/// spaces and tabs around it, as an HTTP/1 parser strips them: a field from the wire never has
/// them.
pub fn field(line: &[u8]) -> Option<(HeaderName, HeaderValue)> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = HeaderName::from_bytes(&line[..colon]).ok()?;
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    let mut value = &line[colon + 1..];
    while let Some((first, rest)) = value.split_first()
        && ows(first)
    {
        value = rest;
    }
    while let Some((last, rest)) = value.split_last()
        && ows(last)
    {
        value = rest;
    }
    Some((name, HeaderValue::from_bytes(value).ok()?))
}

/// A response header from `lines`: a first line `NNN reason` sets the status (200 otherwise);
/// every `Name: value` line becomes a field, in order (lines that are neither are skipped).
pub fn response<'a>(mut lines: impl Iterator<Item = &'a [u8]>) -> ResponseHeader {
    let mut status = 200;
    let mut reason = None;
    let mut first = lines.next();
    if let Some(line) = first
        && let Some(text) = std::str::from_utf8(line).ok()
        && let Some(code) = text.get(..3).and_then(|c| c.parse::<u16>().ok())
        && (100..=999).contains(&code)
        && text.as_bytes().get(3).is_none_or(|&b| b == b' ')
    {
        status = code;
        reason = text.get(4..).filter(|r| !r.is_empty()).map(str::to_owned);
        first = None;
    }
    let mut resp = ResponseHeader::build(status, None).expect("a status in 100..=999 builds");
    if let Some(reason) = reason {
        // A reason that is not a valid phrase keeps the default one.
        let _ = resp.set_reason_phrase(Some(&reason));
    }
    for line in first.into_iter().chain(lines) {
        if let Some((name, value)) = field(line) {
            resp.append_header(name, value)
                .expect("a valid name and value append");
        }
    }
    resp
}
