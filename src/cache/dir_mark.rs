//! Which directories are knitcache's to move aside or delete. A cache directory that cannot be
//! opened is quarantined (renamed to `<dir>.corrupt`, an older quarantine deleted); that is only
//! safe on a directory knitcache made. A mistyped `--cache-dir` pointing at someone else's data
//! must never have it moved or deleted, whatever error follows.
//!
//! knitcache marks the directories it uses with a file, `MARK_FILE`, naming knitcache and the
//! layout version. Before anything else touches the directory, `claim` decides:
//!
//! * missing: created and marked;
//! * marked: ours (with the layout version it was written with);
//! * empty (or holding only an empty `lost+found`, as a freshly formatted volume does): adopted
//!   and marked;
//! * unmarked but holding nothing except what the release before the mark wrote there (its lock
//!   file, which it always wrote first, plus foyer's block files and the ban list): adopted and
//!   marked, so an upgrade keeps its entries. One unknown entry and it is not recognisably ours:
//!   that release would also have run in someone else's populated directory;
//! * anything else (a file in its place, unmarked contents): refused, naming the directory and
//!   the fix. Nothing in it is touched.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::bans::BAN_FILE;
use super::dir_lock::LOCK_FILE;

/// The mark's name inside a cache directory.
pub const MARK_FILE: &str = "knitcache-cache-dir";

/// The layout this release writes: which files the directory holds and how they are encoded.
/// Raise it when a release can no longer read what an earlier one wrote; a directory of another
/// layout is then quarantined and started empty.
pub const LAYOUT: u32 = 1;

/// The layout of a marked directory whose mark names no readable layout: ours, but unreadable.
pub const UNKNOWN_LAYOUT: u32 = 0;

/// The mark's first line: what says the directory is knitcache's.
const MARK_HEADER: &str = "knitcache cache directory";

/// The name prefix of foyer's block files (`FsDevice`'s partitions).
const FOYER_FILE_PREFIX: &str = "foyer-storage-direct-fs-";

/// A directory that is ours, and how we know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// It did not exist; it was created and marked.
    Created,
    /// It carries the mark, written by a release of this `layout`.
    Marked {
        /// The layout version in the mark.
        layout: u32,
    },
    /// It was empty; it is now marked.
    AdoptedEmpty,
    /// It held what the release before the mark wrote, and nothing else; it is now marked.
    AdoptedUnmarked,
}

impl Claim {
    /// The layout version of what the directory holds.
    pub fn layout(&self) -> u32 {
        match self {
            Claim::Marked { layout } => *layout,
            // What the release before the mark wrote is what layout 1 is.
            Claim::Created | Claim::AdoptedEmpty | Claim::AdoptedUnmarked => LAYOUT,
        }
    }
}

/// Why a directory is not claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// It is not knitcache's: nothing was touched, and nothing will be.
    #[error(
        "the cache directory {dir} {why}; knitcache only uses a directory it created. Pick an \
         empty or new directory (cache.dir or --cache-dir), or, if nothing in it is needed, \
         remove it yourself"
    )]
    NotOurs {
        /// The directory.
        dir: PathBuf,
        /// What was found there.
        why: String,
    },
    /// It could not be inspected or marked: whose it is cannot be told.
    #[error("cannot use the cache directory {dir}: {source}")]
    Io {
        /// The directory.
        dir: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Decides whether `dir` is knitcache's, creating and marking it when it is missing or may be
/// adopted (see the module's notes). Only writes the mark (and creates the directory).
pub fn claim(dir: &Path) -> Result<Claim, ClaimError> {
    let io = |source| ClaimError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    let not_ours = |why: String| ClaimError::NotOurs {
        dir: dir.to_path_buf(),
        why,
    };
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io)?;
            write_mark(dir).map_err(io)?;
            return Ok(Claim::Created);
        }
        Err(e) => return Err(io(e)),
        Ok(m) if !m.is_dir() => return Err(not_ours("is not a directory".to_owned())),
        Ok(_) => {}
    }
    match read_mark(dir).map_err(io)? {
        Some(Some(layout)) => return Ok(Claim::Marked { layout }),
        Some(None) => {
            return Err(not_ours(format!(
                "has a {MARK_FILE} file that knitcache did not write"
            )));
        }
        None => {}
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        names.push(
            entry
                .map_err(io)?
                .file_name()
                .to_string_lossy()
                .into_owned(),
        );
    }
    names.sort();
    let foreign: Vec<&String> = names
        .iter()
        .filter(|n| !is_empty_lost_found(dir, n) && !written_before_the_mark(n))
        .collect();
    if !foreign.is_empty() {
        return Err(not_ours(format!(
            "is not empty and has no {MARK_FILE} mark: it holds {}",
            listing(&foreign)
        )));
    }
    let earlier: Vec<&String> = names
        .iter()
        .filter(|n| written_before_the_mark(n))
        .collect();
    let claim = if earlier.is_empty() {
        Claim::AdoptedEmpty
    } else if names.iter().any(|n| n == LOCK_FILE) {
        Claim::AdoptedUnmarked
    } else {
        // The release before the mark locked the directory before writing anything else.
        return Err(not_ours(format!(
            "has no {MARK_FILE} mark and holds {} without the {LOCK_FILE} knitcache writes first",
            listing(&earlier)
        )));
    };
    write_mark(dir).map_err(io)?;
    Ok(claim)
}

/// Whether `dir` carries knitcache's mark (of any layout): only then may it be deleted.
pub fn is_marked(dir: &Path) -> bool {
    std::fs::metadata(dir).is_ok_and(|m| m.is_dir()) && matches!(read_mark(dir), Ok(Some(Some(_))))
}

/// Deletes foyer's block files from `dir` (ours: claimed), leaving the mark, the lock and the
/// ban list, and syncs the directory so the deletions are durable before anything written
/// after them. Returns how many were deleted.
pub fn delete_disk_tier_files(dir: &Path) -> std::io::Result<usize> {
    let mut deleted = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if is_foyer_file(&entry.file_name().to_string_lossy()) {
            std::fs::remove_file(entry.path())?;
            deleted += 1;
        }
    }
    if deleted > 0 {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(deleted)
}

/// The mark's text for this release.
fn mark_text() -> String {
    format!(
        "{MARK_HEADER}\nlayout {LAYOUT}\n\nknitcache created this directory for its disk tier \
         and may move it aside or delete it.\nPut nothing else here.\n"
    )
}

fn write_mark(dir: &Path) -> std::io::Result<()> {
    std::fs::write(dir.join(MARK_FILE), mark_text())
}

/// `None`: no mark. `Some(None)`: a file of that name knitcache did not write. `Some(layout)`:
/// the mark and its layout version (`UNKNOWN_LAYOUT` when the header is ours but the version
/// line is damaged).
fn read_mark(dir: &Path) -> std::io::Result<Option<Option<u32>>> {
    let bytes = match std::fs::read(dir.join(MARK_FILE)) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
        Ok(b) => b,
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut lines = text.lines();
    if lines.next() != Some(MARK_HEADER) {
        return Ok(Some(None));
    }
    let layout = lines
        .next()
        .and_then(|l| l.strip_prefix("layout "))
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(UNKNOWN_LAYOUT);
    Ok(Some(Some(layout)))
}

/// The entries the release before the mark wrote in its directory: the lock file, foyer's block
/// files, the ban list and its temporary file.
fn written_before_the_mark(name: &str) -> bool {
    let tmp_bans = format!("{BAN_FILE}.tmp");
    name == LOCK_FILE || name == BAN_FILE || name == tmp_bans || is_foyer_file(name)
}

/// One of foyer's block files (`FsDevice`'s partitions).
fn is_foyer_file(name: &str) -> bool {
    name.strip_prefix(FOYER_FILE_PREFIX)
        .is_some_and(|n| n.len() == 8 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A freshly formatted volume's `lost+found`, still empty.
fn is_empty_lost_found(dir: &Path, name: &str) -> bool {
    name == "lost+found"
        && std::fs::read_dir(dir.join(name)).is_ok_and(|mut entries| entries.next().is_none())
}

/// A few of `names`, for the error message.
fn listing(names: &[&String]) -> String {
    const SHOWN: usize = 3;
    let mut out = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        out.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_lists_a_few_names_and_counts_the_rest() {
        let names: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let refs: Vec<&String> = names.iter().collect();
        assert_eq!(listing(&refs[..3]), "\"a\", \"b\", \"c\"");
        assert_eq!(listing(&refs[..4]), "\"a\", \"b\", \"c\" and 1 more");
        assert_eq!(listing(&refs), "\"a\", \"b\", \"c\" and 2 more");
    }

    #[test]
    fn only_an_empty_lost_and_found_counts_as_nothing() {
        let (_t, dir) = tmp();
        std::fs::create_dir_all(dir.join("lost+found")).expect("mkdir");
        std::fs::create_dir_all(dir.join("other")).expect("mkdir");
        assert!(is_empty_lost_found(&dir, "lost+found"));
        assert!(
            !is_empty_lost_found(&dir, "other"),
            "another empty directory is someone's"
        );
        std::fs::write(dir.join("lost+found").join("x"), b"x").expect("write");
        assert!(
            !is_empty_lost_found(&dir, "lost+found"),
            "one holding anything is not empty"
        );
    }

    #[test]
    fn a_claim_knows_the_layout_of_what_it_holds() {
        assert_eq!(
            Claim::Marked { layout: 7 }.layout(),
            7,
            "the mark's own word"
        );
        for fresh in [Claim::Created, Claim::AdoptedEmpty, Claim::AdoptedUnmarked] {
            assert_eq!(fresh.layout(), LAYOUT, "{fresh:?}");
        }
        assert_ne!(LAYOUT, 0);
    }

    fn tmp() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().expect("tempdir");
        let d = t.path().join("cache");
        (t, d)
    }

    #[test]
    fn a_missing_directory_is_created_and_marked() {
        let (_t, dir) = tmp();
        assert_eq!(claim(&dir).expect("claim"), Claim::Created);
        assert!(is_marked(&dir));
        assert_eq!(
            claim(&dir).expect("again"),
            Claim::Marked { layout: LAYOUT }
        );
    }

    #[test]
    fn an_empty_directory_is_adopted() {
        let (_t, dir) = tmp();
        std::fs::create_dir_all(dir.join("lost+found")).expect("mkdir");
        assert_eq!(claim(&dir).expect("claim"), Claim::AdoptedEmpty);
        assert!(is_marked(&dir));
    }

    #[test]
    fn what_the_release_before_the_mark_wrote_is_adopted() {
        let (_t, dir) = tmp();
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in [LOCK_FILE, BAN_FILE, "foyer-storage-direct-fs-00000000"] {
            std::fs::write(dir.join(f), b"x").expect("write");
        }
        assert_eq!(claim(&dir).expect("claim"), Claim::AdoptedUnmarked);
        assert!(is_marked(&dir));
    }

    #[test]
    fn anything_else_is_refused_and_left_as_it_was() {
        let cases: &[&[&str]] = &[
            &["notes.txt"],
            &[LOCK_FILE, "notes.txt"],
            &["foyer-storage-direct-fs-00000000"],
            &[LOCK_FILE, "foyer-storage-direct-fs-0"],
        ];
        for files in cases {
            let (_t, dir) = tmp();
            std::fs::create_dir_all(&dir).expect("mkdir");
            for f in *files {
                std::fs::write(dir.join(f), b"theirs").expect("write");
            }
            let err = claim(&dir).expect_err("refused");
            assert!(
                matches!(err, ClaimError::NotOurs { .. }),
                "{files:?}: {err}"
            );
            assert!(!dir.join(MARK_FILE).exists(), "{files:?}: not marked");
            assert_eq!(std::fs::read_dir(&dir).expect("ls").count(), files.len());
        }
    }

    #[test]
    fn a_file_named_like_the_mark_but_not_written_by_us_is_refused() {
        let (_t, dir) = tmp();
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(MARK_FILE), b"something else\n").expect("write");
        assert!(matches!(claim(&dir), Err(ClaimError::NotOurs { .. })));
        assert!(!is_marked(&dir));
    }

    #[test]
    fn the_refusal_names_the_directory_and_the_fix() {
        let (_t, dir) = tmp();
        std::fs::write(&dir, b"theirs").expect("write");
        let msg = claim(&dir).expect_err("refused").to_string();
        assert!(msg.contains(&dir.display().to_string()), "{msg}");
        assert!(msg.contains("is not a directory"), "{msg}");
        assert!(msg.contains("empty or new directory"), "{msg}");
        assert!(msg.contains("remove it yourself"), "{msg}");
    }

    #[test]
    fn the_layout_is_read_back() {
        let (_t, dir) = tmp();
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(MARK_FILE), format!("{MARK_HEADER}\nlayout 7\n")).expect("w");
        assert_eq!(claim(&dir).expect("claim"), Claim::Marked { layout: 7 });
    }
}
