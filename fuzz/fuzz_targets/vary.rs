//! `Vary` parsing and the secondary key (`cache::vary`): which stored variant a request selects.
//!
//! Input: fields one `Name: value` a line; `Vary` lines are the stored response's, every other
//! line is the request's. Invariants: the parsed `Vary` is a canonical form (its fields,
//! written back as one `Vary` line, parse to the same); the variance depends on the request's
//! values, not on how they are spelled (several lines or one, spaces around members, the case
//! of case-insensitive fields); and a request with a selecting field never shares the variant
//! of one without it.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue, header};
use knitcache::cache::encoding::{self, Coding};
use knitcache::cache::vary::{Vary, variance};
use knitcache_fuzz::{field, lines};
use libfuzzer_sys::fuzz_target;

/// `req` with each field's lines joined into one, members separated by `" , "`, and the
/// case-insensitive fields upper-cased: another spelling of the same values.
fn respelled(req: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in req.keys() {
        let upper = *name == header::ACCEPT_LANGUAGE
            || *name == header::ACCEPT_ENCODING
            || *name == header::ACCEPT_CHARSET;
        let mut joined: Vec<u8> = Vec::new();
        for (i, line) in req.get_all(name).iter().enumerate() {
            if i > 0 {
                joined.extend_from_slice(b" , ");
            }
            for &b in line.as_bytes() {
                match b {
                    b',' => joined.extend_from_slice(b" ,  "),
                    b if upper => joined.push(b.to_ascii_uppercase()),
                    b => joined.push(b),
                }
            }
        }
        let value = HeaderValue::from_bytes(&joined).expect("respelled values stay valid");
        out.append(name.clone(), value);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let mut resp = HeaderMap::new();
    let mut req = HeaderMap::new();
    for (name, value) in lines(data).filter_map(field) {
        if name == header::VARY {
            resp.append(name, value);
        } else {
            req.append(name, value);
        }
    }
    let vary = Vary::of(&resp);
    let fields: Vec<HeaderName> = match &vary {
        Vary::Star => {
            assert!(vary.fields().is_empty());
            return;
        }
        Vary::Fields(fields) => fields.to_vec(),
    };
    assert!(
        fields.windows(2).all(|w| w[0].as_str() < w[1].as_str()),
        "fields not sorted and unique: {fields:?}"
    );
    let written = fields
        .iter()
        .map(HeaderName::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let mut again = HeaderMap::new();
    if !fields.is_empty() {
        again.insert(
            header::VARY,
            HeaderValue::from_str(&written).expect("names are valid"),
        );
    }
    assert_eq!(
        Vary::of(&again),
        vary,
        "the Vary written back parses otherwise"
    );

    let respelled = respelled(&req);
    for coding in Coding::ALL {
        for compression in [false, true] {
            let v = variance(coding, compression, &fields, &req);
            assert_eq!(v, variance(coding, compression, &fields, &req));
            assert_eq!(
                v,
                variance(coding, compression, &fields, &respelled),
                "a respelling of the request selects another variant"
            );
            let selecting: Vec<&HeaderName> = fields
                .iter()
                .filter(|n| !compression || **n != header::ACCEPT_ENCODING)
                .collect();
            let Some(first) = selecting.first() else {
                assert_eq!(v, encoding::variance(coding, compression));
                continue;
            };
            // Without the first selecting field, and with it set: two variants.
            let mut without = req.clone();
            without.remove(*first);
            let mut with = without.clone();
            with.insert((*first).clone(), HeaderValue::from_static("fuzz"));
            assert_ne!(
                variance(coding, compression, &fields, &without),
                variance(coding, compression, &fields, &with),
                "a request lacking {first} shares a variant with one that has it"
            );
        }
    }
});
