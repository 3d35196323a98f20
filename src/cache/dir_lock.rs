//! One process per cache directory. foyer does no locking of its own, and two processes
//! writing one disk tier would corrupt it; that happens during a graceful upgrade, when the new
//! process starts while the old one still runs. An exclusive lock on a file in the directory
//! (released by the kernel if the process dies) makes the new process wait for the old one to
//! close its cache, which the old one does as soon as it is told to hand over.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// The lock file's name inside the cache directory (foyer only touches its own block files).
pub const LOCK_FILE: &str = "knitcache.lock";

/// How often a waiting process tries the lock again.
const RETRY_EVERY: Duration = Duration::from_millis(50);

/// Why the directory could not be locked.
#[derive(Debug)]
pub enum LockError {
    /// Another process held it for the whole wait.
    Busy {
        /// That process, as it wrote itself into the lock file.
        holder: String,
    },
    /// The directory or the lock file cannot be used.
    Io(std::io::Error),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Busy { holder } => {
                write!(
                    f,
                    "the cache directory is in use by another knitcache process ({holder})"
                )
            }
            LockError::Io(e) => write!(f, "cannot lock the cache directory: {e}"),
        }
    }
}

/// A held lock; dropping it releases the directory.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Creates `dir` if needed and locks it, waiting up to `wait` for another process.
    pub fn acquire(dir: &Path, wait: Duration) -> Result<DirLock, LockError> {
        std::fs::create_dir_all(dir).map_err(LockError::Io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(LockError::Io)?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(RETRY_EVERY);
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim();
                    let holder = if holder.is_empty() {
                        "unknown pid".to_owned()
                    } else {
                        holder.to_owned()
                    };
                    return Err(LockError::Busy { holder });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(LockError::Io(e)),
            }
        }
        // Say who holds it, for the message a waiting process gives up with.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "pid {}", std::process::id());
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_then_gives_up_and_gets_it_once_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = DirLock::acquire(dir.path(), Duration::ZERO).expect("first");
        match DirLock::acquire(dir.path(), Duration::from_millis(120)) {
            Err(LockError::Busy { holder }) => {
                assert_eq!(
                    holder,
                    format!("pid {}", std::process::id()),
                    "names the holder"
                )
            }
            other => panic!("must be busy: {other:?}"),
        }
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(first);
        });
        DirLock::acquire(dir.path(), Duration::from_secs(5)).expect("acquired after release");
        release.join().expect("thread");
    }

    #[test]
    fn a_file_in_place_of_the_directory_is_an_io_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cache");
        std::fs::write(&path, b"x").expect("file");
        assert!(matches!(
            DirLock::acquire(&path, Duration::ZERO),
            Err(LockError::Io(_))
        ));
    }
}
