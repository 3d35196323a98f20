//! Content negotiation for stored variants.
//!
//! A body is compressed once, before it is stored, and every hit serves the stored bytes:
//! compressing on each hit would cost 50x the hit itself on a 100 KB body. To keep the number
//! of variants (and so of ERP requests) small, a client's `Accept-Encoding` is reduced to one
//! coding we store: `zstd`, `gzip` or identity (never `br`: see `negotiate`). That choice is the request's variance.

use std::sync::OnceLock;

use http::HeaderValue;
use pingora_cache::VarianceBuilder;
use pingora_cache::key::HashBinary;

/// The codings a cached body may be stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// Uncompressed.
    Identity,
    /// gzip (RFC 1952).
    Gzip,
    /// Brotli (RFC 7932).
    Brotli,
    /// Zstandard (RFC 8878).
    Zstd,
}

impl Coding {
    /// Every coding a body may be stored in: the variants one cache key can have.
    pub const ALL: [Coding; 4] = [Coding::Identity, Coding::Gzip, Coding::Brotli, Coding::Zstd];

    /// The `Accept-Encoding` token, `None` for identity.
    pub fn token(self) -> Option<&'static str> {
        match self {
            Coding::Identity => None,
            Coding::Gzip => Some("gzip"),
            Coding::Brotli => Some("br"),
            Coding::Zstd => Some("zstd"),
        }
    }

    /// The variance hash of this coding's stored variant. Built once per coding: hashing it on
    /// every request was ~5 % of a hit's instructions.
    pub fn variance(self) -> Option<HashBinary> {
        static VARIANCES: OnceLock<[Option<HashBinary>; 4]> = OnceLock::new();
        let table = VARIANCES.get_or_init(|| {
            [Coding::Identity, Coding::Gzip, Coding::Brotli, Coding::Zstd].map(|c| {
                let mut variance = VarianceBuilder::new();
                variance.add_value("coding", c.token().unwrap_or("identity"));
                variance.finalize()
            })
        });
        table[self as usize]
    }

    /// Our preference when a client weighs several codings the same: smallest output first.
    fn rank(self) -> u8 {
        match self {
            Coding::Brotli => 3,
            Coding::Zstd => 2,
            Coding::Gzip => 1,
            Coding::Identity => 0,
        }
    }

    /// The coding a `Content-Encoding` or `Accept-Encoding` token names, case-insensitively
    /// (`x-gzip` is gzip); `None` for identity and for codings not stored.
    pub fn from_token(token: &str) -> Option<Coding> {
        match token {
            t if t.eq_ignore_ascii_case("br") => Some(Coding::Brotli),
            t if t.eq_ignore_ascii_case("zstd") => Some(Coding::Zstd),
            t if t.eq_ignore_ascii_case("gzip") || t.eq_ignore_ascii_case("x-gzip") => {
                Some(Coding::Gzip)
            }
            _ => None,
        }
    }
}

/// The coding to store and serve for a request with this `Accept-Encoding` (RFC 9110 §12.5.3:
/// highest q-value wins; `q=0` means "not acceptable"; no header means identity).
///
/// Never `br`: pingora 0.9's brotli encoder only flushes at the end of a body, never finishes
/// the stream, and loses part of what it was given (an 84 KB JSON decoded to 32 KB, and the
/// decoder was still waiting for the rest), so a client asking for `br` would get a body cut
/// short. A client that accepts `br` and `zstd` or `gzip` gets one of those; one that accepts
/// only `br` gets identity, which every client accepts. Brotli stays a `Coding` for bodies an
/// origin sends already compressed.
pub fn negotiate(accept_encoding: Option<&HeaderValue>) -> Coding {
    let Some(value) = accept_encoding.and_then(|v| v.to_str().ok()) else {
        return Coding::Identity;
    };
    value
        .split(',')
        .filter_map(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().map(str::trim).and_then(Coding::from_token)?;
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(1000, parse_qvalue);
            (coding != Coding::Brotli && q > 0).then_some((q, coding))
        })
        // The highest q-value; among equal ones, our smallest output.
        .max_by_key(|(q, coding)| (*q, coding.rank()))
        .map_or(Coding::Identity, |(_, coding)| coding)
}

/// The variance of the stored variant in `coding`: what the proxy's `cache_vary_filter` returns
/// and what an exact purge recomputes for every coding. `None` (one variant per key) when
/// compression is off.
pub fn variance(coding: Coding, compression_enabled: bool) -> Option<HashBinary> {
    if !compression_enabled {
        return None;
    }
    coding.variance()
}

/// A q-value in thousandths; anything unparsable counts as 0 (not acceptable).
fn parse_qvalue(q: &str) -> u16 {
    let q = q.trim();
    match q.parse::<f32>() {
        Ok(v) if (0.0..=1.0).contains(&v) => (v * 1000.0).round() as u16,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: &str) -> Coding {
        negotiate(Some(&HeaderValue::from_str(v).expect("header")))
    }

    #[test]
    fn variances_are_distinct_and_stable() {
        let all = [Coding::Identity, Coding::Gzip, Coding::Brotli, Coding::Zstd];
        let v: Vec<_> = all.iter().map(|c| c.variance()).collect();
        assert!(v.iter().all(Option::is_some));
        for i in 0..v.len() {
            for j in i + 1..v.len() {
                assert_ne!(v[i], v[j]);
            }
        }
        let mut fresh = VarianceBuilder::new();
        fresh.add_value("coding", "br");
        assert_eq!(Coding::Brotli.variance(), fresh.finalize());
    }

    #[test]
    fn browsers_get_zstd_or_gzip_never_brotli() {
        assert_eq!(n("gzip, deflate, br, zstd"), Coding::Zstd);
        assert_eq!(n("gzip, deflate, br"), Coding::Gzip);
        assert_eq!(n("br;q=1, gzip;q=0.5"), Coding::Gzip);
        assert_eq!(n("br"), Coding::Identity);
    }

    #[test]
    fn no_header_is_identity() {
        assert_eq!(negotiate(None), Coding::Identity);
        assert_eq!(n("identity"), Coding::Identity);
        assert_eq!(n("deflate"), Coding::Identity);
    }

    #[test]
    fn q_values_are_respected() {
        assert_eq!(n("gzip;q=1.0, zstd;q=0.5"), Coding::Gzip);
        assert_eq!(n("br;q=0, gzip"), Coding::Gzip);
        assert_eq!(n("gzip;q=0"), Coding::Identity);
        assert_eq!(n("gzip;q=nonsense"), Coding::Identity);
        assert_eq!(n("zstd;q=0.9, gzip;q=0.8"), Coding::Zstd);
        // A q-value above 1 is not one (RFC 9110 §12.4.2): not acceptable, not preferred.
        assert_eq!(n("gzip;q=2, zstd;q=0.5"), Coding::Zstd);
        assert_eq!(n("gzip;q=1.5"), Coding::Identity);
    }

    #[test]
    fn every_coding_is_its_own_variant() {
        let all: std::collections::HashSet<_> = Coding::ALL
            .iter()
            .map(|c| variance(*c, true).expect("variance"))
            .collect();
        assert_eq!(all.len(), 4);
        assert_eq!(variance(Coding::Gzip, false), None);
    }

    #[test]
    fn tokens_are_case_insensitive() {
        assert_eq!(n("GZIP"), Coding::Gzip);
        assert_eq!(n("x-gzip"), Coding::Gzip);
    }
}
