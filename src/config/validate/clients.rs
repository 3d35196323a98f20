//! The `clients:` section: how long a client may take to send a request, and how large a
//! request may be.

use super::super::file::FileClients;
use super::super::model::ClientSettings;
use super::{Problems, positive_ms};

/// The largest request head pingora's parser reads (1 MiB less one byte): a larger
/// `max_header_bytes` could never be reached.
const PARSER_MAX_HEADER_BYTES: u64 = 1_048_575;

/// The most header fields pingora's parser takes: more are a `400` before any limit here.
const PARSER_MAX_HEADERS: u64 = 256;

/// The smallest head worth allowing: a request line and a few ordinary fields.
const MIN_HEADER_BYTES: u64 = 1_024;

pub(super) fn clients(f: &FileClients, p: &mut Problems) -> Option<ClientSettings> {
    let base = "clients";
    let header_timeout = positive_ms(f.header_timeout_ms, &format!("{base}.header_timeout_ms"), p);
    let idle_timeout = positive_ms(f.idle_timeout_ms, &format!("{base}.idle_timeout_ms"), p);
    let body_timeout = positive_ms(f.body_timeout_ms, &format!("{base}.body_timeout_ms"), p);
    let send_timeout = positive_ms(f.send_timeout_ms, &format!("{base}.send_timeout_ms"), p);
    let mut ok = true;
    if !(MIN_HEADER_BYTES..=PARSER_MAX_HEADER_BYTES).contains(&f.max_header_bytes) {
        let msg = format!(
            "max_header_bytes = {} must be from {MIN_HEADER_BYTES} to {PARSER_MAX_HEADER_BYTES} \
             (the most the HTTP parser reads); write e.g. max_header_bytes: 32768",
            f.max_header_bytes
        );
        p.at(&format!("{base}.max_header_bytes"), None, msg);
        ok = false;
    }
    if f.max_uri_bytes == 0 || f.max_uri_bytes >= f.max_header_bytes {
        let msg = format!(
            "max_uri_bytes = {} must be above 0 and below max_header_bytes ({}), which also \
             holds the request line; write e.g. max_uri_bytes: 8192",
            f.max_uri_bytes, f.max_header_bytes
        );
        p.at(&format!("{base}.max_uri_bytes"), None, msg);
        ok = false;
    }
    if !(1..=PARSER_MAX_HEADERS).contains(&f.max_headers) {
        let msg = format!(
            "max_headers = {} must be from 1 to {PARSER_MAX_HEADERS} (the most the HTTP parser \
             takes); write e.g. max_headers: 100",
            f.max_headers
        );
        p.at(&format!("{base}.max_headers"), None, msg);
        ok = false;
    }
    let max_connections_per_address = match u32::try_from(f.max_connections_per_address) {
        Ok(0) => None,
        Ok(n) => Some(n),
        Err(_) => {
            let msg = format!(
                "max_connections_per_address = {} is too large; write at most {}, or 0 for no \
                 cap",
                f.max_connections_per_address,
                u32::MAX
            );
            p.at(&format!("{base}.max_connections_per_address"), None, msg);
            ok = false;
            None
        }
    };
    if !ok {
        return None;
    }
    Some(ClientSettings {
        header_timeout: header_timeout?,
        idle_timeout: idle_timeout?,
        body_timeout: body_timeout?,
        send_timeout: send_timeout?,
        max_uri_bytes: usize::try_from(f.max_uri_bytes).ok()?,
        max_header_bytes: usize::try_from(f.max_header_bytes).ok()?,
        max_headers: usize::try_from(f.max_headers).ok()?,
        max_read_body_bytes: f.max_read_body_bytes,
        max_connections_per_address,
    })
}
