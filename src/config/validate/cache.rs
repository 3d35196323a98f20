//! The `cache:` section: the memory and disk tiers, the largest stored body, the coalescing
//! lock, compression of stored bodies and the tag header.

use std::time::Duration;

use super::super::defaults::*;
use super::super::file::*;
use super::super::model::*;
use super::shape::example_value;
use super::{Problems, last_key};

/// Largest storable body, in bytes (64 MiB): bigger bodies would each evict many small entries
/// and are better proxied than stored.
const MAX_OBJECT_BYTES_LIMIT: u64 = 64 * 1024 * 1024;

pub(super) fn cache(c: &FileCache, p: &mut Problems) -> Option<CacheSettings> {
    let mut ok = true;
    if c.dir.as_os_str().is_empty() {
        p.at(
            "cache.dir",
            None,
            format!("is empty; set the disk tier's directory, e.g. dir: {DEFAULT_CACHE_DIR}"),
        );
        ok = false;
    }
    let memory_bytes = mib("cache.memory_mib", c.memory_mib, "memory", p);
    let disk_bytes = mib("cache.disk_mib", c.disk_mib, "disk", p);
    let max = c.max_object_bytes;
    if max == 0 {
        p.at(
            "cache.max_object_bytes",
            None,
            format!(
                "max_object_bytes = 0 stores nothing; set e.g. max_object_bytes: \
                 {DEFAULT_MAX_OBJECT_BYTES} (4 MiB)"
            ),
        );
        ok = false;
    } else if max > MAX_OBJECT_BYTES_LIMIT {
        p.at(
            "cache.max_object_bytes",
            None,
            format!(
                "max_object_bytes = {max} is over the 64 MiB limit ({MAX_OBJECT_BYTES_LIMIT}); \
                 bodies that large would each evict many small entries and are better proxied \
                 than stored; set at most {MAX_OBJECT_BYTES_LIMIT}"
            ),
        );
        ok = false;
    } else if let Some(memory) = memory_bytes.filter(|m| max > *m) {
        p.at(
            "cache.max_object_bytes",
            None,
            format!(
                "max_object_bytes = {max} is larger than the memory tier (memory_mib = {} is \
                 {memory} bytes); lower max_object_bytes or raise memory_mib",
                c.memory_mib
            ),
        );
        ok = false;
    }
    let lock_timeout = if c.lock_timeout_ms == 0 {
        p.at(
            "cache.lock_timeout_ms",
            None,
            format!(
                "lock_timeout_ms = 0 sends every waiting request to the ERP at once, which \
                 defeats request coalescing; set e.g. lock_timeout_ms: {DEFAULT_LOCK_TIMEOUT_MS}"
            ),
        );
        None
    } else {
        Some(Duration::from_millis(c.lock_timeout_ms))
    };
    let level = c.compression.level;
    if !(1..=9).contains(&level) {
        p.at(
            "cache.compression.level",
            None,
            format!(
                "level = {level} is outside 1..=9; use 1 (fastest) to 9 (smallest), e.g. \
                 level: {DEFAULT_COMPRESSION_LEVEL}"
            ),
        );
        ok = false;
    }
    let tag_header = match c.tag_header.trim() {
        "" => Some(None),
        name => match http::HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => Some(Some(h)),
            Err(_) => {
                let msg = format!(
                    "{name:?} is not a header name; write e.g. tag_header: surrogate-key (or \
                     cache-tag), or \"\" to tag by route only"
                );
                p.at("cache.tag_header", None, msg);
                None
            }
        },
    };
    if !ok {
        return None;
    }
    Some(CacheSettings {
        dir: c.dir.clone(),
        memory_bytes: memory_bytes?,
        disk_bytes: disk_bytes?,
        max_object_bytes: max,
        lock_timeout: lock_timeout?,
        compression: CompressionSettings {
            enabled: c.compression.enabled,
            level,
        },
        tag_header: tag_header?,
    })
}

/// MiB to bytes; 0 and overflowing sizes are problems.
fn mib(path: &str, value: u64, tier: &str, p: &mut Problems) -> Option<u64> {
    let key = last_key(path);
    let example = example_value(key);
    if value == 0 {
        p.at(
            path,
            None,
            format!("{key} = 0 leaves no {tier} tier; set at least 1, e.g. {key}: {example}"),
        );
        return None;
    }
    let bytes = value.checked_mul(1024 * 1024);
    if bytes.is_none() {
        p.at(
            path,
            None,
            format!("{key} = {value} is too large to count in bytes; set e.g. {key}: {example}"),
        );
    }
    bytes
}
