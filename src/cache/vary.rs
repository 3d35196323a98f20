//! Secondary cache keys (RFC 9111 §4.1): which stored variant of a URL a request may be served.
//!
//! A variant is selected by the coding knitcache stores the body in (`encoding`) and by the
//! request's values of every field the stored response's `Vary` names, normalised so that
//! spellings that mean the same select the same variant. `Vary: *` never matches: such a
//! response is not stored at all. The same function computes the variance when a response is
//! stored, when pingora looks a request up and on the memory fast path, so they always agree.

use http::{HeaderMap, HeaderName, header};
use pingora_cache::VarianceBuilder;
use pingora_cache::key::HashBinary;

use super::encoding::{self, Coding};

/// The fields a stored response varies on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vary {
    /// Lower-case field names, sorted and without repeats; empty when the response has no `Vary`.
    Fields(Box<[HeaderName]>),
    /// `Vary: *`: no request can be shown to match.
    Star,
}

impl Vary {
    /// The `Vary` of `headers`: every line, every comma-separated member.
    pub fn of(headers: &HeaderMap) -> Vary {
        let mut fields = Vec::new();
        for line in headers.get_all(header::VARY) {
            // A value that is not text names no field we could match: treat it as `*`.
            let Ok(line) = line.to_str() else {
                return Vary::Star;
            };
            for member in line.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                if member == "*" {
                    return Vary::Star;
                }
                match HeaderName::from_bytes(member.as_bytes()) {
                    Ok(name) => fields.push(name),
                    Err(_) => return Vary::Star,
                }
            }
        }
        fields.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        fields.dedup();
        Vary::Fields(fields.into_boxed_slice())
    }

    /// The named fields (none for `*`).
    pub fn fields(&self) -> &[HeaderName] {
        match self {
            Vary::Fields(f) => f,
            Vary::Star => &[],
        }
    }
}

/// The variance of the variant a request with `req` headers and `coding` selects among
/// responses varying on `fields`. `None` (a single variant per URL) when there is nothing to
/// vary on. Without `fields` this is the coding's precomputed variance: no hashing per hit.
pub fn variance(
    coding: Coding,
    compression_enabled: bool,
    fields: &[HeaderName],
    req: &HeaderMap,
) -> Option<HashBinary> {
    // With compression on, a cacheable request's `Accept-Encoding` has been reduced to
    // `coding`'s token, so `Vary: Accept-Encoding` (which compressing adds) selects nothing the
    // coding does not: such responses keep the coding's own slot, as every other stored coding.
    let selecting = |name: &&HeaderName| !compression_enabled || **name != header::ACCEPT_ENCODING;
    if !fields.iter().any(|name| selecting(&name)) {
        return encoding::variance(coding, compression_enabled);
    }
    let mut builder = VarianceBuilder::new();
    if compression_enabled {
        builder.add_value("coding", coding.token().unwrap_or("identity"));
    }
    let fields: Vec<&HeaderName> = fields.iter().filter(selecting).collect();
    for name in &fields {
        if let Some(value) = normalised(req, name) {
            // `h:` keeps field names apart from the coding's entry (a field cannot contain `:`).
            builder.add_owned_name_value(format!("h:{name}"), value.into_bytes());
        }
    }
    // The field list itself, so that a request lacking every field still selects a variant
    // of this `Vary` family, never the slot of a response without `Vary`.
    let names: Vec<&str> = fields.iter().map(|n| n.as_str()).collect();
    builder.add_owned_value("vary", names.join(",").into_bytes());
    builder.finalize()
}

/// The request's value of `name` as a variant key sees it: every line joined with `,`,
/// whitespace around members removed, lower-cased where the field's values are
/// case-insensitive (language tags, charsets, codings). `None` when the request lacks it.
fn normalised(req: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut lines = req.get_all(name).iter().peekable();
    lines.peek()?;
    let case_insensitive = *name == header::ACCEPT_LANGUAGE
        || *name == header::ACCEPT_ENCODING
        || *name == header::ACCEPT_CHARSET;
    let mut out = String::new();
    for line in lines {
        let text = String::from_utf8_lossy(line.as_bytes());
        for member in text.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            if !out.is_empty() {
                out.push(',');
            }
            // Inside a member, `;` parameters lose their surrounding spaces too.
            for (i, part) in member.split(';').map(str::trim).enumerate() {
                if i > 0 {
                    out.push(';');
                }
                if case_insensitive {
                    out.push_str(&part.to_ascii_lowercase());
                } else {
                    out.push_str(part);
                }
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(fields: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in fields {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    fn v(vary: &[(&str, &str)], req: &[(&str, &str)]) -> Option<HashBinary> {
        let stored = Vary::of(&headers(vary));
        variance(Coding::Gzip, true, stored.fields(), &headers(req))
    }

    #[test]
    fn vary_lists_every_line_and_member_once() {
        let vary = Vary::of(&headers(&[
            ("vary", "Origin, accept-language"),
            ("vary", "origin"),
        ]));
        let names: Vec<&str> = vary.fields().iter().map(HeaderName::as_str).collect();
        assert_eq!(names, ["accept-language", "origin"]);
        assert_eq!(Vary::of(&headers(&[("vary", "origin, *")])), Vary::Star);
        assert_eq!(Vary::of(&headers(&[("vary", "bad name")])), Vary::Star);
        assert!(Vary::of(&headers(&[])).fields().is_empty());
    }

    #[test]
    fn no_vary_is_the_coding_variance() {
        assert_eq!(v(&[], &[("origin", "a")]), Coding::Gzip.variance());
        assert_eq!(variance(Coding::Gzip, false, &[], &HeaderMap::new()), None);
    }

    #[test]
    fn different_values_absent_and_present_are_different_variants() {
        let vary = [("vary", "origin")];
        let a = v(&vary, &[("origin", "http://a.example")]);
        let b = v(&vary, &[("origin", "http://b.example")]);
        let none = v(&vary, &[]);
        let empty = v(&vary, &[("origin", "")]);
        assert_ne!(a, b);
        assert_ne!(a, none);
        assert_ne!(none, empty);
        assert_ne!(
            none,
            Coding::Gzip.variance(),
            "vary'd, not the plain coding slot"
        );
        assert_eq!(a, v(&vary, &[("origin", "http://a.example")]));
    }

    #[test]
    fn the_coding_still_separates_variants() {
        let stored = Vary::of(&headers(&[("vary", "origin")]));
        let req = headers(&[("origin", "a")]);
        assert_ne!(
            variance(Coding::Gzip, true, stored.fields(), &req),
            variance(Coding::Brotli, true, stored.fields(), &req)
        );
        assert!(variance(Coding::Gzip, false, stored.fields(), &req).is_some());
    }

    #[test]
    fn equivalent_spellings_are_one_variant() {
        let vary = [("vary", "accept-language")];
        let a = v(&vary, &[("accept-language", "en-US, fr;q=0.5")]);
        assert_eq!(a, v(&vary, &[("accept-language", "EN-us,fr ; q=0.5")]));
        assert_eq!(
            a,
            v(
                &vary,
                &[
                    ("accept-language", "en-US"),
                    ("accept-language", "fr;q=0.5")
                ]
            )
        );
        assert_ne!(a, v(&vary, &[("accept-language", "fr;q=0.5, en-US")]));
        // Other fields keep their case: a tenant id may be case-sensitive.
        let vary = [("vary", "x-tenant")];
        assert_ne!(
            v(&vary, &[("x-tenant", "Acme")]),
            v(&vary, &[("x-tenant", "acme")])
        );
    }

    #[test]
    fn accept_encoding_is_the_codings_business_when_compressing() {
        let stored = Vary::of(&headers(&[("vary", "Accept-Encoding")]));
        let req = headers(&[("accept-encoding", "gzip")]);
        assert_eq!(
            variance(Coding::Gzip, true, stored.fields(), &req),
            Coding::Gzip.variance()
        );
        let both = Vary::of(&headers(&[("vary", "accept-encoding, origin")]));
        let with_origin = headers(&[("accept-encoding", "gzip"), ("origin", "a")]);
        let origin_only = headers(&[("origin", "a")]);
        assert_eq!(
            variance(Coding::Gzip, true, both.fields(), &with_origin),
            variance(Coding::Gzip, true, both.fields(), &origin_only),
        );
        // Without compression the client's own Accept-Encoding reaches the origin: it selects.
        let gzip = variance(Coding::Identity, false, stored.fields(), &req);
        let br = variance(
            Coding::Identity,
            false,
            stored.fields(),
            &headers(&[("accept-encoding", "br")]),
        );
        assert!(gzip.is_some());
        assert_ne!(gzip, br);
    }

    #[test]
    fn normalised_values_are_exactly_the_members_without_spaces() {
        let n = |name: &str, lines: &[&str]| {
            let pairs: Vec<(&str, &str)> = lines.iter().map(|l| (name, *l)).collect();
            let name = HeaderName::from_bytes(name.as_bytes()).expect("name");
            normalised(&headers(&pairs), &name)
        };
        assert_eq!(
            n("accept-language", &["EN-us , fr ; q=0.5", "de"]).as_deref(),
            Some("en-us,fr;q=0.5,de")
        );
        assert_eq!(
            n("accept-charset", &["UTF-8, ISO-8859-1;q=0.5"]).as_deref(),
            Some("utf-8,iso-8859-1;q=0.5")
        );
        assert_eq!(n("accept-encoding", &["GZIP"]).as_deref(), Some("gzip"));
        assert_eq!(
            n("x-tenant", &[" Acme ; Region=EU ,, Other"]).as_deref(),
            Some("Acme;Region=EU,Other")
        );
        assert_eq!(
            n("x-tenant", &[""]).as_deref(),
            Some(""),
            "present but empty"
        );
        assert_eq!(n("x-absent", &[]), None);
    }

    #[test]
    fn a_field_named_like_the_coding_entry_does_not_collide() {
        let vary = [("vary", "coding")];
        assert_ne!(v(&vary, &[("coding", "gzip")]), Coding::Gzip.variance());
    }
}
