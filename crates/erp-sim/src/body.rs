//! Response bodies: Flask-style JSON padded to the measured sizes, the dashboard HTML pages,
//! Werkzeug's error pages, plus the small pieces they need (ISO timestamps, JSON escaping,
//! FNV-1a).
//!
//! JSON bodies always carry `timestamp` (the ERP has 75 `datetime.now().isoformat()` calls,
//! so bodies differ on every call) and echo the request's path and query. Filler records are
//! deterministic per path and cached, so a 100 KB body costs a copy, not a generation.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::Mutex;

/// Byte size of `/` and `/consolidated` (docs/ERP.md §3: the ERP's `web/consolidated_dashboard.html`).
pub(crate) const DASHBOARD_BYTES: usize = 808_563;
/// Byte size of `/ai-factory-floor` (docs/ERP.md §3).
pub(crate) const FACTORY_FLOOR_BYTES: usize = 25_302;

/// What every JSON body echoes about the request that produced it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Echo<'a> {
    /// Request method.
    pub method: &'a str,
    /// Raw path, as sent.
    pub path: &'a str,
    /// Raw query without `?`, as sent (empty when absent).
    pub query: &'a str,
    /// Length and FNV-1a of the request body, when the request carried one.
    pub received: Option<(usize, u64)>,
    /// How many data reloads the simulated ERP has done (`/api/reload-data`).
    pub data_version: u64,
}

/// 64-bit FNV-1a: a stable hash the tests can recompute to prove a body arrived intact.
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `datetime.now().isoformat()` shape (`2025-09-17T12:34:56.123456`), in UTC.
pub(crate) fn iso_timestamp(now: SystemTime) -> String {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// An HTTP date (`Wed, 17 Sep 2025 12:00:00 GMT`) for `Last-Modified`.
pub(crate) fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Appends `s` as a JSON string literal.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A flat JSON object written field by field (Flask's `jsonify` output is compact).
#[derive(Debug)]
pub(crate) struct JsonObject {
    buf: String,
    empty: bool,
}

impl JsonObject {
    /// Starts `{`.
    pub(crate) fn new() -> Self {
        Self {
            buf: String::from("{"),
            empty: true,
        }
    }

    fn key(&mut self, k: &str) {
        if !self.empty {
            self.buf.push(',');
        }
        self.empty = false;
        push_json_str(&mut self.buf, k);
        self.buf.push(':');
    }

    /// A string field.
    pub(crate) fn str(mut self, k: &str, v: &str) -> Self {
        self.key(k);
        push_json_str(&mut self.buf, v);
        self
    }

    /// A field whose value is already JSON (number, `null`, object).
    pub(crate) fn raw(mut self, k: &str, v: &str) -> Self {
        self.key(k);
        self.buf.push_str(v);
        self
    }

    /// An unsigned number field.
    pub(crate) fn num(self, k: &str, v: u64) -> Self {
        self.raw(k, &v.to_string())
    }

    /// The request echo plus `timestamp`, present in every JSON body the simulator makes.
    pub(crate) fn echo(mut self, echo: &Echo<'_>) -> Self {
        self = self
            .num("data_version", echo.data_version)
            .str("endpoint", echo.path)
            .str("method", echo.method)
            .str("query", echo.query);
        if let Some((len, hash)) = echo.received {
            self = self
                .num("received_bytes", len as u64)
                .str("received_fnv1a64", &format!("{hash:016x}"));
        }
        self.str("timestamp", &iso_timestamp(SystemTime::now()))
    }

    /// Closes the object; Flask ends JSON bodies with a newline.
    pub(crate) fn finish(mut self) -> String {
        self.buf.push_str("}\n");
        self.buf
    }
}

/// Filler records per path, generated once and cut to size per response.
#[derive(Debug, Default)]
pub(crate) struct RecordCache {
    blobs: Mutex<HashMap<u64, Arc<Blob>>>,
}

/// Comma-joined records and the end offset of each one.
#[derive(Debug)]
struct Blob {
    text: String,
    ends: Vec<usize>,
}

impl RecordCache {
    /// Records for `seed` covering at least `min_len` bytes (or as many as fit a sane cap).
    fn blob(&self, seed: u64, min_len: usize) -> Arc<Blob> {
        let mut blobs = self.blobs.lock();
        if let Some(b) = blobs.get(&seed)
            && b.text.len() >= min_len
        {
            return Arc::clone(b);
        }
        let blob = Arc::new(make_records(seed, min_len.max(4096)));
        blobs.insert(seed, Arc::clone(&blob));
        blob
    }

    /// A success body for `echo`, padded to exactly `target` bytes when the fixed fields fit.
    /// The data is `{"records":[…]}`, deterministic for the path: only the echo, the timestamp
    /// and `data_version` change between calls.
    pub(crate) fn success(&self, echo: &Echo<'_>, extra: &[(&str, &str)], target: usize) -> Bytes {
        let mut tail = JsonObject::new();
        for (k, v) in extra {
            tail = tail.str(k, v);
        }
        let tail = tail.echo(echo).finish();
        // `{"data":{"records":[` + records + `]},` + tail without its `{`.
        const HEAD: &str = "{\"data\":{\"records\":[";
        const MID: &str = "]},";
        let fixed = HEAD.len() + MID.len() + tail.len() - 1;
        let budget = target.saturating_sub(fixed);
        let mut out = String::with_capacity(fixed + budget);
        out.push_str(HEAD);
        if budget > 0 {
            let blob = self.blob(fnv1a64(echo.path.as_bytes()), budget);
            let n = blob.ends.partition_point(|&e| e <= budget);
            let used = if n == 0 { 0 } else { blob.ends[n - 1] };
            out.push_str(&blob.text[..used]);
            push_filler(&mut out, budget - used, n > 0);
        }
        out.push_str(MID);
        out.push_str(&tail[1..]);
        Bytes::from(out)
    }
}

/// Fills exactly `len` bytes inside a JSON array: one `{"pad":"…"}` record when it fits,
/// otherwise spaces (valid JSON whitespace).
fn push_filler(out: &mut String, len: usize, after_record: bool) {
    let overhead = "{\"pad\":\"\"}".len() + usize::from(after_record);
    if len > overhead {
        if after_record {
            out.push(',');
        }
        out.push_str("{\"pad\":\"");
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        for i in 0..len - overhead {
            out.push(ALPHABET[i % ALPHABET.len()] as char);
        }
        out.push_str("\"}");
    } else {
        out.extend(std::iter::repeat_n(' ', len));
    }
}

/// splitmix64, the deterministic generator behind filler records and latency jitter.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Knit-order-like records: realistic field names and value spreads, so compression ratios
/// look like the ERP's rather than like a run of one byte.
fn make_records(seed: u64, min_len: usize) -> Blob {
    const STATUS: [&str; 5] = [
        "scheduled",
        "in_progress",
        "on_hold",
        "complete",
        "shortage",
    ];
    const CENTERS: [&str; 6] = [
        "9.38.20.F",
        "9.38.20.M",
        "13.60.24.F",
        "18.30.36.C",
        "7.40.18.F",
        "2.30.30.C",
    ];
    let mut rng = seed;
    let mut text = String::with_capacity(min_len + 256);
    let mut ends = Vec::new();
    let mut i = 0u64;
    while text.len() < min_len {
        if i > 0 {
            text.push(',');
        }
        let r = splitmix64(&mut rng);
        let _ = write!(
            text,
            "{{\"id\":\"KO-{:06}\",\"style\":\"C{}B{:04}/{}\",\"yarn_id\":{},\"qty_lbs\":{}.{:02},\
             \"machine\":\"M-{}\",\"work_center\":\"{}\",\"status\":\"{}\",\"due_date\":\"2025-{:02}-{:02}\",\
             \"planning_balance\":{}{}.{}}}",
            100_000 + i,
            r % 9 + 1,
            r >> 8 & 0x1fff,
            r >> 24 & 3,
            10_000 + (r >> 28 & 0x3fff),
            r >> 40 & 0xfff,
            r >> 52 & 63,
            r >> 12 & 0x1ff,
            CENTERS[(r >> 33) as usize % CENTERS.len()],
            STATUS[(r >> 37) as usize % STATUS.len()],
            (r >> 44) % 12 + 1,
            (r >> 48) % 28 + 1,
            if r & 1 == 1 { "-" } else { "" },
            r >> 17 & 0x7ff,
            r >> 5 & 7,
        );
        ends.push(text.len());
        i += 1;
    }
    Blob { text, ends }
}

/// Werkzeug's 404 page, used for unknown paths outside `/api/` (the ERP's 404 handler
/// `return e`s there, docs/ERP.md §2 step 4).
pub(crate) const WERKZEUG_404: &str = "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n\
<h1>Not Found</h1>\n<p>The requested URL was not found on the server. If you entered the URL \
manually please check your spelling and try again.</p>\n";

/// The dashboard page served at `/` and `/consolidated`: 808,563 bytes of HTML with inline
/// script, built once. Its API calls name the dashboard's real polling URLs (docs/ERP.md §9).
pub(crate) fn dashboard_html() -> Bytes {
    static PAGE: LazyLock<Bytes> = LazyLock::new(|| {
        synthetic_page(
            "Beverly Knits ERP - Consolidated Dashboard",
            DASHBOARD_BYTES,
            0x5eed_da5b,
        )
    });
    PAGE.clone()
}

/// The page served at `/ai-factory-floor` (25,302 bytes), built once.
pub(crate) fn factory_floor_html() -> Bytes {
    static PAGE: LazyLock<Bytes> = LazyLock::new(|| {
        synthetic_page(
            "AI Factory Floor Dashboard",
            FACTORY_FLOOR_BYTES,
            0x0f10_04a1,
        )
    });
    PAGE.clone()
}

fn synthetic_page(title: &str, size: usize, seed: u64) -> Bytes {
    const CALLS: [&str; 10] = [
        "/api/comprehensive-kpis",
        "/api/v2/yarn?analysis=intelligence",
        "/api/inventory-intelligence-enhanced?realtime=true",
        "/api/production-planning",
        "/api/knit-orders",
        "/api/ml-forecast-detailed?detail=summary",
        "/api/fabric-forecast-integrated",
        "/api/factory-floor-ai-dashboard",
        "/api/po-risk-analysis",
        "/api/v2/production?view=pipeline",
    ];
    let head = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"UTF-8\">\n<title>{title}</title>\n\
         <script src=\"https://cdn.tailwindcss.com\"></script>\n</head>\n<body class=\"bg-gray-50\">\n\
         <div id=\"app\"></div>\n<script>\nconst API_BASE_URL = window.location.origin;\n"
    );
    let tail = "</script>\n</body>\n</html>\n";
    let mut out = String::with_capacity(size);
    out.push_str(&head);
    let mut rng = seed;
    let mut i = 0usize;
    let body_end = size.saturating_sub(tail.len());
    loop {
        let r = splitmix64(&mut rng);
        let line = format!(
            "async function loadPanel{i}() {{ const el = document.getElementById('panel-{}'); \
             const data = await fetchAPI('{}'); el.innerHTML = renderTable(data, {}, '{:x}'); }}\n",
            r % 977,
            CALLS[(r >> 20) as usize % CALLS.len()],
            r >> 40 & 0xff,
            r >> 8 & 0xffff_ffff,
        );
        if out.len() + line.len() > body_end {
            break;
        }
        out.push_str(&line);
        i += 1;
    }
    // Exact size: a comment line absorbs the remainder.
    let rest = body_end.saturating_sub(out.len());
    if rest >= 6 {
        out.push_str("/*");
        out.extend(std::iter::repeat_n('-', rest - 5));
        out.push_str("*/\n");
    } else {
        out.extend(std::iter::repeat_n('\n', rest));
    }
    out.push_str(tail);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn echo<'a>(path: &'a str, query: &'a str) -> Echo<'a> {
        Echo {
            method: "GET",
            path,
            query,
            received: None,
            data_version: 0,
        }
    }

    #[test]
    fn timestamps_and_dates() {
        let t = UNIX_EPOCH + Duration::from_micros(1_758_110_400_123_456);
        assert_eq!(iso_timestamp(t), "2025-09-17T12:00:00.123456");
        assert_eq!(http_date(t), "Wed, 17 Sep 2025 12:00:00 GMT");
        assert_eq!(
            iso_timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000000"
        );
    }

    #[test]
    fn success_bodies_hit_the_target_size() {
        let cache = RecordCache::default();
        for target in [342, 786, 2_863, 14_733, 102_505] {
            let b = cache.success(
                &echo("/api/knit-orders", "a=1"),
                &[("status", "success")],
                target,
            );
            assert_eq!(b.len(), target, "target {target}");
            let s = std::str::from_utf8(&b).expect("utf8");
            assert!(s.ends_with("}\n") && s.contains("\"timestamp\":\""), "{s}");
        }
        // A target below the fixed fields gives the fixed fields only.
        let b = cache.success(&echo("/p", ""), &[], 10);
        assert!(b.len() > 10 && b.starts_with(b"{\"data\":{\"records\":[]}"));
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        push_json_str(&mut s, "a\"b\\c\n\u{1}");
        assert_eq!(s, "\"a\\\"b\\\\c\\n\\u0001\"");
    }

    #[test]
    fn pages_have_the_measured_sizes() {
        assert_eq!(dashboard_html().len(), DASHBOARD_BYTES);
        assert_eq!(factory_floor_html().len(), FACTORY_FLOOR_BYTES);
        assert_eq!(WERKZEUG_404.len(), 207);
    }

    #[test]
    fn fnv_known_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
