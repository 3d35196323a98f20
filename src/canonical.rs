//! The canonical form of a request target: the one spelling of a URL that routing, the cache
//! key, invalidation, purges and the ERP itself all see.
//!
//! The ERP is a WSGI application (Flask on Werkzeug): its server percent-decodes the whole path
//! into `PATH_INFO` before routing (PEP 3333), and its query parser turns `+` into a space and
//! decodes names and values. Anything knitcache decided on the raw bytes could therefore differ
//! from what the ERP runs: `/api/v2/%68ealth` would dodge the pass-through route, `?vi%65w=x`
//! would dodge an `only: [view]` key. So every request target is brought to one form first and
//! the ERP is sent exactly that form: what was routed and keyed is what the ERP acts on.
//!
//! **Path**, decoded as Werkzeug decodes it, then re-encoded one way:
//! * every `%XX` is decoded, `%2F` included: a WSGI server hands the application the decoded
//!   path, in which `%2F` and `/` cannot be told apart, so to the ERP they are the same URL;
//! * runs of `/` become one (`//a//b` -> `/a/b`): Werkzeug's router merges slashes (it answers
//!   a redirect to the merged path) and its server reads a leading `//x` as `/x`;
//! * characters a path may carry literally (RFC 3986 `pchar`: unreserved, sub-delimiters, `:`
//!   and `@`) are written literally, every other one as `%XX` with upper-case hex.
//!
//! **Refused with `400`** (`Rejection`): things no browser or HTTP library sends, where any
//! guess could make knitcache and the ERP disagree:
//! * dot segments (`/a/../b`, `/a/./b`, `%2e%2e`, `..%2F`): clients resolve them before sending
//!   (RFC 3986 §5.2.4; browsers also for `%2e`); Werkzeug does not, so a resolved path would be
//!   a different resource than the ERP would have served;
//! * malformed escapes (`%zz`, a lone `%`): Python keeps them literally, RFC 3986 forbids them;
//! * escapes that decode to invalid UTF-8 (`%FF`): Python substitutes U+FFFD, so the ERP would
//!   see a path nobody sent;
//! * NUL anywhere, and other control characters in the path: no URL of the ERP has them, and
//!   C code downstream of Python stops at a NUL;
//! * bytes outside visible ASCII sent unencoded (HTTP/1.1 forbids them in a request target);
//! * targets that are not origin-form paths (`*`; absolute-form is reduced to its path first).
//!
//! **Query**, as Werkzeug parses it (`parse_qsl` with blank values kept): split on `&` only,
//! empty pieces dropped, each piece split at its first `=` (no `=` is an empty value), `+` is a
//! space, then names and values are percent-decoded. Each parameter is re-encoded as
//! `name=value` (space as `%20`, a literal `+` as `%2B`; unreserved characters and
//! `!$'()*,/:?@` literally, the rest `%XX`). Parameters keep the client's order: the ERP reads
//! the first of repeated names, so their order is meaning; the cache key (`cache::key`) orders
//! distinct names but never repeated ones. `?` with nothing after it is no query.
//!
//! **Other origins** (`Form::Rfc3986`, `upstream.url_form: rfc3986`): for an origin that is not
//! a WSGI application, `%2F` and `/`, `//` and `/`, `+` and `%20` can name different resources
//! (an API with encoded slashes in its identifiers), and RFC 9110 §7.7 has a proxy leave them
//! alone. There the form is RFC 3986's normalisation (§6.2.2) and nothing more: escapes of
//! unreserved characters decoded, other escapes kept with upper-case hex, characters a URI may
//! not carry literally escaped; every other byte stays as sent. What is refused stays refused
//! (dot segments, however spelled; malformed escapes; NUL, and control characters in the path;
//! raw bytes outside visible ASCII), except escapes that are not UTF-8, which such an origin
//! may mean. Nothing is decoded that the origin could read another way, so the key is still
//! the URL the origin acts on.
//!
//! `target` is a pure function of the target's bytes and its form (fuzzed on its own); `apply`
//! puts its result into a request header.

use std::borrow::Cow;
use std::fmt;

use pingora_http::RequestHeader;

/// How the origin reads a request target, and so what may be rewritten without changing the
/// URL it names (`upstream.url_form`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Form {
    /// As a WSGI server reads it (the ERP's: Flask on Werkzeug): every escape decoded, `%2F` is
    /// `/`, runs of `/` are one, `+` in a query is a space.
    #[default]
    Wsgi,
    /// RFC 3986's normalisation alone: `%2F`, `//`, `+` and `;` stay as sent.
    Rfc3986,
}

/// A request target in canonical form: `/path` or `/path?query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    text: String,
    path_end: usize,
}

impl Target {
    /// The whole target, path and query.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The path.
    pub fn path(&self) -> &str {
        &self.text[..self.path_end]
    }

    /// The query without its `?`; `None` when there are no parameters.
    pub fn query(&self) -> Option<&str> {
        self.text
            .get(self.path_end + 1..)
            .filter(|query| !query.is_empty())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a request target has no canonical form; answered with `400`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not a path starting with `/` (`*`, or an empty absolute-form path).
    NotOriginForm,
    /// `%` not followed by two hexadecimal digits.
    MalformedEscape,
    /// Escapes that decode to bytes which are not UTF-8.
    InvalidUtf8,
    /// NUL, or a control character in the path.
    ControlCharacter,
    /// A `.` or `..` segment, however it was spelled.
    DotSegment,
    /// A byte outside visible ASCII, sent without percent-encoding.
    RawByte,
}

impl Rejection {
    /// A short reason for the client and the log.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::NotOriginForm => "the request target must be a path starting with /",
            Rejection::MalformedEscape => "a % in the URL is not followed by two hex digits",
            Rejection::InvalidUtf8 => "the URL's escapes do not decode to UTF-8",
            Rejection::ControlCharacter => "the URL contains NUL or a control character",
            Rejection::DotSegment => "the path contains a . or .. segment",
            Rejection::RawByte => "the URL contains a space or non-ASCII byte without escaping",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for Rejection {}

/// The canonical form of an origin-form request target (`/path?query`, a `#fragment` ignored)
/// for an origin that reads targets in `form`.
pub fn target(raw: &[u8], form: Form) -> Result<Target, Rejection> {
    let raw = raw.split(|&b| b == b'#').next().unwrap_or_default();
    if raw.first() != Some(&b'/') {
        return Err(Rejection::NotOriginForm);
    }
    if let Some(&b) = raw.iter().find(|&&b| !b.is_ascii_graphic()) {
        return Err(if b.is_ascii_control() {
            Rejection::ControlCharacter
        } else {
            Rejection::RawByte
        });
    }
    let (path, query) = match raw.iter().position(|&b| b == b'?') {
        Some(i) => (&raw[..i], Some(&raw[i + 1..])),
        None => (raw, None),
    };
    let mut text = String::with_capacity(raw.len());
    match form {
        Form::Wsgi => canonical_path(path, &mut text)?,
        Form::Rfc3986 => normal_path(path, &mut text)?,
    }
    let path_end = text.len();
    match (form, query) {
        (_, None) => {}
        (Form::Wsgi, Some(query)) => canonical_query(query, &mut text)?,
        (Form::Rfc3986, Some(query)) => {
            text.push('?');
            normalise(query, is_query_char, |b| b == 0, &mut text)?;
        }
    }
    Ok(Target { text, path_end })
}

/// Canonicalises `req`'s target in place for an origin that reads targets in `form`; the origin
/// then receives the canonical form. A target already canonical is left untouched (no
/// allocation of a new URI).
pub fn apply(req: &mut RequestHeader, form: Form) -> Result<(), Rejection> {
    let raw = req.raw_path();
    // Absolute-form (`GET http://host/p`) is reduced to its path, which pingora keeps in the URI;
    // the authority is not ours to honour (`Host` is set for the ERP in `proxy::headers`).
    let origin_form = raw.first() == Some(&b'/');
    let raw = if origin_form {
        raw
    } else {
        req.uri
            .path_and_query()
            .map_or(&b""[..], |pq| pq.as_str().as_bytes())
    };
    let canonical = target(raw, form)?;
    if !origin_form || canonical.as_str().as_bytes() != raw {
        // Every canonical target is a valid URI: only `pchar`s, `?`, `&`, `=` and `%XX`.
        let uri = http::Uri::try_from(canonical.text).map_err(|_| Rejection::RawByte)?;
        req.set_uri(uri);
    }
    Ok(())
}

/// The path as the ERP's router sees it: `%XX` decoded. `path` is canonical (its escapes are
/// valid UTF-8); anything else is returned as it is.
pub fn decode(path: &str) -> Cow<'_, str> {
    if !path.contains('%') {
        return Cow::Borrowed(path);
    }
    match percent_decode(path.as_bytes()).map(String::from_utf8) {
        Ok(Ok(s)) => Cow::Owned(s),
        _ => Cow::Borrowed(path),
    }
}

/// A canonical query's parameters in order, each as `(name, whole pair)`; the name is still
/// encoded (see `decode`).
pub fn params(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| (pair.split_once('=').map_or(pair, |(n, _)| n), pair))
}

fn canonical_path(raw: &[u8], out: &mut String) -> Result<(), Rejection> {
    let decoded = percent_decode(raw)?;
    let decoded = std::str::from_utf8(&decoded).map_err(|_| Rejection::InvalidUtf8)?;
    if decoded.chars().any(char::is_control) {
        return Err(Rejection::ControlCharacter);
    }
    // `decoded` starts with `/` (raw does, and `/` is never an escape's first byte).
    let segments: Vec<&str> = decoded[1..].split('/').collect();
    let trailing = segments.last().is_some_and(|s| s.is_empty());
    for segment in segments.iter().filter(|s| !s.is_empty()) {
        if *segment == "." || *segment == ".." {
            return Err(Rejection::DotSegment);
        }
        out.push('/');
        encode(segment, is_path_literal, out);
    }
    if trailing || out.is_empty() {
        out.push('/');
    }
    Ok(())
}

/// A path in RFC 3986's normal form (`normalise`); control characters, however spelled, and
/// dot segments are refused as in the WSGI form.
fn normal_path(raw: &[u8], out: &mut String) -> Result<(), Rejection> {
    let start = out.len();
    normalise(raw, is_path_char, |b| b.is_ascii_control(), out)?;
    // `.` is unreserved: `%2E` is `.` by now, and a segment is between literal `/`s.
    if out[start..].split('/').any(|s| s == "." || s == "..") {
        return Err(Rejection::DotSegment);
    }
    Ok(())
}

/// Writes `raw` in RFC 3986's normal form (§6.2.2.1, §6.2.2.2): escapes of unreserved
/// characters decoded, every other escape kept with upper-case hex, bytes `literal` does not
/// allow escaped, the rest as sent. An escape of a byte `refused` refuses the target.
fn normalise(
    raw: &[u8],
    literal: fn(u8) -> bool,
    refused: fn(u8) -> bool,
    out: &mut String,
) -> Result<(), Rejection> {
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b != b'%' {
            encode_byte(b, literal, out);
            i += 1;
            continue;
        }
        let hi = raw.get(i + 1).and_then(|&h| hex(h));
        let lo = raw.get(i + 2).and_then(|&l| hex(l));
        let (Some(hi), Some(lo)) = (hi, lo) else {
            return Err(Rejection::MalformedEscape);
        };
        let byte = hi * 16 + lo;
        if refused(byte) {
            return Err(Rejection::ControlCharacter);
        }
        encode_byte(byte, is_unreserved, out);
        i += 3;
    }
    Ok(())
}

fn canonical_query(raw: &[u8], out: &mut String) -> Result<(), Rejection> {
    let mut first = true;
    for piece in raw.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match piece.iter().position(|&b| b == b'=') {
            Some(i) => (&piece[..i], &piece[i + 1..]),
            None => (piece, &b""[..]),
        };
        out.push(if first { '?' } else { '&' });
        first = false;
        encode(&query_component(name)?, is_query_literal, out);
        out.push('=');
        encode(&query_component(value)?, is_query_literal, out);
    }
    Ok(())
}

/// One query name or value as the ERP reads it: `+` is a space, then escapes are decoded.
fn query_component(raw: &[u8]) -> Result<String, Rejection> {
    let plus_is_space: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    let decoded =
        String::from_utf8(percent_decode(&plus_is_space)?).map_err(|_| Rejection::InvalidUtf8)?;
    if decoded.contains('\0') {
        return Err(Rejection::ControlCharacter);
    }
    Ok(decoded)
}

fn percent_decode(raw: &[u8]) -> Result<Vec<u8>, Rejection> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b == b'%' {
            let hi = raw.get(i + 1).and_then(|&h| hex(h));
            let lo = raw.get(i + 2).and_then(|&l| hex(l));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi * 16 + lo),
                _ => return Err(Rejection::MalformedEscape),
            }
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn encode(text: &str, literal: fn(u8) -> bool, out: &mut String) {
    for &b in text.as_bytes() {
        encode_byte(b, literal, out);
    }
}

/// `b` itself if `literal` allows it, else its escape in upper-case hex.
fn encode_byte(b: u8, literal: fn(u8) -> bool, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    if literal(b) {
        out.push(b as char);
    } else {
        out.push('%');
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 `pchar` minus `%`: what a path segment may carry literally.
fn is_path_literal(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

/// What an RFC 3986 path carries literally: `pchar`s and `/`.
fn is_path_char(b: u8) -> bool {
    is_path_literal(b) || b == b'/'
}

/// What an RFC 3986 query carries literally: `pchar`s, `/` and `?`.
fn is_query_char(b: u8) -> bool {
    is_path_char(b) || b == b'?'
}

/// What a query name or value carries literally: never the separators `&` and `=`, never `+`
/// (a space to the ERP), and not `;` (a separator to older Python query parsers).
fn is_query_literal(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$' | b'\'' | b'(' | b')' | b'*' | b',' | b'/' | b':' | b'?' | b'@'
        )
}

#[cfg(test)]
mod tests;
