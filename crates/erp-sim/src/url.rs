//! URL helpers for the simulator: percent-decoding and Werkzeug-style query parsing.
//!
//! Pure functions with no I/O. Routing matches on the decoded path (as Werkzeug does), while
//! counters and echoes keep the raw path and query exactly as the client sent them.

/// Decodes `%XX` escapes (and `+` as a space when `plus_as_space`), replacing invalid UTF-8.
/// A `%` not followed by two hex digits stays as it is, like Python's `unquote`.
pub(crate) fn percent_decode(s: &str, plus_as_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Parses a query string the way Werkzeug fills `request.args`: pairs split on `&`, a key
/// without `=` gets an empty value, `+` is a space, empty segments are skipped.
pub(crate) fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|seg| !seg.is_empty())
        .map(|seg| match seg.split_once('=') {
            Some((k, v)) => (percent_decode(k, true), percent_decode(v, true)),
            None => (percent_decode(seg, true), String::new()),
        })
        .collect()
}

/// First value of `key`, as `request.args.get(key)` returns it.
pub(crate) fn first_value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// An insertion-ordered map with Python `dict` assignment semantics: assigning an existing
/// key keeps its position. The ERP builds redirect query strings from such dicts, so the
/// parameter order in a `Location` depends on it.
#[derive(Debug, Default, Clone)]
pub(crate) struct OrderedParams(Vec<(String, String)>);

impl OrderedParams {
    /// `d[key] = value`.
    pub(crate) fn set(&mut self, key: &str, value: &str) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_owned(),
            None => self.0.push((key.to_owned(), value.to_owned())),
        }
    }

    /// `d.update(request.args)`: first value per key, in order of first appearance.
    pub(crate) fn update_from_args(&mut self, args: &[(String, String)]) {
        for (i, (k, v)) in args.iter().enumerate() {
            if args[..i].iter().any(|(earlier, _)| earlier == k) {
                continue;
            }
            self.set(k, v);
        }
    }

    /// Whether no parameter is set.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &(String, String)> {
        self.0.iter()
    }

    /// `'&'.join(f"{k}={v}" ...)`: no URL-encoding, exactly like the ERP.
    pub(crate) fn join_unencoded(&self) -> String {
        let mut out = String::new();
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_plus() {
        assert_eq!(percent_decode("a%20b+c", true), "a b c");
        assert_eq!(percent_decode("a%20b+c", false), "a b+c");
        assert_eq!(percent_decode("100%", true), "100%");
        assert_eq!(percent_decode("%zz%4", true), "%zz%4");
        assert_eq!(percent_decode("%C3%A9", true), "é");
    }

    #[test]
    fn parses_like_werkzeug() {
        let q = parse_query("view=full&&flag&x=1=2&view=again");
        assert_eq!(q.len(), 4);
        assert_eq!(first_value(&q, "view"), Some("full"));
        assert_eq!(first_value(&q, "flag"), Some(""));
        assert_eq!(first_value(&q, "x"), Some("1=2"));
    }

    #[test]
    fn ordered_params_keep_first_position() {
        let mut p = OrderedParams::default();
        p.set("detail", "full");
        p.update_from_args(&parse_query("format=report&detail=summary&detail=x"));
        assert_eq!(p.join_unencoded(), "detail=summary&format=report");
    }
}
