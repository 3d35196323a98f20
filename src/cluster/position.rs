//! Where a replica stands in the shared stream: the id of the last entry it applied, kept in the
//! cache directory beside the entries it protects, so a restart replays exactly what it missed.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::cache::bans::unix_ms;

/// Name of the position file inside the cache directory.
pub const POSITION_FILE: &str = "cluster-stream.pos";

/// How far before its start a memory-only replica reads: clocks of the replica and of Redis
/// (which stamps the ids) may disagree by this much; replaying a little more is harmless.
const CLOCK_MARGIN: Duration = Duration::from_secs(60);

/// The saved position of one replica.
pub struct Position {
    file: Option<PathBuf>,
    last_saved: String,
}

impl Position {
    /// The position to read from. With a disk tier (`dir`): the saved id, or the whole stream
    /// if none was saved (the recovered entries may predate any purge still in it). Memory-only
    /// (`None`): from now, since an empty cache has nothing older to purge.
    pub fn load(dir: Option<&Path>) -> (Position, String) {
        let Some(dir) = dir else {
            let since = SystemTime::now() - CLOCK_MARGIN;
            let id = format!("{}-0", unix_ms(since));
            return (
                Position {
                    file: None,
                    last_saved: id.clone(),
                },
                id,
            );
        };
        let file = dir.join(POSITION_FILE);
        let saved = std::fs::read_to_string(&file)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| is_stream_id(s));
        let id = saved.unwrap_or_else(|| "0-0".to_owned());
        (
            Position {
                file: Some(file),
                last_saved: id.clone(),
            },
            id,
        )
    }

    /// Saves `id` as the last applied entry (written beside, then renamed: a crash leaves the
    /// old position or the new one). A failure is logged: the next restart replays more.
    pub fn save(&mut self, id: &str) {
        if id == self.last_saved {
            return;
        }
        let Some(file) = &self.file else {
            self.last_saved = id.to_owned();
            return;
        };
        let tmp = file.with_extension("pos.tmp");
        match std::fs::write(&tmp, id).and_then(|()| std::fs::rename(&tmp, file)) {
            Ok(()) => self.last_saved = id.to_owned(),
            Err(e) => tracing::warn!(
                file = %file.display(),
                error = %e,
                "cannot save the cluster stream position; a restart replays from the last one saved"
            ),
        }
    }
}

/// `ms-seq`, as Redis stream ids are written.
fn is_stream_id(s: &str) -> bool {
    s.split_once('-').is_some_and(|(ms, seq)| {
        !ms.is_empty()
            && !seq.is_empty()
            && ms.bytes().all(|b| b.is_ascii_digit())
            && seq.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_position_is_read_back_and_junk_means_from_the_start() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut pos, first) = Position::load(Some(dir.path()));
        assert_eq!(first, "0-0", "nothing saved: the whole stream");
        pos.save("1700000000000-3");
        assert_eq!(Position::load(Some(dir.path())).1, "1700000000000-3");
        std::fs::write(dir.path().join(POSITION_FILE), "garbage").expect("write");
        assert_eq!(Position::load(Some(dir.path())).1, "0-0");
        let (_, memory) = Position::load(None);
        let ms: u64 = memory.trim_end_matches("-0").parse().expect("ms");
        assert!(
            ms > 1_700_000_000_000,
            "memory-only reads from about now: {memory}"
        );
    }
}
