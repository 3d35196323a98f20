//! What travels on the shared invalidation stream, and how one stream entry is spelled.
//!
//! An entry has three fields: `from` (the publishing replica's id, so it can skip its own), `at`
//! (when it was published, milliseconds since the unix epoch, for the lag metric) and `inv` (the
//! invalidation as JSON). A URL travels in its canonical form and each replica keys it with its
//! own routes; a ban travels with the time it was made, so every replica bans exactly what the
//! first one did, however late the entry arrives.

use serde::{Deserialize, Serialize};

use crate::cache::bans::Ban;

/// One purge or invalidation, as every replica applies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Invalidation {
    /// A ban by prefix, route or tag (`everything` is the prefix `/`), made at `at_unix_ms`.
    Ban(Ban),
    /// Every stored variant of this canonical path and query.
    Url(String),
}

/// Stream field names.
pub const FIELD_FROM: &str = "from";
/// See the module doc.
pub const FIELD_AT: &str = "at";
/// See the module doc.
pub const FIELD_INV: &str = "inv";

/// An entry read back from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The publishing replica.
    pub from: String,
    /// When it was published (ms since the unix epoch), 0 if absent.
    pub at_unix_ms: u64,
    /// The invalidation; `None` if this version cannot read it (a newer replica's kind).
    pub inv: Option<Invalidation>,
}

impl Entry {
    /// Reads an entry from its fields, as `XREAD` returns them.
    pub fn from_fields<'a>(fields: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Entry {
        let mut entry = Entry {
            from: String::new(),
            at_unix_ms: 0,
            inv: None,
        };
        for (name, value) in fields {
            match name {
                FIELD_FROM => entry.from = String::from_utf8_lossy(value).into_owned(),
                FIELD_AT => {
                    entry.at_unix_ms = std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                }
                FIELD_INV => entry.inv = serde_json::from_slice(value).ok(),
                _ => {}
            }
        }
        entry
    }
}

/// The JSON of `inv`, as `XADD` writes it.
pub fn encode(inv: &Invalidation) -> String {
    // Serialising plain strings and numbers cannot fail.
    serde_json::to_string(inv).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::bans::BanMatch;

    #[test]
    fn entries_read_back_what_was_written() {
        for inv in [
            Invalidation::Url("/api/x?a=1".into()),
            Invalidation::Ban(Ban {
                matcher: BanMatch::Tag("yarn".into()),
                at_unix_ms: 1_700_000_000_123,
            }),
            Invalidation::Ban(Ban {
                matcher: BanMatch::Prefix("/".into()),
                at_unix_ms: 1,
            }),
        ] {
            let json = encode(&inv);
            let entry = Entry::from_fields([
                (FIELD_FROM, b"r1".as_slice()),
                (FIELD_AT, b"42".as_slice()),
                (FIELD_INV, json.as_bytes()),
            ]);
            assert_eq!(entry.inv.as_ref(), Some(&inv), "{json}");
            assert_eq!((entry.from.as_str(), entry.at_unix_ms), ("r1", 42));
        }
        let unknown = Entry::from_fields([(FIELD_INV, br#"{"shard": 3}"#.as_slice())]);
        assert_eq!(unknown.inv, None, "a kind this version does not know");
    }
}
