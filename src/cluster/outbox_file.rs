//! The outbox's file: the announcements of this replica not yet published to the shared stream,
//! kept in the cache directory so that a stop or a crash while Redis is away does not lose them.
//! The next start publishes them, in order, before anything newer.
//!
//! One record per line, appended as the purge is made (before it is acknowledged):
//! `<checksum> <invalidation as JSON>\n`, the checksum being the first 8 bytes of the BLAKE2b of
//! the JSON, in hex. JSON never holds a raw newline, so a line is a record. At start a line
//! whose checksum or JSON is wrong (a torn last write, a damaged block) is skipped, logged and
//! counted, and the lines around it are kept; the file is then rewritten with the good records.
//!
//! Once every record is published the file is truncated to nothing (the common case: Redis
//! answers within a millisecond, so the queue is empty after each publish); while some wait and
//! the published ones before them pass `COMPACT_AT`, the unpublished tail is rewritten alone.
//! A record already published but not yet cut off (records after it still waited) when the
//! process stopped is published again at the next start: delivery is at least once, and applying an invalidation twice is harmless (a ban
//! keeps the time it was made; a second URL purge costs one more miss).
//!
//! Durability: each record is handed to the kernel with one `write()` before the purge is
//! acknowledged, which survives the process being killed (SIGKILL, OOM kill, a panic): the
//! page cache outlives the process. It is not `fsync`ed. A power loss of the machine can lose
//! the last records, but then it also loses this replica's own record of the purge (`bans.json`
//! and the disk tier's removal are written the same way, and the purge answers once they are
//! written, not synced): a sync here would promise the other replicas more than this one keeps,
//! at the cost of a disk flush on every purge and on every write that fires an invalidation.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use blake2::digest::consts::U8;
use blake2::{Blake2b, Digest};

use super::event::{self, Invalidation};

/// Name of the outbox file inside the cache directory.
pub const OUTBOX_FILE: &str = "cluster-outbox.log";

/// Most bytes of unpublished records the file holds: past this an announcement is dropped (and
/// counted), as when the in-memory queue is full. A URL purge's record is about 100 bytes, so
/// this holds tens of thousands; very long URLs fill it sooner.
pub const MAX_BYTES: u64 = 8 * 1024 * 1024;

/// Published records kept before the file is rewritten without them, while others still wait.
const COMPACT_AT: u64 = 1024 * 1024;

/// Why a record was not appended.
#[derive(Debug)]
pub enum AppendError {
    /// The unpublished records already fill `MAX_BYTES`.
    Full,
    /// The write failed.
    Io(std::io::Error),
}

/// What the file held at start.
#[derive(Debug)]
pub struct Replay {
    /// The good records, in order, each with the position past it.
    pub records: Vec<(Invalidation, u64)>,
    /// Lines that were skipped (bad checksum, bad JSON, a torn last line).
    pub skipped: usize,
}

/// Why the file cannot be used, with what could still be read of it (to be published from
/// memory: the file could be read but not rewritten, on a read-only directory say).
#[derive(Debug)]
pub struct OpenError {
    /// What failed.
    pub error: std::io::Error,
    /// The good records read, if any.
    pub replay: Replay,
}

/// The open outbox file. Positions are counted from the file's creation at this start, so they
/// stay valid while the file is truncated or rewritten under the records still queued.
pub struct OutboxFile {
    path: PathBuf,
    file: File,
    /// Position of the file's first byte.
    start: u64,
    /// Position past the last record written.
    end: u64,
    /// Position past the last record published.
    published: u64,
}

impl OutboxFile {
    /// Opens the outbox file of the cache directory `dir`, reading what the previous run left
    /// unpublished; the file is rewritten with the good records only. `Err` if it cannot be
    /// read or rewritten: announcements then wait in memory only.
    pub fn open(dir: &Path) -> Result<(OutboxFile, Replay), OpenError> {
        let path = dir.join(OUTBOX_FILE);
        let (kept, replay) = read(&path).map_err(|error| OpenError {
            error,
            replay: Replay {
                records: Vec::new(),
                skipped: 0,
            },
        })?;
        // Written beside, then renamed: a crash now leaves the old file or the new one. A new
        // file, too, so a process that had this one open (the old one of a graceful upgrade)
        // can no longer write into it.
        let tmp = path.with_extension("log.tmp");
        let file = std::fs::write(&tmp, &kept)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .and_then(|()| OpenOptions::new().append(true).open(&path));
        let file = match file {
            Ok(f) => f,
            Err(error) => return Err(OpenError { error, replay }),
        };
        let end = kept.len() as u64;
        Ok((
            OutboxFile {
                path,
                file,
                start: 0,
                end,
                published: 0,
            },
            replay,
        ))
    }

    /// Appends `inv`; returns the position past it, which `published` is given once it is.
    pub fn append(&mut self, inv: &Invalidation) -> Result<u64, AppendError> {
        let line = record(inv);
        let len = line.len() as u64;
        if self.end - self.published + len > MAX_BYTES {
            return Err(AppendError::Full);
        }
        if self.end - self.start + len > MAX_BYTES {
            self.compact().map_err(AppendError::Io)?;
        }
        // One write of one short line: the kernel has all of it or none, unless the disk is
        // full, when what it took is cut off again so the next record starts on a fresh line.
        if let Err(e) = self.file.write_all(&line) {
            let _ = self.file.set_len(self.end - self.start);
            return Err(AppendError::Io(e));
        }
        self.end += len;
        Ok(self.end)
    }

    /// Records that everything up to `position` is on the stream, and drops it from the file
    /// when nothing is left or enough has been published.
    pub fn published(&mut self, position: u64) {
        self.published = self.published.max(position);
        let result = if self.published >= self.end {
            // Nothing waits: cut it all. Appends (`O_APPEND`) start again at the beginning.
            self.file.set_len(0).map(|()| self.start = self.end)
        } else if self.published - self.start >= COMPACT_AT {
            self.compact()
        } else {
            Ok(())
        };
        if let Err(e) = result {
            // Harmless but for size: the next start publishes those records again.
            tracing::warn!(file = %self.path.display(), error = %e,
                "cannot drop published records from the cluster outbox file");
        }
    }

    /// Rewrites the file with the unpublished records only.
    fn compact(&mut self) -> std::io::Result<()> {
        if self.published == self.start {
            return Ok(());
        }
        let bytes = std::fs::read(&self.path)?;
        let from = usize::try_from(self.published - self.start).unwrap_or(usize::MAX);
        let tail = bytes.get(from..).unwrap_or_default();
        let tmp = self.path.with_extension("log.tmp");
        std::fs::write(&tmp, tail)?;
        std::fs::rename(&tmp, &self.path)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.start = self.published;
        Ok(())
    }
}

/// The good records of the file at `path` (none if there is no file), and their bytes.
fn read(path: &Path) -> std::io::Result<(Vec<u8>, Replay)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut replay = Replay {
        records: Vec::new(),
        skipped: 0,
    };
    let mut kept = Vec::with_capacity(bytes.len());
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        let whole = line.ends_with(b"\n");
        match parse(line).filter(|_| whole) {
            Some(inv) => {
                kept.extend_from_slice(line);
                replay.records.push((inv, kept.len() as u64));
            }
            None => replay.skipped += 1,
        }
    }
    Ok((kept, replay))
}

/// The line for `inv`.
fn record(inv: &Invalidation) -> Vec<u8> {
    let json = event::encode(inv);
    format!("{} {json}\n", checksum(json.as_bytes())).into_bytes()
}

/// The invalidation of a line, if its checksum holds and its JSON is one.
fn parse(line: &[u8]) -> Option<Invalidation> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = std::str::from_utf8(line).ok()?;
    let (sum, json) = line.split_once(' ')?;
    (sum == checksum(json.as_bytes()))
        .then(|| serde_json::from_str(json).ok())
        .flatten()
}

fn checksum(bytes: &[u8]) -> String {
    Blake2b::<U8>::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::bans::{Ban, BanMatch};

    fn url(n: usize) -> Invalidation {
        Invalidation::Url(format!("/api/x?n={n}"))
    }

    /// What a start would replay, read without rewriting the file.
    fn replayed(dir: &Path) -> (Vec<Invalidation>, usize) {
        let (_, replay) = read(&dir.join(OUTBOX_FILE)).expect("read");
        (
            replay.records.into_iter().map(|(i, _)| i).collect(),
            replay.skipped,
        )
    }

    #[test]
    fn records_are_replayed_in_order_until_all_are_published() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut f, replay) = OutboxFile::open(dir.path()).expect("open");
        assert!(replay.records.is_empty());
        let ban = Invalidation::Ban(Ban {
            matcher: BanMatch::Tag("yarn".into()),
            at_unix_ms: 1_700_000_000_123,
        });
        let first = f.append(&url(1)).expect("append");
        f.append(&ban).expect("append");
        let last = f.append(&url(2)).expect("append");
        f.published(first);
        // Kept until the rest is published (or compaction): published again after a crash now.
        assert_eq!(replayed(dir.path()), (vec![url(1), ban, url(2)], 0));
        f.published(last);
        assert_eq!(replayed(dir.path()), (vec![], 0));
        let (_, replay) = OutboxFile::open(dir.path()).expect("reopen");
        assert!(replay.records.is_empty());
    }

    #[test]
    fn the_file_is_emptied_once_all_is_published_and_positions_stay_valid() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut f, _) = OutboxFile::open(dir.path()).expect("open");
        let a = f.append(&url(1)).expect("append");
        let b = f.append(&url(2)).expect("append");
        f.published(a);
        f.published(b);
        let path = dir.path().join(OUTBOX_FILE);
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 0);
        let c = f.append(&url(3)).expect("append");
        let d = f.append(&url(4)).expect("append");
        assert!(c > b, "positions go on across the truncation");
        f.published(c);
        assert_eq!(replayed(dir.path()), (vec![url(3), url(4)], 0));
        f.published(d);
        assert_eq!(replayed(dir.path()), (vec![], 0));
    }

    #[test]
    fn published_records_are_compacted_away_while_others_wait() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut f, _) = OutboxFile::open(dir.path()).expect("open");
        let long = |n: usize| Invalidation::Url(format!("/{}?n={n}", "a".repeat(10_000)));
        let mut ends = Vec::new();
        for n in 0..200 {
            ends.push(f.append(&long(n)).expect("append"));
        }
        // All but the last published: over COMPACT_AT, the file keeps the last one only.
        f.published(ends[198]);
        let size = std::fs::metadata(dir.path().join(OUTBOX_FILE))
            .expect("meta")
            .len();
        assert!(size < 11_000, "compacted to one record: {size} bytes");
        f.append(&url(1)).expect("append after compaction");
        assert_eq!(replayed(dir.path()), (vec![long(199), url(1)], 0));
    }

    #[test]
    fn the_file_is_bounded() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut f, _) = OutboxFile::open(dir.path()).expect("open");
        let long = Invalidation::Url(format!("/{}", "a".repeat(100_000)));
        let mut written: u64 = 0;
        let err = loop {
            match f.append(&long) {
                Ok(_) => written += 1,
                Err(e) => break e,
            }
        };
        assert!(matches!(err, AppendError::Full), "{err:?}");
        let per_record = record(&long).len() as u64;
        assert_eq!(written, MAX_BYTES / per_record, "8 MiB of 100 kB records");
        let size = std::fs::metadata(dir.path().join(OUTBOX_FILE))
            .expect("meta")
            .len();
        assert!(size <= MAX_BYTES);
    }

    #[test]
    fn a_file_that_cannot_be_rewritten_still_gives_its_records() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut f, _) = OutboxFile::open(dir.path()).expect("open");
        f.append(&url(1)).expect("append");
        drop(f);
        // The temporary file's name taken by a directory: the rewrite fails.
        std::fs::create_dir(dir.path().join(OUTBOX_FILE).with_extension("log.tmp")).expect("dir");
        let Err(e) = OutboxFile::open(dir.path()) else {
            panic!("the rewrite cannot succeed");
        };
        let kept: Vec<_> = e.replay.records.into_iter().map(|(i, _)| i).collect();
        assert_eq!(kept, vec![url(1)], "published from memory");
    }

    #[test]
    fn bad_lines_and_a_torn_tail_are_skipped_and_the_rest_kept() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut f, _) = OutboxFile::open(dir.path()).expect("open");
        f.append(&url(1)).expect("append");
        f.append(&url(2)).expect("append");
        drop(f);
        let path = dir.path().join(OUTBOX_FILE);
        let good = std::fs::read(&path).expect("read");
        let text = String::from_utf8(good.clone()).expect("utf8");
        let tampered = text.replacen("n=2", "n=3", 1);
        let mut bytes = b"garbage\n".to_vec();
        bytes.extend_from_slice(tampered.as_bytes());
        bytes.extend_from_slice(&good);
        bytes.extend_from_slice(&good[..good.len() / 3]);
        std::fs::write(&path, &bytes).expect("write");
        // garbage, the tampered record, the torn tail; n=1 twice and n=2 once survive.
        let (_, replay) = OutboxFile::open(dir.path()).expect("open");
        let kept: Vec<_> = replay.records.into_iter().map(|(i, _)| i).collect();
        assert_eq!((kept, replay.skipped), (vec![url(1), url(1), url(2)], 3));
        // The file was rewritten with the good records only.
        assert_eq!(replayed(dir.path()), (vec![url(1), url(1), url(2)], 0));
    }
}
